"""Skeleton metrics as SCT's ``sct_compute_hausdorff_distance`` defines them: exact cases and a reference.

The reference below is written from SCT's code independently of ``evaluation.metrics``:
Zhang–Suen thinning pixel by pixel (Python loops over the 1984 conditions), brute-force pairwise
distances per slice (``cdist``), per-slice Hausdorff ``max(h1, h2)``, and the median of the
non-zero distances.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from evaluation import metrics as M

PLANE = np.zeros((3, 3, 3), bool)
PLANE[:, :, 1] = ndimage.generate_binary_structure(2, 1)


def ref_thin(img: np.ndarray) -> np.ndarray:
    im = np.pad(np.asarray(img, bool).astype(int), 1)
    while True:
        changed = False
        for step in (0, 1):
            remove = []
            for x, y in np.argwhere(im):
                n = [
                    im[x - 1, y],
                    im[x - 1, y + 1],
                    im[x, y + 1],
                    im[x + 1, y + 1],
                    im[x + 1, y],
                    im[x + 1, y - 1],
                    im[x, y - 1],
                    im[x - 1, y - 1],
                ]
                p2, _, p4, _, p6, _, p8, _ = n
                a = sum(n[i] == 0 and n[(i + 1) % 8] == 1 for i in range(8))
                c = (
                    (p2 * p4 * p6 == 0 and p4 * p6 * p8 == 0)
                    if step == 0
                    else (p2 * p4 * p8 == 0 and p2 * p6 * p8 == 0)
                )
                if 2 <= sum(n) <= 6 and a == 1 and c:
                    remove.append((x, y))
            for x, y in remove:
                im[x, y] = 0
            changed |= bool(remove)
        if not changed:
            return im[1:-1, 1:-1].astype(bool)


def ref_skeleton(p: np.ndarray, t: np.ndarray, spacing, slice_axis: int = -1) -> tuple[float, float]:
    """(max over slices of H, median of the non-zero directed distances) per SCT."""
    if p.ndim == 2:
        p, t, spacing, slice_axis = p[..., None], t[..., None], (*spacing, 1.0), -1
    ax = slice_axis % 3
    s2 = np.delete(np.asarray(spacing, float), ax)
    hs, dists = [], []
    for k in range(p.shape[ax]):
        a, b = ref_thin(np.take(p, k, axis=ax)), ref_thin(np.take(t, k, axis=ax))
        if not a.any() and not b.any():
            continue
        pa, pb = np.argwhere(a) * s2, np.argwhere(b) * s2
        d = cdist(pa, pb)
        h1, h2 = d.min(axis=1), d.min(axis=0)
        hs.append(max(h1.max(), h2.max()))
        dists += [h1[h1 > 0], h2[h2 > 0]]
    nz = np.concatenate(dists)
    return max(hs), float(np.median(nz)) if nz.size else 0.0


def _gm_slice() -> np.ndarray:
    """An H-shaped grey-matter-like mask (two horns and a commissure), 1–3 px thick."""
    m = np.zeros((40, 44), bool)
    m[8:32, 10:13] = True  # left horn
    m[8:32, 30:33] = True  # right horn
    m[18:21, 13:30] = True  # commissure
    m[8:12, 8:10] = m[28:32, 33:36] = True
    return m


def test_thinning_matches_the_pixel_loop_reference():
    rng = np.random.default_rng(0)
    for _ in range(6):
        m = ndimage.gaussian_filter(rng.normal(size=(36, 40)), 2.5) > 0.05
        np.testing.assert_array_equal(M.zhang_suen(m), ref_thin(m))
    np.testing.assert_array_equal(M.zhang_suen(_gm_slice()), ref_thin(_gm_slice()))


def test_perfect_mask_scores_zero():
    m = _gm_slice()
    assert M.skeleton_hd_md(m, m, (0.5, 0.5)) == (0.0, 0.0)
    r = M.binary_metrics(np.stack([m, m], -1), np.stack([m, m], -1), (0.5, 0.5, 5.0))
    assert r["skel_hd"] == 0.0 and r["skel_md"] == 0.0
    assert r["skel_contour_md"] > 0  # the old skeleton-to-contour variant does not


@pytest.mark.parametrize("spacing", [(0.5, 0.5), (0.3, 0.7)])
def test_shift_by_one_pixel_scores_that_pixel(spacing):
    t = np.zeros((30, 50), bool)
    t[10:15, 5:45] = True  # a bar: its skeleton is a horizontal line
    p = np.roll(t, 1, axis=0)  # shifted one row (perpendicular to the skeleton)
    hd, md = M.skeleton_hd_md(p, t, spacing)
    assert hd == pytest.approx(spacing[0]) and md == pytest.approx(spacing[0])
    assert (hd, md) == pytest.approx(ref_skeleton(p, t, spacing))


def test_dilated_gm_is_not_zero(sct_data: Path):
    """The real t2s GM mask against itself dilated by one in-plane pixel (Dice 0.67)."""
    gm = np.asanyarray(nib.load(sct_data / "t2s" / "t2s_gmseg_manual.nii.gz").dataobj) > 0
    dil = ndimage.binary_dilation(gm, PLANE)
    spacing = (0.5, 0.5, 7.5)
    r = M.binary_metrics(dil, gm, spacing)
    assert r["dice"] == pytest.approx(2 / 3, abs=0.05)
    assert r["skel_md"] > 0 and r["skel_hd"] > 0
    assert (r["skel_hd"], r["skel_md"]) == pytest.approx(ref_skeleton(dil, gm, spacing))
    perfect = M.binary_metrics(gm, gm, spacing)
    assert perfect["skel_hd"] == perfect["skel_md"] == 0.0


@pytest.mark.parametrize(
    "shape,spacing,axis",
    [((36, 40), (0.5, 0.5), -1), ((30, 32, 4), (0.5, 0.5, 5.0), -1), ((4, 30, 32), (5.0, 0.4, 0.6), 0)],
)
def test_equals_the_independent_reference(shape, spacing, axis):
    rng = np.random.default_rng(3)
    for _ in range(3):
        p = ndimage.gaussian_filter(rng.normal(size=shape), 2.5) > 0.05
        t = ndimage.binary_dilation(p, iterations=1) & (ndimage.gaussian_filter(rng.normal(size=shape), 3) > -0.3)
        got = M.skeleton_hd_md(p, t, spacing, slice_axis=axis)
        assert got == pytest.approx(ref_skeleton(p, t, spacing, axis))
        r = M.binary_metrics(p, t, spacing, slice_axis=axis)
        assert (r["skel_hd"], r["skel_md"]) == pytest.approx(got)


def test_slice_with_one_empty_skeleton_gets_the_worst_case():
    p = np.zeros((20, 20, 2), bool)
    t = np.zeros_like(p)
    p[5:10, 5:10, :] = True
    t[5:10, 5:10, 0] = True  # slice 1: target empty
    worst = M.worst_distance(p.shape, (0.5, 0.5, 2.0))
    d = M.skeleton_distances(p, t, (0.5, 0.5, 2.0))
    assert d.max() == pytest.approx(worst) and np.count_nonzero(d == worst) == M.zhang_suen(p[:, :, 1]).sum()


def test_every_skeleton_metric_takes_its_inputs_through_one_preamble(monkeypatch):
    """Both skeleton distances (and through them the (hd, md) functions and ``binary_metrics``) get their
    checked masks, worst case and slices from ``_skeleton_slices``; the (hd, md) pairs share one
    empty-mask policy and reject a bad input alike."""
    seen: list[tuple[int, ...]] = []
    real = M._skeleton_slices

    def spy(pred, target, spacing, slice_axis):
        seen.append(np.shape(pred))
        return real(pred, target, spacing, slice_axis)

    monkeypatch.setattr(M, "_skeleton_slices", spy)
    p = np.zeros((12, 12, 2), bool)
    p[3:8, 3:8, :] = True
    t = np.roll(p, 1, axis=0)
    spacing = (0.5, 0.5, 2.0)
    for f in (M.skeleton_distances, M.skeleton_contour_distances, M.skeleton_hd_md, M.skeleton_contour_hd_md):
        f(p, t, spacing)
    M.binary_metrics(p, t, spacing)
    assert seen == [p.shape] * 6  # 4 functions, and binary_metrics asks for both distances

    empty, worst = np.zeros_like(p), M.worst_distance(p.shape, spacing)
    for f in (M.skeleton_hd_md, M.skeleton_contour_hd_md):
        assert f(empty, empty, spacing) == (0.0, 0.0) and f(p, empty, spacing) == (worst, worst)
        with pytest.raises(M.MetricInputError, match="differs from target shape"):
            f(p, t[:, :, :1], spacing)
    for f in (M.skeleton_distances, M.skeleton_contour_distances):
        with pytest.raises(M.MetricInputError, match="has 2 values for a 3D array"):
            f(p, t, (1.0, 1.0))
