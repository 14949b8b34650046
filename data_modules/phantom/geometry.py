"""World geometry of the phantom: the curved, tilted centerline and the image grids.

World coordinates are scanner RAS+ millimetres (x → right, y → anterior, z → superior), as in
a NIfTI affine. The anatomy lives in world space; each image is a grid (shape + affine) laid
over it, so the anatomy — and its ground truth — is the same whatever the orientation or
obliquity of the grid.

Centerline: a circular arc of radius ``R`` (the cervical lordosis) in the sagittal plane of an
"anatomical" frame, convex anteriorly, parametrised by arc length ``s`` (mm) from the top of C1
(``s = 0``) downwards; it is rigidly rotated by the subject's tilt and translated. Each world
point maps in closed form to ``(s, u, v)``: ``s`` the arc length of its foot point on the
centerline (the point whose normal plane contains it), ``u`` its offset toward the subject's
right and ``v`` toward anterior within that normal plane. Cross-sections perpendicular to the
centerline are therefore exact planes ``s = const``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_modules.phantom.options import orientation_axes

_LETTER_DIR = {
    "R": (1.0, 0.0, 0.0),
    "L": (-1.0, 0.0, 0.0),
    "A": (0.0, 1.0, 0.0),
    "P": (0.0, -1.0, 0.0),
    "S": (0.0, 0.0, 1.0),
    "I": (0.0, 0.0, -1.0),
}
_LETTER_AXIS = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}


def rotation(axis: np.ndarray | tuple[float, float, float], angle_deg: float) -> np.ndarray:
    """3×3 rotation by ``angle_deg`` about ``axis`` (Rodrigues)."""
    k = np.asarray(axis, dtype=float)
    k = k / np.linalg.norm(k)
    t = np.deg2rad(angle_deg)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(t) * kx + (1 - np.cos(t)) * kx @ kx


def tilt_rotation(tilt_deg: float, azimuth_deg: float) -> np.ndarray:
    """Rotation about an axial-plane axis at ``azimuth_deg`` from R-L: tilts S-I by exactly ``tilt_deg``."""
    az = np.deg2rad(azimuth_deg)
    return rotation((np.cos(az), np.sin(az), 0.0), tilt_deg)


OBLIQUE_AXIS = (np.cos(np.deg2rad(30.0)), np.sin(np.deg2rad(30.0)), 0.0)


def oblique_rotation(oblique_deg: float) -> np.ndarray:
    """Grid rotation for ``--oblique``: about the axial axis 30° from R-L toward A (mixes all three)."""
    return rotation(OBLIQUE_AXIS, oblique_deg)


@dataclass(frozen=True)
class Centerline:
    """Circular-arc centerline; see the module docstring for the ``(s, u, v)`` mapping."""

    length: float  # L: arc length from the top of C1 (s=0) to the C7/T1 disc (s=L)
    radius: float  # lordosis radius R (mm)
    rot: np.ndarray  # 3×3 world ← anatomical frame (the tilt)
    origin: np.ndarray  # world position of the mid point s = L/2

    def _phi(self, s: np.ndarray) -> np.ndarray:
        return (np.asarray(s, dtype=float) - self.length / 2.0) / self.radius

    def point(self, s: np.ndarray | float) -> np.ndarray:
        """World position(s) of the centerline at arc length ``s`` (shape ``(..., 3)``)."""
        phi = self._phi(s)
        r = self.radius
        p = np.stack([np.zeros_like(phi), r * np.cos(phi) - r, -r * np.sin(phi)], axis=-1)
        return p @ self.rot.T + self.origin

    def tangent(self, s: np.ndarray | float) -> np.ndarray:
        """Unit tangent(s), pointing inferiorly (direction of increasing ``s``)."""
        phi = self._phi(s)
        t = np.stack([np.zeros_like(phi), -np.sin(phi), -np.cos(phi)], axis=-1)
        return t @ self.rot.T

    def normal_ap(self, s: np.ndarray | float) -> np.ndarray:
        """Unit normal(s) toward anterior in the normal plane (the ``v`` axis)."""
        phi = self._phi(s)
        n = np.stack([np.zeros_like(phi), np.cos(phi), -np.sin(phi)], axis=-1)
        return n @ self.rot.T

    @property
    def normal_rl(self) -> np.ndarray:
        """Unit normal toward the subject's right (the ``u`` axis), constant along the arc."""
        return self.rot @ np.array([1.0, 0.0, 0.0])

    def to_local(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """World points, shape ``(3, n)`` (component rows), → ``(s, u, v, phi)``.

        Closed-form foot point on the arc: ``phi`` is the arc angle of the point's normal plane,
        ``s = L/2 + R·phi``, ``v`` = distance to the arc's centre of curvature minus R.
        """
        x = np.asarray(xyz, dtype=float)
        d0, d1, d2 = x[0] - self.origin[0], x[1] - self.origin[1], x[2] - self.origin[2]
        r = self.rot  # anatomical coordinate j = sum_i d_i · rot[i, j]
        q0 = d0 * r[0, 0] + d1 * r[1, 0] + d2 * r[2, 0]
        qy = d0 * r[0, 1] + d1 * r[1, 1] + d2 * r[2, 1] + self.radius
        qz = d0 * r[0, 2] + d1 * r[1, 2] + d2 * r[2, 2]
        phi = np.arctan2(-qz, qy)
        s = self.length / 2.0 + self.radius * phi
        v = np.hypot(qy, qz) - self.radius
        return s, q0, v, phi

    def angle_to_si_deg(self, s: np.ndarray | float) -> np.ndarray:
        """Angle (deg) between the centerline and the world S-I axis."""
        t = self.tangent(s)
        return np.rad2deg(np.arccos(np.clip(np.abs(t[..., 2]), 0.0, 1.0)))


@dataclass(frozen=True)
class Grid:
    """An image grid: shape and voxel → world affine."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def spacing(self) -> np.ndarray:
        """Voxel sizes along the three voxel axes."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def directions(self) -> np.ndarray:
        """Unit world directions of the voxel axes (columns)."""
        return self.affine[:3, :3] / self.spacing

    @property
    def n_voxels(self) -> int:
        """Number of voxels."""
        return int(np.prod(self.shape))

    def world(self, i0: int = 0, i1: int | None = None) -> np.ndarray:
        """World coordinates ``(3, n)`` of the voxels in the slab ``i0 <= i < i1`` of the first axis (C order)."""
        i1 = self.shape[0] if i1 is None else i1
        m, t = self.affine[:3, :3], self.affine[:3, 3]
        ii = np.arange(i0, i1, dtype=float)[:, None, None]
        jj = np.arange(self.shape[1], dtype=float)[None, :, None]
        kk = np.arange(self.shape[2], dtype=float)[None, None, :]
        return np.stack([(m[c, 0] * ii + m[c, 1] * jj + m[c, 2] * kk + t[c]).ravel() for c in range(3)])

    def index_of(self, xyz: np.ndarray) -> np.ndarray:
        """Nearest voxel index (int) of world point(s)."""
        inv = np.linalg.inv(self.affine)
        ijk = np.asarray(xyz, dtype=float) @ inv[:3, :3].T + inv[:3, 3]
        return np.rint(ijk).astype(int)


def make_grid(
    points: np.ndarray, spacing_rl_ap_si: tuple[float, float, float], orientation: str, grid_rot: np.ndarray
) -> Grid:
    """The smallest grid with the given orientation and rotation whose voxels cover ``points``.

    ``spacing_rl_ap_si`` are the voxel sizes along the (rotated) R-L, A-P and S-I axes;
    ``orientation`` (nibabel code) says which voxel axis runs along which of these and toward
    which end; ``grid_rot`` rotates the whole grid (oblique acquisition).
    """
    letters = orientation_axes(orientation)
    cols = []
    for c in letters:
        d = grid_rot @ np.array(_LETTER_DIR[c])
        cols.append(d * float(spacing_rl_ap_si[_LETTER_AXIS[c]]))
    m = np.stack(cols, axis=1)
    idx = np.asarray(points, dtype=float).reshape(-1, 3) @ np.linalg.inv(m).T
    lo = np.floor(idx.min(axis=0) + 1e-9)
    hi = np.ceil(idx.max(axis=0) - 1e-9)
    shape = tuple(int(n) for n in (hi - lo + 1))
    affine = np.eye(4)
    affine[:3, :3] = m
    affine[:3, 3] = m @ lo
    return Grid(shape, affine)  # type: ignore[arg-type]


def tube_points(cl: Centerline, s_range: tuple[float, float], half_width: float, step: float = 2.0) -> np.ndarray:
    """Corners of a square of side ``2·half_width`` in each normal plane along the arc (for bounding boxes)."""
    s = np.arange(s_range[0], s_range[1] + step, step)
    c = cl.point(s)
    nap = cl.normal_ap(s)
    nrl = cl.normal_rl
    pts = [c + su * half_width * nrl + sv * half_width * nap for su in (-1, 1) for sv in (-1, 1)]
    return np.concatenate(pts, axis=0)
