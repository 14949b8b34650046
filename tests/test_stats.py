"""Cohort statistics against scipy and hand computations; planted correlations are recovered."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.stats import bh, comparison_table, correlate, correlation_table, fisher_ci, fisher_z_test, read_metrics
from core.errors import InputError


def _bivariate(rng, n, r):
    x = rng.standard_normal(n)
    y = r * x + math.sqrt(1 - r * r) * rng.standard_normal(n)
    return x, y


def test_correlate_equals_scipy_and_hand_ci():
    rng = np.random.default_rng(3)
    x, y = _bivariate(rng, 37, 0.45)
    c = correlate(x, y)
    ref = stats.pearsonr(x, y)
    assert c.n == 37 and c.r == pytest.approx(ref.statistic, abs=1e-12) and c.p == pytest.approx(ref.pvalue)
    lo, hi = ref.confidence_interval(0.95)  # scipy's default: Fisher transformation
    assert (c.ci_low, c.ci_high) == pytest.approx((lo, hi), abs=1e-10)
    z, se = math.atanh(c.r), 1 / math.sqrt(37 - 3)
    assert c.ci_low == pytest.approx(math.tanh(z - 1.959963984540054 * se), abs=1e-12)
    sp = stats.spearmanr(x, y)
    assert c.rho == pytest.approx(sp.statistic) and c.p_spearman == pytest.approx(sp.pvalue)
    lr = stats.linregress(x, y)
    assert c.slope == pytest.approx(lr.slope) and c.intercept == pytest.approx(lr.intercept)
    # hand Pearson
    xm, ym = x - x.mean(), y - y.mean()
    assert c.r == pytest.approx((xm @ ym) / math.sqrt((xm @ xm) * (ym @ ym)), abs=1e-12)


def test_correlate_drops_nan_and_small_n():
    c = correlate([1, 2, np.nan, 4, 5, 7], [2, 1, 3, np.nan, 6, 8])
    assert c.n == 4
    c3 = correlate([1, 2, 3], [3, 1, 2])
    assert c3.n == 3 and np.isnan(c3.r) and np.isnan(c3.ci_low)
    assert np.isnan(fisher_ci(0.5, 3)[0])


def test_fisher_z_test_hand():
    z, p = fisher_z_test(0.6, 60, 0.1, 60)
    zh = (math.atanh(0.6) - math.atanh(0.1)) / math.sqrt(1 / 57 + 1 / 57)
    assert z == pytest.approx(zh, abs=1e-12)
    assert p == pytest.approx(math.erfc(abs(zh) / math.sqrt(2)), rel=1e-10)
    z2, p2 = fisher_z_test(0.1, 40, 0.6, 80)
    assert z2 == pytest.approx((math.atanh(0.1) - math.atanh(0.6)) / math.sqrt(1 / 37 + 1 / 77))
    assert np.isnan(fisher_z_test(0.5, 3, 0.2, 50)[0])


def test_bh_hand_and_nan():
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.2, 0.001])
    q = bh(p)
    ok = p[np.isfinite(p)]
    m = ok.size
    order = np.argsort(ok)
    raw = ok[order] * m / np.arange(1, m + 1)
    hand = np.minimum.accumulate(raw[::-1])[::-1]
    expect = np.empty(m)
    expect[order] = np.minimum(hand, 1)
    assert np.isnan(q[2]) and np.allclose(q[np.isfinite(p)], expect)


def _cohort(seed=11, n_per_sex=60, r_m=0.6, r_f=0.1, levels=(2, 3, 4)):
    rng = np.random.default_rng(seed)
    rows = []
    for lv in levels:
        for sex, r in (("M", r_m), ("F", r_f)):
            x, y = _bivariate(rng, n_per_sex, r)
            for i in range(n_per_sex):
                rows.append(
                    {
                        "participant_id": f"sub-{sex}{i:03d}",
                        "VertLevel": lv,
                        "sex": sex,
                        "manufacturer": ["GE", "Philips", "Siemens"][i % 3],
                        "FA": 0.7 + 0.03 * x[i],
                        "SAC_CSA": 1.5 + 0.2 * y[i],
                    }
                )
    return pd.DataFrame(rows)


def test_planted_difference_is_found_and_cis_hold_truth():
    df = _cohort()
    corr = correlation_table(df, "FA", "SAC_CSA", ["sex", "manufacturer"], "VertLevel")
    comp = comparison_table(df, "FA", "SAC_CSA", ["sex"], "VertLevel")
    assert set(corr["level"]) == {"2", "3", "4"}
    assert len(corr) == 3 * (1 + 2 + 3)
    for _, r in corr[corr["by"] == "sex"].iterrows():
        planted = 0.6 if r["group"] == "M" else 0.1
        assert r["ci_low"] <= planted <= r["ci_high"], r.to_dict()
    assert (comp["p"] < 0.05).all() and len(comp) == 3
    assert np.allclose(corr["q_bh"], bh(corr["p"]))
    # the table's z equals a hand Fisher test on its own r and n
    row = comp.iloc[0]
    z, _ = fisher_z_test(row["r_a"], row["n_a"], row["r_b"], row["n_b"])
    assert row["z"] == pytest.approx(z)
    # manufacturer: 3 groups → 3 pairs per level
    assert len(comparison_table(df, "FA", "SAC_CSA", ["manufacturer"], "VertLevel")) == 9


def test_ci_coverage_and_z_test_size_by_simulation():
    """95% CIs cover the truth ~95% of the time; the z-test rejects ~5% under the null."""
    rng = np.random.default_rng(5)
    cover, reject = 0, 0
    trials = 600
    for _ in range(trials):
        x, y = _bivariate(rng, 50, 0.5)
        c = correlate(x, y)
        cover += c.ci_low <= 0.5 <= c.ci_high
        x2, y2 = _bivariate(rng, 50, 0.5)
        reject += fisher_z_test(c.r, 50, correlate(x2, y2).r, 50)[1] < 0.05
    assert 0.925 <= cover / trials <= 0.975
    assert 0.02 <= reject / trials <= 0.08


def test_missing_column_names_file(tmp_path):
    df = _cohort(levels=(2,))
    with pytest.raises(InputError, match="metrics.csv.*SAC"):
        correlation_table(df, "FA", "SAC", ["sex"], "VertLevel", source=str(tmp_path / "metrics.csv"))
    df.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(InputError, match="Level"):
        read_metrics(tmp_path / "m.csv", "Level")


def test_cli_stats_outputs(tmp_path):
    from cordbench.cli import main

    df = _cohort(levels=(2, 3))
    df.to_csv(tmp_path / "metrics.csv", index=False)
    out = tmp_path / "stats"
    rc = main(
        [
            "stats",
            str(tmp_path / "metrics.csv"),
            "--x",
            "FA",
            "--y",
            "SAC_CSA",
            "--by",
            "sex,manufacturer",
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    corr = pd.read_csv(out / "correlations.csv")
    comp = pd.read_csv(out / "comparisons.csv")
    assert {"level", "by", "group", "n", "r", "ci_low", "ci_high", "p", "rho", "p_spearman", "q_bh"} <= set(corr)
    assert len(comp) == 2 * (1 + 3)
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert "heatmap_SAC_CSA_vs_FA_by-sex.png" in pngs and "scatter_SAC_CSA_vs_FA_by-sex.png" in pngs
    assert all((out / "plots" / p).stat().st_size > 5000 for p in pngs)
    rc = main(["stats", str(tmp_path / "metrics.csv"), "--x", "FA", "--y", "nope", "-o", str(out)])
    assert rc == 2
