"""Vertebral levels on the DWI grid: given, from discs on the DWI, or transferred from the T2w.

The study needs a level for every slice of the DWI cord mask. In order of preference:

* ``given`` — a level map on the DWI grid (``rec-average_dwi_label-SC_desc-levels_dseg``);
* ``discs-on-dwi`` — disc labels on the DWI grid (``rec-average_dwi_label-discs[_desc-warp]_dlabel``),
  turned into levels by :mod:`data_modules.levels`;
* ``from-T2w-world`` / ``from-T2w-registered`` — the T2w's disc labels (or its level map) carried
  to the DWI grid through world coordinates (T2w and DWI of one session share the scanner frame),
  the ``registered`` variant after a 1-D registration of the two cord centrelines along S-I.

Disc convention (SCT's ``label-discs_dlabel``, as :mod:`data_modules.levels`): disc value ``n`` lies
between vertebrae ``n - 1`` and ``n`` counted from the skull (1 = top of C1, 2 = C1/C2, 3 = C2/C3,
…, 8 = C7/T1; 49/50, the pontomedullary groove/junction, are ignored); level ``k`` (C``k``) is the
stretch of cord between disc ``k`` above and disc ``k + 1`` below.

Transfer (``from-T2w-*``): the T2w's cord centreline (:mod:`analysis.centerline`, SCT's ``bspline``
fit, sampled every quarter slice) is the cord's axis in world millimetres. Each T2w disc label goes
to world coordinates by the T2w affine and onto that axis: its *foot*, the nearest axis point, i.e.
the cord cross-section through the disc (the label sits at the disc's posterior tip, 5–8 mm in front
of the cord). Each DWI cord voxel's centre goes to world coordinates by the DWI affine, down by the
S-I shift ``Δz`` (0 for ``from-T2w-world``), and onto the same axis; it gets level ``k`` when its
foot lies between the feet of discs ``k`` (included) and ``k + 1``, the boundary being the plane
perpendicular to the cord — the level a straightened cord (SCT's ``sct_label_vertebrae``) gives it.
Voxels beyond the ends of the T2w centreline, or outside consecutive discs, get 0. The T2w's discs
are used when it has them; from a T2w level map alone, disc ``k + 1`` is put at the centroid of the
cord between the last slice of level ``k`` and the first of ``k + 1`` (along the T2w's own S-I axis),
the top and bottom discs half a slice beyond the first and last labelled slices. The DTI means per level then take each DWI slice's
level as the rounded mean of its voxels' (:func:`analysis.morphometrics.slice_levels`, as SCT).

Registration (``from-T2w-registered``): the centroid of the DWI cord mask in each DWI slice
(world mm) is compared with the T2w's fitted centreline (:mod:`analysis.centerline`, SCT's
``bspline``) at the world height ``z − Δz``; ``Δz`` minimises the mean squared in-plane distance
between the two after removing their mean in-plane offset (so a translation in the axial plane,
e.g. EPI distortion along the phase axis, does not bias it): what identifies ``Δz`` is the cord's
own course (lordosis and tilt) along S-I. Searched over ±:data:`MAX_SHIFT_MM` (0.25 mm grid,
then a bounded scalar minimisation). ``residual`` is the root-mean-square in-plane distance
left (mm).

A circular (lordotic) cord rotated in the sagittal plane looks, centreline-wise, like the same cord
slid along itself, so the centreline alone can mistake a small rotation between the scans for an
S-I shift (1° about the cord's middle ≈ 5 mm of slide on a 300 mm lordosis radius). The shift is
therefore checked against the cord's own cross-section-area profile along S-I (the cervical
enlargement; insensitive to small rotations and in-plane shifts): it is applied only when the
DWI's per-slice cord areas, compared with the T2w's at the same anatomical height, fit no worse
than :data:`AREA_TOLERANCE` × their fit without the shift (relative RMS). Otherwise — or when fewer
than :data:`MIN_OVERLAP` DWI slices overlap the T2w cord, or the optimum lies on the search bound —
the world transfer is kept (``from-T2w-world``) with a warning naming the shift it found.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import InputError

METHODS = ("given", "discs-on-dwi", "from-T2w-world", "from-T2w-registered")
MAX_SHIFT_MM = 20.0
MIN_OVERLAP = 5
AREA_TOLERANCE = 1.2
_GRID_STEP_MM = 0.25


@dataclass
class DwiLevels:
    """A level map on the DWI grid and how it was obtained."""

    levels: np.ndarray  # int16, DWI grid, level on cord voxels, 0 elsewhere
    method: str  # one of METHODS
    shift_mm: float = float("nan")  # S-I shift applied to the T2w discs (world superior, mm)
    residual_mm: float = float("nan")  # RMS in-plane centreline distance after the shift (mm)


def _world(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    a = np.asarray(affine, float)
    return np.asarray(ijk, float) @ a[:3, :3].T + a[:3, 3]


def discs_world(discs: np.ndarray, affine: np.ndarray, path: str | Path | None = None) -> dict[int, np.ndarray]:
    """Disc number → world position (mm) of the disc label's voxel (centroid)."""
    from data_modules.levels import disc_positions

    return {k: _world(affine, p) for k, p in disc_positions(discs, path=path).items()}


def level_map_discs_world(levels: np.ndarray, affine: np.ndarray) -> dict[int, np.ndarray]:
    """Disc positions (world mm) implied by a level map (module docstring)."""
    from data_modules.levels import si_axis

    lv = np.round(np.asarray(levels, float)).astype(int)
    axis, sign = si_axis(affine)
    moved = np.moveaxis(lv, axis, -1)
    n = moved.shape[-1]
    per_slice = np.zeros(n, int)
    for k in range(n):
        vals = moved[..., k][moved[..., k] > 0]
        if vals.size:
            per_slice[k] = int(np.bincount(vals).argmax())
    order = np.argsort(np.arange(n) * -sign, kind="stable")  # superior first
    seq = [(int(k), int(per_slice[k])) for k in order if per_slice[k] > 0]
    if not seq:
        return {}

    pts = np.argwhere(moved > 0)  # the other axes in order, then the S-I axis

    def centroid(ks: list[int]) -> np.ndarray:
        sel = pts[np.isin(pts[:, -1], ks)]
        vox = np.insert(sel[:, :-1].astype(float), axis, sel[:, -1].astype(float), axis=1)
        return vox.mean(axis=0)

    out: dict[int, np.ndarray] = {}
    step = -sign  # one slice toward inferior, in index units
    first_k, first_lv = seq[0]
    top = centroid([first_k])
    top[axis] -= 0.5 * step
    out[first_lv] = _world(affine, top)
    for (ka, la), (kb, lb) in zip(seq, seq[1:]):
        if lb == la + 1:
            out[lb] = _world(affine, centroid([ka, kb]))
    last_k, last_lv = seq[-1]
    bottom = centroid([last_k])
    bottom[axis] += 0.5 * step
    out[last_lv + 1] = _world(affine, bottom)
    return out


@dataclass
class CordAxis:
    """A centreline as dense world points ordered from superior to inferior, with their arc length
    (mm, increasing inferiorly) and a nearest-point search."""

    points: np.ndarray  # (n, 3)
    s: np.ndarray  # (n,)

    @classmethod
    def from_points(cls, line: np.ndarray) -> CordAxis:
        """Order ``line`` (world points along the cord) top-down and measure its arc length."""
        pts = np.asarray(line, float)
        if pts[0, 2] < pts[-1, 2]:
            pts = pts[::-1]
        s = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))]
        return cls(pts, s)

    def foot(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Arc length of each point's nearest centreline point, and whether that point is inside the
        line (not one of its two ends: the point lies beyond the centreline)."""
        from scipy.spatial import cKDTree

        _, i = cKDTree(self.points).query(np.asarray(xyz, float).reshape(-1, 3))
        return self.s[i], (i > 0) & (i < len(self.s) - 1)


def disc_arc_positions(discs: dict[int, np.ndarray], axis: CordAxis) -> dict[int, float]:
    """Disc number → arc length of its foot on the centreline (discs beyond the centreline's ends are
    left out); consecutive discs must follow each other downwards."""
    keys = sorted(discs)
    s, inside = axis.foot(np.array([discs[k] for k in keys]))
    out = {k: float(v) for k, v, ok in zip(keys, s, inside) if ok}
    ks = sorted(out)
    for a, b in zip(ks, ks[1:]):
        if out[b] <= out[a]:
            raise InputError(f"T2w disc {b} is not below disc {a} along the cord ({out[b]:.1f} <= {out[a]:.1f} mm)")
    return out


def levels_on_grid(
    disc_s: dict[int, float], axis: CordAxis, mask: np.ndarray, affine: np.ndarray, shift_mm: float = 0.0
) -> np.ndarray:
    """Level of each voxel of ``mask`` (grid of ``affine``): its world position moved down by
    ``shift_mm`` is placed on the T2w cord (foot on ``axis``) and gets level ``k`` when it lies between
    the cross-sections through discs ``k`` and ``k + 1`` (module docstring); 0 elsewhere."""
    m = np.asarray(mask) > 0
    ijk = np.argwhere(m)
    xyz = _world(affine, ijk) - np.array([0.0, 0.0, shift_mm])
    s, inside = axis.foot(xyz)
    lv = np.zeros(len(ijk), np.int16)
    for k, top in disc_s.items():
        if k + 1 in disc_s:
            lv[inside & (s >= top) & (s < disc_s[k + 1])] = k
    out = np.zeros(m.shape, np.int16)
    out[tuple(ijk.T)] = lv
    return out


def area_profile(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``(n, 2)``: world height (mm, of each slice's cord centroid) and cord area in the slice (mm²)."""
    from analysis.centerline import SliceFrame, slice_centroids, to_rpi

    m, aff = to_rpi(np.asarray(mask) > 0, affine)
    ks, c = slice_centroids(m)
    z = _world(aff, np.column_stack([c, ks]))[:, 2]
    area = m.sum(axis=(0, 1))[ks] * SliceFrame.from_affine(aff).pixel_area
    o = np.argsort(z)
    return np.column_stack([z[o], area[o]])


def area_misfit(t2w_profile: np.ndarray, dwi_profile: np.ndarray, shift_mm: float) -> float:
    """Relative RMS difference of the DWI's cord areas and the T2w's at the same anatomical height
    (the DWI's moved back by ``shift_mm``); NaN with fewer than :data:`MIN_OVERLAP` slices in common."""
    z = dwi_profile[:, 0] - shift_mm
    ok = (z >= t2w_profile[0, 0]) & (z <= t2w_profile[-1, 0])
    if ok.sum() < MIN_OVERLAP:
        return float("nan")
    d = dwi_profile[ok, 1] - np.interp(z[ok], t2w_profile[:, 0], t2w_profile[:, 1])
    return float(np.sqrt(np.mean(d**2)) / np.mean(dwi_profile[ok, 1]))


def _centerline_world(mask: np.ndarray, affine: np.ndarray, fitted: bool) -> np.ndarray:
    """World points (n, 3) of the cord centreline: fitted (dense) or the raw per-slice centroids."""
    from analysis.centerline import SliceFrame, fit_centerline, slice_centroids, to_rpi

    m, aff = to_rpi(np.asarray(mask) > 0, affine)
    if not fitted:
        ks, c = slice_centroids(m)
        return _world(aff, np.column_stack([c, ks]))
    cl = fit_centerline(m, SliceFrame.from_affine(aff))
    kq = np.linspace(cl.slices[0], cl.slices[-1], max(2, 4 * (cl.slices[-1] - cl.slices[0]) + 1))
    return _world(aff, cl.voxel_points(kq))


@dataclass
class Registration:
    """Result of :func:`register_si`."""

    shift_mm: float
    residual_mm: float
    residual_world_mm: float  # the same measure at shift 0
    n_points: int
    at_bound: bool


def register_si(t2w_line: np.ndarray, dwi_points: np.ndarray, max_shift: float = MAX_SHIFT_MM) -> Registration | None:
    """S-I shift of the DWI cord relative to the T2w cord (module docstring); None if too little overlap."""
    from scipy.optimize import minimize_scalar

    t = t2w_line[np.argsort(t2w_line[:, 2])]
    z_lo, z_hi = t[0, 2], t[-1, 2]

    def cost(dz: float) -> tuple[float, int]:
        z = dwi_points[:, 2] - dz
        ok = (z >= z_lo) & (z <= z_hi)
        if ok.sum() < MIN_OVERLAP:
            return np.inf, int(ok.sum())
        d = dwi_points[ok, :2] - np.column_stack([np.interp(z[ok], t[:, 2], t[:, c]) for c in (0, 1)])
        d -= d.mean(axis=0)
        return float((d**2).sum(axis=1).mean()), int(ok.sum())

    grid = np.arange(-max_shift, max_shift + 1e-9, _GRID_STEP_MM)
    costs = np.array([cost(dz)[0] for dz in grid])
    if not np.isfinite(costs).any():
        return None
    i = int(np.nanargmin(costs))
    lo, hi = grid[max(0, i - 1)], grid[min(len(grid) - 1, i + 1)]
    res = minimize_scalar(lambda dz: cost(dz)[0], bounds=(lo, hi), method="bounded", options={"xatol": 1e-3})
    dz = float(res.x) if np.isfinite(res.fun) and res.fun <= costs[i] else float(grid[i])
    c, n = cost(dz)
    c0, _ = cost(0.0)
    return Registration(dz, float(np.sqrt(c)), float(np.sqrt(c0)), n, i in (0, len(grid) - 1))


def transfer_from_t2w(
    t2w_mask: np.ndarray,
    t2w_affine: np.ndarray,
    discs: dict[int, np.ndarray],
    dwi_mask: np.ndarray,
    dwi_affine: np.ndarray,
    register: bool = True,
) -> DwiLevels:
    """Levels of the DWI cord mask from the T2w's world disc positions, refined by :func:`register_si`."""
    if len(discs) < 2:
        raise InputError("fewer than two T2w discs: no level can be transferred to the DWI")
    t_line = _centerline_world(t2w_mask, t2w_affine, fitted=True)
    axis = CordAxis.from_points(t_line)
    disc_s = disc_arc_positions(discs, axis)
    d_pts = _centerline_world(dwi_mask, dwi_affine, fitted=False)
    reg = register_si(t_line, d_pts)
    why = None
    if reg is None:
        why = "too few DWI slices overlap the T2w cord"
    elif reg.at_bound:
        why = f"the optimum lies on the search bound (±{MAX_SHIFT_MM:g} mm)"
    elif register:
        t_area, d_area = area_profile(t2w_mask, t2w_affine), area_profile(dwi_mask, dwi_affine)
        moved, still = area_misfit(t_area, d_area, reg.shift_mm), area_misfit(t_area, d_area, 0.0)
        # (no judgement when the unshifted DWI overlaps the T2w cord too little to compare)
        if np.isfinite(still) and not moved <= AREA_TOLERANCE * still:
            why = (
                f"the cord-area profile disagrees: {100 * moved:.1f} % RMS after the shift against "
                f"{100 * still:.1f} % without (a rotation between the scans?)"
            )
    if register and why is None:
        lv = levels_on_grid(disc_s, axis, dwi_mask, dwi_affine, reg.shift_mm)
        return DwiLevels(lv, "from-T2w-registered", reg.shift_mm, reg.residual_mm)
    if register:
        found = f"found {reg.shift_mm:+.1f} mm, " if reg is not None else ""
        warnings.warn(f"DWI levels: centreline registration not used ({found}{why}); world transfer kept", stacklevel=2)
    residual = reg.residual_world_mm if reg is not None else float("nan")
    return DwiLevels(levels_on_grid(disc_s, axis, dwi_mask, dwi_affine, 0.0), "from-T2w-world", 0.0, residual)


def dwi_levels_from_files(
    dwi_mask: str | Path,
    *,
    dwi_levels: str | Path | None = None,
    dwi_discs: str | Path | None = None,
    t2w_mask: str | Path | None = None,
    t2w_levels: str | Path | None = None,
    t2w_discs: str | Path | None = None,
    register: bool = True,
):
    """``(DWI mask image, DwiLevels)`` by the first method of :data:`METHODS` the inputs allow."""
    from core.io import check_same_grid, load_label, load_nifti
    from data_modules.levels import level_map_from_files

    if dwi_levels is not None:
        img, lv = load_label(dwi_levels, kind="vertebral levels", require_nonempty=True)
        return img, DwiLevels(np.asarray(lv, np.int16), "given")
    if dwi_discs is not None:
        img, lv = level_map_from_files(dwi_mask, dwi_discs)
        return img, DwiLevels(lv, "discs-on-dwi")
    if t2w_mask is None or (t2w_levels is None and t2w_discs is None):
        raise InputError(
            "no vertebral levels for the DWI cord mask (no levels or discs on the DWI grid, and no T2w cord "
            "mask with label-SC_desc-levels_dseg or label-discs_dlabel to transfer them from)",
            dwi_mask,
        )
    d_img, d_mask = load_label(dwi_mask, allowed=(0, 1), require_nonempty=True, kind="cord mask")
    t_img, t_mask = load_label(t2w_mask, allowed=(0, 1), require_nonempty=True, kind="cord mask")
    if t2w_discs is not None:  # the discs themselves, rather than the boundaries a level map implies
        disc_img = load_nifti(t2w_discs, ndim=3, kind="disc label")
        check_same_grid(t_img, disc_img, t2w_mask, t2w_discs)
        discs = discs_world(np.asanyarray(disc_img.dataobj), disc_img.affine, path=t2w_discs)
    else:
        l_img, lv = load_label(t2w_levels, kind="vertebral levels", require_nonempty=True)
        check_same_grid(t_img, l_img, t2w_mask, t2w_levels)
        discs = level_map_discs_world(lv, l_img.affine)
    res = transfer_from_t2w(t_mask, t_img.affine, discs, d_mask, d_img.affine, register=register)
    return d_img, res


def study_dwi_levels(job, dest: Path, transfer: str = "registered") -> tuple[Path, dict[str, object]]:
    """The level map of one study subject's DWI cord mask (an :class:`analysis.study.SubjectJob`):
    the given file, or one written to ``dest``; with ``{"method", "shift_mm", "residual_mm"}``."""
    from core.errors import ConfigError
    from core.io import save_nifti

    if transfer not in ("registered", "world"):
        raise ConfigError(f"DWI levels transfer {transfer!r}: registered or world")
    img, res = dwi_levels_from_files(
        job.dwi_mask,
        dwi_levels=job.dwi_levels,
        dwi_discs=job.dwi_discs,
        t2w_mask=job.seg,
        t2w_levels=job.levels,
        t2w_discs=job.discs,
        register=transfer == "registered",
    )
    how = {"method": res.method, "shift_mm": _mm(res.shift_mm), "residual_mm": _mm(res.residual_mm)}
    if res.method == "given":
        return Path(job.dwi_levels), how
    if not (res.levels > 0).any():
        raise InputError(
            f"no vertebral level where the DWI cord mask is segmented ({res.method}: the discs bound none of "
            f"its slices)",
            job.dwi_mask,
        )
    return save_nifti(res.levels, img.affine, dest, header=img.header, dtype=np.int16), how


def _mm(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 3)
