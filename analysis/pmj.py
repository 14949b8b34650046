"""Cord morphometrics at a distance from the pontomedullary junction (PMJ), along the centerline.

The semantics of SCT's ``sct_process_segmentation -pmj FILE -pmj-distance D -pmj-extent E``
(``spinalcordtoolbox/csa_pmj.py``), computed with cordbench's own centerline
(:mod:`analysis.centerline`):

* **PMJ** — a point label (any voxel > 0; spine-generic's ``_label-PMJ_dlabel`` holds one voxel of
  value 50) on the segmentation's grid. Several voxels: their centroid.
* **Centerline from the PMJ** — the cord's per-slice centroids *below* the PMJ's slice and the
  PMJ itself as the top point, fitted as :func:`analysis.centerline.fit_centerline` does (cubic
  smoothing spline of the slice index, SCT's ``bspline`` smoothing). SCT adds the label to the mask
  and fits a linear, smoothed curve from its top; cordbench starts the curve at the PMJ, so a
  segmentation running above the junction does not move the origin of the distances.
* **Distance** ``DistancePMJ(k)`` — arc length in millimetres along the fitted curve from the
  PMJ's slice down to slice ``k`` (world coordinates, so anisotropic and oblique grids count
  true millimetres). Slices above the PMJ have none.
* **Slices of one measurement** — as SCT: ``zmin`` = the slice whose distance is nearest
  ``D + E/2``, ``zmax`` = the one nearest ``D − E/2``; slices ``zmin … zmax − 1`` are measured
  (SCT's mask zeroes ``zmax`` and above), i.e. ``round(E / slice thickness)`` slices centred half
  a slice below ``D``. Every metric is then the angle-corrected per-slice value of
  :func:`analysis.morphometrics.compute_perslice` (the cord's ordinary centerline, as SCT's
  ``compute_shape``), averaged over those slices.
* **Refused** (one line naming the file): a distance beyond the cord's length below the PMJ, a PMJ
  below the cord, a window with a slice holding no cord (SCT's "not fully covered by the
  segmentation"). A window reaching past the lower end of the cord is measured on the slices
  that exist, with a warning (SCT truncates silently).

Output columns are SCT's (:func:`analysis.morphometrics.sct_columns`): ``DistancePMJ`` holds
``D`` (one row) or each slice's distance (``perslice``), ``VertLevel`` is empty, ``Slice (I->S)``
lists the slices measured.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analysis.centerline import SliceFrame, fit_1d, slice_centroids
from core.errors import InputError

PMJ_STEP = 0.05  # slice-index step of the arc-length quadrature


@dataclass
class PmjDistances:
    """Distance from the PMJ along the centerline of every slice at or below it."""

    slices: np.ndarray  # slice indices k (ascending, I->S), cord slices below the PMJ and the PMJ's
    distance: np.ndarray  # mm from the PMJ along the fitted centerline, one per slice
    pmj_slice: int
    pmj_voxel: np.ndarray  # (3,) PMJ position in the measured array's voxel coordinates


def pmj_voxel(pmj_data: np.ndarray, pmj_affine: np.ndarray, affine_measured: np.ndarray) -> np.ndarray:
    """Centroid of the PMJ label's voxels, in the voxel coordinates of the measured (reoriented) grid."""
    ijk = np.argwhere(np.asarray(pmj_data) > 0).astype(float).mean(axis=0)
    world = np.asarray(pmj_affine, float) @ np.append(ijk, 1.0)
    return (np.linalg.inv(np.asarray(affine_measured, float)) @ world)[:3]


def distances_from_pmj(
    seg_rpi: np.ndarray,
    affine_rpi: np.ndarray,
    pmj_vox: np.ndarray,
    *,
    centerline_method: str = "bspline",
    smooth: float = 30.0,
    source: str | Path | None = None,
) -> PmjDistances:
    """Arc length from the PMJ of every cord slice below it (module docstring: the centerline model)."""
    seg = np.asarray(seg_rpi) > 0
    kp = int(round(float(pmj_vox[2])))
    cord = np.flatnonzero(seg.any(axis=(0, 1)))
    below = cord[cord < kp]
    if below.size == 0:
        raise InputError(
            f"the PMJ (slice {kp}) is not above the segmented cord (slices {cord.min()}–{cord.max()})", source
        )
    mask = np.zeros_like(seg)
    mask[:, :, below] = seg[:, :, below]
    frame = SliceFrame.from_affine(affine_rpi)
    ks, cents = slice_centroids(mask)
    ks = np.append(ks, kp)  # the PMJ is the curve's top point
    cents = np.vstack([cents, np.asarray(pmj_vox, float)[:2]])
    span = int(ks[-1] - ks[0] + 1)
    fi = fit_1d(ks.astype(float), cents[:, 0], centerline_method, smooth, 5, frame.slice_thickness, span)
    fj = fit_1d(ks.astype(float), cents[:, 1], centerline_method, smooth, 5, frame.slice_thickness, span)
    kq = np.arange(ks[0], kp + PMJ_STEP / 2, PMJ_STEP)
    pts = np.stack([fi(kq, 0), fj(kq, 0), kq], axis=1) @ np.asarray(affine_rpi, float)[:3, :3].T
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    dist = arc[-1] - np.interp(ks.astype(float), kq, arc)
    return PmjDistances(ks, dist, kp, np.asarray(pmj_vox, float))


def window_slices(
    d: PmjDistances, seg_rpi: np.ndarray, distance: float, extent: float, source: str | Path | None = None
) -> np.ndarray:
    """Slices measured for ``distance`` ± ``extent``/2 (SCT's ``zmin … zmax − 1``, module docstring)."""
    far = float(d.distance.max())
    if distance > far:
        raise InputError(
            f"--pmj-distance {distance:g} mm is beyond the cord: the segmentation reaches {far:.1f} mm below the PMJ",
            source,
        )
    zmin = int(d.slices[np.argmin(np.abs(d.distance - (distance + extent / 2)))])
    zmax = int(d.slices[np.argmin(np.abs(d.distance - (distance - extent / 2)))])
    sel = np.arange(zmin, max(zmax, zmin + 1))
    if distance + extent / 2 > far:
        warnings.warn(
            f"the PMJ window {distance - extent / 2:g}–{distance + extent / 2:g} mm reaches past the lower end "
            f"of the cord ({far:.1f} mm from the PMJ): measured on {sel.size} slice(s) only",
            stacklevel=2,
        )
    has = np.asarray(seg_rpi).any(axis=(0, 1))
    empty = [int(k) for k in sel if not has[k]]
    if empty:
        raise InputError(
            f"the slices {sel[0]}–{sel[-1]} at {distance:g} ± {extent / 2:g} mm from the PMJ are not fully "
            f"covered by the segmentation (no cord in slice(s) {empty[:5]})",
            source,
        )
    return sel


def pmj_table(
    perslice,
    d: PmjDistances,
    seg_rpi: np.ndarray,
    filename: str,
    *,
    distance: float | None,
    extent: float,
    perslice_rows: bool = False,
    source: str | Path | None = None,
):
    """SCT-style rows: one over the window at ``distance`` (``DistancePMJ`` = it), or one per slice
    (``perslice_rows``: ``DistancePMJ`` = each slice's distance, empty above the PMJ)."""
    from analysis.morphometrics import aggregate

    by_slice = dict(zip(d.slices.tolist(), d.distance.tolist()))
    ps = perslice.assign(VertLevel=np.nan)
    if perslice_rows:
        table = aggregate(ps, filename, perslice_rows=True)
        table["DistancePMJ"] = [by_slice.get(int(k), np.nan) for k in table["Slice (I->S)"]]
        return table
    sel = window_slices(d, seg_rpi, float(distance), float(extent), source)
    table = aggregate(ps[ps["Slice (I->S)"].isin(sel.tolist())], filename, perlevel=False)
    table["DistancePMJ"] = float(distance)
    return table


def pmj_morphometrics_from_files(
    seg: str | Path,
    pmj: str | Path,
    *,
    distance: float | None,
    extent: float = 20.0,
    perslice_rows: bool = False,
    canal: str | Path | None = None,
    soft: bool | None = None,
    angle_correction: bool = True,
    centerline_method: str = "bspline",
    smooth: float = 30.0,
    perslice=None,
):
    """:func:`pmj_table` on files: the segmentation (and canal) measured as ``morphometrics`` does,
    the PMJ label checked on the segmentation's grid. ``perslice``: the segmentation's per-slice
    metrics already computed with the same options (:func:`analysis.morphometrics.morphometrics_from_files`),
    reused instead of measured again."""
    from analysis.morphometrics import compute_perslice, load_measured
    from core.io import check_same_grid, load_label, load_nifti

    if distance is None and not perslice_rows:
        raise InputError("--pmj needs --pmj-distance (or --perslice for every slice's distance)", pmj)
    vals, aff, _, cn = load_measured(seg, None, canal, soft)
    pmj_img, pmj_arr = load_label(pmj, kind="PMJ label", require_nonempty=True)
    check_same_grid(load_nifti(seg, ndim=3, kind="segmentation"), pmj_img, seg, pmj)
    d = distances_from_pmj(
        vals,
        aff,
        pmj_voxel(pmj_arr, pmj_img.affine, aff),
        centerline_method=centerline_method,
        smooth=smooth,
        source=pmj,
    )
    ps = perslice
    if ps is None:
        ps = compute_perslice(
            vals, aff, None, cn, angle_correction=angle_correction, centerline_method=centerline_method, smooth=smooth
        )
    return pmj_table(
        ps,
        d,
        vals > 1e-6,
        Path(seg).name,
        distance=distance,
        extent=extent,
        perslice_rows=perslice_rows,
        source=pmj,
    )
