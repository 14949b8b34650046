"""Tests of evaluation.metrics against hand-made answers, brute force (cdist) and MONAI."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from core.errors import CordbenchError
from evaluation import metrics as M

# ----------------------------------------------------------------------------- helpers


def blob(rng: np.random.Generator, shape: tuple[int, ...], sigma: float = 2.5, thr: float = 0.05) -> np.ndarray:
    """Smooth random blobs (several components, some touching the image border)."""
    return ndimage.gaussian_filter(rng.normal(size=shape), sigma) > thr


def ref_surface(mask: np.ndarray) -> np.ndarray:
    """Independent surface: a mask voxel with a face neighbour outside the mask or the image."""
    m = np.pad(mask.astype(bool), 1, constant_values=False)
    inner = np.ones_like(m)
    for ax in range(m.ndim):
        inner &= np.roll(m, 1, ax) & np.roll(m, -1, ax)
    sl = tuple(slice(1, -1) for _ in range(mask.ndim))
    return mask.astype(bool) & ~inner[sl]


def ref_directed(a_surf: np.ndarray, b_surf: np.ndarray, spacing) -> np.ndarray:
    """Brute force: for each point of a_surf the nearest point of b_surf (mm), via cdist."""
    s = np.asarray(spacing, float)
    pa = np.argwhere(a_surf) * s
    pb = np.argwhere(b_surf) * s
    return cdist(pa, pb).min(axis=1)


def ref_distances(p: np.ndarray, t: np.ndarray, spacing) -> dict[str, float]:
    sp, st = ref_surface(p), ref_surface(t)
    d_pt, d_tp = ref_directed(sp, st, spacing), ref_directed(st, sp, spacing)
    return {
        "hd": max(d_pt.max(), d_tp.max()),
        "hd95": max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)),
        "msd": np.concatenate([d_pt, d_tp]).mean(),
    }


def squares(shape, lo, hi, shift_axis, k):
    """Two boxes [lo, hi) with the second shifted by k voxels along shift_axis."""
    a = np.zeros(shape, bool)
    a[tuple(slice(start, stop) for start, stop in zip(lo, hi))] = True
    b = np.roll(a, k, axis=shift_axis)
    return a, b


# ----------------------------------------------------------------------------- hand-made answers


@pytest.mark.parametrize("k", [1, 2, 4])
def test_shifted_squares_2d_isotropic(k):
    a, b = squares((40, 40), (10, 10), (22, 22), 0, k)
    assert M.hausdorff(a, b, (1.0, 1.0)) == pytest.approx(k)
    assert M.hausdorff(b, a, (1.0, 1.0)) == pytest.approx(k)


@pytest.mark.parametrize(
    "axis,k,spacing,expected",
    [
        (0, 2, (0.5, 3.0), 1.0),
        (1, 3, (0.5, 3.0), 9.0),
        (1, 1, (0.25, 0.7), 0.7),
    ],
)
def test_shifted_squares_2d_anisotropic(axis, k, spacing, expected):
    a, b = squares((40, 40), (10, 10), (25, 25), axis, k)
    assert M.hausdorff(a, b, spacing) == pytest.approx(expected)
    r = M.binary_metrics(a, b, spacing)
    assert r["hd"] == pytest.approx(expected)
    assert r["hd95"] <= r["hd"] + 1e-12


@pytest.mark.parametrize(
    "axis,k,spacing,expected",
    [
        (2, 1, (0.5, 0.5, 5.0), 5.0),
        (0, 2, (0.5, 0.5, 5.0), 1.0),
        (1, 3, (0.8, 1.2, 2.0), 3.6),
    ],
)
def test_shifted_cubes_3d_anisotropic(axis, k, spacing, expected):
    a, b = squares((24, 24, 16), (6, 6, 4), (16, 16, 12), axis, k)
    assert M.hausdorff(a, b, spacing) == pytest.approx(expected)


def test_identical_masks_zero_distance_and_perfect_overlap():
    a, _ = squares((30, 30, 8), (5, 5, 2), (20, 20, 6), 0, 0)
    r = M.binary_metrics(a, a, (0.5, 0.5, 5.0))
    for k in ("dice", "jaccard", "conformity", "tpr", "tnr", "precision"):
        assert r[k] == 1.0
    for k in ("hd", "hd95", "msd", "mse"):
        assert r[k] == 0.0
    assert r["psnr"] == math.inf


def test_overlap_counts_by_hand():
    # 10x10 image; target = 20 voxels, prediction = 15 voxels, 10 in common.
    t = np.zeros((10, 10), bool)
    t[0:2, :] = True  # 20 voxels
    p = np.zeros((10, 10), bool)
    p[1, :] = True  # 10 inside target
    p[5, 0:5] = True  # 5 outside
    tp, fp, fn, tn = 10, 5, 10, 75
    assert M.confusion(p, t) == (tp, fp, fn, tn)
    r = M.binary_metrics(p, t, (1.0, 1.0))
    assert r["dice"] == pytest.approx(2 * 10 / 35)
    assert r["jaccard"] == pytest.approx(10 / 25)
    assert r["tpr"] == pytest.approx(10 / 20)
    assert r["tnr"] == pytest.approx(75 / 80)
    assert r["precision"] == pytest.approx(10 / 15)
    assert r["mse"] == pytest.approx(15 / 100)
    d = 20 / 35
    assert r["conformity"] == pytest.approx((3 * d - 2) / d)
    assert r["psnr"] == pytest.approx(10 * math.log10(255**2 / 0.15))


def test_jaccard_and_conformity_relations_on_random_masks():
    rng = np.random.default_rng(3)
    for _ in range(5):
        p, t = blob(rng, (48, 48)), blob(rng, (48, 48))
        d = M.dice(p, t)
        assert M.jaccard(p, t) == pytest.approx(d / (2 - d))
        assert M.conformity(p, t) == pytest.approx((3 * d - 2) / d)
    assert M.conformity_from_dice(0.0) == -math.inf
    assert M.conformity_from_dice(2 / 3) == pytest.approx(0.0)
    assert M.conformity_from_dice(0.5) == pytest.approx(-1.0)


def test_psnr_reproduces_seed_003_pair():
    # seed 003 reports MSE 0.000425 with PSNR 81.8469 dB: 17 wrong pixels out of 200x200.
    t = np.zeros((200, 200), np.uint8)
    t[50:150, 50:150] = 1
    p = t.copy()
    p.reshape(-1)[:17] = 1  # 17 false positives in the corner rows
    assert M.mse(p, t) == pytest.approx(0.000425)
    assert M.psnr(p, t) == pytest.approx(81.8469, abs=1e-4)
    assert M.psnr_from_mse(0.0) == math.inf


# ----------------------------------------------------------------------------- brute force


@pytest.mark.parametrize(
    "shape,spacing",
    [
        ((22, 26), (1.0, 1.0)),
        ((24, 20), (0.5, 1.7)),
        ((14, 12, 8), (0.6, 0.9, 2.5)),
    ],
)
def test_distances_match_cdist_brute_force(shape, spacing):
    rng = np.random.default_rng(sum(shape))
    for _ in range(3):
        p, t = blob(rng, shape, 1.8), blob(rng, shape, 1.8)
        assert p.any() and t.any()
        assert np.array_equal(M.surface(p), ref_surface(p))
        ref = ref_distances(p, t, spacing)
        r = M.binary_metrics(p, t, spacing)
        for k in ("hd", "hd95", "msd"):
            assert r[k] == pytest.approx(ref[k], rel=1e-9, abs=1e-9), k
        d_pt, d_tp = M.surface_distances(p, t, spacing)
        assert np.sort(d_pt) == pytest.approx(np.sort(ref_directed(ref_surface(p), ref_surface(t), spacing)))
        assert np.sort(d_tp) == pytest.approx(np.sort(ref_directed(ref_surface(t), ref_surface(p), spacing)))


def test_hd95_is_max_of_directed_percentiles_not_pooled():
    # A small far-away spurious prediction: the pooled and the directed conventions differ.
    t = np.zeros((60, 60), bool)
    t[10:40, 10:40] = True
    p = t.copy()
    p[50:53, 50:53] = True
    sp, st = ref_surface(p), ref_surface(t)
    d_pt, d_tp = ref_directed(sp, st, (1, 1)), ref_directed(st, sp, (1, 1))
    directed = max(np.percentile(d_pt, 95), np.percentile(d_tp, 95))
    pooled = np.percentile(np.concatenate([d_pt, d_tp]), 95)
    assert directed != pytest.approx(pooled)
    assert M.hd95(p, t, (1, 1)) == pytest.approx(directed)


# ----------------------------------------------------------------------------- MONAI


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("shape,spacing", [((48, 40), (0.5, 1.3)), ((32, 28, 10), (0.8, 0.6, 3.0))])
def test_against_monai(shape, spacing):
    import monai.metrics as mm  # both are dependencies (setup.cfg): missing, the test fails (never skips)
    import torch

    rng = np.random.default_rng(11)
    for _ in range(3):
        p, t = blob(rng, shape), blob(rng, shape)
        P = torch.from_numpy(p)[None, None].float()
        T = torch.from_numpy(t)[None, None].float()
        r = M.binary_metrics(p, t, spacing)
        sp = list(spacing)
        assert r["hd"] == pytest.approx(mm.compute_hausdorff_distance(P, T, spacing=sp).item(), rel=1e-5)
        assert r["hd95"] == pytest.approx(
            mm.compute_hausdorff_distance(P, T, percentile=95, spacing=sp).item(), rel=1e-5
        )
        assert r["msd"] == pytest.approx(
            mm.compute_average_surface_distance(P, T, symmetric=True, spacing=sp).item(), rel=1e-5
        )
        dm = mm.DiceMetric(include_background=True, reduction="none")
        assert r["dice"] == pytest.approx(dm(P, T).item(), rel=1e-6)


# ----------------------------------------------------------------------------- skeleton metrics


def ref_skeleton_contour_distances(p: np.ndarray, t: np.ndarray, spacing, slice_axis: int = -1) -> np.ndarray:
    """Same definition, computed with cdist to an independently computed contour."""
    from skimage.morphology import skeletonize

    if p.ndim == 2:
        return ref_directed(skeletonize(p), ref_surface(t), spacing)
    ax = slice_axis % 3
    s2 = np.delete(np.asarray(spacing, float), ax)
    worst = M.worst_distance(p.shape, spacing)
    out = []
    for k in range(p.shape[ax]):
        p2, t2 = np.take(p, k, axis=ax), np.take(t, k, axis=ax)
        if not p2.any():
            continue
        sk = skeletonize(p2)
        out.append(ref_directed(sk, ref_surface(t2), s2) if t2.any() else np.full(sk.sum(), worst))
    return np.concatenate(out)


def test_skeleton_contour_of_thin_line_hand_made():
    # target: rows 10..20, cols 5..64; prediction: a 1-pixel line on row 17, cols 20..50
    # (its own skeleton). Every line pixel is 3 rows from the target's bottom contour row 20.
    t = np.zeros((30, 70), bool)
    t[10:21, 5:65] = True
    p = np.zeros_like(t)
    p[17, 20:51] = True
    hd, md = M.skeleton_contour_hd_md(p, t, (0.5, 0.5))
    assert (hd, md) == (pytest.approx(1.5), pytest.approx(1.5))
    # anisotropic: 3 rows x 2 mm = 6 mm (side contours are >= 15 cols x 0.5 = 7.5 mm away)
    hd, md = M.skeleton_contour_hd_md(p, t, (2.0, 0.5))
    assert (hd, md) == (pytest.approx(6.0), pytest.approx(6.0))


def test_skeleton_contour_median_and_max_hand_made():
    t = np.zeros((30, 90), bool)
    t[10:21, 5:85] = True
    p = np.zeros_like(t)
    p[17, 20:41] = True  # 21 px, 3 rows from row 20
    p[12, 50:60] = True  # 10 px, 2 rows from row 10
    hd, md = M.skeleton_contour_hd_md(p, t, (1.0, 1.0))
    assert hd == pytest.approx(3.0)
    assert md == pytest.approx(3.0)  # 21 of 31 distances are 3
    p[17, 30:41] = False  # now 10 px at 3 and 10 px at 2 -> median 2.5
    hd, md = M.skeleton_contour_hd_md(p, t, (1.0, 1.0))
    assert (hd, md) == (pytest.approx(3.0), pytest.approx(2.5))


def test_skeleton_contour_per_slice_3d_and_empty_target_slice():
    shape, spacing = (30, 70, 3), (0.5, 0.5, 4.0)
    t = np.zeros(shape, bool)
    p = np.zeros(shape, bool)
    t[10:21, 5:65, 0] = True
    p[17, 20:51, 0] = True  # slice 0: 31 px at 1.5 mm
    p[17, 20:30, 1] = True  # slice 1: target empty -> 10 px at the worst case
    t[10:21, 5:65, 2] = True  # slice 2: prediction empty -> no distances
    worst = M.worst_distance(shape, spacing)
    assert worst == pytest.approx(math.sqrt(15**2 + 35**2 + 12**2))
    d = M.skeleton_contour_distances(p, t, spacing)
    assert len(d) == 41
    assert np.count_nonzero(np.isclose(d, 1.5)) == 31
    assert np.count_nonzero(d == worst) == 10
    r = M.binary_metrics(p, t, spacing)
    assert r["skel_contour_hd"] == pytest.approx(worst)
    assert r["skel_contour_md"] == pytest.approx(1.5)
    # slice_axis: the same volume with the slice axis moved first gives the same values
    r0 = M.binary_metrics(np.moveaxis(p, 2, 0), np.moveaxis(t, 2, 0), (4.0, 0.5, 0.5), slice_axis=0)
    assert r0["skel_contour_hd"] == pytest.approx(r["skel_contour_hd"]) and r0["skel_contour_md"] == pytest.approx(
        r["skel_contour_md"]
    )


@pytest.mark.parametrize("shape,spacing", [((40, 44), (0.5, 0.7)), ((30, 32, 5), (0.5, 0.5, 5.0))])
def test_skeleton_contour_distances_match_brute_force(shape, spacing):
    rng = np.random.default_rng(7)
    for _ in range(3):
        p, t = blob(rng, shape, 2.5), blob(rng, shape, 2.5)
        d = M.skeleton_contour_distances(p, t, spacing)
        ref = ref_skeleton_contour_distances(p, t, spacing)
        assert np.sort(d) == pytest.approx(np.sort(ref))
        r = M.binary_metrics(p, t, spacing)
        assert r["skel_contour_hd"] == pytest.approx(ref.max())
        assert r["skel_contour_md"] == pytest.approx(np.median(ref))


# ----------------------------------------------------------------------------- empty cases

DIST = ("hd", "hd95", "msd", "skel_hd", "skel_md", "skel_contour_hd", "skel_contour_md")


@pytest.mark.parametrize("shape,spacing", [((20, 24), (0.5, 0.8)), ((12, 14, 6), (0.5, 0.5, 5.0))])
def test_empty_cases(shape, spacing):
    empty = np.zeros(shape, bool)
    full = np.zeros(shape, bool)
    full[tuple(slice(2, 7) for _ in shape)] = True
    worst = M.worst_distance(shape, spacing)
    assert worst == pytest.approx(math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing))))

    both = M.binary_metrics(empty, empty, spacing)
    for k in ("dice", "jaccard", "conformity", "tpr", "tnr", "precision"):
        assert both[k] == 1.0, k
    for k in DIST + ("mse",):
        assert both[k] == 0.0, k
    assert both["psnr"] == math.inf

    miss = M.binary_metrics(empty, full, spacing)  # empty prediction, non-empty target
    for k in ("dice", "jaccard", "tpr", "precision"):
        assert miss[k] == 0.0, k
    assert miss["tnr"] == 1.0
    for k in DIST:
        assert miss[k] == pytest.approx(worst), k
    assert miss["conformity"] == -math.inf

    extra = M.binary_metrics(full, empty, spacing)  # non-empty prediction, empty target
    for k in ("dice", "jaccard", "tpr", "precision"):
        assert extra[k] == 0.0, k
    assert extra["tnr"] < 1.0
    for k in DIST:
        assert extra[k] == pytest.approx(worst), k

    for r in (both, miss, extra):
        assert not any(math.isnan(v) for v in r.values())
        assert set(r) == set(M.METRIC_NAMES)
    # per-metric helpers follow the same policy
    assert M.dice(empty, full) == 0.0 and M.dice(empty, empty) == 1.0
    assert M.hausdorff(empty, full, spacing) == pytest.approx(worst)
    assert M.hd95(full, empty, spacing) == pytest.approx(worst)
    assert M.mean_surface_distance(empty, empty, spacing) == 0.0
    assert M.skeleton_hd_md(empty, full, spacing) == (pytest.approx(worst), pytest.approx(worst))
    assert M.skeleton_contour_hd_md(full, empty, spacing) == (pytest.approx(worst), pytest.approx(worst))


def test_target_filling_image_tnr_defined():
    full = np.ones((8, 8), bool)
    assert M.tnr(full, full) == 1.0  # TN+FP = 0 and no error
    p = full.copy()
    p[0, 0] = False
    assert M.tnr(p, full) == 0.0  # 0/0 with an error -> 0, never NaN
    assert M.binary_metrics(p, full, (1, 1))["tpr"] == pytest.approx(63 / 64)


# ----------------------------------------------------------------------------- compute_metrics


def test_compute_metrics_classes_and_keys():
    rng = np.random.default_rng(5)
    shape, spacing = (36, 40, 6), (0.5, 0.5, 5.0)
    # labels: 0 background, 1 white matter, 2 gray matter
    target = (blob(rng, shape, 2.5, 0.0).astype(np.int64) + blob(rng, shape, 2.0, 0.3)) * blob(rng, shape, 3, -0.5)
    pred = (blob(rng, shape, 2.5, 0.0).astype(np.int16) + blob(rng, shape, 2.0, 0.3)) * blob(rng, shape, 3, -0.5)
    classes = {"sc": [1, 2], "gm": 2, "wm": 1}
    res = M.compute_metrics(pred, target, spacing, classes)
    assert list(res) == [f"{c}/{m}" for c in classes for m in M.METRIC_NAMES]
    assert all(isinstance(v, float) for v in res.values())
    ref_sc = M.binary_metrics(pred > 0, target > 0, spacing)
    ref_gm = M.binary_metrics(pred == 2, target == 2, spacing)
    for m in M.METRIC_NAMES:
        assert res[f"sc/{m}"] == pytest.approx(ref_sc[m])
        assert res[f"gm/{m}"] == pytest.approx(ref_gm[m])
    # float label arrays with integer values are accepted
    res_f = M.compute_metrics(pred.astype(np.float64), target.astype(np.float32), spacing, {"gm": 2})
    assert res_f["gm/dice"] == pytest.approx(res["gm/dice"])
    # a class absent from both maps follows the empty policy
    assert M.compute_metrics(pred, target, spacing, {"csf": 7})["csf/dice"] == 1.0


@pytest.mark.parametrize(
    "kwargs,msg",
    [
        (dict(pred=np.zeros((4, 4), int), target=np.zeros((4, 5), int)), "shape"),
        (dict(spacing=(1.0,)), "spacing"),
        (dict(spacing=(1.0, -1.0)), "spacing"),
        (dict(pred=np.full((4, 4), 0.5)), "non-integer"),
        (dict(classes={}), "classes"),
        (dict(classes={"x": []}), "at least one"),
        (dict(pred=np.zeros((2, 2, 2, 2), int), target=np.zeros((2, 2, 2, 2), int), spacing=(1, 1, 1, 1)), "2D or 3D"),
    ],
)
def test_bad_input_raises_clear_error(kwargs, msg):
    args = dict(pred=np.zeros((4, 4), int), target=np.zeros((4, 4), int), spacing=(1.0, 1.0), classes={"a": 1})
    args.update(kwargs)
    with pytest.raises(M.MetricInputError, match=msg) as ei:
        M.compute_metrics(**args)
    assert isinstance(ei.value, CordbenchError) and isinstance(ei.value, ValueError)


# ----------------------------------------------------------------------------- aggregate


def test_aggregate_counts_non_finite_and_never_drops_them():
    rows = [
        {"subject": "sub-01", "gm/dice": 0.8, "gm/psnr": 60.0, "gm/conformity": 0.5},
        {"subject": "sub-02", "gm/dice": 0.6, "gm/psnr": math.inf, "gm/conformity": -math.inf},
        {"subject": "sub-03", "gm/dice": 0.7, "gm/psnr": 40.0, "gm/conformity": float("nan")},
        {"subject": "sub-04", "gm/dice": 0.9},
    ]
    agg = M.aggregate(rows)
    assert set(agg) == {"gm/dice", "gm/psnr", "gm/conformity"}
    d = agg["gm/dice"]
    assert d["n"] == 4 and d["n_finite"] == 4 and d["n_missing"] == 0
    assert d["mean"] == pytest.approx(0.75)
    assert d["std"] == pytest.approx(np.std([0.8, 0.6, 0.7, 0.9], ddof=1))
    p = agg["gm/psnr"]
    assert p["mean"] == math.inf and p["n_posinf"] == 1 and p["n_missing"] == 1 and p["n"] == 3
    assert p["mean_finite"] == pytest.approx(50.0) and p["n_finite"] == 2
    c = agg["gm/conformity"]
    assert math.isnan(c["mean"]) and c["n_nan"] == 1 and c["n_neginf"] == 1
    assert c["mean_finite"] == pytest.approx(0.5) and c["n_finite"] == 1
    assert math.isnan(c["std_finite"])  # n_finite < 2
    assert M.aggregate([]) == {}


def test_aggregate_of_compute_metrics_outputs():
    rng = np.random.default_rng(9)
    rows = []
    for _ in range(3):
        p = blob(rng, (30, 30)).astype(np.uint8)
        t = blob(rng, (30, 30)).astype(np.uint8)
        rows.append(M.compute_metrics(p, t, (0.5, 0.5), {"sc": 1}))
    agg = M.aggregate(rows)
    assert set(agg) == set(rows[0])
    assert agg["sc/hd"]["mean"] == pytest.approx(np.mean([r["sc/hd"] for r in rows]))
