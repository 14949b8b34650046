"""The phantom's pontomedullary junction (PMJ): a point label on the T2w grid and its truth.

With ``pmj=True`` (``cordbench phantom --pmj``) every grid also covers ``PMJ_ABOVE_C1_MM`` of
cord above the top of C1, and the T2w labels gain ``sub-X_T2w_label-PMJ_dlabel.nii.gz``: one
voxel of value ``PMJ_VALUE`` (50, as spine-generic's manual PMJ labels) at the voxel nearest the
centerline point ``PMJ_ABOVE_C1_MM`` above the top of C1. Its truth (``truth["pmj"]``): the arc
length ``s_mm`` of that voxel centre's foot point on the centerline (the exact origin of the
distances), its offset from the centerline, and the cord's analytic CSA (π·a·b) every
``PROFILE_STEP_MM`` of distance below it, so a CSA at any distance, or its mean over any window,
is read off exactly (:func:`window_truth`). Without the option nothing here runs and the
cohort is unchanged.

The phantom's cord above C1 keeps C1's profile (a tube), not a medulla: the label marks a
position along the centerline, which is what a PMJ-based measure uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from data_modules.phantom.anatomy import Anatomy
from data_modules.phantom.geometry import Grid

PMJ_ABOVE_C1_MM = 20.0  # arc length from the PMJ down to the top of C1
PMJ_VALUE = 50
PROFILE_STEP_MM = 0.25


def extra_top_mm(pmj: bool) -> float:
    """Extra coverage above the top of C1 the grids need (0 without a PMJ)."""
    return PMJ_ABOVE_C1_MM + 2.0 if pmj else 0.0


def pmj_label(anat: Anatomy, grid: Grid, bottom_margin_mm: float) -> tuple[np.ndarray, dict[str, Any]]:
    """The PMJ label array on ``grid`` and its truth (module docstring)."""
    cl = anat.centerline
    ijk = grid.index_of(cl.point(-PMJ_ABOVE_C1_MM))
    if np.any(ijk < 0) or np.any(ijk >= np.array(grid.shape)):
        raise ValueError(f"PMJ voxel {ijk.tolist()} outside the T2w grid {grid.shape}")
    label = np.zeros(grid.shape, dtype=np.uint8)
    label[tuple(ijk)] = PMJ_VALUE
    centre = grid.affine[:3, :3] @ ijk + grid.affine[:3, 3]
    s, u, v, _ = cl.to_local(centre[:, None])
    s0 = float(s[0])
    dist = np.arange(0.0, cl.length + bottom_margin_mm - s0 + 1e-9, PROFILE_STEP_MM)
    p = anat.profiles(s0 + dist)
    truth = {
        "value": PMJ_VALUE,
        "t2w_voxel": ijk.tolist(),
        "world_mm": np.round(centre, 6).tolist(),
        "s_mm": s0,
        "offset_from_centerline_mm": float(np.hypot(u[0], v[0])),
        "profile": {
            "distance_mm": np.round(dist, 6).tolist(),
            "csa_mm2": np.round(np.pi * p["a"] * p["b"], 6).tolist(),
        },
    }
    return label, truth


def window_truth(truth: dict[str, Any], distance: float, extent: float = 0.0) -> float:
    """Analytic CSA at ``distance`` mm below the PMJ (``extent`` > 0: its mean over ``distance ± extent/2``)."""
    d = np.asarray(truth["profile"]["distance_mm"], float)
    csa = np.asarray(truth["profile"]["csa_mm2"], float)
    if extent <= 0:
        return float(np.interp(distance, d, csa))
    q = np.linspace(distance - extent / 2, distance + extent / 2, 1001)
    return float(np.interp(q, d, csa).mean())
