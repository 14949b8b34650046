"""Paired comparison of each entry's precision (pooled C2–C5 area) with the best entry's.

The best entry of a metric has the lowest ``cov_contrast``, ``cov_session``, ``cov_site``, |``ba_bias``|
and limits-of-agreement width (``ba_loa``: ``ba_loa_high − ba_loa_low``), the highest ``icc_session``.
Every other entry is compared with it on the subjects both measured:

* ``cov_contrast`` / ``cov_session`` (means of per-subject values): the mean paired difference with its
  bootstrap CI (:func:`leaderboard.stats.paired_difference`), the Wilcoxon signed-rank p with Holm's
  correction over the entries, labelled by :func:`leaderboard.stats.comparison_label` — exactly the
  Dice column's rule;
* ``icc_session``, ``cov_site``, ``ba_bias``, ``ba_loa`` (statistics of the whole sample): the
  difference of the two statistics with a percentile CI from the **same** subject resamples for both
  (paired bootstrap); "tied" when the CI contains 0 and lies within ±δ, "worse" / "better" when it
  excludes 0, otherwise "undetermined". No rank test exists for these: the CI alone decides.

Margins δ (:data:`DELTA`): 0.5 CoV percentage points, 0.02 ICC, 0.5 mm² for the bias and LoA width.
Columns ``<metric>_vs_best``, ``<metric>_vs_best_reason``, ``<metric>_diff``, ``<metric>_diff_ci_low``,
``<metric>_diff_ci_high`` (``gm_`` prefix for the GM area).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis.image_areas import POOLED
from leaderboard import precision_stats as ps
from leaderboard import stats

COMPARED = ("cov_contrast", "cov_session", "icc_session", "cov_site", "ba_bias", "ba_loa")
DELTA = {"cov_contrast": 0.5, "cov_session": 0.5, "icc_session": 0.02, "cov_site": 0.5, "ba_bias": 0.5, "ba_loa": 0.5}
HIGHER_BETTER = frozenset({"icc_session"})
BETTER = "better"


def _bootstrap_stat(metric: str, rows: pd.DataFrame, sites: pd.Series, subjects: list[str], n_boot: int, seed: int):
    """``(point, replicates)`` of a whole-sample statistic on ``subjects`` (same resamples for every entry)."""
    rows = rows[rows["subject"].isin(subjects)]
    if metric == "icc_session":
        e = ps.icc_session(rows, ps.subject_weights(subjects, n_boot, seed))
        return e.value, e.boot
    if metric == "cov_site":
        e = ps.cov_site(rows, sites, ps.subject_weights(subjects, n_boot, seed, strata=sites))
        return e.value, e.boot
    ba = ps.bland_altman(rows, ps.subject_weights(subjects, n_boot, seed))
    if metric == "ba_bias":
        return abs(ba["ba_bias"].value), np.abs(ba["ba_bias"].boot)
    lo, hi = ba["ba_loa_low"], ba["ba_loa_high"]
    return hi.value - lo.value, hi.boot - lo.boot


def _point(metric: str, rows: pd.DataFrame, sites: pd.Series, n_boot: int, seed: int) -> float:
    if metric in ps.PER_SUBJECT:
        return float(ps.subject_cov(rows, metric.split("_")[1]).mean())
    subjects = sorted(rows["subject"].unique())
    return _bootstrap_stat(metric, rows, sites, subjects, 1, seed)[0]


def _label_ci(lo: float, hi: float, metric: str) -> tuple[str, str]:
    delta = DELTA[metric]
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return stats.NO_DATA, "undefined on the subjects in common with the best"
    if lo <= 0 <= hi and -delta <= lo and hi <= delta:
        return stats.TIED, f"CI of the difference within ±{delta:g}"
    worse_sign = -1.0 if metric in HIGHER_BETTER else 1.0
    if (worse_sign > 0 and lo > 0) or (worse_sign < 0 and hi < 0):
        return stats.WORSE, "bootstrap CI of the difference excludes 0 (worse side)"
    if not lo <= 0 <= hi:
        return BETTER, "bootstrap CI of the difference excludes 0 (better side)"
    return stats.UNDETERMINED, f"CI of the difference contains 0 but exceeds ±{delta:g}"


def _compare_metric(
    metric: str, by_entry: dict[str, pd.DataFrame], sites: pd.Series, n_boot: int, seed: int, alpha: float
) -> dict[str, dict[str, Any]]:
    points = {e: _point(metric, r, sites, n_boot, seed) for e, r in by_entry.items()}
    finite = {e: p for e, p in points.items() if math.isfinite(p)}
    if len(finite) < 2:
        return {}
    sign = -1.0 if metric in HIGHER_BETTER else 1.0
    best = min(finite, key=lambda e: (sign * finite[e], str(e)))
    out: dict[str, dict[str, Any]] = {best: {"label": stats.BEST, "reason": "best value", "diff": 0.0}}
    others = [e for e in by_entry if e != best]
    if metric in ps.PER_SUBJECT:
        across = metric.split("_")[1]
        per = {e: ps.subject_cov(r, across) for e, r in by_entry.items()}
        pairs = {e: stats.paired(per[e], per[best]) for e in others}
        raw = {e: stats.wilcoxon_p(*pairs[e]) for e in others}
        adj = dict(zip(others, stats.holm([raw[e] for e in others])))
        m = sum(1 for e in others if math.isfinite(raw[e]))
        for e in others:
            x, y = pairs[e]
            d, lo, hi = stats.paired_difference(x, y, n_boot=n_boot, seed=seed)
            label, why = stats.comparison_label(
                lo, hi, float(adj[e]), stats.min_holm_p(x.size, m), 1.0, alpha=alpha, delta=DELTA[metric]
            )
            out[e] = {"label": label, "reason": why, "diff": d, "diff_ci_low": lo, "diff_ci_high": hi}
        return out
    best_subjects = set(by_entry[best]["subject"])
    for e in others:
        common = sorted(best_subjects & set(by_entry[e]["subject"]))
        pe, be = _bootstrap_stat(metric, by_entry[e], sites, common, n_boot, seed)
        pb, bb = _bootstrap_stat(metric, by_entry[best], sites, common, n_boot, seed)
        diff = pe - pb
        boot = np.asarray(be, float) - np.asarray(bb, float)
        boot = boot[np.isfinite(boot)]
        lo, hi = np.quantile(boot, [0.025, 0.975]).tolist() if boot.size else (math.nan, math.nan)
        label, why = _label_ci(float(lo), float(hi), metric)
        out[e] = {"label": label, "reason": why, "diff": diff, "diff_ci_low": float(lo), "diff_ci_high": float(hi)}
    return out


def compare_with_best(
    images: pd.DataFrame, sites: pd.Series, n_boot: int = 10000, seed: int = 0, alpha: float = 0.05
) -> pd.DataFrame:
    """One row per entry with the comparison columns of every metric of :data:`COMPARED` (pooled area)."""
    from leaderboard.precision_stats import column_name, measurement

    rows: dict[str, dict[str, Any]] = {e: {"entry": e} for e in images["entry"].drop_duplicates()}
    for kind in sorted(set(images["kind"])):
        by_entry = {e: measurement(g, POOLED, kind) for e, g in images.groupby("entry", sort=False)}
        by_entry = {e: r[np.isfinite(r["value"].to_numpy(float))] for e, r in by_entry.items()}
        for metric in COMPARED:
            name = column_name(metric, POOLED, kind)
            for e, res in _compare_metric(metric, by_entry, sites, n_boot, seed, alpha).items():
                rows[e].update(
                    {
                        f"{name}_vs_best": res["label"],
                        f"{name}_vs_best_reason": res["reason"],
                        f"{name}_diff": res["diff"],
                        f"{name}_diff_ci_low": res.get("diff_ci_low", math.nan),
                        f"{name}_diff_ci_high": res.get("diff_ci_high", math.nan),
                    }
                )
    return pd.DataFrame(list(rows.values()))
