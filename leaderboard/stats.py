"""Statistics of the leaderboard: bootstrap CIs, paired Wilcoxon tests against the best, Holm.

Unit of analysis: the held-out **subject**. Every entry (model or configuration) gets one value
per subject — the mean of that subject's metric over all of the entry's trials (seeds, folds)
that tested it (:func:`per_subject_means`). Subjects are the independent draws from the
population; seed replicates of one subject are not, so concatenating them would count a
subject several times (pseudo-replication: a too-narrow CI) and would leave a paired test
without a one-to-one pairing. Averaging first keeps exactly one pair per subject for the
Wilcoxon test and makes the bootstrap resample what varies between studies: subjects.

Each entry is compared with the best on the subjects both tested: the mean **paired difference**
(entry − best) with its percentile bootstrap CI over subjects, the paired effect sizes (Cohen's
d_z, matched-pairs rank-biserial r), the two-sided Wilcoxon signed-rank p (exact for small n) and
its Holm adjustment over the comparisons. The label (:func:`comparison_label`) says what the data
can support: "tied" (CI of the difference within ±δ), "worse" (Holm p < α and the CI excludes 0)
or "undetermined — n too small" (with n pairs no exact two-sided p is below 2/2ⁿ, so with m
comparisons no Holm-adjusted p is below m·2/2ⁿ; or the CI is too wide to call it).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.bootstrap import bootstrap_ci  # the CI of the leaderboard and the model cards

#: Metrics where a lower value is better (distances, errors); every other metric is higher-is-better.
LOWER_IS_BETTER = frozenset(
    {
        "hd",
        "hd95",
        "msd",
        "assd",
        "skel_hd",
        "skel_md",
        "skel_contour_hd",
        "skel_contour_md",
        "mse",
        "hausdorff",
        "csa_error",
        "abs_error",
        "rmse",
        "mae",
        "vol_error",
        "rel_vol_error",
    }
)


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


def paired(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Values of the subjects present (finite) in both series, aligned by subject."""
    both = pd.concat([a, b], axis=1, join="inner").dropna()
    return both.iloc[:, 0].to_numpy(float), both.iloc[:, 1].to_numpy(float)


def wilcoxon_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided paired Wilcoxon signed-rank p-value (``scipy.stats.wilcoxon``).

    Exact (the permutation distribution of the signed ranks) when n ≤ 50 and the differences have
    neither zeros nor ties, else scipy's default (normal approximation with the corrections).
    All differences zero → 1.0 (identical results); no pairs → NaN.
    """
    from scipy.stats import wilcoxon

    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size == 0:
        return float("nan")
    d = x - y
    if np.all(d == 0):
        return 1.0
    absd = np.abs(d)
    exact = d.size <= 50 and not np.any(d == 0) and np.unique(absd).size == absd.size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        return float(wilcoxon(x, y, method="exact" if exact else "auto").pvalue)


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


def min_wilcoxon_p(n: int) -> float:
    """Smallest two-sided exact Wilcoxon p attainable with ``n`` pairs: 2 / 2ⁿ (all signs alike)."""
    return float("nan") if n < 1 else min(1.0, 2.0 ** (1 - n))


def min_holm_p(n: int, m: int) -> float:
    """Smallest Holm-adjusted p any of ``m`` comparisons of ``n`` pairs can reach: m · 2 / 2ⁿ (≤ 1)."""
    return float("nan") if n < 1 or m < 1 else min(1.0, m * min_wilcoxon_p(n))


def paired_difference(
    x: np.ndarray, y: np.ndarray, n_boot: int = 10000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean of the paired differences ``x − y`` and its percentile bootstrap CI (subjects resampled)."""
    d = np.asarray(x, float) - np.asarray(y, float)
    if d.size == 0:
        return float("nan"), float("nan"), float("nan")
    lo, hi = bootstrap_ci(d, n_boot=n_boot, seed=seed, level=level)
    return float(d.mean()), lo, hi


def effect_sizes(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Paired effect sizes of ``x − y``: Cohen's d_z (mean / SD, ddof=1) and the matched-pairs
    rank-biserial correlation ``(R⁺ − R⁻) / (R⁺ + R⁻)`` (signed ranks of the non-zero differences).

    d_z is ±inf when all differences are equal and non-zero, NaN with fewer than two pairs or none
    different from zero; the rank-biserial correlation lies in [−1, 1] (NaN without non-zero differences).
    """
    from scipy.stats import rankdata

    d = np.asarray(x, float) - np.asarray(y, float)
    dz = float("nan")
    if d.size >= 2:
        sd = float(d.std(ddof=1))
        m = float(d.mean())
        dz = m / sd if sd > 0 else (float("nan") if m == 0 else math.copysign(math.inf, m))
    nz = d[d != 0]
    if nz.size == 0:
        return dz, float("nan")
    r = rankdata(np.abs(nz))
    rbc = float((r[nz > 0].sum() - r[nz < 0].sum()) / r.sum())
    return dz, rbc


#: Labels of the comparison with the best (``EntryStats.label``).
BEST, TIED, WORSE, UNDETERMINED, NO_DATA = "best", "tied", "worse", "undetermined — n too small", "n/a"


def comparison_label(
    diff_low: float,
    diff_high: float,
    p_holm: float,
    p_min: float,
    worse_sign: float,
    alpha: float = 0.05,
    delta: float = 0.01,
) -> tuple[str, str]:
    """Label an entry against the best from its paired-difference CI and Holm-adjusted p.

    ``worse_sign`` is −1 when a negative difference (entry − best) is worse (higher-is-better metrics),
    +1 otherwise. Returns ``(label, reason)``:

    * **tied** — the CI of the difference contains 0 and lies within ±``delta``;
    * **worse** — the Holm-adjusted p < ``alpha`` and the CI excludes 0 on the worse side;
    * **undetermined — n too small** — neither: the smallest adjusted p attainable with these
      subjects (``p_min``) is ≥ ``alpha`` (no test could find it worse), or the CI is too wide
      (contains 0 but reaches beyond ±``delta``), or the CI and the test disagree.
    """
    if not (np.isfinite(diff_low) and np.isfinite(diff_high)):
        return NO_DATA, "no subjects in common with the best"
    if diff_low <= 0 <= diff_high and -delta <= diff_low and diff_high <= delta:
        return TIED, f"CI of the difference within ±{delta:g}"
    excludes = diff_high < 0 if worse_sign < 0 else diff_low > 0
    if np.isfinite(p_holm) and p_holm < alpha and excludes:
        return WORSE, f"Holm p < {alpha:g} and CI of the difference excludes 0"
    if np.isfinite(p_min) and p_min >= alpha:
        return UNDETERMINED, f"smallest attainable Holm p {p_min:.3g} ≥ α = {alpha:g}"
    if diff_low <= 0 <= diff_high:
        return UNDETERMINED, f"CI of the difference contains 0 but exceeds ±{delta:g}"
    return UNDETERMINED, f"CI excludes 0 but Holm p ≥ {alpha:g}"


@dataclass(frozen=True)
class EntryStats:
    """Statistics of one leaderboard entry (differences are entry − best, in metric units)."""

    entry: str
    n_subjects: int
    mean: float
    ci_low: float
    ci_high: float
    p_value: float  # Wilcoxon vs the best (NaN for the best itself)
    p_holm: float  # Holm-adjusted over all comparisons with the best
    tied_with_best: bool  # the best itself, or labelled "tied"
    rank: int
    label: str = BEST
    label_reason: str = ""
    n_pairs: int = 0  # subjects in common with the best
    diff: float = float("nan")  # mean paired difference entry − best
    diff_low: float = float("nan")
    diff_high: float = float("nan")
    effect_dz: float = float("nan")
    effect_rbc: float = float("nan")
    p_min_holm: float = float("nan")  # smallest Holm-adjusted p attainable with n_pairs


def rank_entries(
    wide: pd.DataFrame,
    higher_is_better: bool = True,
    n_boot: int = 10000,
    seed: int = 0,
    alpha: float = 0.05,
    level: float = 0.95,
    delta: float = 0.01,
) -> list[EntryStats]:
    """Mean, bootstrap CI, paired difference to the best (CI, effect sizes), Wilcoxon (Holm), label, rank.

    ``wide`` is subjects × entries (:func:`per_subject_means`). The best entry has the highest
    (or lowest) mean over its subjects; ranks are competition ranks by mean (1 = best). Each other
    entry is compared with the best on the subjects both have (:func:`comparison_label`). Each
    bootstrap uses the same seed, so results are reproducible and independent of column order.
    """
    means = {
        c: float(np.nanmean(wide[c].to_numpy(float))) if wide[c].notna().any() else float("nan") for c in wide.columns
    }
    sign = -1.0 if higher_is_better else 1.0
    order = sorted(
        wide.columns, key=lambda c: (np.isnan(means[c]), sign * means[c] if not np.isnan(means[c]) else 0.0, str(c))
    )
    best = order[0]
    others = [c for c in order if c != best]
    pairs = {c: paired(wide[c], wide[best]) for c in others}
    raw = {c: wilcoxon_p(*pairs[c]) for c in others}
    adj = dict(zip(others, holm([raw[c] for c in others])))
    m = sum(1 for c in others if np.isfinite(raw[c]))
    out = []
    for c in order:
        vals = wide[c].dropna().to_numpy(float)
        lo, hi = bootstrap_ci(vals, n_boot=n_boot, seed=seed, level=level)
        if np.isnan(means[c]):
            rank = len(order)  # no usable value: last
        else:
            rank = 1 + sum(1 for o in order if not np.isnan(means[o]) and sign * means[o] < sign * means[c])
        if c == best:
            out.append(
                EntryStats(
                    str(c),
                    int(vals.size),
                    means[c],
                    lo,
                    hi,
                    float("nan"),
                    float("nan"),
                    True,
                    rank,
                    BEST,
                    "highest mean" if higher_is_better else "lowest mean",
                    int(vals.size),
                )
            )
            continue
        x, y = pairs[c]
        diff, dlo, dhi = paired_difference(x, y, n_boot=n_boot, seed=seed, level=level)
        dz, rbc = effect_sizes(x, y)
        pmin = min_holm_p(x.size, m)
        label, why = comparison_label(dlo, dhi, float(adj[c]), pmin, sign, alpha=alpha, delta=delta)
        out.append(
            EntryStats(
                str(c),
                int(vals.size),
                means[c],
                lo,
                hi,
                raw[c],
                float(adj[c]),
                label == TIED,
                rank,
                label,
                why,
                int(x.size),
                diff,
                dlo,
                dhi,
                dz,
                rbc,
                pmin,
            )
        )
    return out


def summarise_groups(
    long: pd.DataFrame, key: str, n_boot: int = 10000, seed: int = 0, level: float = 0.95
) -> pd.DataFrame:
    """Mean and bootstrap CI per value of ``key`` (ablation views), subjects averaged within a group.

    Returns columns ``key``, ``n_trials``, ``n_subjects``, ``mean``, ``ci_low``, ``ci_high``.
    """
    rows = []
    for value, grp in long.groupby(key, sort=False):
        subj = grp.groupby("subject")["value"].mean().dropna().to_numpy(float)
        lo, hi = bootstrap_ci(subj, n_boot=n_boot, seed=seed, level=level)
        rows.append(
            {
                key: value,
                "n_trials": int(grp["trial_id"].nunique()),
                "n_subjects": int(subj.size),
                "mean": float(subj.mean()) if subj.size else float("nan"),
                "ci_low": lo,
                "ci_high": hi,
            }
        )
    return pd.DataFrame(rows)


def seed_spread(long: pd.DataFrame, key: str = "entry") -> pd.DataFrame:
    """Seed-to-seed spread per entry: ``n_seeds`` and ``seed_sd``, the SD (ddof=1) over seeds of
    each seed's mean over the subjects that every seed of the entry tested (NaN with < 2 seeds).

    Restricting to common subjects keeps the spread a property of the seeds, not of which subjects
    a fold held out. ``long`` needs a ``seed`` column (missing seeds count as one seed).
    """
    rows = []
    for entry, grp in long.groupby(key, sort=False):
        g = grp.assign(seed=grp["seed"].astype(object).where(grp["seed"].notna(), "–").astype(str))
        wide = g.groupby(["subject", "seed"])["value"].mean().unstack("seed").dropna()
        n = int(g["seed"].nunique())
        sd = float(wide.mean(axis=0).std(ddof=1)) if n >= 2 and len(wide) else float("nan")
        rows.append({key: entry, "n_seeds": n, "seed_sd": sd})
    return pd.DataFrame(rows, columns=[key, "n_seeds", "seed_sd"])


def trial_sd(long: pd.DataFrame, key: str = "entry") -> Mapping[str, float]:
    """Standard deviation (ddof=1) of trial-level means within each entry: the seed/fold spread."""
    trial_means = long.groupby([key, "trial_id"])["value"].mean()
    return {k: float(v.std(ddof=1)) if len(v) > 1 else float("nan") for k, v in trial_means.groupby(level=0)}
