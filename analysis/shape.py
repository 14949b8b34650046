"""Shape of one axial section of the cord: area, ellipse, rotated AP profile, solidity.

The definitions follow ``sct_process_segmentation`` of SCT ≥ 7.2 (``process_seg._properties2d``);
the geometry is our own (no per-slice image warping, no 0.1 mm resampling; see docs/analysis.md
for the measured differences):

* **Input values** ``w`` in [0, 1] per pixel: 1/0 for a binary mask, the values themselves for a
  soft mask (partial volume). A pixel takes part when ``w > 1e-6`` (SCT's ``NEAR_ZERO_THRESHOLD``).
* **Angle correction**: pixel centres (millimetres, slice frame of :mod:`analysis.centerline`) are
  compressed by ``cos θ = |t_z|`` along the in-plane direction of the centerline tilt, the inverse
  of the stretch a tilted tube shows in an axial cut. The area scales by the same ``cos θ``.
* ``area`` = Σ w × pixel area × cos θ (partial volume; for a binary mask the voxel count).
* **Region** = pixels with ``w ≥ 0.5 · max(w)`` (SCT binarises its per-slice min–max normalised
  values at 0.5). Its second moments give the ellipse: axis lengths 4·√λ (skimage's
  ``regionprops``), ``eccentricity``, and the **signed** ``orientation`` = skimage's
  ``regionprops.orientation`` in degrees on the (RL = axis 0, AP = axis 1) grid,
  ``½·atan2(2·cov(x, y), var(x) − var(y))`` in (−90°, 90°]. ``diameter_AP_ellipse`` /
  ``diameter_RL`` are the minor / major axis when ``|orientation| < 45°`` (else the reverse), as SCT.
* **Rotated AP profile** (SCT's ``diameter_AP`` since 7.2): the section is rotated about the
  region's centroid so that its major axis lies along RL; ``diameter_AP`` is the mean AP extent
  (Σ w along AP) over a 3 mm wide RL band centred on the centroid = (area inside the band) / 3 mm.
  ``length_posterior`` / ``length_anterior`` split it at the centroid (posterior / anterior side);
  their sum is ``diameter_AP``. Pixels are integrated by an m × m grid of sub-points
  (m = ⌈pixel size / 0.1 mm⌉), each carrying w / m² of the pixel and counted by the fraction of
  its width inside the band (and on either side of the split).
* ``solidity`` = skimage ``regionprops`` solidity of the region (area / convex-hull area).
* A one-pixel region is measured as its pixel square (axes 4·√(p²/12) = 1.15 p).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analysis.centerline import SliceFrame
from core.errors import InputError

NEAR_ZERO = 1e-6
AP_BAND_MM = 3.0  # SCT's 30 rows of 0.1 mm averaged for the AP diameter
SUBSAMPLE_MM = 0.1  # sub-point spacing of the profile integration (SCT's 0.1 mm grid)


def mask_values(
    data: np.ndarray, path: str | Path, kind: str = "segmentation", soft: bool | None = None
) -> tuple[np.ndarray, bool]:
    """Per-voxel values in [0, 1] of a mask and whether they are soft (partial volume).

    Integer labels (or floats that are all whole numbers) → ``> 0`` as 1.0 (binary). Other floats
    must lie in [0, 1]: a soft mask, kept as partial volume (``soft=None`` or ``True``) or
    thresholded at 0.5 (``soft=False``, cordbench's behaviour before SCT parity).
    """
    arr = np.asarray(data)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InputError(f"{kind} has non-finite values (NaN or inf)", path)
        if float(arr.min(initial=0.0)) < 0:
            raise InputError(f"{kind} has negative values (min {float(arr.min()):g})", path)
        if np.allclose(arr, np.round(arr), atol=1e-3):
            return (np.round(arr) > 0).astype(float), False
        if float(arr.max()) > 1.0 + 1e-6:
            raise InputError(
                f"{kind} is neither an integer label map nor a soft mask in [0, 1] (max {float(arr.max()):g})", path
            )
        if soft is False:
            return (arr >= 0.5).astype(float), False
        return np.clip(arr.astype(float), 0.0, 1.0), True
    from core.io import check_not_negative

    check_not_negative(arr, path, kind)
    return (arr > 0).astype(float), False


@dataclass
class SliceShape:
    """Shape of one axial section (millimetres, mm², degrees)."""

    area_raw: float
    area: float
    diameter_AP: float  # rotated AP profile (SCT ≥ 7.2)
    diameter_AP_ellipse: float  # ellipse axis along AP (SCT < 7.2 ``diameter_AP``)
    diameter_RL: float
    length_anterior: float
    length_posterior: float
    eccentricity: float
    orientation: float  # signed, degrees, skimage convention
    solidity: float


def ellipse_from_points(pts: np.ndarray, extent: np.ndarray | None = None) -> tuple[float, float, float, float]:
    """Major/minor axis lengths (4·√λ), eccentricity and signed orientation (deg, skimage's).

    ``pts`` are (n, 2) coordinates (axis 0, axis 1); the orientation is the angle from axis 0 to the
    major axis, ``½·atan2(2·c01, c00 − c11)`` of the (population) covariance of the pixel centres (as
    skimage's ``regionprops``; SCT's 0.1 mm grid adds about each pixel's own extent, see docs).
    ``extent`` (2×2), when given, is added to the covariance (a pixel's own second moment).
    """
    if pts.shape[0] == 0 or (pts.shape[0] < 2 and extent is None):
        return 0.0, 0.0, 0.0, 0.0
    cov = np.cov(pts.T, bias=True) if pts.shape[0] > 1 else np.zeros((2, 2))
    if extent is not None:
        cov = cov + extent
    evals = np.linalg.eigvalsh(cov)
    lmin, lmax = max(float(evals[0]), 0.0), max(float(evals[1]), 0.0)
    major, minor = 4.0 * math.sqrt(lmax), 4.0 * math.sqrt(lmin)
    ecc = math.sqrt(1.0 - lmin / lmax) if lmax > 0 else 0.0
    a, b, c = float(cov[0, 0]), float(cov[0, 1]), float(cov[1, 1])
    tol = 1e-6 * (a + c)  # float32 affines: differences below this are rounding
    if abs(a - c) <= tol:  # equal variances: ±45° by the covariance's sign, 0 for an isotropic section
        orientation = 45.0 if b > tol else -45.0 if b < -tol else 0.0
    else:
        orientation = math.degrees(0.5 * math.atan2(2.0 * b, a - c))
    return major, minor, ecc, orientation


def _compression(tangent: np.ndarray | None) -> tuple[np.ndarray, float]:
    """2×2 in-plane map undoing the tilt stretch, and its determinant cos θ."""
    if tangent is None:
        return np.eye(2), 1.0
    tz = abs(float(tangent[2]))
    txy = np.asarray(tangent[:2], dtype=float)
    s = float(np.linalg.norm(txy))
    if s <= 1e-12:
        return np.eye(2), tz
    u = txy / s
    return np.eye(2) - (1.0 - tz) * np.outer(u, u), tz


def _pixel_edges(frame: SliceFrame) -> np.ndarray:
    """The two edge vectors (rows, mm in the slice frame) of one in-plane pixel."""
    return np.array(
        [frame.inplane_mm(np.array([1.0]), np.array([0.0]))[0], frame.inplane_mm(np.array([0.0]), np.array([1.0]))[0]]
    )


def ap_profile(
    ii: np.ndarray,
    jj: np.ndarray,
    w: np.ndarray,
    frame: SliceFrame,
    comp: np.ndarray,
    centre: np.ndarray,
    orientation_deg: float,
) -> tuple[float, float, float]:
    """``(diameter_AP, length_anterior, length_posterior)`` of the rotated profile (module docstring)."""
    steps = _pixel_edges(frame)
    m = max(1, int(math.ceil(max(np.linalg.norm(steps, axis=1)) / SUBSAMPLE_MM - 1e-9)))
    f = (np.arange(m) + 0.5) / m - 0.5
    offs = (f[:, None, None] * steps[0] + f[None, :, None] * steps[1]).reshape(-1, 2)
    centres = frame.inplane_mm(ii, jj)
    sub = (centres[:, None, :] + offs[None, :, :]).reshape(-1, 2) @ comp.T - centre
    o = math.radians(orientation_deg)
    major = np.array([math.cos(o), math.sin(o)])
    minor = np.array([-math.sin(o), math.cos(o)])  # +AP (anterior) when the major axis is RL
    u, v = sub @ major, sub @ minor
    cell = frame.pixel_area * abs(float(np.linalg.det(comp))) / (m * m)
    wk = np.repeat(w, m * m) * cell
    h = float(np.sqrt(cell))  # a sub-point's width: it counts by the part of [u ± h/2] inside the band
    half = AP_BAND_MM / 2
    in_band = np.clip((np.minimum(half, u + h / 2) - np.maximum(-half, u - h / 2)) / h, 0.0, 1.0)
    anterior = np.clip(v / h + 0.5, 0.0, 1.0)  # the same for the split at the centroid
    ant = float((wk * in_band * anterior).sum()) / AP_BAND_MM
    post = float((wk * in_band * (1.0 - anterior)).sum()) / AP_BAND_MM
    return ant + post, ant, post


def slice_shape(sl: np.ndarray, frame: SliceFrame, tangent: np.ndarray | None) -> SliceShape:
    """Measure one axial slice of values in [0, 1]; ``tangent`` (slice frame, unit) enables angle correction."""
    from skimage.measure import regionprops

    sl = np.asarray(sl, dtype=float)
    ii, jj = np.nonzero(sl > NEAR_ZERO)
    w = sl[ii, jj]
    comp, cosv = _compression(tangent)
    area_raw = float(w.sum()) * frame.pixel_area
    area = area_raw * cosv
    in_region = w >= 0.5 * float(w.max()) if w.size else np.zeros(0, bool)
    pts = frame.inplane_mm(ii[in_region], jj[in_region]) @ comp.T
    # a one-pixel section is measured as its square (centre moments alone would give zero axes)
    edges = _pixel_edges(frame) @ comp.T
    major, minor, ecc, orient = ellipse_from_points(pts, extent=edges.T @ edges / 12.0 if len(pts) == 1 else None)
    if abs(orient) < 45.0:
        d_rl, d_ap = major, minor
    else:
        d_rl, d_ap = minor, major
    if pts.shape[0]:
        centre = pts.mean(axis=0)
        dap, ant, post = ap_profile(ii, jj, w, frame, comp, centre, orient)
        region = np.zeros(sl.shape, np.uint8)
        region[ii[in_region], jj[in_region]] = 1
        solidity = float(regionprops(region)[0].solidity)
    else:
        dap = ant = post = solidity = float("nan")
    return SliceShape(
        area_raw=area_raw,
        area=area,
        diameter_AP=dap,
        diameter_AP_ellipse=d_ap,
        diameter_RL=d_rl,
        length_anterior=ant,
        length_posterior=post,
        eccentricity=ecc,
        orientation=orient,
        solidity=solidity,
    )
