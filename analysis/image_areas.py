"""Per-image cross-sectional areas for the precision columns: one mask, one grid, C2–C5 and pooled.

The unit of the leaderboard's precision columns (``leaderboard.precision``) is one *image*: a
subject's acquisition (session or run) of one contrast. Its mask is measured on its own native grid
as :func:`analysis.morphometrics.compute_perslice` measures the ``area`` column (SCT conventions: RPI
axial slices, the same centerline fit, area × cosine of the centerline's angle to the slice normal) —
:func:`slice_areas` computes that one column without the shape metrics (tested equal):

* ``C2`` … ``C5``: mean angle-corrected area over the slices whose vertebral level (the rounded mean
  of the level map on the slice, SCT's rule) is that level;
* ``C2-C5`` (pooled): mean over every slice of C2–C5 — what ``sct_process_segmentation -vert 2:5``
  reports (slices averaged together, not the mean of the four level means).

Without a level map the per-level values are NaN and the pooled value is the mean over every slice
of the mask (``scope`` ``all slices``): comparable between images of the same field of view only
(scan–rescan of one protocol), which the docs say.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

PRECISION_LEVELS = (2, 3, 4, 5)
POOLED = "C2-C5"
AREA_KEYS = tuple(f"C{L}" for L in PRECISION_LEVELS) + (POOLED,)
SCOPE_LEVELS, SCOPE_ALL = "C2-C5 slices", "all slices"


def mask_areas(mask: np.ndarray, affine: np.ndarray, levels: np.ndarray | None = None) -> dict[str, float | str]:
    """``{"C2": mm², …, "C5": mm², "C2-C5": mm², "n_slices": int, "scope": str}`` of a mask on its grid.

    ``levels`` is the vertebral level map on the same grid (or None). An empty mask gives area 0 at
    every level the level map holds (and pooled 0): a missed cord is a measurement of 0, not a gap.
    """
    from analysis.centerline import to_rpi

    seg, aff = to_rpi(np.asarray(mask) > 0, np.asarray(affine, float))
    lv = to_rpi(np.round(np.asarray(levels)).astype(np.int16), affine)[0] if levels is not None else None
    out: dict[str, float | str] = {k: math.nan for k in AREA_KEYS}
    out["scope"] = SCOPE_LEVELS if lv is not None else SCOPE_ALL
    if not seg.any():
        present = set(np.unique(lv).tolist()) if lv is not None else set()
        for L in PRECISION_LEVELS:
            if L in present:
                out[f"C{L}"] = 0.0
        out[POOLED] = 0.0
        out["n_slices"] = 0
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ps = slice_areas(seg, aff, lv)
    area = ps["area"].to_numpy(float)
    if lv is None:
        out[POOLED] = float(area.mean())
        out["n_slices"] = int(area.size)
        return out
    vl = ps["VertLevel"].to_numpy(float)
    for L in PRECISION_LEVELS:
        sel = vl == L
        if sel.any():
            out[f"C{L}"] = float(area[sel].mean())
    pooled = np.isin(vl, PRECISION_LEVELS)
    out[POOLED] = float(area[pooled].mean()) if pooled.any() else math.nan
    out["n_slices"] = int(pooled.sum())
    return out


def slice_areas(seg_rpi: np.ndarray, affine_rpi: np.ndarray, levels_rpi: np.ndarray | None = None):
    """``VertLevel`` and angle-corrected ``area`` (mm²) of every slice of a binary RPI mask: the ``area``
    column of :func:`analysis.morphometrics.compute_perslice` (same centerline fit, same slice levels)."""
    import pandas as pd

    from analysis.centerline import SliceFrame, fit_centerline
    from analysis.morphometrics import slice_levels

    seg = np.asarray(seg_rpi) > 0
    frame = SliceFrame.from_affine(affine_rpi)
    ctl = fit_centerline(seg, frame, method="bspline", smooth=30.0)
    lvl = slice_levels(levels_rpi) if levels_rpi is not None else None
    counts = seg.sum(axis=(0, 1))
    rows = [
        {
            "VertLevel": float(lvl[k]) if lvl is not None else np.nan,
            "area": float(counts[k]) * frame.pixel_area * float(ctl.cos_angle[n]),
        }
        for n, k in enumerate(ctl.slices)
    ]
    return pd.DataFrame(rows, columns=["VertLevel", "area"])


def file_areas(mask_path: str | Path, levels_path: str | Path | None = None) -> dict[str, float | str]:
    """:func:`mask_areas` of a mask file (and its level map, checked to be on the mask's grid)."""
    from core.io import check_same_grid, load_label

    img, data = load_label(mask_path, kind="mask")
    levels = None
    if levels_path is not None:
        lv_img, levels = load_label(levels_path, kind="vertebral levels")
        check_same_grid(img, lv_img, mask_path, levels_path)
    return mask_areas(data, np.asarray(img.affine, float), levels)
