"""Precision columns: every statistic against an independent recomputation from the per-image CSV.

The per-image table is what a trial's (or ``cordbench score``'s) ``precision.csv`` holds; the
independent side recomputes each column with plain pandas/numpy loops from that file.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from leaderboard import precision_stats as ps
from leaderboard.precision import column_name, entry_columns, pooled_images, read_cache
from leaderboard.precision_compare import compare_with_best
from leaderboard.precision_images import COLUMNS

LEVELS = ("C2", "C3", "C4", "C5", "C2-C5")
# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges; ICC(3,1) = 0.71 (their Table 4)
SHROUT_FLEISS = np.array(
    [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], dtype=float
)


def _icc31_by_hand(x: np.ndarray) -> float:
    """ICC(3,1) from the two-way ANOVA table written out term by term (Shrout & Fleiss 1979, Table 1)."""
    n, k = x.shape
    grand = x.sum() / (n * k)
    bms = sum(k * (x[i].mean() - grand) ** 2 for i in range(n)) / (n - 1)
    jss = sum(n * (x[:, j].mean() - grand) ** 2 for j in range(k))
    tss = sum((x[i, j] - grand) ** 2 for i in range(n) for j in range(k))
    ems = (tss - bms * (n - 1) - jss) / ((n - 1) * (k - 1))
    return (bms - ems) / (bms + (k - 1) * ems)


def test_icc_matches_shrout_fleiss_published_case():
    assert ps.icc_3_1(SHROUT_FLEISS) == pytest.approx(_icc31_by_hand(SHROUT_FLEISS), abs=1e-12)
    assert round(ps.icc_3_1(SHROUT_FLEISS), 2) == 0.71


def test_weighted_icc_equals_icc_of_duplicated_subjects():
    """A bootstrap resample is a vector of multiplicities: the weighted ICC is the ICC of the repeated rows."""
    w = np.array([[2, 0, 1, 1, 0, 2], [0, 3, 0, 1, 1, 1]], dtype=float)
    got = ps.icc_3_1(SHROUT_FLEISS, w)
    for row, value in zip(w, got):
        assert value == pytest.approx(_icc31_by_hand(np.repeat(SHROUT_FLEISS, row.astype(int), axis=0)), abs=1e-12)


def _images(rng: np.random.Generator, n_subjects: int = 9, noise: float = 1.5) -> pd.DataFrame:
    """A per-image table (precision.csv columns): 2 sessions × 2 contrasts per subject, 3 sites."""
    rows = []
    for s in range(n_subjects):
        true = rng.uniform(60, 90, len(LEVELS))
        for ses in ("ses-01", "ses-02"):
            for contrast, shift in (("T2w", 0.0), ("T2star", 2.0)):
                meas = true + shift + rng.normal(0, noise, len(LEVELS))
                rows.append(
                    {
                        "subject": f"sub-{s:02d}",
                        "session": ses,
                        "contrast": contrast,
                        "image": f"sub-{s:02d}_{ses}_{contrast}",
                        "kind": "SC",
                        "scope": "C2-C5 slices",
                        "n_slices": 40,
                        **dict(zip(LEVELS, meas)),
                        **{f"ref_{k}": v for k, v in zip(LEVELS, true)},
                        "note": "",
                    }
                )
    return pd.DataFrame(rows, columns=COLUMNS)


def _cov(v: pd.Series) -> float:
    return 100.0 * v.std(ddof=1) / v.mean()


def test_every_column_equals_an_independent_recomputation(tmp_path):
    rng = np.random.default_rng(4)
    path = tmp_path / "precision.csv"
    _images(rng).to_csv(path, index=False)
    df = read_cache(path)
    sites = pd.Series({f"sub-{s:02d}": ("a", "b", "c")[s % 3] for s in range(9)})
    col, _ = entry_columns("m", pooled_images([df]), sites, n_boot=500, seed=0)
    raw = pd.read_csv(path)
    for key in LEVELS:
        name = lambda m: column_name(m, key)  # noqa: E731
        by_sub = raw.groupby(["subject", "session"])[key].agg(_cov).groupby("subject").mean()
        assert col[name("cov_contrast")] == pytest.approx(by_sub.mean(), abs=1e-9)
        by_sub = raw.groupby(["subject", "contrast"])[key].agg(_cov).groupby("subject").mean()
        assert col[name("cov_session")] == pytest.approx(by_sub.mean(), abs=1e-9)
        iccs = []
        for _, g in raw.groupby("contrast"):
            table = g.pivot(index="subject", columns="session", values=key).to_numpy(float)
            iccs.append(_icc31_by_hand(table))
        assert col[name("icc_session")] == pytest.approx(np.mean(iccs), abs=1e-9)
        subj = raw.groupby("subject")[key].mean()
        site_means = subj.groupby(sites.reindex(subj.index)).mean()
        assert col[name("cov_site")] == pytest.approx(_cov(site_means), abs=1e-9)
        d = raw[key] - raw[f"ref_{key}"]
        assert col[name("ba_bias")] == pytest.approx(d.mean(), abs=1e-9)
        assert col[name("ba_loa_low")] == pytest.approx(d.mean() - 1.96 * d.std(ddof=1), abs=1e-9)
        assert col[name("ba_loa_high")] == pytest.approx(d.mean() + 1.96 * d.std(ddof=1), abs=1e-9)
        for m in ps.METRICS:
            lo, hi = col[f"{name(m)}_ci_low"], col[f"{name(m)}_ci_high"]
            assert lo <= hi and math.isfinite(lo), (key, m)


def test_cov_site_needs_two_sites_and_icc_two_subjects():
    df = _images(np.random.default_rng(0), n_subjects=1)
    rows = pd.DataFrame({"subject": df["subject"], "session": df["session"], "contrast": df["contrast"]})
    rows = rows.assign(value=df["C2-C5"], reference=df["ref_C2-C5"])
    est = ps.precision(rows, pd.Series({"sub-00": "a"}), n_boot=50, seed=0)
    assert math.isnan(est["cov_site"].value) and math.isnan(est["icc_session"].value)
    assert math.isfinite(est["cov_contrast"].value) and est["cov_contrast"].ci_low == est["cov_contrast"].ci_high


def test_paired_comparison_with_the_best():
    """A noisier entry is compared with the best on the subjects both measured: the paired CoV difference
    equals the mean of the per-subject differences, and a far noisier entry is labelled worse."""
    rng = np.random.default_rng(1)
    good = _images(rng, n_subjects=12, noise=0.5).assign(entry="good")
    bad = good.copy().assign(entry="bad")
    bad[list(LEVELS)] = bad[list(LEVELS)] * rng.uniform(0.85, 1.15, (len(bad), len(LEVELS)))
    bad = bad[bad["subject"] != "sub-11"]  # one subject missing: the intersection is used
    images = pd.concat([good, bad], ignore_index=True)
    sites = pd.Series({f"sub-{s:02d}": ("a", "b")[s % 2] for s in range(12)})
    cmp = compare_with_best(images, sites, n_boot=400, seed=0).set_index("entry")
    assert cmp.loc["good", "cov_contrast_vs_best"] == "best"
    assert cmp.loc["bad", "cov_contrast_vs_best"] == "worse"
    per = {
        e: g[g["subject"] != "sub-11"].groupby(["subject", "session"])["C2-C5"].agg(_cov).groupby("subject").mean()
        for e, g in images.groupby("entry")
    }
    assert cmp.loc["bad", "cov_contrast_diff"] == pytest.approx((per["bad"] - per["good"]).mean(), abs=1e-9)
    assert cmp.loc["bad", "ba_loa_vs_best"] in ("worse", "undetermined — n too small")
    assert set(cmp.loc["bad", [c for c in cmp.columns if c.endswith("_vs_best")]]) <= {
        "better",
        "tied",
        "worse",
        "undetermined — n too small",
        "n/a",
    }
