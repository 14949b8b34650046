"""Slice geometry and the smooth cord centerline used for angle correction.

Conventions (as the Spinal Cord Toolbox, SCT):

* Arrays are reoriented to SCT's **RPI** before anything is measured: axis 0 runs right→left,
  axis 1 posterior→anterior, axis 2 inferior→superior (nibabel's axis codes ``L, A, S``).
  ``Slice (I->S)`` is the index along axis 2 of that array. Reorientation only permutes/flips
  axes (``nibabel.orientations``), so oblique acquisitions keep their obliquity: a "slice" is
  the voxel plane closest to axial, and every length is measured in the voxel frame.
* The in-plane frame of a slice is built from the RPI affine's columns ``c0, c1, c2``:
  ``e0 = c0/|c0|``, ``e1`` = ``c1`` made orthogonal to ``e0``, ``n = e0 × e1`` (oriented with
  ``c2``). A pixel's area is ``|c0 × c1|``. For the usual shear-free affine this is
  ``(px, py, pz)`` along the voxel axes, exactly SCT's frame.
* Centerline (SCT's ``bspline`` fit): the centroid ``(i, j)`` (voxel units) of the mask in each
  non-empty slice is fitted as a function of the slice index ``k`` by a cubic smoothing spline
  (``scipy.interpolate.splrep``) with smoothing ``s = density · smooth · pz / 3`` where
  ``density = (n_fitted / n_slices_spanned)²`` and ``smooth = 30`` by default, as SCT's
  ``curve_fitting.bspline``; ``polyfit`` fits a polynomial of degree 5 instead. The tangent in
  millimetres is ``d/dk (c0·i(k) + c1·j(k) + c2·k)``, expressed in the slice frame
  ``(t_x, t_y, t_z)`` and normalised.
* ``angle_AP = atan2(t_x, t_z)`` (rotation about the AP axis) and ``angle_RL = atan2(t_y, t_z)``,
  in degrees, as SCT. The cosine of the angle between the tangent and the slice normal is
  ``|t_z|``; it is the exact factor for the area of an oblique section of a tube (SCT uses
  ``cos(angle_AP)·cos(angle_RL)``, identical when the tilt lies in one plane).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# SCT's "RPI" = nibabel axis codes pointing to L, A, S.
RPI_AXCODES = ("L", "A", "S")


def to_rpi(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorient a 3D (or 4D, extra axes untouched) array to SCT's RPI; returns ``(data, affine)``."""
    from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

    ornt = io_orientation(np.asarray(affine, dtype=float))
    xfm = ornt_transform(ornt, axcodes2ornt(RPI_AXCODES))
    out = apply_orientation(np.asarray(data), xfm)
    new_affine = np.asarray(affine, dtype=float) @ inv_ornt_aff(xfm, np.asarray(data).shape[:3])
    return out, new_affine


@dataclass(frozen=True)
class SliceFrame:
    """In-plane orthonormal frame of the slices of an RPI grid (see module docstring)."""

    c: np.ndarray  # 3×3: columns are the world vectors of one voxel step along i, j, k
    e0: np.ndarray
    e1: np.ndarray
    n: np.ndarray
    pixel_area: float  # mm² of one in-plane pixel
    slice_thickness: float  # mm between slice centres, along the slice normal

    @classmethod
    def from_affine(cls, affine: np.ndarray) -> SliceFrame:
        """Build the frame from an RPI affine."""
        c = np.asarray(affine, dtype=float)[:3, :3]
        c0, c1, c2 = c[:, 0], c[:, 1], c[:, 2]
        e0 = c0 / np.linalg.norm(c0)
        e1 = c1 - (c1 @ e0) * e0
        e1 /= np.linalg.norm(e1)
        n = np.cross(e0, e1)
        if n @ c2 < 0:
            n = -n
        return cls(
            c=c,
            e0=e0,
            e1=e1,
            n=n,
            pixel_area=float(np.linalg.norm(np.cross(c0, c1))),
            slice_thickness=float(abs(n @ c2)),
        )

    def inplane_mm(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """In-plane coordinates (mm, along ``e0``/``e1``) of voxel indices ``(i, j)``; shape (n, 2)."""
        p = np.outer(i, self.c[:, 0]) + np.outer(j, self.c[:, 1])
        return np.stack([p @ self.e0, p @ self.e1], axis=1)

    def to_frame(self, v_world: np.ndarray) -> np.ndarray:
        """Express world vectors (…, 3) in the slice frame ``(e0, e1, n)``."""
        return np.stack([v_world @ self.e0, v_world @ self.e1, v_world @ self.n], axis=-1)


@dataclass
class Centerline:
    """Per-slice centerline: raw and fitted centroids, unit tangents and angles."""

    slices: np.ndarray  # slice indices k with a non-empty mask
    centroid: np.ndarray  # (n, 2) raw centroid (i, j) in voxel units
    fitted: np.ndarray  # (n, 2) fitted centroid (i, j)
    tangent: np.ndarray  # (n, 3) unit tangent in the slice frame (t_x, t_y, t_z)
    method: str
    curve: tuple | None = None  # (f_i, f_j): fitted i(k), j(k) and derivatives, f(kq, der)

    def voxel_points(self, kq: np.ndarray) -> np.ndarray:
        """Fitted centerline at (fractional) slice indices ``kq`` as voxel coordinates (n, 3)."""
        fi, fj = self.curve
        kq = np.asarray(kq, float)
        return np.stack([fi(kq, 0), fj(kq, 0), kq], axis=1)

    @property
    def cos_angle(self) -> np.ndarray:
        """Cosine of the angle between the centerline and the slice normal."""
        return np.abs(self.tangent[:, 2])

    @property
    def angle_AP(self) -> np.ndarray:
        """Angle (degrees) about the AP axis, as SCT: ``atan2(t_x, t_z)``."""
        return np.degrees(np.arctan2(self.tangent[:, 0], self.tangent[:, 2]))

    @property
    def angle_RL(self) -> np.ndarray:
        """Angle (degrees) about the RL axis, as SCT: ``atan2(t_y, t_z)``."""
        return np.degrees(np.arctan2(self.tangent[:, 1], self.tangent[:, 2]))


def slice_centroids(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slice indices with a non-empty mask and their centroids ``(i, j)`` in voxel units."""
    m = np.asarray(mask) > 0
    counts = m.sum(axis=(0, 1))
    ks = np.flatnonzero(counts)
    ii = np.arange(m.shape[0], dtype=float)[:, None]
    jj = np.arange(m.shape[1], dtype=float)[None, :]
    cents = np.empty((ks.size, 2))
    for n, k in enumerate(ks):
        sl = m[:, :, k]
        cents[n] = ((sl * ii).sum() / counts[k], (sl * jj).sum() / counts[k])
    return ks, cents


def fit_1d(
    k: np.ndarray, y: np.ndarray, method: str, smooth: float, degree: int, pz: float, n_spanned: int
) -> Callable[[np.ndarray, int], np.ndarray]:
    """Fit y(k); return ``f(kq, der)`` evaluating the fit (der=0) or its derivative (der=1)."""
    n = k.size
    if n == 1:
        y0 = float(y[0])
        return lambda kq, der=0: np.full(np.shape(kq), y0 if der == 0 else 0.0)
    if method == "polyfit":
        coef = np.polyfit(k, y, min(degree, n - 1))
        dcoef = np.polyder(coef)
        return lambda kq, der=0: np.polyval(coef if der == 0 else dcoef, kq)
    if method == "bspline":
        from scipy.interpolate import splev, splrep

        kdeg = 3 if n > 3 else max(1, n - 1)
        density = (n / float(n_spanned)) ** 2
        s = density * smooth * pz / 3.0
        tck = splrep(k, y, s=s, k=kdeg)
        return lambda kq, der=0: np.asarray(splev(kq, tck, der=der))
    raise ValueError(f"unknown centerline method {method!r} (bspline or polyfit)")


def fit_centerline(
    mask: np.ndarray, frame: SliceFrame, method: str = "bspline", smooth: float = 30.0, degree: int = 5
) -> Centerline:
    """Fit a smooth centerline to an RPI mask (see module docstring for the model)."""
    ks, cents = slice_centroids(mask)
    if ks.size == 0:
        raise ValueError("empty mask: no centerline")
    kf = ks.astype(float)
    n_spanned = int(ks[-1] - ks[0] + 1)
    fi = fit_1d(kf, cents[:, 0], method, smooth, degree, frame.slice_thickness, n_spanned)
    fj = fit_1d(kf, cents[:, 1], method, smooth, degree, frame.slice_thickness, n_spanned)
    t_world = np.outer(fi(kf, 1), frame.c[:, 0]) + np.outer(fj(kf, 1), frame.c[:, 1]) + frame.c[:, 2][None, :]
    t = frame.to_frame(t_world)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    return Centerline(
        slices=ks,
        centroid=cents,
        fitted=np.stack([fi(kf, 0), fj(kf, 0)], axis=1),
        tangent=t,
        method=method,
        curve=(fi, fj),
    )
