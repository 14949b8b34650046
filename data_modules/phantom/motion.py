"""The subject's movement between the T2w and the DWI acquisition of one session (``dwi_shift``,
``dwi_rotation``).

The DWI is simulated on its grid as if the subject had not moved, then written with the affine
``M · A``, ``M`` the rigid motion ``x → R (x − c) + c + (0, 0, shift)``: ``R`` a rotation by
``dwi_rotation`` degrees about the world R-L axis through ``c``, the centreline's mid-point, and
``shift`` millimetres toward superior. In world coordinates the DWI's anatomy (cord, levels,
tensors) is therefore the T2w's moved by ``M``; the voxel data, the masks and the per-level truth
on the DWI grid are unchanged. The gradient table stays in voxel axes (FSL), so it turns with the
grid, as the scanner's gradients turn relative to a moving subject.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from data_modules.phantom.anatomy import Anatomy
from data_modules.phantom.geometry import Grid, rotation
from data_modules.phantom.options import PhantomOptions


def motion_matrix(options: PhantomOptions, anat: Anatomy) -> np.ndarray | None:
    """The 4×4 world motion of the DWI (None when the options ask for none)."""
    if not options.dwi_shift and not options.dwi_rotation:
        return None
    c = anat.centerline.point(anat.centerline.length / 2.0)
    r = rotation((1.0, 0.0, 0.0), options.dwi_rotation)
    m = np.eye(4)
    m[:3, :3] = r
    m[:3, 3] = c - r @ c + np.array([0.0, 0.0, options.dwi_shift])
    return m


def moved_grid(grid: Grid, motion: np.ndarray | None) -> Grid:
    """The grid whose affine the DWI files are written with."""
    return grid if motion is None else Grid(grid.shape, motion @ grid.affine)


def motion_record(options: PhantomOptions, motion: np.ndarray) -> dict[str, Any]:
    """Truth JSON entry ``images.dwi.motion``."""
    return {
        "shift_si_mm": options.dwi_shift,
        "rotation_rl_deg": options.dwi_rotation,
        "matrix": np.round(motion, 9).tolist(),
        "meaning": "world position in the DWI = matrix @ world position in the T2w (same anatomy point)",
    }
