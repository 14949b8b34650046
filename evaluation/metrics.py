"""Segmentation metrics per class: overlap, surface distances (mm), skeleton distances, MSE/PSNR.

Why over ~450 lines: this module is the one owner of every metric *definition* the project reports
(one short function each, with the definition and its reference — MONAI, SCT, the GM challenge —
in the docstring); splitting it would scatter the definitions the documentation points to.

Entry points
------------
* :func:`compute_metrics` — integer label maps ``pred``/``target`` (2D or 3D, same shape), voxel
  ``spacing`` in mm, and ``classes`` = name -> label value(s) (``{"sc": [1, 2], "gm": 2}``).
  Returns a flat ``{"<class>/<metric>": float}`` dict with the metrics of :data:`METRIC_NAMES`.
* :func:`binary_metrics` — the same for one pair of boolean masks.
* :func:`aggregate` — mean/std/n per key over many such dicts, non-finite values counted.

Definitions (``P`` = predicted mask, ``T`` = target mask, counts over all voxels)
-------------------------------------------------------------------------------
* ``dice`` = 2|P∩T| / (|P|+|T|); ``jaccard`` = |P∩T| / |P∪T| (= dice / (2 - dice)).
* ``conformity`` = (3·dice − 2) / dice (Chang et al. 2009), in (−inf, 1]; −inf when dice = 0.
* ``tpr`` = TP/(TP+FN) (sensitivity), ``tnr`` = TN/(TN+FP) (specificity), ``precision`` = TP/(TP+FP).
* Surfaces: ``mask XOR binary_erosion(mask)`` with scipy's default (face-connected) structuring
  element and ``border_value=0`` (a voxel on the image border is a surface voxel) — the same edges as
  ``monai.metrics.utils.get_mask_edges``. Distances are Euclidean in mm between surface voxel centres,
  from ``scipy.ndimage.distance_transform_edt(~surface, sampling=spacing)`` (anisotropic voxels).
  ``d(P→T)`` = distance of every surface voxel of P to the nearest surface voxel of T.
* ``hd`` = max(max d(P→T), max d(T→P)) (symmetric Hausdorff).
* ``hd95`` = max(p95 d(P→T), p95 d(T→P)): the 95th percentile of each directed set (linear
  interpolation), then the larger of the two — MONAI's ``compute_hausdorff_distance(percentile=95)``
  convention (not medpy's percentile of the pooled set).
* ``msd`` = mean of the pooled set d(P→T) ∪ d(T→P) (average symmetric surface distance), MONAI's
  ``compute_average_surface_distance(symmetric=True)``.
* ``skel_hd`` / ``skel_md`` — skeletonized Hausdorff and median distance of the GM segmentation
  challenge (Prados et al. 2017), as SCT's ``sct_compute_hausdorff_distance`` (the organisers' lab)
  computes them: on every 2D slice perpendicular to ``slice_axis`` (default the last axis = axial
  slices of a RAS volume; a 2D input is one slice) **both** masks are thinned to their skeletons
  with Zhang–Suen thinning (:func:`zhang_suen`, SCT's algorithm; thinning depends on the array's
  orientation — SCT thins IRP-oriented slices, and :mod:`evaluation.scoring` reorients to IRP
  before scoring, a pure permutation/flip of voxels), and every skeleton pixel of each mask gets its in-plane Euclidean distance (mm) to the
  nearest skeleton pixel of the other mask on the same slice (both directions: skeleton against
  skeleton). ``skel_hd`` = the largest of these distances over all slices (= the maximum of SCT's
  per-slice Hausdorff distance ``H = max(h1, h2)``). ``skel_md`` = the median of the pooled
  **non-zero** distances of both directions and all slices (SCT's "relative Hausdorff distance
  median" keeps only the non-zero distances: skeleton pixels that coincide do not count), 0 when all
  are 0. Hence a perfect mask scores 0 / 0, a mask shifted by one pixel perpendicular to its
  skeleton scores the pixel size for both. Pooling the slices into one value per subject is our
  choice (SCT prints per-slice values). Two deviations from SCT, both outside its defined cases:
  in-plane spacing may be anisotropic (SCT requires isotropic pixels and multiplies pixel distances
  by one pixel size; identical otherwise); a slice where exactly one of the skeletons is empty gives
  each pixel of the other the worst-case distance below (SCT warns and scores the slice 0). Slices
  empty in both are skipped.
* ``skel_contour_hd`` / ``skel_contour_md`` — the earlier, directed variant: each pixel of the
  *predicted* skeleton (per slice, ``skimage.morphology.skeletonize``) to the nearest pixel of the *target's 2D contour*;
  maximum and median of the pooled distances. A target slice with no prediction adds no distances;
  a skeleton pixel on a slice whose target is empty gets the worst case. A perfect prediction does
  not score 0 (its skeleton lies about half the structure's thickness from the contour), and a mask
  dilated by one pixel can score the same as a perfect one.
* ``mse`` = mean over all voxels of (P − T)² on the 0/1 masks = (FP + FN) / N.
* ``psnr`` = 10·log10(255² / mse) dB — seed 003's convention: the MSE of 0/1 masks with the 8-bit
  peak 255 (what ``skimage.metrics.peak_signal_noise_ratio`` does for uint8 0/1 masks). It reproduces
  the seed's pair MSE 0.000425 ↔ PSNR 81.8469 dB. ``psnr`` = +inf when mse = 0 (perfect masks).

Empty-mask policy (never NaN; never Dice 1 for a wrong prediction)
------------------------------------------------------------------
* Ratios that come out 0/0 (dice, jaccard, tpr, tnr, precision) are **1 when P and T are both
  empty** (nothing to find, nothing found) and **0 otherwise** (the other mask is non-empty, so the
  prediction is wrong). Hence: both empty → dice = jaccard = tpr = precision = conformity = 1;
  P empty, T non-empty → dice = jaccard = tpr = precision = 0; P non-empty, T empty → dice = jaccard
  = precision = tpr = 0. ``conformity`` is −inf whenever dice = 0.
* Distances (hd, hd95, msd, skel_hd, skel_md, skel_contour_hd, skel_contour_md): both empty → 0; exactly one empty → the **finite worst
  case** ``worst_distance(shape, spacing)`` = the image diagonal sqrt(Σ (n_i·s_i)²) in mm, which is
  larger than any distance two voxels of the image can have.
* The only non-finite values produced are therefore ``conformity = −inf`` (dice 0) and
  ``psnr = +inf`` (mse 0); :func:`aggregate` counts them explicitly.

Aggregation policy (:func:`aggregate`)
--------------------------------------
Per key: ``mean`` and ``std`` (ddof=1; NaN when n < 2) over **all** values — a NaN or inf is never
dropped, it propagates into ``mean``/``std`` — plus ``n``, ``n_finite``, ``n_nan``, ``n_posinf``,
``n_neginf``, ``n_missing`` (dicts lacking the key), and ``mean_finite``/``std_finite``/``median_finite``
over the finite values only (NaN if there are none), so a reader sees both and the counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from core.errors import InputError

METRIC_NAMES: tuple[str, ...] = (
    "dice",
    "jaccard",
    "conformity",
    "tpr",
    "tnr",
    "precision",
    "hd",
    "hd95",
    "msd",
    "skel_hd",
    "skel_md",
    "skel_contour_hd",
    "skel_contour_md",
    "mse",
    "psnr",
)
"""Metric names, in the order :func:`compute_metrics` emits them per class."""

PSNR_PEAK = 255.0
"""Peak value of seed 003's PSNR on 0/1 masks (8-bit range)."""


class MetricInputError(InputError, ValueError):
    """Bad arrays, spacing or class map given to a metric (also a ``ValueError``)."""


# ----------------------------------------------------------------------------- validation


def _as_mask(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != bool:
        a = a != 0
    return a


def _check_pair(pred: np.ndarray, target: np.ndarray) -> None:
    if pred.shape != target.shape:
        raise MetricInputError(f"prediction shape {pred.shape} differs from target shape {target.shape}")
    if pred.ndim not in (2, 3):
        raise MetricInputError(f"expected 2D or 3D arrays, got {pred.ndim}D shape {pred.shape}")


def _check_spacing(spacing: Sequence[float], ndim: int) -> np.ndarray:
    s = np.asarray(spacing, dtype=np.float64).ravel()
    if s.size != ndim:
        raise MetricInputError(f"spacing {tuple(spacing)} has {s.size} values for a {ndim}D array")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise MetricInputError(f"spacing {tuple(spacing)} must be finite and > 0 (mm per axis)")
    return s


def _check_labels(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool or np.issubdtype(a.dtype, np.integer):
        return a
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise MetricInputError(f"{name} label array has non-integer values (dtype {a.dtype})")
        return a.astype(np.int64)
    raise MetricInputError(f"{name} label array has unsupported dtype {a.dtype}")


# ----------------------------------------------------------------------------- overlap


def confusion(pred: np.ndarray, target: np.ndarray) -> tuple[int, int, int, int]:
    """Voxel counts ``(tp, fp, fn, tn)`` of two binary masks."""
    p, t = _as_mask(pred), _as_mask(target)
    tp = int(np.count_nonzero(p & t))
    npred, ntarget = int(np.count_nonzero(p)), int(np.count_nonzero(t))
    fp, fn = npred - tp, ntarget - tp
    return tp, fp, fn, p.size - tp - fp - fn


def _ratio(num: int, den: int, both_empty: bool) -> float:
    """num/den; a 0/0 is 1 when both masks are empty, else 0 (see the module policy)."""
    if den == 0:
        return 1.0 if both_empty else 0.0
    return num / den


def dice(pred: np.ndarray, target: np.ndarray) -> float:
    """Dice = 2|P∩T| / (|P|+|T|); 1 when both are empty."""
    tp, fp, fn, _ = confusion(pred, target)
    return _ratio(2 * tp, 2 * tp + fp + fn, tp + fp + fn == 0)


def jaccard(pred: np.ndarray, target: np.ndarray) -> float:
    """Jaccard = |P∩T| / |P∪T|; 1 when both are empty."""
    tp, fp, fn, _ = confusion(pred, target)
    return _ratio(tp, tp + fp + fn, tp + fp + fn == 0)


def conformity_from_dice(d: float) -> float:
    """Chang et al. (2009) conformity (3·Dice − 2)/Dice; −inf for Dice 0."""
    return -math.inf if d == 0 else (3.0 * d - 2.0) / d


def conformity(pred: np.ndarray, target: np.ndarray) -> float:
    """Conformity coefficient of two masks, see :func:`conformity_from_dice`."""
    return conformity_from_dice(dice(pred, target))


def tpr(pred: np.ndarray, target: np.ndarray) -> float:
    """Sensitivity TP/(TP+FN)."""
    tp, fp, fn, _ = confusion(pred, target)
    return _ratio(tp, tp + fn, tp + fp + fn == 0)


def tnr(pred: np.ndarray, target: np.ndarray) -> float:
    """Specificity TN/(TN+FP) (0/0 only if the target fills the image)."""
    tp, fp, fn, tn = confusion(pred, target)
    return _ratio(tn, tn + fp, fp + fn == 0)


def precision(pred: np.ndarray, target: np.ndarray) -> float:
    """Precision TP/(TP+FP)."""
    tp, fp, fn, _ = confusion(pred, target)
    return _ratio(tp, tp + fp, tp + fp + fn == 0)


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error of the 0/1 masks = (FP+FN)/N."""
    _, fp, fn, _ = confusion(pred, target)
    return (fp + fn) / np.asarray(pred).size


def psnr_from_mse(m: float, peak: float = PSNR_PEAK) -> float:
    """10·log10(peak²/mse) in dB; +inf when mse is 0."""
    return math.inf if m == 0 else 10.0 * math.log10(peak * peak / m)


def psnr(pred: np.ndarray, target: np.ndarray, peak: float = PSNR_PEAK) -> float:
    """PSNR of the 0/1 masks with seed 003's peak 255 (see module docstring)."""
    return psnr_from_mse(mse(pred, target), peak)


# ----------------------------------------------------------------------------- distances


def worst_distance(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Finite worst-case distance (mm): the image diagonal sqrt(Σ (n_i·s_i)²)."""
    s = _check_spacing(spacing, len(shape))
    return float(np.sqrt(np.sum((np.asarray(shape, dtype=np.float64) * s) ** 2)))


def surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels: ``mask XOR binary_erosion(mask)`` (face connectivity, border voxels count)."""
    m = _as_mask(mask)
    return m ^ ndimage.binary_erosion(m, border_value=0)


def _bbox(mask: np.ndarray, margin: int = 1) -> tuple[slice, ...]:
    """Bounding box of ``mask`` grown by ``margin`` voxels, clipped to the array."""
    idx = np.nonzero(mask)
    return tuple(
        slice(max(int(i.min()) - margin, 0), min(int(i.max()) + margin + 1, n)) for i, n in zip(idx, mask.shape)
    )


def _directed(src_surface: np.ndarray, dst_surface: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance (mm) of each ``src_surface`` voxel to the nearest ``dst_surface`` voxel."""
    dt = ndimage.distance_transform_edt(~dst_surface, sampling=spacing)
    return dt[src_surface]


def surface_distances(pred: np.ndarray, target: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm: ``(d(P→T), d(T→P))``.

    Both masks must be non-empty (callers handle empty masks by the module policy). The
    computation is restricted to the union's bounding box (plus one voxel), which is exact:
    every surface voxel of both masks lies inside it.
    """
    p, t = _as_mask(pred), _as_mask(target)
    _check_pair(p, t)
    s = _check_spacing(spacing, p.ndim)
    if not p.any() or not t.any():
        raise MetricInputError("surface_distances needs two non-empty masks")
    # Crop to the union's box + 1 voxel: exact, because the margin (or the image border, where
    # the box is clipped) is background for the erosion exactly as in the full array.
    box = _bbox(p | t)
    sp, st = surface(p[box]), surface(t[box])
    return _directed(sp, st, s), _directed(st, sp, s)


def _empty_case_distance(p: np.ndarray, t: np.ndarray, spacing: Sequence[float]) -> float | None:
    """0 if both masks are empty, the worst case if exactly one is, None if neither is."""
    pe, te = not p.any(), not t.any()
    if pe and te:
        return 0.0
    if pe or te:
        return worst_distance(p.shape, spacing)
    return None


def _pair_or_empty(
    pred: np.ndarray, target: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """The preamble of a distance metric: both masks checked, and the value the empty-mask policy
    gives (:func:`_empty_case_distance`; None when neither mask is empty)."""
    p, t = _as_mask(pred), _as_mask(target)
    _check_pair(p, t)
    return p, t, _empty_case_distance(p, t, spacing)


def hausdorff(pred: np.ndarray, target: np.ndarray, spacing: Sequence[float], percentile: float | None = None) -> float:
    """Symmetric Hausdorff distance (mm); with ``percentile`` the max of the two directed percentiles."""
    p, t, empty = _pair_or_empty(pred, target, spacing)
    if empty is not None:
        return empty
    d_pt, d_tp = surface_distances(p, t, spacing)
    if percentile is None:
        return float(max(d_pt.max(), d_tp.max()))
    return float(max(np.percentile(d_pt, percentile), np.percentile(d_tp, percentile)))


def hd95(pred: np.ndarray, target: np.ndarray, spacing: Sequence[float]) -> float:
    """95th-percentile Hausdorff distance (mm), MONAI convention (see module docstring)."""
    return hausdorff(pred, target, spacing, percentile=95.0)


def mean_surface_distance(pred: np.ndarray, target: np.ndarray, spacing: Sequence[float]) -> float:
    """Average symmetric surface distance (mm): mean of the pooled directed distances."""
    p, t, empty = _pair_or_empty(pred, target, spacing)
    if empty is not None:
        return empty
    d_pt, d_tp = surface_distances(p, t, spacing)
    return float(np.concatenate([d_pt, d_tp]).mean())


def _slices(ndim: int, slice_axis: int) -> int:
    if ndim == 2:
        return -1
    ax = slice_axis % ndim if -ndim <= slice_axis < ndim else None
    if ax is None:
        raise MetricInputError(f"slice_axis {slice_axis} is out of range for a {ndim}D array")
    return ax


def _slice_pairs(
    p: np.ndarray, t: np.ndarray, s: np.ndarray, slice_axis: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """2D (pred, target, in-plane spacing) of every slice where either mask is non-empty."""
    if p.ndim == 2:
        return [(p, t, s)] if (p.any() or t.any()) else []
    ax = _slices(3, slice_axis)
    s2 = np.delete(s, ax)
    pk, tk = np.moveaxis(p, ax, 0), np.moveaxis(t, ax, 0)
    return [(pk[k], tk[k], s2) for k in range(pk.shape[0]) if pk[k].any() or tk[k].any()]


def _skeleton_slices(
    pred: np.ndarray, target: np.ndarray, spacing: Sequence[float], slice_axis: int
) -> tuple[float, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """The preamble of every per-slice skeleton distance: the masks and spacing checked, then the
    whole array's :func:`worst_distance` (a slice missing one side scores it) and the slice pairs
    (:func:`_slice_pairs`)."""
    p, t = _as_mask(pred), _as_mask(target)
    _check_pair(p, t)
    s = _check_spacing(spacing, p.ndim)
    return worst_distance(p.shape, s), _slice_pairs(p, t, s, slice_axis)


def _skeleton_summary(
    distances: Callable[..., np.ndarray],
    summary: Callable[[np.ndarray], tuple[float, float]],
    pred: np.ndarray,
    target: np.ndarray,
    spacing: Sequence[float],
    slice_axis: int,
) -> tuple[float, float]:
    """A skeleton metric's (hd, md) pair: the empty-mask policy (both empty → 0, one empty → the worst
    case), else ``summary`` of the pooled ``distances``."""
    p, t, empty = _pair_or_empty(pred, target, spacing)
    if empty is not None:
        return empty, empty
    return summary(distances(p, t, spacing, slice_axis))


def _skeleton(mask2d: np.ndarray) -> np.ndarray:
    from skimage.morphology import skeletonize  # lazy: skimage import is slow

    if not mask2d.any():
        return mask2d
    box = _bbox(mask2d)  # exact: skeletonize treats the outside as background either way
    out = np.zeros_like(mask2d)
    out[box] = skeletonize(mask2d[box])
    return out


def zhang_suen(mask2d: np.ndarray) -> np.ndarray:
    """Zhang & Suen (1984) parallel thinning of a 2D mask, as SCT's ``Thinning.zhang_suen`` computes it.

    Two sub-iterations repeated until neither removes a pixel; a pixel P1 with 8-neighbours P2..P9
    (clockwise from the one at row − 1: P2 = [r−1, c], P3 = [r−1, c+1], ..., P9 = [r−1, c−1]) is
    removed when 2 ≤ ΣP ≤ 6, the ordered sequence P2..P9,P2 has exactly one 0→1 transition, and
    P2·P4·P6 = P4·P6·P8 = 0 (first) or P2·P4·P8 = P2·P6·P8 = 0 (second sub-iteration). Outside the
    array is background (SCT instead never removes pixels on its second/last row or column: the same
    result for masks away from the slice border). Orientation matters: rows are SCT's first axis.
    """
    im = np.pad(_as_mask(mask2d), 1).astype(np.uint8)
    rr, cc = np.nonzero(im)  # the foreground pixels: the only ones a sub-iteration can remove
    while True:
        changed = False
        for lut in _ZS_REMOVE:
            code = np.zeros(rr.shape, np.uint8)  # 8-bit neighbourhood code, bit i = P(i+2), before removal
            for bit, (dr, dc) in enumerate(_ZS_OFFSETS):
                code |= im[rr + dr, cc + dc] << bit
            remove = lut[code]
            if remove.any():
                im[rr[remove], cc[remove]] = 0
                rr, cc = rr[~remove], cc[~remove]
                changed = True
        if not changed:
            return im[1:-1, 1:-1].astype(bool)


def _zs_tables() -> tuple[np.ndarray, np.ndarray]:
    """Per 8-neighbour code (bit i = P(i+2)), whether each Zhang–Suen sub-iteration removes the pixel."""
    out = (np.zeros(256, bool), np.zeros(256, bool))
    for code in range(256):
        n = [(code >> i) & 1 for i in range(8)]  # P2 .. P9
        p2, p4, p6, p8 = n[0], n[2], n[4], n[6]
        ok = 2 <= sum(n) <= 6 and sum(n[i] == 0 and n[(i + 1) % 8] == 1 for i in range(8)) == 1
        out[0][code] = ok and p2 * p4 * p6 == 0 and p4 * p6 * p8 == 0
        out[1][code] = ok and p2 * p4 * p8 == 0 and p2 * p6 * p8 == 0
    return out


_ZS_REMOVE = _zs_tables()
_ZS_OFFSETS = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))  # P2 .. P9


def _thin(mask2d: np.ndarray) -> np.ndarray:
    if not mask2d.any():
        return mask2d
    box = _bbox(mask2d)  # exact: outside the box is background either way
    out = np.zeros_like(mask2d)
    out[box] = zhang_suen(mask2d[box])
    return out


def skeleton_distances(
    pred: np.ndarray, target: np.ndarray, spacing: Sequence[float], slice_axis: int = -1
) -> np.ndarray:
    """Skeleton-to-skeleton distances (mm) of both directions and all slices, pooled (SCT's definition).

    See ``skel_hd``/``skel_md`` in the module docstring: per slice, each skeleton pixel of either
    mask to the nearest skeleton pixel of the other; on a slice where only one skeleton exists its
    pixels get :func:`worst_distance` of the whole array. Zero distances are kept here.
    """
    worst, slices = _skeleton_slices(pred, target, spacing, slice_axis)
    out: list[np.ndarray] = []
    for p2, t2, s2 in slices:
        sp, st = _thin(p2), _thin(t2)
        if not (sp.any() and st.any()):
            out.append(np.full(int(np.count_nonzero(sp) + np.count_nonzero(st)), worst))
            continue
        box = _bbox(sp | st)
        out += [_directed(sp[box], st[box], s2), _directed(st[box], sp[box], s2)]
    return np.concatenate(out) if out else np.zeros(0)


def _hd_md(d: np.ndarray) -> tuple[float, float]:
    """(``skel_hd``, ``skel_md``) of pooled skeleton-to-skeleton distances (zeros left out of the median)."""
    nz = d[d > 0]
    return float(d.max()) if d.size else 0.0, float(np.median(nz)) if nz.size else 0.0


def _contour_hd_md(d: np.ndarray) -> tuple[float, float]:
    """(``skel_contour_hd``, ``skel_contour_md``) of pooled skeleton-to-contour distances."""
    return float(d.max()), float(np.median(d))


def skeleton_hd_md(
    pred: np.ndarray, target: np.ndarray, spacing: Sequence[float], slice_axis: int = -1
) -> tuple[float, float]:
    """(``skel_hd``, ``skel_md``) in mm, SCT's skeleton-against-skeleton definition, empty policy applied."""
    return _skeleton_summary(skeleton_distances, _hd_md, pred, target, spacing, slice_axis)


def skeleton_contour_distances(
    pred: np.ndarray, target: np.ndarray, spacing: Sequence[float], slice_axis: int = -1
) -> np.ndarray:
    """Per-slice distances (mm) from the predicted skeleton to the target's 2D contour, pooled.

    The ``skel_contour_*`` variant (module docstring). Skeleton pixels on a slice with an empty
    target get the worst case :func:`worst_distance` of the whole array. Returns an empty array if
    the prediction is empty.
    """
    worst, slices = _skeleton_slices(pred, target, spacing, slice_axis)
    out: list[np.ndarray] = []
    for p2, t2, s2 in slices:
        if not p2.any():
            continue
        skel = _skeleton(p2)
        if not skel.any():  # never seen with skimage, but keep the metric defined
            skel = p2
        if not t2.any():
            out.append(np.full(int(np.count_nonzero(skel)), worst))
            continue
        out.append(_directed(skel, surface(t2), s2))
    return np.concatenate(out) if out else np.zeros(0)


def skeleton_contour_hd_md(
    pred: np.ndarray, target: np.ndarray, spacing: Sequence[float], slice_axis: int = -1
) -> tuple[float, float]:
    """(``skel_contour_hd``, ``skel_contour_md``): max and median skeleton-to-contour distance (mm)."""
    return _skeleton_summary(skeleton_contour_distances, _contour_hd_md, pred, target, spacing, slice_axis)


# ----------------------------------------------------------------------------- per class / all


def binary_metrics(
    pred: np.ndarray, target: np.ndarray, spacing: Sequence[float], slice_axis: int = -1
) -> dict[str, float]:
    """All :data:`METRIC_NAMES` for one pair of binary masks (computed once, shared counts)."""
    p, t = _as_mask(pred), _as_mask(target)
    _check_pair(p, t)
    s = _check_spacing(spacing, p.ndim)
    tp, fp, fn, tn = confusion(p, t)
    both_empty = tp + fp + fn == 0
    d = _ratio(2 * tp, 2 * tp + fp + fn, both_empty)
    m = (fp + fn) / p.size
    out = {
        "dice": d,
        "jaccard": _ratio(tp, tp + fp + fn, both_empty),
        "conformity": conformity_from_dice(d),
        "tpr": _ratio(tp, tp + fn, both_empty),
        "tnr": _ratio(tn, tn + fp, fp + fn == 0),
        "precision": _ratio(tp, tp + fp, both_empty),
    }
    empty = _empty_case_distance(p, t, s)
    if empty is not None:
        out.update(
            hd=empty, hd95=empty, msd=empty, skel_hd=empty, skel_md=empty, skel_contour_hd=empty, skel_contour_md=empty
        )
    else:
        d_pt, d_tp = surface_distances(p, t, s)
        skel_contour_hd, skel_contour_md = _contour_hd_md(skeleton_contour_distances(p, t, s, slice_axis))
        skel_hd, skel_md = _hd_md(skeleton_distances(p, t, s, slice_axis))
        out.update(
            hd=float(max(d_pt.max(), d_tp.max())),
            hd95=float(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95))),
            msd=float(np.concatenate([d_pt, d_tp]).mean()),
            skel_hd=skel_hd,
            skel_md=skel_md,
            skel_contour_hd=skel_contour_hd,
            skel_contour_md=skel_contour_md,
        )
    out["mse"] = m
    out["psnr"] = psnr_from_mse(m)
    return {k: float(out[k]) for k in METRIC_NAMES}


def class_mask(labels: np.ndarray, values: int | Sequence[int]) -> np.ndarray:
    """Boolean mask of the voxels whose label is one of ``values``."""
    vals = [values] if np.isscalar(values) else list(values)
    if not vals:
        raise MetricInputError("a class must list at least one label value")
    for v in vals:
        if isinstance(v, bool) or not float(v).is_integer():
            raise MetricInputError(f"label value {v!r} is not an integer")
    return np.isin(labels, np.asarray(vals, dtype=np.int64))


def compute_metrics(
    pred: np.ndarray,
    target: np.ndarray,
    spacing: Sequence[float],
    classes: Mapping[str, int | Sequence[int]],
    *,
    slice_axis: int = -1,
) -> dict[str, float]:
    """Per-class metrics of two label maps as a flat ``{"<class>/<metric>": float}`` dict.

    ``pred``/``target``: integer label arrays of the same 2D/3D shape; ``spacing``: mm per axis;
    ``classes``: class name -> label value or values forming it; ``slice_axis``: axis across which
    the skeleton metrics are computed slice by slice (3D only). See the module docstring for the
    definitions and the empty-mask policy.
    """
    p = _check_labels(pred, "prediction")
    t = _check_labels(target, "target")
    _check_pair(p, t)
    s = _check_spacing(spacing, p.ndim)
    if not classes:
        raise MetricInputError("classes is empty: give at least one class name -> label value(s)")
    _slices(p.ndim, slice_axis)
    out: dict[str, float] = {}
    for name, values in classes.items():
        res = binary_metrics(class_mask(p, values), class_mask(t, values), s, slice_axis)
        out.update({f"{name}/{k}": v for k, v in res.items()})
    return out


# ----------------------------------------------------------------------------- aggregation


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def aggregate(results: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float | int]]:
    """Summarise per-case metric dicts: per numeric key the stats listed in the module docstring.

    Non-numeric values (e.g. a subject id string) are ignored; a key missing from some dicts is
    counted in ``n_missing``. NaN/inf values are never dropped from ``mean``/``std``.
    """
    rows = list(results)
    keys: list[str] = []
    for r in rows:
        for k, v in r.items():
            if _is_number(v) and k not in keys:
                keys.append(k)
    out: dict[str, dict[str, float | int]] = {}
    for k in keys:
        vals = np.array([float(r[k]) for r in rows if k in r and _is_number(r[k])], dtype=np.float64)
        fin = vals[np.isfinite(vals)]
        n = int(vals.size)
        with np.errstate(invalid="ignore", over="ignore"):
            out[k] = {
                "mean": float(np.mean(vals)) if n else math.nan,
                "std": float(np.std(vals, ddof=1)) if n > 1 else math.nan,
                "n": n,
                "n_finite": int(fin.size),
                "n_nan": int(np.count_nonzero(np.isnan(vals))),
                "n_posinf": int(np.count_nonzero(np.isposinf(vals))),
                "n_neginf": int(np.count_nonzero(np.isneginf(vals))),
                "n_missing": len(rows) - n,
                "mean_finite": float(np.mean(fin)) if fin.size else math.nan,
                "std_finite": float(np.std(fin, ddof=1)) if fin.size > 1 else math.nan,
                "median_finite": float(np.median(fin)) if fin.size else math.nan,
            }
    return out
