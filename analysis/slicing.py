"""Which voxel planes the cord is measured in, and what a mask's geometry allows to measure.

**Slice axis.** SCT reorients a mask to RPI and measures the voxel planes closest to axial: the
slice axis is the voxel axis closest to the scanner's S-I axis. That is the right plane for a
cord that runs roughly along S-I, but not for a grid whose affine is rotated far from the
anatomy (a mask whose header was rotated by 60° about L-R lies, in the scanner frame, 60° from
S-I: its "axial" voxel planes cut it lengthwise and give CSAs of 2 to 400 mm²). cordbench
measures the planes of the voxel axis closest to the **cord's own direction** (the principal
axis of the mask's voxels in millimetres): that is SCT's axis whenever the cord is closer to it
than to the other voxel axes, so the parity with SCT is untouched, and a different voxel axis
(a permutation, no resampling) otherwise. The in-plane axes are then assigned as RPI's, in the
frame rotated so that the cord is S-I. The direction only counts when the mask is elongated
(:mod:`core.geometry`); a short blob keeps SCT's axis.

**What cannot be measured** (:func:`check_geometry`):

* the angle between the cord's centerline and the slice normal. Angle correction (cos θ) is
  exact for a straight tube, but an oblique cut spans ``diameter · tan θ`` of cord, mixing
  neighbouring levels and blurring the section over several voxels. Above ``ANGLE_LIMIT_DEG`` the
  per-level CSA leaves ±3 % of the truth on the phantom; the slices beyond it are reported in a
  warning with the largest angle. This happens only when no voxel axis lies within the limit of
  the cord (a grid oblique by 35–55° to the cord);
* the number of voxels across the cord: a section fewer than ``MIN_VOXELS_ACROSS`` voxels wide
  (a single sagittal slice is one voxel across R-L) has no area or diameter: refused;
* the canal must contain the cord: with more than ``MAX_CORD_OUTSIDE_CANAL`` of the cord's voxels
  outside the canal, SAC = canal − cord is no space at all (swapped ``--seg``/``--canal`` give
  negative SAC): refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.errors import InputError
from core.geometry import cord_direction, cord_frame_affine, nearest_voxel_axis, slice_axis

RPI_AXCODES = ("L", "A", "S")
ANGLE_LIMIT_DEG = 50.0  # centerline vs slice normal beyond which a per-level CSA can leave ±3 %
MIN_VOXELS_ACROSS = 3  # voxels across the section along each in-plane axis
MAX_CORD_OUTSIDE_CANAL = 0.05  # share of the cord's voxels allowed outside the canal


def measurement_orientation(values: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """nibabel orientation transform from the file's voxel axes to the measured array (module docstring)."""
    from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

    aff = np.asarray(affine, dtype=float)
    d = cord_direction(values, aff)
    if d is not None and nearest_voxel_axis(aff, d)[0] != slice_axis(aff):
        aff = cord_frame_affine(aff, d)  # another voxel axis runs along the cord: it becomes the slice axis
    return ornt_transform(io_orientation(aff), axcodes2ornt(RPI_AXCODES))


def reorient(data: np.ndarray, affine: np.ndarray, xfm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply an orientation transform to ``data`` (3D, or more with extra axes) and its affine."""
    from nibabel.orientations import apply_orientation, inv_ornt_aff

    out = apply_orientation(np.asarray(data), xfm)
    return out, np.asarray(affine, dtype=float) @ inv_ornt_aff(xfm, np.asarray(data).shape[:3])


def voxels_across(mask: np.ndarray) -> tuple[int, int]:
    """Median over the non-empty slices of the section's extent (voxels) along in-plane axes 0 and 1."""
    m = np.asarray(mask) > 0
    ks = np.flatnonzero(m.any(axis=(0, 1)))
    ext = np.empty((ks.size, 2), dtype=int)
    for n, k in enumerate(ks):
        sl = m[:, :, k]
        for ax in (0, 1):
            hit = np.flatnonzero(sl.any(axis=1 - ax))
            ext[n, ax] = hit[-1] - hit[0] + 1
    med = np.median(ext, axis=0)
    return int(med[0]), int(med[1])


def check_voxels_across(mask_rpi: np.ndarray, shape: tuple[int, ...], path: str | Path) -> None:
    """Refuse a section fewer than ``MIN_VOXELS_ACROSS`` voxels wide along R-L or A-P."""
    rl, ap = voxels_across(mask_rpi)
    thin = [f"{n} voxel(s) across {name}" for name, n in (("R-L", rl), ("A-P", ap)) if n < MIN_VOXELS_ACROSS]
    if not thin:
        return
    what = "a single sagittal slice?" if ap >= MIN_VOXELS_ACROSS else "a single coronal slice?"
    if len(thin) == 2:
        what = "a line or a dot, not a section?"
    raise InputError(
        f"the cord's section is {' and '.join(thin)} (image {'x'.join(str(s) for s in shape)}): {what} "
        f"CSA and diameters need the whole axial section, at least {MIN_VOXELS_ACROSS} voxels across",
        path,
    )


def check_canal_contains_cord(cord: np.ndarray, canal: np.ndarray, seg: str | Path, canal_path: str | Path) -> None:
    """Refuse a canal that leaves more than ``MAX_CORD_OUTSIDE_CANAL`` of the cord outside it."""
    cord = np.asarray(cord) > 0
    canal = np.asarray(canal) > 0
    n = int(cord.sum())
    out = int((cord & ~canal).sum())
    if n and out > MAX_CORD_OUTSIDE_CANAL * n:
        swapped = " (--seg and --canal swapped?)" if int(canal.sum()) < n else ""
        raise InputError(
            f"{100.0 * out / n:.0f}% of the cord ({Path(seg).name}) lies outside the canal{swapped}: "
            f"SAC = canal − cord needs a canal that contains the cord "
            f"(at most {100 * MAX_CORD_OUTSIDE_CANAL:.0f}% outside)",
            canal_path,
        )


def steep_slices_message(angles_deg: np.ndarray, slices: np.ndarray) -> str | None:
    """The warning for slices cut more than ``ANGLE_LIMIT_DEG`` from the cord's normal plane, or None."""
    steep = np.asarray(angles_deg) > ANGLE_LIMIT_DEG
    if not steep.any():
        return None
    return (
        f"the cord's centerline is up to {float(np.max(angles_deg)):.0f}° from the slice normal in "
        f"{int(steep.sum())} of {steep.size} slice(s) (no voxel axis of this grid runs along the cord): "
        f"CSA and shape beyond {ANGLE_LIMIT_DEG:.0f}° are not within 3 %; resample the mask onto a grid "
        f"aligned with the cord or use --level-method volume"
    )
