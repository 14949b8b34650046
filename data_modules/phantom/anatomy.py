"""Phantom anatomy: levels, cord / gray matter / canal cross-sections, tissue at any world point.

All shapes are defined in the normal plane of the centerline (coordinates ``u`` toward the
subject's right and ``v`` toward anterior, see :mod:`geometry`) as functions of the arc length
``s``:

- cord: ellipse with semi-axes ``a(s)`` (R-L) and ``b(s)`` (A-P), true CSA(s) = π·a·b;
- gray matter: a fixed butterfly (union of five ellipses) in the cord's normalised coordinates
  ``(u / (a·g), v / (b·g))``, ``g(s)`` its scale; its area is ``a·b·g²·Ã`` (Ã integrated once);
- canal (thecal sac, cord included): concentric ellipse, ``A = a·(1+ρ)^0.45``, ``B = b·(1+ρ)^0.55``,
  so canal(s) = CSA(s)·(1 + ρ(s)) and SAC(s)/CSA(s) = ρ(s) exactly;
- vertebral bodies (bone) anterior to the canal, with discs around each disc position.

Vertebral level ``k`` (C1..C7) is the slab ``disc_s[k-1] <= s < disc_s[k]`` between perpendicular
planes; disc label ``k`` (SCT convention: 3 = C2/C3, ..., 8 = C7/T1, 1 = top of C1, 2 = C1/C2)
sits at ``s = disc_s[k-1]``.

The per-level ground truth is the arc-length mean over the level of the analytic quantity
(mean of π·a·b for CSA). Because every cross-section is centred on the centerline, this equals
the mask volume of the level divided by the level's arc length (Pappus), which is what slice-wise
angle-corrected areas average to.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from data_modules.phantom.geometry import Centerline

N_LEVELS = 7
LEVEL_NAMES = tuple(f"C{k}" for k in range(1, N_LEVELS + 1))
DISC_LABELS = tuple(range(1, N_LEVELS + 2))  # 1 = top of C1, 2 = C1/C2, 3 = C2/C3, ..., 8 = C7/T1

# tissue classes (used for DWI and intensities)
SOFT, BONE, DISC, CSF, WM, GM = range(6)
TISSUES = ("soft", "bone", "disc", "csf", "wm", "gm")

CANAL_EXP_A = 0.45  # canal semi-axes = cord semi-axes × (1+rho)^exp: A-P narrows a bit more
CANAL_EXP_B = 0.55
RHO_FLOOR = 0.08  # minimum SAC/CSA anywhere (canal strictly contains the cord)
BODY_GAP = 1.0  # mm between canal and vertebral body (posterior longitudinal ligament)
BODY_RW, BODY_RB = 8.0, 7.5  # vertebral body half-width (R-L) and half-depth (A-P), mm
DISC_HALF = 2.0  # half-thickness of a disc along s, mm
TABLE_STEP = 0.05  # mm, tabulation of the smooth profiles
QUAD_STEP = 0.01  # mm, midpoint quadrature of per-level means

# gray-matter butterfly in normalised cord coordinates (u~ to the right, v~ anterior):
# (centre u, centre v, half-width across, half-length along, angle of the long axis from anterior
# toward the right, deg): commissure, anterior horns, posterior horns.
GM_ELLIPSES = (
    (0.0, 0.02, 0.085, 0.32, 90.0),
    (0.30, 0.25, 0.155, 0.29, 22.0),
    (-0.30, 0.25, 0.155, 0.29, -22.0),
    (0.22, -0.37, 0.075, 0.37, -25.0),
    (-0.22, -0.37, 0.075, 0.37, 25.0),
)


def gm_radius(un: np.ndarray, vn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smallest normalised ellipse radius over the butterfly ellipses, with its gradient.

    ``(r, dr/du~, dr/dv~)``: inside the gray matter where ``r <= 1``.
    """
    best = np.full(np.shape(un), np.inf)
    gu = np.zeros(np.shape(un))
    gv = np.zeros(np.shape(un))
    for cu, cv, across, along, ang in GM_ELLIPSES:
        g = np.deg2rad(ang)
        su, cg = np.sin(g), np.cos(g)
        du, dv = un - cu, vn - cv
        p_al = du * su + dv * cg
        p_ac = du * cg - dv * su
        r = np.sqrt((p_ac / across) ** 2 + (p_al / along) ** 2)
        rs = np.maximum(r, 1e-9)
        # d r / d(p_ac, p_al) then chain to (u~, v~)
        d_ac = p_ac / (across**2 * rs)
        d_al = p_al / (along**2 * rs)
        ru = d_ac * cg + d_al * su
        rv = -d_ac * su + d_al * cg
        take = r < best
        best = np.where(take, r, best)
        gu = np.where(take, ru, gu)
        gv = np.where(take, rv, gv)
    return best, gu, gv


@lru_cache(maxsize=1)
def gm_normalised_area(n: int = 1600) -> float:
    """Area Ã of the butterfly in normalised coordinates.

    Midpoint rule on an n×n grid over [-1,1]² (the butterfly is mirror-symmetric in u, so only
    u > 0 is sampled); relative accuracy ~1e-4.
    """
    h = 2.0 / n
    c = -1.0 + h * (np.arange(n) + 0.5)
    uu, vv = np.meshgrid(c[n // 2 :], c, indexing="xy")
    r, _, _ = gm_radius(uu, vv)
    return 2.0 * int(np.count_nonzero(r <= 1.0)) * h * h


@dataclass
class AnatomyDraw:
    """The random parameters of one subject's anatomy (drawn in :mod:`population`)."""

    level_lengths: np.ndarray  # (7,) mm, C1..C7
    csa_levels: np.ndarray  # (7,) mm², cord CSA at each level's centre (before smoothing)
    aspect_levels: np.ndarray  # (7,) R-L / A-P diameter ratio of the cord at each level's centre
    gm_scale_levels: np.ndarray  # (7,) butterfly scale g at each level's centre
    sac_csa_levels: np.ndarray  # (7,) target per-level mean SAC/CSA (met exactly)
    radius: float  # lordosis radius (mm)
    tilt_deg: float
    tilt_azimuth_deg: float
    origin: np.ndarray  # world position of the centerline mid point


@dataclass
class Anatomy:
    """A subject's anatomy: centerline, tabulated profiles, tissue classification, truth."""

    draw: AnatomyDraw
    centerline: Centerline
    disc_s: np.ndarray  # (8,) arc length of disc labels 1..8
    s_tab: np.ndarray
    a_tab: np.ndarray
    b_tab: np.ndarray
    g_tab: np.ndarray
    rho_tab: np.ndarray
    A_tab: np.ndarray
    B_tab: np.ndarray
    rho_clipped: bool = False
    canal_shift: float = 0.0  # canal centre at v = canal_shift·(B − b) (randomised phantoms; 0 = concentric)

    def canal_offset(self, s: np.ndarray) -> np.ndarray:
        """Anterior offset (mm) of the canal's centre from the centerline at ``s`` (the cord stays inside)."""
        p = self.profiles(s)
        return self.canal_shift * (p["B"] - p["b"])

    # ------------------------------------------------------------------ profiles
    def profiles(self, s: np.ndarray) -> dict[str, np.ndarray]:
        """Cord (a, b), canal (A, B), gray-matter scale g and rho at arc length(s) ``s``.

        Linear interpolation in the tables (uniform step, clamped at the ends); every consumer
        — voxelisation and ground truth — goes through this one function.
        """
        s = np.asarray(s, dtype=float)
        t = np.clip((s - self.s_tab[0]) / TABLE_STEP, 0.0, len(self.s_tab) - 1.000001)
        i = t.astype(np.intp)
        w = t - i
        out = {}
        for name, tab in (
            ("a", self.a_tab),
            ("b", self.b_tab),
            ("g", self.g_tab),
            ("rho", self.rho_tab),
            ("A", self.A_tab),
            ("B", self.B_tab),
        ):
            lo = tab[i]
            out[name] = lo + w * (tab[i + 1] - lo)
        return out

    def level_of(self, s: np.ndarray) -> np.ndarray:
        """Vertebral level 1..7 at arc length ``s``; 0 above the top of C1 or below the C7/T1 disc."""
        k = np.searchsorted(self.disc_s, s, side="right")
        return np.where((s >= self.disc_s[0]) & (s < self.disc_s[-1]), k, 0).astype(np.uint8)

    def level_param_index(self, s: np.ndarray) -> np.ndarray:
        """Level index 0..6 for per-level parameters, the nearest level outside C1..C7."""
        return np.clip(np.searchsorted(self.disc_s, s, side="right") - 1, 0, N_LEVELS - 1)

    # ------------------------------------------------------------------ tissue at points
    def classify(
        self, xyz: np.ndarray, directions: np.ndarray | None = None, spacing: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Tissue at world points ``(3, n)`` (voxel centres).

        Returns ``s`` (and the normal-plane offsets ``u``, ``v``), ``level`` (0..7), boolean ``canal``, ``cord``, ``gm``, the tissue class at
        the point (``cls``), ``disc_zone`` and ``phi``. With a voxel box (``directions`` 3×3 unit
        columns, ``spacing`` (3,)) also partial-volume fractions ``f_canal``, ``f_cord``, ``f_gm``,
        ``f_body``: a linear ramp of the signed distance to the boundary over the box's width
        along the boundary normal, computed only within reach of a boundary.
        """
        cl = self.centerline
        s, u, v, phi = cl.to_local(xyz)
        p = self.profiles(s)
        a, b, A, B, g = p["a"], p["b"], p["A"], p["B"], p["g"]
        n = s.shape[0]
        vk = v - self.canal_shift * (B - b) if self.canal_shift else v  # v from the canal's centre
        rk2 = (u / A) ** 2 + (vk / B) ** 2
        rc2 = (u / a) ** 2 + (v / b) ** 2
        canal = rk2 <= 1.0
        cord = rc2 <= 1.0
        near = np.flatnonzero(rc2 <= 1.7)  # gray matter lies inside the cord: evaluate near it only
        r_gm = np.full(n, np.inf)
        gmu = np.zeros(n)
        gmv = np.zeros(n)
        if near.size:
            ag, bg = a[near] * g[near], b[near] * g[near]
            r, gu_, gv_ = gm_radius(u[near] / ag, v[near] / bg)
            r_gm[near] = r
            gmu[near] = gu_ / ag
            gmv[near] = gv_ / bg
        gm = (r_gm <= 1.0) & cord
        vb = vk - (B + BODY_GAP + BODY_RB)
        rb2 = (u / BODY_RW) ** 2 + (vb / BODY_RB) ** 2
        body = rb2 <= 1.0
        is_disc = np.zeros(n, dtype=bool)
        idx = np.flatnonzero(rb2 <= 1.6)
        if idx.size:
            discs = self.disc_s[1:]
            j = np.clip(np.searchsorted(discs, s[idx]), 1, len(discs) - 1)
            dist = np.minimum(np.abs(s[idx] - discs[j - 1]), np.abs(s[idx] - discs[j]))
            is_disc[idx] = dist <= DISC_HALF
        cls = np.full(n, SOFT, dtype=np.uint8)
        cls[body & ~is_disc] = BONE
        cls[body & is_disc] = DISC
        cls[canal] = CSF
        cls[cord] = WM
        cls[gm] = GM
        out = {
            "s": s,
            "u": u,
            "v": v,
            "v_canal": vk,
            "phi": phi,
            "canal": canal,
            "cord": cord,
            "gm": gm,
            "cls": cls,
            "disc_zone": is_disc,
            "level": self.level_of(s),
        }
        if directions is None:
            return out
        nrl = cl.normal_rl
        rot = cl.rot
        hmax = float(np.sum(spacing))

        pv = (phi, nrl, rot, directions, spacing, hmax)
        f_canal = _ellipse_ramp(u, vk, rk2, A, B, *pv)
        f_cord = np.minimum(_ellipse_ramp(u, v, rc2, a, b, *pv), f_canal)
        f_gm = np.zeros(n)
        if near.size:
            grad = np.maximum(np.hypot(gmu[near], gmv[near]), 1e-12)
            d = (r_gm[near] - 1.0) / grad
            f = (d <= 0).astype(float)
            band = np.abs(d) < 0.5 * hmax
            if band.any():
                f[band] = _pv_fraction(
                    d[band],
                    gmu[near][band] / grad[band],
                    gmv[near][band] / grad[band],
                    phi[near][band],
                    nrl,
                    rot,
                    directions,
                    spacing,
                )
            f_gm[near] = f
        f_gm = np.minimum(f_gm, f_cord)
        f_body = _ellipse_ramp(u, vb, rb2, BODY_RW, BODY_RB, *pv)
        out.update(f_canal=f_canal, f_cord=f_cord, f_gm=f_gm, f_body=f_body)
        return out

    # ------------------------------------------------------------------ ground truth
    def level_samples(self, k: int) -> np.ndarray:
        """Midpoint quadrature nodes (arc length) of level ``k`` (1..7)."""
        lo, hi = self.disc_s[k - 1], self.disc_s[k]
        n = max(int(np.ceil((hi - lo) / QUAD_STEP)), 1)
        return lo + (hi - lo) * (np.arange(n) + 0.5) / n

    def level_truth(self) -> dict[str, dict[str, float]]:
        """Per-level arc-length means of the analytic cross-section quantities."""
        out = {}
        at = gm_normalised_area()
        for k in range(1, N_LEVELS + 1):
            s = self.level_samples(k)
            p = self.profiles(s)
            csa = np.pi * p["a"] * p["b"]
            canal = np.pi * p["A"] * p["B"]
            gm = p["a"] * p["b"] * p["g"] ** 2 * at
            out[LEVEL_NAMES[k - 1]] = {
                "level": k,
                "s_start_mm": float(self.disc_s[k - 1]),
                "s_end_mm": float(self.disc_s[k]),
                "length_mm": float(self.disc_s[k] - self.disc_s[k - 1]),
                "csa_mm2": float(csa.mean()),
                "csa_min_mm2": float(csa.min()),
                "csa_max_mm2": float(csa.max()),
                "canal_area_mm2": float(canal.mean()),
                "sac_mm2": float((canal - csa).mean()),
                "sac_csa_ratio": float(((canal - csa) / csa).mean()),
                "sac_csa_ratio_of_means": float((canal - csa).mean() / csa.mean()),
                "gm_area_mm2": float(gm.mean()),
                "wm_area_mm2": float((csa - gm).mean()),
                "gm_fraction": float(gm.mean() / csa.mean()),
                "rl_diameter_mm": float(2 * p["a"].mean()),
                "ap_diameter_mm": float(2 * p["b"].mean()),
                "canal_rl_diameter_mm": float(2 * p["A"].mean()),
                "canal_ap_diameter_mm": float(2 * p["B"].mean()),
                "angle_to_si_deg": float(self.centerline.angle_to_si_deg(s).mean()),
            }
        return out


def _pv_fraction(
    d: np.ndarray,
    nu: np.ndarray,
    nv: np.ndarray,
    phi: np.ndarray,
    nrl: np.ndarray,
    rot: np.ndarray,
    directions: np.ndarray,
    spacing: np.ndarray,
) -> np.ndarray:
    """Share of a voxel box inside a boundary at signed distance ``d`` (mm, > 0 outside).

    The boundary normal ``(nu, nv)`` lies in the normal plane (u toward right, v anterior);
    the box's width along it is ``sum_j |n·e_j|·spacing_j``, over which the share ramps linearly.
    """
    # anterior normal in world: rot @ (0, cos phi, -sin phi)
    c, sn = np.cos(phi), np.sin(phi)
    h = np.zeros(d.shape)
    for j in range(3):
        e = directions[:, j]
        rl = nrl @ e
        ap = c * (rot[:, 1] @ e) - sn * (rot[:, 2] @ e)
        h += np.abs(nu * rl + nv * ap) * spacing[j]
    return np.clip(0.5 - d / np.maximum(h, 1e-9), 0.0, 1.0)


def _ellipse_ramp(
    u: np.ndarray,
    v: np.ndarray,
    r2: np.ndarray,
    su,
    sv,
    phi: np.ndarray,
    nrl: np.ndarray,
    rot: np.ndarray,
    directions: np.ndarray,
    spacing: np.ndarray,
    hmax: float,
) -> np.ndarray:
    """PV share inside the ellipse ``(u/su)² + (v/sv)² <= 1`` (``su``, ``sv`` scalars or per point)."""
    f = (r2 <= 1.0).astype(float)
    # cheap screen: |d| >= |r - 1| · min semi-axis; only points that may be within reach go further
    smin = np.minimum(su, sv)
    r = np.sqrt(r2)
    cand = np.flatnonzero(np.abs(r - 1.0) * smin < 0.5 * hmax)
    if not cand.size:
        return f
    su_c = su[cand] if np.ndim(su) else su
    sv_c = sv[cand] if np.ndim(sv) else sv
    rc = np.maximum(r[cand], 1e-9)
    gu = u[cand] / su_c**2 / rc
    gv = v[cand] / sv_c**2 / rc
    grad = np.maximum(np.hypot(gu, gv), 1e-12)
    d = (r[cand] - 1.0) / grad
    band = np.abs(d) < 0.5 * hmax
    if band.any():
        sel = cand[band]
        f[sel] = _pv_fraction(
            d[band], gu[band] / grad[band], gv[band] / grad[band], phi[sel], nrl, rot, directions, spacing
        )
    return f


def pchip(x: np.ndarray, y: np.ndarray, xq: np.ndarray) -> np.ndarray:
    """Monotone piecewise-cubic Hermite interpolation (Fritsch–Carlson), constant outside ``x``."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    h = np.diff(x)
    delta = np.diff(y) / h
    m = np.zeros_like(y)
    for i in range(1, len(x) - 1):
        if delta[i - 1] * delta[i] > 0:
            w1, w2 = 2 * h[i] + h[i - 1], h[i] + 2 * h[i - 1]
            m[i] = (w1 + w2) / (w1 / delta[i - 1] + w2 / delta[i])
    m[0] = _pchip_end(h[0], h[1], delta[0], delta[1])
    m[-1] = _pchip_end(h[-1], h[-2], delta[-1], delta[-2])
    xq = np.clip(np.asarray(xq, dtype=float), x[0], x[-1])
    k = np.clip(np.searchsorted(x, xq, side="right") - 1, 0, len(x) - 2)
    t = (xq - x[k]) / h[k]
    h00, h10 = (1 + 2 * t) * (1 - t) ** 2, t * (1 - t) ** 2
    h01, h11 = t * t * (3 - 2 * t), t * t * (t - 1)
    return h00 * y[k] + h10 * h[k] * m[k] + h01 * y[k + 1] + h11 * h[k] * m[k + 1]


def _pchip_end(h0: float, h1: float, d0: float, d1: float) -> float:
    m = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
    if np.sign(m) != np.sign(d0):
        return 0.0
    if np.sign(d0) != np.sign(d1) and abs(m) > abs(3 * d0):
        return 3 * d0
    return m


def histospline_derivative(knots: np.ndarray, means: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Smooth profile with prescribed means between consecutive knots (area-preserving spline).

    The cumulative integral ``F`` is known at the knots (``F_k = sum_j<k means_j·h_j``); ``F`` is
    interpolated by a natural cubic spline and the profile is ``F'``: piecewise quadratic, C¹,
    with exactly ``means[k]`` as its mean over ``[knots[k], knots[k+1]]``, and flat (constant)
    beyond the end knots, where the natural spline has ``F'' = 0``.
    """
    x = np.asarray(knots, dtype=float)
    h = np.diff(x)
    f = np.concatenate([[0.0], np.cumsum(np.asarray(means, dtype=float) * h)])
    n = len(x)
    # natural cubic spline second derivatives m (m_0 = m_{n-1} = 0)
    a = np.zeros((n, n))
    rhs = np.zeros(n)
    a[0, 0] = a[-1, -1] = 1.0
    for i in range(1, n - 1):
        a[i, i - 1], a[i, i], a[i, i + 1] = h[i - 1], 2 * (h[i - 1] + h[i]), h[i]
        rhs[i] = 6 * ((f[i + 1] - f[i]) / h[i] - (f[i] - f[i - 1]) / h[i - 1])
    m = np.linalg.solve(a, rhs)
    sq = np.clip(np.asarray(s, dtype=float), x[0], x[-1])
    k = np.clip(np.searchsorted(x, sq, side="right") - 1, 0, n - 2)
    hk = h[k]
    left, right = x[k + 1] - sq, sq - x[k]
    return (
        -m[k] * left**2 / (2 * hk)
        + m[k + 1] * right**2 / (2 * hk)
        + (f[k + 1] - f[k]) / hk
        - (m[k + 1] - m[k]) * hk / 6
    )


def build_anatomy(draw: AnatomyDraw) -> Anatomy:
    """Centerline, disc positions and smooth profiles from the drawn parameters.

    Cord CSA, aspect ratio and gray-matter scale are monotone cubic (PCHIP) interpolations
    through the level centres (constant beyond the first/last centre). ``rho`` = SAC/CSA is the
    area-preserving spline of the per-level targets (:func:`histospline_derivative`): smooth
    along the cord, with each level's arc-length mean equal to ``draw.sac_csa_levels``.
    """
    from data_modules.phantom.geometry import tilt_rotation

    lengths = np.asarray(draw.level_lengths, dtype=float)
    disc_s = np.concatenate([[0.0], np.cumsum(lengths)])
    total = float(disc_s[-1])
    cl = Centerline(
        total,
        float(draw.radius),
        tilt_rotation(draw.tilt_deg, draw.tilt_azimuth_deg),
        np.asarray(draw.origin, dtype=float),
    )
    centres = 0.5 * (disc_s[:-1] + disc_s[1:])
    s_tab = -60.0 + TABLE_STEP * np.arange(int(round((total + 120.0) / TABLE_STEP)) + 1)
    csa = pchip(centres, draw.csa_levels, s_tab)
    asp = pchip(centres, draw.aspect_levels, s_tab)
    g = pchip(centres, draw.gm_scale_levels, s_tab)
    a = np.sqrt(csa * asp / np.pi)
    b = np.sqrt(csa / (asp * np.pi))
    rho = histospline_derivative(disc_s, draw.sac_csa_levels, s_tab)
    clipped = bool((rho < RHO_FLOOR).any())
    rho = np.maximum(rho, RHO_FLOOR)
    return Anatomy(
        draw, cl, disc_s, s_tab, a, b, g, rho, a * (1.0 + rho) ** CANAL_EXP_A, b * (1.0 + rho) ** CANAL_EXP_B, clipped
    )
