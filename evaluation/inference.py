"""Inference on a NIfTI in any orientation, written back on the input's own grid.

The image goes through the model's own preprocessing contract (``data_modules.preprocessing``,
saved in the checkpoint: reorientation, resampling, crop/pad by the label-free rule, normalisation);
the argmax label map is taken on the preprocessed grid, post-processed as the run's test was
(``evaluation.postprocess``), and written back onto the input grid by nearest-neighbour lookup in world coordinates (``evaluation.native``), so the
mask has exactly the input's shape and affine and lines up with it in any viewer. A JSON sidecar names the model and checkpoint.

**Orientation.** The preprocessing reorients to RAS, a permutation of the voxel axes that makes
the one closest to the scanner's S-I axis the slice axis. A grid rotated far from the anatomy
(a header rotated by 60° about L-R) would have a 2D model segment planes along the cord, and a
crop cut it short. So the cord segmented in that first pass gives the cord's direction
(:mod:`core.geometry`); when another voxel axis lies closer to it, the image is segmented again
with that axis as the slice axis (the world frame rotated so that the cord is S-I: the same
voxels, permuted, no resampling). A cord that no voxel axis follows within ``ALIGN_LIMIT_DEG``
(a grid oblique by 20–55° to the cord) is segmented again on a grid resampled along it (linear;
the class probabilities come back linearly, then argmax and post-processing), with an
:class:`OrientationWarning` naming the angle: two interpolations move the boundary by up to a
voxel (Dice 0.96 instead of 0.99 on the phantom). Where that fails too (no elongated cord along
the new grid's slice axis), the first mask is kept with a warning naming the angle.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core import __version__, io
from core.errors import InputError
from core.geometry import angle_deg


def predict_array(module: Any, data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Label map (uint8) on the grid of ``data``/``affine`` predicted by ``module``.

    Segmented across the cord (module docstring): again with the voxel axes permuted when the first
    pass cut the cord lengthwise; on a grid resampled along the cord when no voxel axis lies within
    ``ALIGN_LIMIT_DEG`` of it, with an :class:`OrientationWarning` naming the angle (and another
    when even that fails).
    """
    from core.geometry import cord_direction, cord_frame_affine, nearest_voxel_axis, slice_axis

    labels = _predict_in_frame(module, data, affine)
    cut = slice_axis(affine)  # the voxel axis across which the model segmented
    d = cord_direction(labels > 0, affine, min_elongation=1.0)
    if d is None:
        return labels
    axis, _ = nearest_voxel_axis(affine, d)
    if axis != cut:  # the model's slices ran along the cord: segment across the voxel axis nearest it
        again = _predict_in_frame(module, data, cord_frame_affine(affine, d))
        d2 = cord_direction(again > 0, affine)
        if d2 is not None and nearest_voxel_axis(affine, d2)[0] == axis:
            labels, cut = again, axis
    d = cord_direction(labels > 0, affine)
    if d is None:
        return labels
    c = np.asarray(affine, float)[:3, cut]
    angle = angle_deg(d, c)
    if angle <= ALIGN_LIMIT_DEG:
        return labels
    aligned = _predict_along(module, data, affine, d)
    d3 = cord_direction(aligned > 0, affine)
    if d3 is not None and angle_deg(d3, d) <= ALIGN_LIMIT_DEG:
        warnings.warn(
            f"the cord runs {angle:.0f}° from the closest voxel axis of this grid: segmented on a grid "
            f"resampled along the cord (two linear interpolations: the boundary may move by up to a voxel)",
            OrientationWarning,
            stacklevel=2,
        )
        return aligned
    warnings.warn(
        f"the segmented cord runs {angle:.0f}° from the normal of the slices the model segments, and "
        f"segmenting it on a grid resampled along the cord failed: the mask may be incomplete",
        OrientationWarning,
        stacklevel=2,
    )
    return labels


def _predict_along(module: Any, data: np.ndarray, affine: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Segment ``data`` resampled (linear) onto a grid whose slice axis is ``d``; labels on the input grid.

    The grid covers the input's field of view, each of its axes with the spacing of the input's voxel
    axis closest to it. The class probabilities come back linearly (:func:`evaluation.native.to_native`,
    ``argmax``); the model's post-processing then runs on the input grid.
    """
    import torch
    import torchio as tio

    from core.geometry import cord_frame_affine
    from evaluation.native import to_native
    from evaluation.postprocess import apply, mode_of

    frame = cord_frame_affine(affine, d)  # the input grid in a world where the cord is S-I
    sp = np.linalg.norm(frame[:3, :3], axis=0)
    closest = np.argmax(np.abs(frame[:3, :3] / sp), axis=1)
    spacing = sp[closest] if len(set(closest.tolist())) == 3 else np.full(3, sp.min())
    n = np.asarray(data.shape[:3], float)
    corners = np.array([[a, b, c] for a in (-0.5, n[0] - 0.5) for b in (-0.5, n[1] - 0.5) for c in (-0.5, n[2] - 0.5)])
    world = corners @ frame[:3, :3].T + frame[:3, 3]
    lo, hi = world.min(axis=0), world.max(axis=0)
    shape = tuple(int(v) for v in np.maximum(np.ceil((hi - lo) / spacing), 1))
    grid = np.diag([*spacing, 1.0])
    grid[:3, 3] = lo + spacing / 2
    pad = float(np.median(data))  # outside the input's field of view: its median (the resampler fills 0)
    image = tio.ScalarImage(tensor=torch.from_numpy(np.asarray(data, np.float32)[None] - pad), affine=frame)
    res = tio.Resample(target=(shape, grid), image_interpolation="linear")(tio.Subject(image=image))
    probs, pre_affine = _probabilities(module, res["image"].data[0].numpy() + pad, grid)
    labels = to_native(probs.numpy(), pre_affine, data.shape[:3], frame, mode="argmax")
    return np.asarray(apply(labels, mode_of(module))).astype(np.uint8)


def _predict_in_frame(module: Any, data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The model's label map on the grid of ``data``, the world frame given by ``affine``."""
    from evaluation.native import to_native
    from evaluation.postprocess import labels_of, mode_of

    probs, pre_affine = _probabilities(module, data, affine)
    labels = labels_of(probs, mode_of(module)).numpy().astype(np.int16)
    return to_native(labels, pre_affine, data.shape[:3], np.asarray(affine), mode="nearest").astype(np.uint8)


def _probabilities(module: Any, data: np.ndarray, affine: np.ndarray) -> tuple[Any, np.ndarray]:
    """Class probabilities (C, X, Y, Z; torch, CPU) on the preprocessed grid of ``data`` and its affine."""
    import torch
    import torchio as tio

    from data_modules.preprocessing import Preprocessing, build_transform

    pre_desc = Preprocessing.from_hparams(module.hparams)
    image = tio.ScalarImage(tensor=torch.from_numpy(np.asarray(data, np.float32)[None]), affine=affine)
    pre = build_transform(pre_desc, "eval")(tio.Subject(image=image))
    with torch.no_grad():
        probs = module.predict_volume(pre["image"]["data"][None].float())[0]
    return probs.cpu(), np.asarray(pre["image"].affine)


class OrientationWarning(UserWarning):
    """A cord segmented across planes far from its normal (printed by ``cordbench predict``)."""


class EmptyPredictionWarning(UserWarning):
    """A prediction without any foreground voxel (printed by ``cordbench predict``)."""


ALIGN_LIMIT_DEG = 20.0  # cord vs the normal of the segmented slices beyond which the image is resampled along it
MIN_AXIAL_VOXELS = 8  # an axial cross-section narrower than this cannot hold a cord to segment


def check_axial_extent(shape: tuple[int, ...], affine: np.ndarray, path: str | Path) -> None:
    """Refuse images whose axial planes are (almost) lines: a single sagittal or coronal slice."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine)
    ras = [0, 0, 0]
    for i, (axis, _) in enumerate(ornt[:3]):
        ras[int(axis)] = int(shape[i])
    thin = [f"{n} voxel(s) along {axis}" for axis, n in zip(("R-L", "A-P"), ras[:2]) if n < MIN_AXIAL_VOXELS]
    if thin:
        raise InputError(
            f"input image has only {' and '.join(thin)} (shape {tuple(shape)}, "
            f"{''.join(nib.aff2axcodes(affine))}): a single sagittal or coronal slice? cordbench "
            f"segments axial slices of at least {MIN_AXIAL_VOXELS}x{MIN_AXIAL_VOXELS} voxels",
            path,
        )


def predict_file(module: Any, image_path: str | Path, out_path: str | Path, ckpt: str | Path | None = None) -> Path:
    """Predict one NIfTI and write the mask (+ JSON sidecar) on the input's grid."""
    img = io.load_nifti(image_path, ndim=3, kind="input image")
    data = np.asanyarray(img.dataobj).astype(np.float32)
    io.check_image_values(data, image_path)
    check_axial_extent(data.shape[:3], np.asarray(img.affine), image_path)
    labels = _predict_naming(module, data, np.asarray(img.affine), image_path)
    from lightning_modules.volume import inference_rule

    if not labels.any():
        warnings.warn(f"{image_path}: the model found no foreground: the mask is empty", EmptyPredictionWarning)
    out_path = Path(out_path)
    io.save_nifti(labels, img.affine, out_path, header=img.header, dtype=np.uint8)
    hp = module.hparams
    sidecar = {
        "GeneratedBy": [
            {
                "Name": "cordbench",
                "Version": __version__,
                "Model": hp.get("network"),
                "Preset": hp.get("preset"),
                "Checkpoint": str(ckpt) if ckpt else None,
                "CheckpointSHA256": io.sha256(ckpt) if ckpt else None,
            }
        ],
        "Task": hp.get("task"),
        "Classes": hp.get("classes"),
        "InferenceRule": inference_rule(hp),
        "Source": str(image_path),
    }
    io.write_json(sidecar_path(out_path), sidecar)
    return out_path


def _predict_naming(module: Any, data: np.ndarray, affine: np.ndarray, path: str | Path) -> np.ndarray:
    """:func:`predict_array`, its :class:`OrientationWarning` prefixed with the image's path."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", OrientationWarning)
        labels = predict_array(module, data, affine)
    for w in caught:
        msg = f"{path}: {w.message}" if issubclass(w.category, OrientationWarning) else w.message
        warnings.warn(msg, w.category, stacklevel=3)
    return labels


def sidecar_path(path: Path) -> Path:
    """The JSON sidecar of a mask (``x.nii.gz`` → ``x.json``)."""
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return path.with_name(name[: -len(ext)] + ".json")
    return path.with_suffix(".json")


def predict_bids(
    module: Any,
    root: str | Path,
    contrast: str | Sequence[str],
    task: str,
    ckpt: str | Path | None = None,
    out_root: str | Path | None = None,
    subjects: Sequence[str] | None = None,
) -> list[Path]:
    """Predict every existing ``contrast`` image of a BIDS tree into ``derivatives/cordbench``.

    ``contrast``: one BIDS contrast chain, or names of :mod:`data_modules.contrasts` (chains, short
    names, ``all``), any of them whatever the model trained on.

    Uses :func:`predict_file` (mask on the input grid + JSON sidecar), one file per image at
    :func:`evaluation.native.prediction_path`.
    """
    from core.errors import InputError
    from data_modules.bids import BidsIndex
    from data_modules.contrasts import matches
    from evaluation.native import prediction_path

    names = (contrast,) if isinstance(contrast, str) else tuple(contrast)
    index = BidsIndex.from_dir(root, strict=False)
    recs = [
        r
        for r in index.images
        if r.exists and matches(names, r.contrast) and (subjects is None or r.subject in subjects)
    ]
    if not recs:
        raise InputError(f"no {'/'.join(names)} image to predict", root)
    return [predict_file(module, r.path, prediction_path(out_root or root, r, task), ckpt=ckpt) for r in recs]


def predict_class_mask(module: Any, image: str | Path, cls: str) -> np.ndarray:
    """Boolean mask of class ``cls`` (its label values in the module's ``classes``; ``[1]`` when the
    module names none) predicted on the native grid of the NIfTI ``image``."""
    return predict_class_masks(module, image, (cls,))[cls]


def predict_class_masks(module: Any, image: str | Path, classes: tuple[str, ...]) -> dict[str, np.ndarray]:
    """:func:`predict_class_mask` of several classes from one prediction."""
    img = io.load_nifti(image, ndim=3, kind="input image")
    data = np.asanyarray(img.dataobj).astype(np.float32)
    io.check_image_values(data, image)
    labels = _predict_naming(module, data, np.asarray(img.affine), image)
    named = module.hparams.get("classes") or {}
    return {cls: np.isin(labels, list(named.get(cls) or [1])) for cls in classes}
