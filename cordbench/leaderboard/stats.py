"""Statistics of the leaderboard: bootstrap CIs, paired Wilcoxon tests against the best, Holm.

Unit of analysis: the held-out **subject**. Every entry (model or configuration) gets one value
per subject — the mean of that subject's metric over all of the entry's trials (seeds, folds)
that tested it (:func:`per_subject_means`). Subjects are the independent draws from the
population; seed replicates of one subject are not, so concatenating them would count a
subject several times (pseudo-replication: a too-narrow CI) and would leave a paired test
without a one-to-one pairing. Averaging first keeps exactly one pair per subject for the
Wilcoxon test and makes the bootstrap resample what varies between studies: subjects.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

#: Metrics where a lower value is better (distances, errors); every other metric is higher-is-better.
LOWER_IS_BETTER = frozenset({"hd", "hd95", "msd", "assd", "skel_hd", "skel_md", "mse", "hausdorff",
                             "csa_error", "abs_error", "rmse", "mae", "vol_error", "rel_vol_error"})


def lower_is_better(metric: str) -> bool:
    """True for distance/error metrics (``hd95``, ``msd``, ``mse``, …)."""
    name = metric.split("/")[-1].lower()
    return name in LOWER_IS_BETTER or name.endswith(("_error", "_mm", "distance"))


def per_subject_means(long: pd.DataFrame, key: str = "entry") -> pd.DataFrame:
    """Wide table (subjects × entries) of each subject's metric averaged over an entry's trials.

    ``long`` has columns ``key``, ``subject`` and ``value`` (one row per trial and subject);
    non-finite values (NaN, ±inf: an undefined metric) are treated as missing.
    """
    values = long["value"].where(np.isfinite(long["value"].astype(float)))
    return long.assign(value=values).groupby([key, "subject"])["value"].mean().unstack(key)


def bootstrap_ci(values: Sequence[float], n_boot: int = 10000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean: resample the values with replacement ``n_boot`` times.

    The interval is the (1-level)/2 and (1+level)/2 quantiles (numpy's default linear
    interpolation) of the resampled means. One value gives a zero-width interval; none gives NaNs.
    """
    x = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if x.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // x.size)  # bound memory of the index matrix
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        means[start:stop] = x[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def paired(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Values of the subjects present (finite) in both series, aligned by subject."""
    both = pd.concat([a, b], axis=1, join="inner").dropna()
    return both.iloc[:, 0].to_numpy(float), both.iloc[:, 1].to_numpy(float)


def wilcoxon_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided paired Wilcoxon signed-rank p-value (``scipy.stats.wilcoxon`` defaults).

    All differences zero → 1.0 (identical results); no pairs → NaN.
    """
    from scipy.stats import wilcoxon

    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size == 0:
        return float("nan")
    if np.all(x - y == 0):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        return float(wilcoxon(x, y).pvalue)


def holm(pvalues: Iterable[float]) -> np.ndarray:
    """Holm–Bonferroni step-down adjusted p-values (NaNs stay NaN and are not counted).

    Sorted ascending, p_(i) is scaled by (m - i) for i = 0..m-1, made monotone by a running
    maximum, and capped at 1.
    """
    p = np.asarray(list(pvalues), dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


@dataclass(frozen=True)
class EntryStats:
    """Statistics of one leaderboard entry."""

    entry: str
    n_subjects: int
    mean: float
    ci_low: float
    ci_high: float
    p_value: float        # Wilcoxon vs the best (NaN for the best itself)
    p_holm: float         # Holm-adjusted over all comparisons with the best
    tied_with_best: bool  # the best itself, or p_holm >= alpha
    rank: int


def rank_entries(wide: pd.DataFrame, higher_is_better: bool = True, n_boot: int = 10000, seed: int = 0,
                 alpha: float = 0.05, level: float = 0.95) -> list[EntryStats]:
    """Mean, bootstrap CI, Wilcoxon vs best (Holm) and rank for each column of ``wide``.

    ``wide`` is subjects × entries (:func:`per_subject_means`). The best entry has the highest
    (or lowest) mean over its subjects; ranks are competition ranks by mean (1 = best). Each other
    entry is compared with the best on the subjects both have. Each entry's bootstrap uses the
    same seed, so results are reproducible and independent of column order.
    """
    means = {c: float(np.nanmean(wide[c].to_numpy(float))) if wide[c].notna().any() else float("nan")
             for c in wide.columns}
    sign = -1.0 if higher_is_better else 1.0
    order = sorted(wide.columns, key=lambda c: (np.isnan(means[c]), sign * means[c] if not np.isnan(means[c])
                                                else 0.0, str(c)))
    best = order[0]
    others = [c for c in order if c != best]
    raw = {c: wilcoxon_p(*paired(wide[c], wide[best])) for c in others}
    adj = dict(zip(others, holm([raw[c] for c in others])))
    out = []
    for c in order:
        vals = wide[c].dropna().to_numpy(float)
        lo, hi = bootstrap_ci(vals, n_boot=n_boot, seed=seed, level=level)
        if np.isnan(means[c]):
            rank = len(order)  # no usable value: last
        else:
            rank = 1 + sum(1 for o in order if not np.isnan(means[o]) and sign * means[o] < sign * means[c])
        p, ph = (float("nan"), float("nan")) if c == best else (raw[c], float(adj[c]))
        tied = c == best or (np.isfinite(ph) and ph >= alpha)
        out.append(EntryStats(str(c), int(vals.size), means[c], lo, hi, p, ph, bool(tied), rank))
    return out


def summarise_groups(long: pd.DataFrame, key: str, n_boot: int = 10000, seed: int = 0,
                     level: float = 0.95) -> pd.DataFrame:
    """Mean and bootstrap CI per value of ``key`` (ablation views), subjects averaged within a group.

    Returns columns ``key``, ``n_trials``, ``n_subjects``, ``mean``, ``ci_low``, ``ci_high``.
    """
    rows = []
    for value, grp in long.groupby(key, sort=False):
        subj = grp.groupby("subject")["value"].mean().dropna().to_numpy(float)
        lo, hi = bootstrap_ci(subj, n_boot=n_boot, seed=seed, level=level)
        rows.append({key: value, "n_trials": int(grp["trial_id"].nunique()), "n_subjects": int(subj.size),
                     "mean": float(subj.mean()) if subj.size else float("nan"), "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)


def trial_sd(long: pd.DataFrame, key: str = "entry") -> Mapping[str, float]:
    """Standard deviation (ddof=1) of trial-level means within each entry: the seed/fold spread."""
    trial_means = long.groupby([key, "trial_id"])["value"].mean()
    return {k: float(v.std(ddof=1)) if len(v) > 1 else float("nan") for k, v in trial_means.groupby(level=0)}
