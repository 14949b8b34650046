"""Vertebral levels from disc labels: per-slice level map and level-labelled cord masks.

Convention (SCT / spine-generic ``label-discs_dlabel``): each disc is a single voxel whose value
is the disc number, C2/C3 → 3, C3/C4 → 4, …, C7/T1 → 8 (value 1 = top of C1, 2 = C1/C2).
Vertebral level ``k`` (C3 → 3) lies between disc ``k`` (above) and disc ``k + 1`` (below).

"Slices" are taken along the voxel axis closest to the scanner's superior-inferior axis, so the
same code serves axial (T2*, DWI) and sagittal (T2w, PSR) images. A slice at height ``h`` (index
along that axis, oriented superior-positive) gets level ``k`` when ``H[k+1] < h <= H[k]``, ``H`` being
disc heights. Slices above the first disc, below the last one, or between two discs whose numbers
are not consecutive (a disc is missing) get 0 = unknown. Labels 49/50 (pontomedullary groove and
junction, written by SCT) are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from core import io
from core.errors import InputError

IGNORED_DISC_VALUES = (49, 50)


def si_axis(affine: np.ndarray) -> tuple[int, int]:
    """``(axis, sign)``: the voxel axis closest to world S-I and +1 if its index grows superiorly."""
    rot = np.asarray(affine, dtype=float)[:3, :3]
    cols = rot / np.linalg.norm(rot, axis=0, keepdims=True)
    axis = int(np.argmax(np.abs(cols[2])))
    return axis, int(np.sign(cols[2, axis]))


def disc_positions(
    discs: np.ndarray, ignore: tuple[int, ...] = IGNORED_DISC_VALUES, path: str | Path | None = None
) -> dict[int, np.ndarray]:
    """Disc number → voxel coordinates (centroid when a value has several voxels)."""
    arr = np.asarray(discs)
    if arr.ndim != 3:
        raise InputError(f"disc label map must be 3D, got shape {arr.shape}", path)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.allclose(arr, np.round(arr)):
            raise InputError("disc labels must be integers (value = disc number)", path)
        arr = np.round(arr)
    arr = arr.astype(np.int64)
    if (arr < 0).any():
        raise InputError("disc labels must be >= 0", path)
    out: dict[int, np.ndarray] = {}
    for v in np.unique(arr):
        if v == 0 or v in ignore:
            continue
        out[int(v)] = np.argwhere(arr == v).mean(axis=0)
    return out


def disc_heights(positions: Mapping[int, np.ndarray], affine: np.ndarray) -> dict[int, float]:
    """Disc number → height along the S-I voxel axis, superior-positive (index × sign)."""
    axis, sign = si_axis(affine)
    return {k: float(p[axis]) * sign for k, p in positions.items()}


def slice_levels(discs: np.ndarray, affine: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """Level (int16, 0 = unknown) of every slice along the S-I voxel axis of ``discs``' grid."""
    axis, sign = si_axis(affine)
    heights = disc_heights(disc_positions(discs, path=path), affine)
    n = np.asarray(discs).shape[axis]
    out = np.zeros(n, dtype=np.int16)
    if len(heights) < 2:
        return out
    ks = sorted(heights)
    for a, b in zip(ks, ks[1:]):
        if heights[b] >= heights[a]:
            raise InputError(
                f"disc {b} is not below disc {a} (heights {heights[b]:.1f} >= {heights[a]:.1f} along the S-I axis)",
                path,
            )
    h = np.arange(n, dtype=float) * sign
    for k in ks:
        if k + 1 in heights:
            out[(h > heights[k + 1]) & (h <= heights[k])] = k
    return out


def level_map(mask: np.ndarray, discs: np.ndarray, affine: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """Label the voxels of ``mask`` (> 0) with the level of their slice (int16, 0 elsewhere)."""
    mask = np.asarray(mask)
    if mask.shape != np.asarray(discs).shape:
        raise InputError(f"mask shape {mask.shape} != disc label shape {np.asarray(discs).shape}", path)
    axis, _ = si_axis(affine)
    per_slice = slice_levels(discs, affine, path=path)
    shape = [1, 1, 1]
    shape[axis] = -1
    return np.where(mask > 0, per_slice.reshape(shape), 0).astype(np.int16)


def level_slices(per_slice: np.ndarray) -> dict[int, np.ndarray]:
    """Level → slice indices having it (for per-level morphometrics)."""
    return {int(k): np.flatnonzero(per_slice == k) for k in np.unique(per_slice) if k > 0}


def level_map_from_files(mask_path: str | Path, discs_path: str | Path):
    """Load a cord mask and its disc labels (same grid, checked) → ``(mask image, level map)``."""
    mask_img, mask = io.load_label(mask_path, allowed=(0, 1), require_nonempty=True, kind="cord mask")
    disc_img = io.load_nifti(discs_path, ndim=3, kind="disc label")
    io.check_same_grid(mask_img, disc_img, mask_path, discs_path)
    discs = np.asanyarray(disc_img.dataobj)
    levels = level_map(mask, discs, np.asarray(mask_img.affine), path=discs_path)
    return mask_img, levels


def levels_target(
    mask_path: str | Path, discs_path: str | Path, image: Any, image_path: str | Path, max_level: int = 7
) -> np.ndarray:
    """Target of the ``levels`` task from a cord mask and disc labels on the image's grid.

    Cord voxels get their vertebral level (1..``max_level``); voxels of levels beyond it and of
    unknown level are 0, as the task scores C1..C7 only.
    """
    mask_img, levels = level_map_from_files(mask_path, discs_path)
    io.check_same_grid(image, mask_img, image_path, mask_path)
    return np.where(levels <= max_level, levels, 0).astype(np.int16)


def save_levels_from_discs(mask: Path, discs: Path | None, dest: Path, what: str) -> Path:
    """Write the level map of ``mask`` (``what``, for messages) computed from its disc labels; returns ``dest``."""
    from core.io import save_nifti

    if discs is None:
        raise InputError(f"no vertebral levels for the {what} (label-SC_desc-levels_dseg or label-discs_dlabel)", mask)
    img, lv = level_map_from_files(mask, discs)
    if not (lv > 0).any():
        raise InputError(
            f"no vertebral level where the {what} is segmented (the discs bound none of its slices; "
            f"mask {Path(mask).name})",
            discs,
        )
    return save_nifti(lv, img.affine, dest, header=img.header, dtype=np.int16)
