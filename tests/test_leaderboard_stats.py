"""Leaderboard statistics on synthetic per-subject tables: against scipy, hand cases and planted effects."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from core.errors import ConfigError, InputError
from leaderboard import stats
from leaderboard.table import build_leaderboard
from tests.support.planted_sweep import SUBJECTS, make_sweep


# ------------------------------------------------------------------------------ bootstrap CI
def test_bootstrap_ci_matches_scipy_percentile_bootstrap():
    rng = np.random.default_rng(1)
    x = rng.normal(0.8, 0.05, 20)
    lo, hi = stats.bootstrap_ci(x, n_boot=20000, seed=0)
    ref = sps.bootstrap(
        (x,), np.mean, n_resamples=20000, method="percentile", confidence_level=0.95, rng=np.random.default_rng(7)
    ).confidence_interval
    se = x.std(ddof=1) / math.sqrt(x.size)
    assert lo == pytest.approx(ref.low, abs=0.05 * se) and hi == pytest.approx(ref.high, abs=0.05 * se)
    # and close to the normal-theory interval for a symmetric sample of 20
    assert lo == pytest.approx(x.mean() - 1.96 * se, abs=0.25 * se)


def test_bootstrap_ci_hand_cases():
    assert stats.bootstrap_ci([0.7], n_boot=100) == (0.7, 0.7)
    lo, hi = stats.bootstrap_ci([0.5, 0.5, 0.5], n_boot=100)
    assert lo == hi == pytest.approx(0.5)
    assert all(math.isnan(v) for v in stats.bootstrap_ci([], n_boot=10))
    # two values a, b: resampled means are a, (a+b)/2, b with probabilities 1/4, 1/2, 1/4
    lo, hi = stats.bootstrap_ci([0.0, 1.0], n_boot=20000, seed=0)
    assert (lo, hi) == (0.0, 1.0)
    lo, hi = stats.bootstrap_ci([0.0, 1.0], n_boot=20000, seed=0, level=0.4)  # 30th / 70th percentiles
    assert (lo, hi) == (0.5, 0.5)


def test_bootstrap_is_reproducible_and_chunking_does_not_matter():
    x = np.random.default_rng(3).uniform(size=2500)  # forces several chunks of the index matrix
    assert stats.bootstrap_ci(x, 3000, seed=5) == stats.bootstrap_ci(x, 3000, seed=5)
    assert stats.bootstrap_ci(x, 3000, seed=5) != stats.bootstrap_ci(x, 3000, seed=6)


# ------------------------------------------------------------------------------ tests and Holm
def test_holm_hand_computed():
    # sorted 0.005, 0.01, 0.03, 0.04 → ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 → running max
    adj = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert adj == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    out = stats.holm([0.01, float("nan"), 0.02])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    assert stats.holm([]).size == 0


def test_wilcoxon_matches_scipy_and_edge_cases():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=15), rng.normal(size=15) + 0.3
    assert stats.wilcoxon_p(x, y) == sps.wilcoxon(x, y).pvalue
    assert stats.wilcoxon_p(x, x) == 1.0
    assert math.isnan(stats.wilcoxon_p(np.array([]), np.array([])))


def test_lower_is_better_metrics():
    assert stats.lower_is_better("hd95") and stats.lower_is_better("sc/msd") and stats.lower_is_better("csa_error")
    assert not stats.lower_is_better("dice") and not stats.lower_is_better("jaccard")


# ------------------------------------------------------------------------------ synthetic sweeps
def independent_table(root: Path, column: str = "sc/dice") -> dict[str, dict[str, float]]:
    """model -> subject -> mean over that model's trials, straight from the files."""
    res = pd.read_csv(root / "results.csv")
    out: dict[str, dict[str, list[float]]] = {}
    for _, r in res.iterrows():
        df = pd.read_csv(root / r["run_dir"] / "test_metrics.csv")
        for s, v in zip(df["subject"], df[column]):
            out.setdefault(r["model"], {}).setdefault(s, []).append(v)
    return {m: {s: float(np.mean(v)) for s, v in d.items()} for m, d in out.items()}


def test_planted_effects_are_ranked_and_tested(tmp_path):
    root = make_sweep(tmp_path, {"a": 0.0, "b": 0.02, "c": 0.0005, "d": -0.05})
    lb = build_leaderboard(root, n_boot=2000, cost=False)
    t = lb.table
    assert list(t["entry"]) == ["b", "a", "c", "d"] or list(t["entry"]) == ["b", "c", "a", "d"]
    ind = independent_table(root)
    pvals = {}
    for _, r in t.iloc[1:].iterrows():
        x = [ind[r["entry"]][s] for s in SUBJECTS]
        y = [ind["b"][s] for s in SUBJECTS]
        pvals[r["entry"]] = sps.wilcoxon(x, y).pvalue
        assert r["p_wilcoxon"] == pytest.approx(pvals[r["entry"]], rel=1e-12)
    # Holm by hand on the three comparisons
    ordered = sorted(pvals.items(), key=lambda kv: kv[1])
    running, expect = 0.0, {}
    for i, (e, p) in enumerate(ordered):
        running = max(running, min(1.0, (3 - i) * p))
        expect[e] = running
    for _, r in t.iloc[1:].iterrows():
        assert r["p_holm"] == pytest.approx(expect[r["entry"]], rel=1e-12)
        assert r["tied_with_best"] == (expect[r["entry"]] >= 0.05)
    assert not t["tied_with_best"].iloc[1:].any()  # a 0.02 effect with 0.004 noise over 16 subjects is clear
    for _, r in t.iterrows():
        assert r["mean"] == pytest.approx(np.mean(list(ind[r["entry"]].values())), abs=1e-12)
        assert r["n_trials"] == 2 and r["n_subjects"] == 16
        assert r["ci_low"] < r["mean"] < r["ci_high"]
    assert dict(zip(t["entry"], t["params"])) == {"a": 1000, "b": 1001, "c": 1002, "d": 1003}


def test_an_indistinguishable_entry_is_tied_with_best(tmp_path):
    root = make_sweep(tmp_path, {"a": 0.0, "b": 0.0002, "d": -0.05}, noise=0.01)
    t = build_leaderboard(root, n_boot=500, cost=False).table
    tied = dict(zip(t["entry"], t["tied_with_best"]))
    assert tied["a"] and tied["b"] and not tied["d"]


def test_pooling_averages_seeds_per_subject_before_testing(tmp_path):
    """Seeds are averaged per subject: n_subjects stays 16 and the test uses 16 pairs, not 32."""
    root = make_sweep(tmp_path, {"a": 0.0, "b": 0.01}, seeds=(0, 1, 2), noise=0.012)
    lb = build_leaderboard(root, n_boot=500, cost=False)
    assert set(lb.table["n_subjects"]) == {16} and set(lb.table["n_trials"]) == {3}
    ind = independent_table(root)
    x = [ind["a"][s] for s in SUBJECTS]
    y = [ind["b"][s] for s in SUBJECTS]
    p = sps.wilcoxon(x, y).pvalue
    assert 1e-3 < p < 0.5  # not saturated: the p-value depends on how seeds were pooled
    assert lb.table.set_index("entry").loc["a", "p_wilcoxon"] == pytest.approx(p, rel=1e-12)
    assert lb.table.set_index("entry").loc["a", "mean"] == pytest.approx(np.mean(x), abs=1e-12)
    sd = pd.read_csv(root / "results.csv")
    trial_means = [
        pd.read_csv(root / p / "test_metrics.csv")["sc/dice"].mean() for p in sd[sd["model"] == "a"]["run_dir"]
    ]
    assert lb.table.set_index("entry").loc["a", "trial_sd"] == pytest.approx(np.std(trial_means, ddof=1))


def test_pairs_use_only_subjects_both_entries_tested(tmp_path):
    root = make_sweep(tmp_path / "s1", {"a": 0.0}, subjects=SUBJECTS)
    other = make_sweep(tmp_path / "s2", {"b": 0.03}, subjects=SUBJECTS[:10])
    res = pd.concat(
        [
            pd.read_csv(root / "results.csv"),
            pd.read_csv(other / "results.csv").assign(
                trial_id=lambda d: "x" + d["trial_id"], run_dir=lambda d: "../s2/" + d["run_dir"]
            ),
        ]
    )
    res.to_csv(root / "results.csv", index=False)
    t = build_leaderboard(root, n_boot=500, cost=False).table.set_index("entry")
    ia, ib = independent_table(root)["a"], independent_table(other)["b"]
    x = [ia[s] for s in SUBJECTS[:10]]
    y = [ib[s] for s in SUBJECTS[:10]]
    assert t.loc["b", "n_subjects"] == 10 and t.loc["a", "n_subjects"] == 16
    assert t.loc["a", "p_wilcoxon"] == pytest.approx(sps.wilcoxon(x, y).pvalue, rel=1e-12)


def test_lower_is_better_metric_ranks_ascending(tmp_path):
    root = make_sweep(tmp_path, {"a": 0.0, "b": 0.03})
    t = build_leaderboard(root, metric="hd95", n_boot=200, cost=False).table
    assert list(t["entry"]) == ["b", "a"]  # higher Dice → lower hd95
    assert t.iloc[0]["mean"] < t.iloc[1]["mean"]


def test_by_config_and_ablation_groups(tmp_path):
    root = make_sweep(tmp_path, {"s:0": 0.0, "s:1": 0.01, "s:2": 0.02, "u:": -0.01}, knob="skip_connections")
    lb = build_leaderboard(root, by="config", n_boot=1000, cost=False)
    assert sorted(lb.table["entry"]) == [
        "s/tiny skip_connections=0",
        "s/tiny skip_connections=1",
        "s/tiny skip_connections=2",
        "u/tiny",
    ]
    ab = lb.ablations["skip_connections"]
    assert list(ab["skip_connections"]) == ["0", "1", "2"]
    assert (np.diff(ab["mean"]) > 0).all()
    by_entry = lb.table.set_index("entry")
    for k in (0, 1, 2):
        row = ab[ab["skip_connections"] == str(k)].iloc[0]
        ent = by_entry.loc[f"s/tiny skip_connections={k}"]
        assert row["mean"] == pytest.approx(ent["mean"]) and row["n_trials"] == 2
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((ent["ci_low"], ent["ci_high"]))
    lbm = build_leaderboard(root, by="model", n_boot=200, cost=False)
    assert sorted(lbm.table["entry"]) == ["s", "u"]
    assert lbm.table.set_index("entry").loc["s", "n_trials"] == 6


def test_failed_and_unusable_trials_are_listed(tmp_path):
    extra = [
        {
            "trial_id": "bad1",
            "status": "ERROR",
            "error": "CUDA OOM",
            "model": "a",
            "preset": "tiny",
            "seed": 9,
            "data": "phantom",
            "task": "sc",
            "run_dir": "trials/bad1",
        },
        {
            "trial_id": "bad2",
            "status": "TERMINATED",
            "model": "a",
            "preset": "tiny",
            "seed": 8,
            "data": "phantom",
            "task": "sc",
            "run_dir": "trials/bad2",
        },
        {
            "trial_id": "asha",
            "status": "TERMINATED",
            "model": "b",
            "preset": "tiny",
            "seed": 7,
            "data": "phantom",
            "task": "sc",
            "run_dir": "trials/t002",
            "attempts": 1,
            "early_stopped": True,
        },
        {
            "trial_id": "run",
            "status": "RUNNING",
            "model": "b",
            "preset": "tiny",
            "seed": 6,
            "data": "phantom",
            "task": "sc",
            "run_dir": "trials/t003",
            "attempts": 2,
        },
    ]
    root = make_sweep(tmp_path, {"a": 0.0, "b": 0.01}, extra_rows=extra)
    lb = build_leaderboard(root, n_boot=200, cost=False)
    failed = lb.failed.set_index("trial_id")
    assert set(failed.index) == {"bad1", "bad2", "asha", "run"}
    assert "CUDA OOM" in failed.loc["bad1", "reason"] and "ERROR" in failed.loc["bad1", "reason"]
    assert "test_metrics.csv missing" in failed.loc["bad2", "reason"]
    assert "stopped early" in failed.loc["asha", "reason"] and "RUNNING" in failed.loc["run", "reason"]
    assert lb.meta["n_trials_failed"] == 4 and lb.meta["n_trials_ok"] == 4
    assert "attempts" not in lb.sweep.knobs and "early_stopped" not in lb.sweep.knobs
    assert set(lb.table["n_trials"]) == {2}


def test_bad_inputs_are_rejected_with_the_file_named(tmp_path):
    with pytest.raises(InputError, match="no results.csv"):
        build_leaderboard(tmp_path)
    (tmp_path / "results.csv").write_text("trial_id,model\n")
    with pytest.raises(InputError, match="results.csv: no trials"):
        build_leaderboard(tmp_path)
    root = make_sweep(tmp_path / "ok", {"a": 0.0})
    with pytest.raises(ConfigError, match="--by must be one of"):
        build_leaderboard(root, by="seed")
    with pytest.raises(InputError, match="no '<class>/psnr' column"):
        build_leaderboard(root, metric="psnr", cost=False)
    res = pd.read_csv(root / "results.csv")
    pd.concat([res, res.assign(trial_id="z" + res["trial_id"], task="gm")]).to_csv(root / "results.csv", index=False)
    with pytest.raises(ConfigError, match=r"mixes tasks \['gm', 'sc'\]: choose one with --task"):
        build_leaderboard(root, cost=False)
    assert len(build_leaderboard(root, task="sc", n_boot=50, cost=False).table) == 1


def test_non_finite_values_are_missing_and_an_empty_entry_ranks_last():
    long = pd.DataFrame(
        {
            "entry": ["a"] * 3 + ["b"] * 3 + ["c"] * 3,
            "subject": ["s1", "s2", "s3"] * 3,
            "value": [0.9, np.inf, 0.7, 0.8, 0.6, np.nan, np.nan, np.nan, -np.inf],
        }
    )
    wide = stats.per_subject_means(long)
    assert wide["a"].tolist()[0] == 0.9 and math.isnan(wide["a"]["s2"])
    ranked = {r.entry: r for r in stats.rank_entries(wide, n_boot=100)}
    assert ranked["a"].mean == pytest.approx(0.8) and ranked["a"].n_subjects == 2
    assert ranked["a"].rank == 1 and ranked["b"].rank == 2 and ranked["c"].rank == 3
    assert ranked["c"].n_subjects == 0 and not ranked["c"].tied_with_best
    # a vs b: paired on s1 only (s2 missing in a, s3 missing in b)
    assert ranked["b"].p_value == sps.wilcoxon([0.8], [0.9]).pvalue


# ------------------------------------------------------------------------------ honest labels
def _planted(n: int) -> pd.DataFrame:
    """Subjects × entries: ``best``; ``twin`` = best ± 0.002 (pairs of opposite differences, so any
    even number of subjects has equal means); ``worse`` = best − 0.05 ± 0.01."""
    rng = np.random.default_rng(11)
    base = rng.uniform(0.75, 0.90, 16)
    best = base + 0.05
    e = np.abs(rng.normal(0, 0.002, 8))
    twin = best + np.stack([e, -e], axis=1).ravel() - 1e-9
    worse = base + rng.normal(0, 0.01, 16)
    wide = pd.DataFrame({"best": best, "twin": twin, "worse": worse}, index=[f"s{i:02d}" for i in range(16)])
    return wide.iloc[:n]


def _exact_bootstrap_quantiles(d: np.ndarray) -> tuple[float, float]:
    """2.5 % / 97.5 % quantiles of the bootstrap mean over all n**n resamples (small n)."""
    import itertools

    means = np.sort([np.mean(c) for c in itertools.product(d, repeat=d.size)])
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


@pytest.mark.parametrize("n", [16, 6])
def test_labels_worse_tied_and_undetermined_on_planted_values(n):
    wide = _planted(n)
    ranked = {r.entry: r for r in stats.rank_entries(wide, n_boot=20000, seed=0)}
    assert ranked["best"].label == "best" and ranked["best"].rank == 1
    m = 2
    for name in ("twin", "worse"):
        r = ranked[name]
        x, y = wide[name].to_numpy(), wide["best"].to_numpy()
        d = x - y
        # p-values: scipy's exact two-sided Wilcoxon; Holm by hand over the two comparisons
        assert r.p_value == pytest.approx(sps.wilcoxon(x, y, method="exact").pvalue, rel=1e-12)
        assert r.n_pairs == n and r.p_min_holm == pytest.approx(min(1.0, m * 2.0 ** (1 - n)))
        # the paired difference and its CI against an independent bootstrap
        assert r.diff == pytest.approx(d.mean(), abs=1e-12)
        if n <= 6:
            lo, hi = _exact_bootstrap_quantiles(d)
        else:
            ci = sps.bootstrap(
                (d,), np.mean, n_resamples=20000, method="percentile", rng=np.random.default_rng(5)
            ).confidence_interval
            lo, hi = ci.low, ci.high
        se = d.std(ddof=1) / math.sqrt(n)
        assert r.diff_low == pytest.approx(lo, abs=0.06 * se) and r.diff_high == pytest.approx(hi, abs=0.06 * se)
        # effect sizes: Cohen's d_z and the matched-pairs rank-biserial correlation, by hand
        assert r.effect_dz == pytest.approx(d.mean() / d.std(ddof=1))
        ranks = sps.rankdata(np.abs(d))
        assert r.effect_rbc == pytest.approx((ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum())
    p_holm_worse = ranked["worse"].p_holm
    assert ranked["twin"].label == "tied" and ranked["twin"].tied_with_best
    assert -0.01 <= ranked["twin"].diff_low <= 0 <= ranked["twin"].diff_high <= 0.01
    assert ranked["worse"].diff_high < -0.03  # clearly worse: the CI excludes 0 by far
    if n == 16:
        assert ranked["worse"].label == "worse" and p_holm_worse < 0.05
    else:  # 2/2**6 = 0.031, ×2 comparisons = 0.0625 ≥ 0.05: no test can find it worse
        assert ranked["worse"].label == "undetermined — n too small" and p_holm_worse >= 0.05
        assert "smallest attainable Holm p 0.0625" in ranked["worse"].label_reason
    assert not ranked["worse"].tied_with_best


def test_comparison_label_rules_and_min_p():
    lab = lambda lo, hi, p=0.5, pmin=0.001: stats.comparison_label(lo, hi, p, pmin, -1.0, 0.05, 0.01)[0]  # noqa: E731
    assert lab(-0.005, 0.004) == "tied"
    assert lab(-0.008, -0.001, p=0.01) == "worse"  # excludes 0, significant: worse, even within ±δ
    assert lab(-0.008, -0.001, p=0.2) == "undetermined — n too small"
    assert lab(-0.05, 0.02) == "undetermined — n too small"  # contains 0 but too wide
    assert lab(-0.2, -0.1, p=0.125, pmin=0.125) == "undetermined — n too small"
    assert lab(float("nan"), float("nan")) == "n/a"
    # lower-is-better: a positive difference is worse
    assert stats.comparison_label(0.5, 2.0, 0.001, 1e-4, 1.0, 0.05, 0.01)[0] == "worse"
    assert stats.min_wilcoxon_p(6) == pytest.approx(1 / 32) and stats.min_holm_p(6, 4) == pytest.approx(0.125)
    assert stats.min_holm_p(3, 4) == 1.0
    # the exact minimum is what scipy returns when every difference has the same sign
    assert sps.wilcoxon(np.arange(1, 7) * 0.1, np.zeros(6), method="exact").pvalue == pytest.approx(1 / 32)


def test_leaderboard_report_labels_and_method_note_for_six_subjects(tmp_path):
    from leaderboard.report import to_markdown

    root = make_sweep(tmp_path, {"a": 0.0, "b": -0.05, "c": -0.3, "d": 0.0, "e": -0.1}, subjects=SUBJECTS[:6])
    lb = build_leaderboard(root, n_boot=2000, cost=False, morphometrics=False)
    t = lb.table.set_index("entry")
    for e in ("b", "c", "e"):
        assert t.loc[e, "label"] == "undetermined — n too small" and not t.loc[e, "tied_with_best"]
        assert t.loc[e, "diff_ci_high"] < 0
    md = to_markdown(lb)
    assert "≈ best" not in md
    assert "Minimum attainable p with n = 6 subjects: 2/2^6 = 0.0312" in md and "after Holm over 4" in md
    assert "0.125 ≥ α = 0.05: no entry can be found worse" in md
    assert set(t["n_seeds"]) == {2}
    lb16 = build_leaderboard(
        make_sweep(tmp_path / "n16", {"a": 0.0, "c": -0.3}), n_boot=500, cost=False, morphometrics=False
    )
    assert lb16.table.set_index("entry").loc["c", "label"] == "worse"
    with pytest.raises(ConfigError, match="--delta"):
        build_leaderboard(root, delta=-1, cost=False)


def test_quickstart_demo_holds_out_enough_subjects_to_separate_its_models():
    """`make demo`'s sweep: with its held-out subjects a Holm-adjusted exact Wilcoxon p can reach 0.05."""
    from data_modules.splits import random_split
    from sweeps.config import load_sweep

    repo = Path(__file__).resolve().parents[1]
    path = next(
        p for p in (repo / "configs" / "sweeps" / "quickstart.yaml", repo / "sweeps" / "quickstart.yaml") if p.exists()
    )
    sweep = load_sweep(path, validate_all=False)
    data = sweep.run_config["data"]
    n = int(data["phantom"]["subjects"])
    split = random_split(
        [f"sub-{i:02d}" for i in range(n)],
        data["split"]["val_fraction"],
        data["split"]["test_fraction"],
        data["split"]["seed"],
    )
    models = next(d for d in sweep.dims if d.key == "model.name").values
    assert len(split["test"]) >= 10
    assert stats.min_holm_p(len(split["test"]), len(models) - 1) < 0.05
