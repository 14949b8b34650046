"""Write predictions back on an image's own grid, and where they go in a BIDS tree.

Preprocessing (canonical RAS reorientation, resampling, crop/pad) only changes the grid, so
the way back is one resampling from the preprocessed grid onto the native one, in world
coordinates: ``nearest`` for label maps (exact round trip when the preprocessing grid is at
least as fine as the native one along every axis — reorientation is a pure permutation/flip),
or ``argmax`` of linearly resampled class probabilities (smoother; exact for integer
up-sampling factors such as Perone's 0.5 → 0.25 mm, not for arbitrary ratios).

``derivatives/cordbench/sub-*/{anat,dwi}/sub-*_<contrast>_label-<TASK>_seg.nii.gz`` is where
``cordbench predict`` over a BIDS data set writes, with a JSON sidecar
(:func:`evaluation.inference.predict_bids`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

DERIVATIVES = "derivatives/cordbench"


def to_native(
    data: np.ndarray, affine: np.ndarray, native_shape: Sequence[int], native_affine: np.ndarray, mode: str = "nearest"
) -> np.ndarray:
    """Resample a preprocessed label map (``nearest``) or class probabilities ``(C, ...)`` (``argmax``).

    ``affine`` is the preprocessed grid's affine. Returns an int16 label map of ``native_shape``.
    Native voxels outside the preprocessed field of view get 0.
    """
    import torch
    import torchio as tio

    target = (tuple(int(s) for s in native_shape[:3]), np.asarray(native_affine, dtype=float))
    arr = np.asarray(data)
    if mode == "nearest":
        if arr.ndim != 3:
            raise ValueError(f"nearest write-back takes a 3D label map, got shape {arr.shape}")
        img = tio.LabelMap(tensor=torch.from_numpy(arr.astype(np.int16)[None]), affine=np.asarray(affine, float))
        back = tio.Resample(target=target)(tio.Subject(x=img))
        return back["x"].data[0].numpy().astype(np.int16)
    if mode == "argmax":
        if arr.ndim != 4:
            raise ValueError(f"argmax write-back takes probabilities (C, X, Y, Z), got shape {arr.shape}")
        img = tio.ScalarImage(tensor=torch.from_numpy(arr.astype(np.float32)), affine=np.asarray(affine, float))
        back = tio.Resample(target=target, image_interpolation="linear")(tio.Subject(x=img))
        return back["x"].data.argmax(0).numpy().astype(np.int16)
    raise ValueError(f"unknown write-back mode {mode!r} (nearest | argmax)")


def probabilities_to_native(
    probs: np.ndarray,
    affine: np.ndarray,
    native_shape: Sequence[int],
    native_affine: np.ndarray,
    fill_background: bool = True,
) -> np.ndarray:
    """Class probabilities ``(C, ...)`` on the preprocessed grid, linearly resampled onto the native grid.

    Linear interpolation of probabilities (a convex combination: the classes still sum to 1 inside
    the preprocessed field of view). Native voxels outside it get 0 from the resampler (SimpleITK's
    default value); with ``fill_background`` the share of each native voxel that lies outside (the
    resampled coverage of a constant 1) goes to class 0, the label :func:`to_native` gives those voxels.
    Returns float32 ``(C, *native_shape)``.
    """
    import torch
    import torchio as tio

    grid = (tuple(int(n) for n in native_shape[:3]), np.asarray(native_affine, dtype=float))
    arr = np.asarray(probs, np.float32)
    if arr.ndim != 4:
        raise ValueError(f"probability write-back takes (C, X, Y, Z), got shape {arr.shape}")
    if fill_background:
        arr = np.concatenate([arr, np.ones_like(arr[:1])])
    img = tio.ScalarImage(tensor=torch.from_numpy(arr), affine=np.asarray(affine, float))
    back = tio.Resample(target=grid, image_interpolation="linear")(tio.Subject(x=img))
    out = np.clip(back["x"].data.numpy().astype(np.float32), 0.0, 1.0)
    if fill_background:
        out, coverage = out[:-1], out[-1]
        out[0] = np.clip(out[0] + (1.0 - coverage), 0.0, 1.0)
    return out


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``(C, ...)`` float32 one-hot of an integer label map."""
    labels = np.asarray(labels).astype(np.int64)
    return (np.arange(num_classes).reshape(-1, *([1] * labels.ndim)) == labels[None]).astype(np.float32)


def prediction_path(root: str | Path, rec: Any, task: str) -> Path:
    """``<root>/derivatives/cordbench/<sub>[/<ses>]/<datatype>/<stem>_label-<TASK>_seg.nii.gz`` for a record.

    Every component comes from a BIDS name and is checked (:func:`data_modules.bids.safe_name`):
    the path can never leave ``<root>/derivatives/cordbench``.
    """
    from data_modules.bids import safe_name

    where = getattr(rec, "path", None)
    parts = [safe_name(rec.subject, "subject id", where)]
    if rec.session:
        parts.append(safe_name(rec.session, "session id", where))
    parts.append(safe_name(rec.datatype, "datatype", where))
    name = f"{safe_name(rec.stem, 'file stem', where)}_label-{safe_name(task, 'task', where)}_seg.nii.gz"
    return Path(root).joinpath(DERIVATIVES, *parts, name)
