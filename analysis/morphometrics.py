"""Per-slice and per-vertebral-level cord morphometrics (CSA, diameters, shape, canal, SAC).

Mirrors ``sct_process_segmentation``: masks are reoriented to RPI, every axial slice containing
cord is measured, and slices are aggregated per vertebral level (slice level = rounded mean of the
non-zero level labels in that slice) or over a level range. Geometry conventions (frame,
centerline fit, angles) are documented in :mod:`analysis.centerline`.

Per slice (angle-corrected unless ``angle_correction=False``), with SCT 7.4's columns and meanings
(:mod:`analysis.shape` has the definitions):

* ``area`` — Σ values × pixel area × cos θ, θ the angle between the centerline and the slice
  normal (``area_raw`` keeps the uncorrected value): the voxel count for a binary mask, partial
  volume for a soft one. SCT's ``MEAN(area)`` is angle-corrected too.
* ``diameter_AP`` — the rotated AP profile (SCT ≥ 7.2), with ``length_anterior`` /
  ``length_posterior``; ``diameter_AP_ellipse`` / ``diameter_RL``, ``eccentricity`` and the signed
  ``orientation`` — from the second moments of the section, after compressing it by cos θ along
  the in-plane direction of the tilt. (cordbench < 0.2 wrote the ellipse value as ``diameter_AP``
  and an unsigned orientation, as SCT < 7.2.)
* ``solidity`` — ``regionprops`` solidity (area / convex-hull area).
* ``length`` — slice thickness / cos θ (SCT aggregates it as ``SUM(length)``).
* ``canal_area`` (same correction), ``SAC = canal_area − area`` and ``SAC_CSA = SAC / area``.

Input masks: integer labels (any value > 0 is cord) or soft masks in [0, 1], measured as partial
volume as SCT does (detected, or forced with ``soft``; ``soft=False`` thresholds at 0.5). The
centerline is fitted to every voxel > 0 (unweighted), as SCT's. ``mask_type`` in the output says
which was used.
"""

from __future__ import annotations

import datetime
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from analysis.centerline import SliceFrame, fit_centerline, to_rpi
from analysis.shape import NEAR_ZERO, SliceShape, ellipse_from_points, mask_values, slice_shape  # noqa: F401
from analysis.slicing import (
    check_canal_contains_cord,
    check_voxels_across,
    measurement_orientation,
    reorient,
    steep_slices_message,
)
from core.errors import InputError

if TYPE_CHECKING:  # annotations only: pandas is imported where it is used
    import pandas as pd

#: SCT ≥ 7.2's ``KEYS_DEFAULT`` order (``length`` is written as ``SUM(length)``).
SHAPE_METRICS = [
    "area",
    "angle_AP",
    "angle_RL",
    "diameter_AP",
    "diameter_AP_ellipse",
    "diameter_RL",
    "length_anterior",
    "length_posterior",
    "eccentricity",
    "orientation",
    "solidity",
]
CANAL_METRICS = ["canal_area", "SAC", "SAC_CSA"]
LEVEL_COL = "VertLevel"  # SCT's vertebral-level column
HEAD_COLUMNS = ["Timestamp", "SCT Version", "Filename", "Slice (I->S)", "VertLevel", "DistancePMJ"]


def sct_columns(with_canal: bool = True, with_mask_type: bool = True) -> list[str]:
    """Output columns: ``sct_process_segmentation``'s (SCT 7.4), in its order, then the canal/SAC
    columns and ``mask_type`` (``binary`` or ``soft``: how the segmentation was measured)."""
    cols = list(HEAD_COLUMNS)
    for m in SHAPE_METRICS:
        cols += [f"MEAN({m})", f"STD({m})"]
    cols.append("SUM(length)")
    if with_canal:
        for m in CANAL_METRICS:
            cols += [f"MEAN({m})", f"STD({m})"]
    if with_mask_type:
        cols.append("mask_type")
    return cols


# ------------------------------------------------------------------------------------- inputs
def binary_mask(data: np.ndarray, path: str | Path, kind: str = "segmentation") -> np.ndarray:
    """Binarise a mask: integer labels → ``> 0``; soft masks in [0, 1] → ``>= 0.5``."""
    return mask_values(data, path, kind, soft=False)[0] > 0


def load_mask_rpi(path: str | Path, kind: str, ref=None, ref_path: str | Path | None = None, xfm=None):
    """Load a 3D mask, check it is on ``ref``'s grid, reorient to RPI (or by the orientation
    transform ``xfm``, :func:`analysis.slicing.measurement_orientation`); returns ``(img, data, affine)``."""
    from core.io import check_same_grid, load_nifti

    img = load_nifti(path, ndim=3, kind=kind)
    if ref is not None:
        check_same_grid(ref, img, ref_path, path)
    raw = np.asanyarray(img.dataobj)
    data, aff = to_rpi(raw, img.affine) if xfm is None else reorient(raw, img.affine, xfm)
    return img, data, aff


def load_measured(seg, levels=None, canal=None, soft: bool | None = None, voxels=False, min_slices: int = 0):
    """The segmentation's values, affine, level map and canal, reoriented so that slices cross the
    cord (:mod:`analysis.slicing`), after the checks of what its geometry allows to measure."""
    from core.io import check_same_grid, load_label, load_nifti

    img = load_nifti(seg, ndim=3, kind="segmentation")
    raw, _ = mask_values(np.asanyarray(img.dataobj), seg, "segmentation", soft=soft)
    if not (raw > NEAR_ZERO).any():
        raise InputError("segmentation is empty (no voxel > 0)", seg)
    xfm = measurement_orientation(raw, img.affine)
    vals, aff = reorient(raw, img.affine, xfm)
    lv = cn = None
    if levels is not None:
        lv_img, lv_arr = load_label(levels, kind="vertebral levels", require_nonempty=True)
        check_same_grid(img, lv_img, seg, levels)
        lv, _ = reorient(lv_arr.astype(float), lv_img.affine, xfm)
        check_levels_cover_cord(vals > NEAR_ZERO, lv, seg, levels, voxels=voxels)
    n_slices = int((vals > NEAR_ZERO).any(axis=(0, 1)).sum())
    if n_slices < min_slices:
        raise InputError(
            f"segmentation covers {n_slices} axial slice(s): --level-method volume needs a cord "
            f"along at least {min_slices} slices (a centerline and an arc length)",
            seg,
        )
    if canal is not None:
        _, cd, _ = load_mask_rpi(canal, "canal segmentation", img, seg, xfm=xfm)
        cn = binary_mask(cd, canal, "canal segmentation")
        check_canal_contains_cord(vals >= 0.5, cn, seg, canal)
    check_voxels_across(vals > NEAR_ZERO, img.shape, seg)
    return vals, aff, lv, cn


def slice_levels(levels_rpi: np.ndarray) -> np.ndarray:
    """Vertebral level of every slice: rounded mean of its non-zero labels (NaN when none), as SCT."""
    lv = np.asarray(levels_rpi, dtype=float)
    nz = lv > 0
    counts = nz.sum(axis=(0, 1))
    sums = np.where(nz, lv, 0.0).sum(axis=(0, 1))
    out = np.full(lv.shape[2], np.nan)
    has = counts > 0
    out[has] = np.round(sums[has] / counts[has])
    return out


# --------------------------------------------------------------------------------- per slice
def compute_perslice(
    seg_rpi: np.ndarray,
    affine_rpi: np.ndarray,
    levels_rpi: np.ndarray | None = None,
    canal_rpi: np.ndarray | None = None,
    *,
    angle_correction: bool = True,
    centerline_method: str = "bspline",
    smooth: float = 30.0,
):
    """Per-slice metrics of an RPI mask (booleans, or values in [0, 1] measured as partial volume);
    returns a DataFrame, one row per slice with a value > 1e-6 (``mask_type`` binary or soft)."""
    import pandas as pd
    from scipy import ndimage

    vals = np.asarray(seg_rpi, dtype=float)
    soft = bool(((vals > NEAR_ZERO) & (np.abs(vals - 1.0) > 1e-6)).any())
    seg = vals > NEAR_ZERO
    if not seg.any():
        raise ValueError("segmentation is empty")
    frame = SliceFrame.from_affine(affine_rpi)
    ctl = fit_centerline(seg, frame, method=centerline_method, smooth=smooth)
    steep = steep_slices_message(np.degrees(np.arccos(np.clip(ctl.cos_angle, 0.0, 1.0))), ctl.slices)
    if steep:
        warnings.warn(steep, stacklevel=2)
    lvl = slice_levels(levels_rpi) if levels_rpi is not None else None
    canal = np.asarray(canal_rpi) > 0 if canal_rpi is not None else None
    rows = []
    n_multi = 0
    for n, k in enumerate(ctl.slices):
        sl = vals[:, :, k]
        if ndimage.label(sl >= 0.5 * sl.max())[1] > 1:
            n_multi += 1
        t = ctl.tangent[n] if angle_correction else None
        shp = slice_shape(sl, frame, t)
        cosv = float(ctl.cos_angle[n]) if angle_correction else 1.0
        row = {
            "Slice (I->S)": int(k),
            "VertLevel": float(lvl[k]) if lvl is not None else np.nan,
            "area": shp.area,
            "area_raw": shp.area_raw,
            "angle_AP": float(ctl.angle_AP[n]) if angle_correction else 0.0,
            "angle_RL": float(ctl.angle_RL[n]) if angle_correction else 0.0,
            "diameter_AP": shp.diameter_AP,
            "diameter_AP_ellipse": shp.diameter_AP_ellipse,
            "diameter_RL": shp.diameter_RL,
            "length_anterior": shp.length_anterior,
            "length_posterior": shp.length_posterior,
            "eccentricity": shp.eccentricity,
            "orientation": shp.orientation,
            "solidity": shp.solidity,
            "length": frame.slice_thickness / cosv,
            "mask_type": "soft" if soft else "binary",
        }
        if canal is not None:
            c_area = float(canal[:, :, k].sum()) * frame.pixel_area * cosv
            if c_area > 0:
                row["canal_area"] = c_area
                row["SAC"] = c_area - shp.area
                row["SAC_CSA"] = (c_area - shp.area) / shp.area
            else:
                row["canal_area"] = row["SAC"] = row["SAC_CSA"] = np.nan
        rows.append(row)
    if n_multi:
        warnings.warn(
            f"{n_multi} slice(s) hold more than one connected object; all are measured together", stacklevel=2
        )
    return pd.DataFrame(rows)


def check_levels_cover_cord(
    seg_rpi: np.ndarray, levels_rpi: np.ndarray, seg: str | Path, levels: str | Path, voxels: bool = False
) -> None:
    """Reject a level map that labels none of the segmented slices (``voxels``: none of the cord voxels).

    Partial coverage is normal (the cord runs past the first and last labelled discs) and kept:
    such slices get no level. Nothing labelled where the cord is means the wrong file or grid.
    """
    seg_rpi = np.asarray(seg_rpi, bool)
    lv = np.asarray(levels_rpi, float)
    if voxels:
        ok = bool((seg_rpi & (np.round(lv) > 0)).any())
    else:
        ok = bool((seg_rpi.any(axis=(0, 1)) & np.isfinite(slice_levels(lv))).any())
    if not ok:
        zs = np.flatnonzero(seg_rpi.any(axis=(0, 1)))
        raise InputError(
            f"no vertebral level where the cord is segmented (cord in slices {zs.min()}–{zs.max()} "
            f"of {Path(seg).name}, none labelled)",
            levels,
        )


def morphometrics_from_files(
    seg: str | Path,
    levels: str | Path | None = None,
    canal: str | Path | None = None,
    soft: bool | None = None,
    **kwargs,
):
    """Load the masks (checked on one grid), reorient to RPI and compute :func:`compute_perslice`.

    ``soft``: None = detect (values strictly between 0 and 1 → partial volume), True = partial
    volume, False = threshold a soft mask at 0.5.
    """
    seg_vals, aff, lv, cn = load_measured(seg, levels, canal, soft)
    return compute_perslice(seg_vals, aff, lv, cn, **kwargs)


# -------------------------------------------------------------------------------- aggregation
def format_num_list(values: Iterable[int]) -> str:
    """SCT's ``parse_num_list_inv``: ``[1, 2, 3, 5, 7, 8]`` → ``"1:3;5;7:8"``."""
    vals = sorted(set(int(v) for v in values))
    if not vals:
        return ""
    parts, start, prev = [], vals[0], vals[0]
    for v in vals[1:] + [None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(str(start) if start == prev else f"{start}:{prev}")
        if v is not None:
            start = prev = v
    return ";".join(parts)


def parse_vert(spec: str | None) -> list[int] | None:
    """Parse ``--vert``: ``"2:3"`` → [2, 3], ``"2,4"`` → [2, 4], ``"3"`` → [3]."""
    if spec is None or str(spec).strip() == "":
        return None
    out: list[int] = []
    try:
        for part in str(spec).split(","):
            if ":" in part:
                a, b = (int(x) for x in part.split(":"))
                if b < a:
                    raise ValueError
                out += list(range(a, b + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise InputError(f"--vert {spec!r}: expected levels like '2:3', '2,4' or '3'") from None
    return sorted(set(out))


def present_levels(vert: Sequence[int], levels) -> list[int]:
    """The ``--vert`` levels found where the cord is; none: an error; some missing: a warning naming them."""
    import warnings

    there = sorted({int(v) for v in levels if v == v})
    found = [v for v in vert if v in there]
    spec = format_num_list(vert)
    if not found:
        raise InputError(
            f"--vert {spec}: none of these levels is where the cord is segmented "
            f"(levels there: {format_num_list(there) if there else 'none'})"
        )
    missing = [v for v in vert if v not in there]
    if missing:
        warnings.warn(
            f"--vert {spec}: level(s) {format_num_list(missing)} not where the cord is segmented; "
            f"the output covers level(s) {format_num_list(found)} only"
        )
    return found


def _agg_row(group, metrics: Sequence[str]) -> dict:
    row = {}
    for m in metrics:
        if m not in group:
            row[f"MEAN({m})"] = row[f"STD({m})"] = np.nan
            continue
        v = group[m].to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        row[f"MEAN({m})"] = float(v.mean()) if v.size else np.nan
        row[f"STD({m})"] = float(v.std()) if v.size else np.nan  # population SD, as SCT's func_std
    row["SUM(length)"] = float(group["length"].sum())
    return row


def aggregate(
    perslice,
    filename: str,
    *,
    vert: Sequence[int] | None = None,
    perlevel: bool | None = None,
    perslice_rows: bool = False,
    with_canal: bool | None = None,
):
    """Aggregate per-slice metrics into SCT-style rows.

    * ``perslice_rows``: one row per slice (restricted to ``vert`` levels when given);
    * ``perlevel`` (default when the slices carry levels and no ``vert`` range is given): one row
      per level;
    * ``vert`` without ``perlevel``: one row over all slices of those levels (``VertLevel`` "2:3");
    * no levels at all: one row over every slice.
    """
    import pandas as pd

    if with_canal is None:
        with_canal = "canal_area" in perslice
    metrics = SHAPE_METRICS + (CANAL_METRICS if with_canal else [])
    has_levels = perslice["VertLevel"].notna().any()
    df = perslice
    if vert is not None:
        if not has_levels:
            raise InputError("--vert needs a vertebral level map (--levels)")
        vert = present_levels(vert, perslice["VertLevel"])
        df = df[df["VertLevel"].isin(list(vert))]
    if perlevel is None:
        perlevel = has_levels and vert is None
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    from core import __version__

    mask_type = str(perslice["mask_type"].iloc[0]) if "mask_type" in perslice and len(perslice) else "binary"
    head = {
        "Timestamp": stamp,
        "SCT Version": f"cordbench-{__version__}",
        "Filename": filename,
        "DistancePMJ": np.nan,
        "mask_type": mask_type,
    }
    rows = []
    if perslice_rows:
        for _, r in df.iterrows():
            row = dict(head)
            row["Slice (I->S)"] = str(int(r["Slice (I->S)"]))
            row["VertLevel"] = "" if not np.isfinite(r["VertLevel"]) else str(int(r["VertLevel"]))
            row.update(_agg_row(df.loc[[r.name]], metrics))
            rows.append(row)
    elif perlevel:
        for lv in sorted(df["VertLevel"].dropna().unique()):
            g = df[df["VertLevel"] == lv]
            row = dict(head, **{"Slice (I->S)": format_num_list(g["Slice (I->S)"]), "VertLevel": str(int(lv))})
            row.update(_agg_row(g, metrics))
            rows.append(row)
    elif len(df):
        levels_txt = format_num_list(vert) if vert is not None else ""
        row = dict(head, **{"Slice (I->S)": format_num_list(df["Slice (I->S)"]), "VertLevel": levels_txt})
        row.update(_agg_row(df, metrics))
        rows.append(row)
    return pd.DataFrame(rows, columns=sct_columns(with_canal))


def per_level_table(perslice) -> pd.DataFrame:
    """Compact per-level table (VertLevel, CSA, SAC, SAC_CSA, canal_area, n_slices) for cohort use."""
    import pandas as pd

    rows = []
    for lv in sorted(perslice["VertLevel"].dropna().unique()):
        g = perslice[perslice["VertLevel"] == lv]
        row = {"VertLevel": int(lv), "n_slices": int(len(g)), "CSA": float(g["area"].mean())}
        for m in CANAL_METRICS:
            if m in g:
                v = g[m].to_numpy(dtype=float)
                v = v[np.isfinite(v)]
                row[m] = float(v.mean()) if v.size else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------ volume per level
def _balanced_boundary(lo_vals: np.ndarray, hi_vals: np.ndarray) -> float:
    """Position separating two sets along s with the fewest voxels on the wrong side (gap middle)."""
    a, b = np.sort(lo_vals), np.sort(hi_vals)
    cand = np.unique(np.concatenate([a, b]))
    cost = (a.size - np.searchsorted(a, cand, side="right")) + np.searchsorted(b, cand, side="right")
    i = int(np.argmin(cost))
    nxt = cand[i + 1] if i + 1 < cand.size else cand[i]
    return float(0.5 * (cand[i] + nxt))


def arc_length_positions(
    points_vox: np.ndarray, affine_rpi: np.ndarray, centerline, step: float = 0.1, margin: float = 3.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arc length (mm) of the projection of voxel points (n, 3) onto the fitted centerline.

    Returns ``(s, width, inside)``: ``width`` is the extent of the voxel box along the local tangent
    (``Σ_j |t·c_j|``), ``inside`` is False for points projecting onto the extrapolated ends.
    """
    from scipy.spatial import cKDTree

    ks = centerline.slices
    kq = np.arange(ks[0] - margin, ks[-1] + margin + step / 2, step)
    P = centerline.voxel_points(kq) @ affine_rpi[:3, :3].T + affine_rpi[:3, 3]
    seg_len = np.linalg.norm(np.diff(P, axis=0), axis=1)
    S = np.concatenate([[0.0], np.cumsum(seg_len)])
    T = np.gradient(P, axis=0)
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    W = points_vox @ affine_rpi[:3, :3].T + affine_rpi[:3, 3]
    _, idx = cKDTree(P).query(W)
    s = S[idx] + np.einsum("ij,ij->i", W - P[idx], T[idx])
    width = np.abs(T[idx] @ np.asarray(affine_rpi, float)[:3, :3]).sum(axis=1)
    lo = np.searchsorted(kq, ks[0])
    hi = np.searchsorted(kq, ks[-1])
    inside = (idx > lo) & (idx < hi)
    return s, width, inside


def _spread_count(s: np.ndarray, w: np.ndarray, a: float, b: float) -> float:
    """Voxels in ``[a, b)`` when each voxel is spread uniformly over its extent ``s ± w/2``."""
    over = np.minimum(b, s + w / 2) - np.maximum(a, s - w / 2)
    return float(np.clip(over / w, 0.0, 1.0).sum())


def volume_per_level(
    seg_rpi: np.ndarray,
    affine_rpi: np.ndarray,
    levels_rpi: np.ndarray,
    canal_rpi: np.ndarray | None = None,
    *,
    centerline_method: str = "bspline",
    smooth: float = 30.0,
):
    """Per-level CSA, canal area, SAC and SAC/CSA as volume / arc length along the centerline.

    An alternative to SCT's axial-slice average that matches a cross-section defined
    perpendicular to the cord even where the canal narrows quickly under a tilt (an oblique axial
    cut mixes the neighbouring, wider sections and overestimates a stenotic canal). Every voxel is
    projected on the fitted centerline (arc length s) and spread uniformly over its extent along
    the tangent. Level k's slab is bounded by the s where the cord labels change from k to its
    neighbour (unlabelled cord beyond the first/last level counts as a neighbour): the middle of
    the gap for perpendicular level planes, the point of fewest misplaced voxels for axial ones;
    where the cord itself ends, by the extent of the last voxels. Area = (spread) voxels in the
    slab × voxel volume / slab length. ``SAC_CSA`` is the ratio of the level's SAC and CSA.
    """
    import pandas as pd

    seg = np.asarray(seg_rpi) > 0
    frame = SliceFrame.from_affine(affine_rpi)
    ctl = fit_centerline(seg, frame, method=centerline_method, smooth=smooth)
    vvox = float(abs(np.linalg.det(np.asarray(affine_rpi, float)[:3, :3])))
    s_cord, w_cord, in_cord = arc_length_positions(np.argwhere(seg).astype(float), affine_rpi, ctl)
    lab = np.round(np.asarray(levels_rpi, float))[seg]
    by_level = {int(L): s_cord[(lab == L) & in_cord] for L in np.unique(lab[lab > 0])}
    levels = [L for L, v in by_level.items() if v.size]
    if not levels:
        raise InputError("no labelled cord voxel lies along the fitted centerline")
    order = sorted(levels, key=lambda L: float(np.median(by_level[L])))  # increasing s
    half = float(np.median(w_cord)) / 2
    bounds = {L: [float(by_level[L].min()) - half, float(by_level[L].max()) + half] for L in order}
    for lo, hi in zip(order[:-1], order[1:]):
        if abs(lo - hi) == 1:
            bounds[lo][1] = bounds[hi][0] = _balanced_boundary(by_level[lo], by_level[hi])
    unl = s_cord[(lab <= 0) & in_cord]
    first, last = order[0], order[-1]
    below = unl[unl < np.median(by_level[first])]
    above = unl[unl > np.median(by_level[last])]
    if below.size:
        bounds[first][0] = _balanced_boundary(below, by_level[first])
    if above.size:
        bounds[last][1] = _balanced_boundary(by_level[last], above)
    s_canal = None
    if canal_rpi is not None:
        s_canal, w_canal, in_canal = arc_length_positions(
            np.argwhere(np.asarray(canal_rpi) > 0).astype(float), affine_rpi, ctl
        )
        s_canal, w_canal = s_canal[in_canal], w_canal[in_canal]
    sc, wc = s_cord[in_cord], w_cord[in_cord]
    rows = []
    for L in sorted(order):
        a, b = bounds[L]
        length = b - a
        if length <= 0:
            continue
        row = {"VertLevel": L, "length_mm": length, "CSA": _spread_count(sc, wc, a, b) * vvox / length}
        if s_canal is not None:
            row["canal_area"] = _spread_count(s_canal, w_canal, a, b) * vvox / length
            row["SAC"] = row["canal_area"] - row["CSA"]
            row["SAC_CSA"] = row["SAC"] / row["CSA"] if row["CSA"] > 0 else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


MIN_VOLUME_SLICES = 3


def volume_per_level_from_files(seg: str | Path, levels: str | Path, canal: str | Path | None = None, **kwargs):
    """:func:`volume_per_level` on files (same checks as :func:`morphometrics_from_files`)."""
    seg_vals, aff, lv, cn = load_measured(seg, levels, canal, False, voxels=True, min_slices=MIN_VOLUME_SLICES)
    return volume_per_level(seg_vals > 0, aff, lv, cn, **kwargs)
