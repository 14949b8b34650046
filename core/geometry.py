"""The direction of a cord mask in the scanner frame, and the frame that makes it S-I.

Shared by the measurement (``analysis.slicing``: which voxel planes cross the cord) and the
inference (``evaluation.inference``: which voxel planes a 2D model segments). A mask's direction
is the principal axis of its voxels in millimetres; it only counts when the mask is elongated
(principal extent at least ``MIN_ELONGATION`` times the next) and at least three voxels thick
along every voxel axis, so a short blob or a single slice has none.
"""

from __future__ import annotations

import numpy as np

MIN_ELONGATION = 2.0  # √(λ1/λ2) of the mask's voxel cloud: length over width for its axis to count


def cord_direction(values: np.ndarray, affine: np.ndarray, min_elongation: float = MIN_ELONGATION) -> np.ndarray | None:
    """Unit world direction (toward S; toward A when exactly axial) of the mask's principal axis,
    or None when the mask is flat or less elongated than ``min_elongation``."""
    idx = np.argwhere(np.asarray(values) > 1e-6).astype(float)
    if idx.shape[0] < 3 or (np.ptp(idx, axis=0) < 2).any():
        return None  # flat (one or two voxel planes thick): no direction out of its plane
    pts = idx @ np.asarray(affine, float)[:3, :3].T
    evals, evecs = np.linalg.eigh(np.cov(pts.T, bias=True))
    if evals[1] > 0 and evals[2] < min_elongation**2 * evals[1]:
        return None
    d = evecs[:, 2]
    if abs(d[2]) > 1e-9:
        return d if d[2] > 0 else -d
    return d if d[1] >= 0 else -d


def rotation_onto_s(d: np.ndarray) -> np.ndarray:
    """The smallest rotation (3×3) taking the world S axis onto the unit vector ``d``."""
    s = np.array([0.0, 0.0, 1.0])
    axis = np.cross(s, d)
    sin, cos = float(np.linalg.norm(axis)), float(s @ d)
    if sin < 1e-12:
        return np.eye(3) if cos > 0 else np.diag([1.0, -1.0, -1.0])
    k = axis / sin
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + sin * kx + (1 - cos) * kx @ kx


def cord_frame_affine(affine: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``affine`` expressed in the frame rotated so that direction ``d`` is S-I (4×4)."""
    rot = np.eye(4)
    rot[:3, :3] = rotation_onto_s(np.asarray(d, float)).T
    return rot @ np.asarray(affine, float)


def nearest_voxel_axis(affine: np.ndarray, d: np.ndarray) -> tuple[int, float]:
    """The voxel axis closest to direction ``d`` and the angle (degrees) between them."""
    c = np.asarray(affine, float)[:3, :3]
    cos = np.abs(np.asarray(d, float) @ (c / np.linalg.norm(c, axis=0)))
    k = int(np.argmax(cos))
    return k, float(np.degrees(np.arccos(np.clip(cos[k], 0.0, 1.0))))


def slice_axis(affine: np.ndarray) -> int:
    """The voxel axis closest to the scanner's S-I axis (the slice axis of an RPI/RAS reorientation)."""
    from nibabel.orientations import io_orientation

    return int(np.flatnonzero(io_orientation(np.asarray(affine, float))[:, 0] == 2)[0])


def angle_deg(u: np.ndarray, v: np.ndarray) -> float:
    """Angle (degrees, 0–90) between two lines of directions ``u`` and ``v``."""
    c = abs(float(np.dot(u, v))) / float(np.linalg.norm(u) * np.linalg.norm(v))
    return float(np.degrees(np.arccos(min(c, 1.0))))
