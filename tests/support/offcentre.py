"""Real scans with the cord moved away from the centre of the field of view (full-field-of-view inference).

:func:`place_cord` puts a real image and its masks on a new in-plane grid (RAS, the image's own voxel
size and slices) where the cord's centroid lies ``offset_mm`` from the centre of a field of view of
``shape`` voxels: an integer-voxel shift, so no voxel value is interpolated, and the affine moves with it,
so every voxel keeps its world coordinates (the masks still line up with the image, and a mask predicted
on the new grid can be compared with one predicted on the original in world space). Voxels outside the
original field of view take the image's **background level: the 1st percentile of its intensities** (the
dark of the air around the body; :func:`background_level`), masks 0; voxels of the original that fall outside the new grid are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

#: The real scans of the full-field-of-view acceptance (paths under the shared data folder):
#: (image, cord mask or None, GM mask or None).
SCANS = {
    "t2": ("sct_testing_data/t2/t2.nii.gz", "sct_testing_data/t2/t2_seg-manual.nii.gz"),
    "t1w": ("sct_t1/t1w.nii.gz", "sct_t1/t1w_seg-manual.nii.gz"),
    "t2s_uncropped": ("sct_testing_data/t2s/t2s_uncropped.nii.gz", "sct_testing_data/t2s/t2s_seg-deepseg.nii.gz"),
    "gm_run1": (
        "gm-challenge-data/sub-9418/anat/sub-9418_run-1_T2starw.nii.gz",
        "gm-challenge-data/derivatives/labels/sub-9418/anat/sub-9418_run-1_T2starw_seg-manual.nii.gz",
    ),
}


@dataclass
class Placed:
    """An image and its cord mask on a new grid (see the module docstring)."""

    image: nib.Nifti1Image
    mask: nib.Nifti1Image
    pad_value: float
    offset_mm: tuple[float, float]  # the cord's centroid from the FOV centre (R-L, A-P mm), as placed

    def save(self, folder: Path, stem: str) -> tuple[Path, Path]:
        """Write ``<stem>.nii.gz`` and ``<stem>_seg-manual.nii.gz`` into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        img, seg = folder / f"{stem}.nii.gz", folder / f"{stem}_seg-manual.nii.gz"
        nib.save(self.image, img)
        nib.save(self.mask, seg)
        return img, seg


def background_level(data: np.ndarray) -> float:
    """The 1st percentile of the image's intensities (the air around the body)."""
    return float(np.percentile(data, 1))


def mask_on_grid(mask_path: Path, image: nib.Nifti1Image) -> np.ndarray:
    """A mask resampled (nearest, world coordinates) onto ``image``'s grid; 0 outside the mask's own grid."""
    m = nib.load(str(mask_path))
    if m.shape[:3] == image.shape[:3] and np.allclose(m.affine, image.affine, atol=1e-4):
        return np.asarray(m.dataobj) > 0
    ijk = np.indices(image.shape[:3]).reshape(3, -1).T
    world = nib.affines.apply_affine(image.affine, ijk)
    src = np.rint(nib.affines.apply_affine(np.linalg.inv(m.affine), world)).astype(int)
    inside = np.all((src >= 0) & (src < np.array(m.shape[:3])), axis=1)
    out = np.zeros(len(ijk), bool)
    md = np.asarray(m.dataobj) > 0
    out[inside] = md[tuple(src[inside].T)]
    return out.reshape(image.shape[:3])


def place_cord(
    image_path: Path,
    mask_path: Path,
    offset_mm: tuple[float | None, float | None],
    shape: tuple[int | None, int | None] = (None, None),
) -> Placed:
    """``image_path`` (and its cord mask) on an in-plane grid of ``shape`` voxels whose centre lies
    ``offset_mm`` (R-L, A-P; RAS) from the cord's centroid (module docstring). A ``None`` size keeps the
    image's own along that axis; a ``None`` offset keeps the image where it is along it (centred in the
    new size, as a symmetric pad or crop would)."""
    img = nib.as_closest_canonical(nib.load(str(image_path)))
    data = np.asarray(img.dataobj, dtype=np.float32)
    mask = mask_on_grid(mask_path, img)
    zooms = np.asarray(img.header.get_zooms()[:3], float)
    shape = tuple(int(n if s is None else s) for s, n in zip(shape, data.shape[:2]))
    centroid = np.array(np.nonzero(mask)).mean(axis=1)[:2]
    shift = np.zeros(2, int)  # new index = old index + shift
    for i, off in enumerate(offset_mm):
        if off is None:
            shift[i] = (shape[i] - data.shape[i]) // 2
        else:
            shift[i] = int(np.rint((shape[i] - 1) / 2 + off / zooms[i] - centroid[i]))
    pad = background_level(data)
    new = np.full((*shape, data.shape[2]), pad, np.float32)
    new_mask = np.zeros((*shape, data.shape[2]), np.uint8)
    src, dst = [], []
    for n_old, n_new, s in zip(data.shape[:2], shape, shift):
        lo, hi = max(0, -s), min(n_old, n_new - s)
        src.append(slice(lo, hi))
        dst.append(slice(lo + s, hi + s))
    new[dst[0], dst[1]] = data[src[0], src[1]]
    new_mask[dst[0], dst[1]] = mask[src[0], src[1]]
    affine = img.affine @ nib.affines.from_matvec(np.eye(3), [-shift[0], -shift[1], 0])
    placed = (np.array(np.nonzero(new_mask)).mean(axis=1)[:2] - (np.array(shape) - 1) / 2) * zooms[:2]
    header = img.header.copy()
    image = nib.Nifti1Image(new, affine, header)
    image.set_data_dtype(np.float32)
    seg = nib.Nifti1Image(new_mask, affine)
    seg.set_data_dtype(np.uint8)
    return Placed(image, seg, pad, (float(placed[0]), float(placed[1])))


def centred(image_path: Path, mask_path: Path) -> Placed:
    """The original image (RAS) with its cord mask on its grid: the reference of the off-centre copies."""
    img = nib.as_closest_canonical(nib.load(str(image_path)))
    mask = mask_on_grid(mask_path, img)
    zooms = np.asarray(img.header.get_zooms()[:2], float)
    off = (np.array(np.nonzero(mask)).mean(axis=1)[:2] - (np.array(img.shape[:2]) - 1) / 2) * zooms
    seg = nib.Nifti1Image(mask.astype(np.uint8), img.affine)
    return Placed(img, seg, background_level(np.asarray(img.dataobj, np.float32)), (float(off[0]), float(off[1])))
