"""Cohort statistics: correlations with Fisher-z CIs, Fisher z-tests between groups, BH-FDR.

* :func:`correlate` — Pearson r (``scipy.stats.pearsonr``) with its two-sided p, the 95% CI
  ``tanh(atanh r ± z_{0.975}/√(n−3))``, Spearman ρ and p beside it, and the least-squares line.
* :func:`fisher_z_test` — two independent correlations: ``z = (z1 − z2)/√(1/(n1−3) + 1/(n2−3))``,
  ``z_i = atanh r_i``, two-sided p = ``2·(1 − Φ(|z|))``.
* :func:`correlation_table` — per level (or one ``all`` level without a level column): overall,
  then per group of each ``by`` column; Benjamini–Hochberg q-values
  (``scipy.stats.false_discovery_control``) across the whole family of levels × groups.
* :func:`comparison_table` — per level and ``by`` column, every pair of groups compared with the
  Fisher z-test; BH across levels × pairs.

Rows with a missing x or y are dropped per test; a test needs n ≥ 4 (n − 3 > 0), else its
statistics are NaN and it is left out of the BH family.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from cordbench.errors import InputError

MIN_N = 4


@dataclass
class Correlation:
    """One correlation test."""

    n: int
    r: float
    ci_low: float
    ci_high: float
    p: float
    rho: float
    p_spearman: float
    slope: float
    intercept: float


def fisher_ci(r: float, n: int, conf: float = 0.95) -> tuple[float, float]:
    """Confidence interval of Pearson r via Fisher's z (NaN when n ≤ 3)."""
    from scipy.stats import norm

    if n <= 3 or not np.isfinite(r):
        return float("nan"), float("nan")
    z = math.atanh(min(max(r, -1 + 1e-15), 1 - 1e-15))
    h = norm.ppf(0.5 + conf / 2) / math.sqrt(n - 3)
    return math.tanh(z - h), math.tanh(z + h)


def correlate(x: Sequence[float], y: Sequence[float], conf: float = 0.95) -> Correlation:
    """Pearson r, CI, p; Spearman ρ, p; OLS slope/intercept (NaN-filled when n < 4 or constant)."""
    from scipy import stats

    x = np.asarray(x, float)
    y = np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = int(x.size)
    nan = float("nan")
    if n < MIN_N or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Correlation(n, nan, nan, nan, nan, nan, nan, nan, nan)
    pr = stats.pearsonr(x, y)
    sr = stats.spearmanr(x, y)
    lo, hi = fisher_ci(float(pr.statistic), n, conf)
    slope, intercept = np.polyfit(x, y, 1)
    return Correlation(n, float(pr.statistic), lo, hi, float(pr.pvalue), float(sr.statistic), float(sr.pvalue),
                       float(slope), float(intercept))


def fisher_z_test(r1: float, n1: int, r2: float, n2: int) -> tuple[float, float]:
    """Fisher z-test of two independent correlations; returns ``(z, two-sided p)``."""
    from scipy.stats import norm

    if n1 <= 3 or n2 <= 3 or not (np.isfinite(r1) and np.isfinite(r2)):
        return float("nan"), float("nan")
    z1 = math.atanh(min(max(r1, -1 + 1e-15), 1 - 1e-15))
    z2 = math.atanh(min(max(r2, -1 + 1e-15), 1 - 1e-15))
    z = (z1 - z2) / math.sqrt(1.0 / (n1 - 3) + 1.0 / (n2 - 3))
    return float(z), float(2.0 * norm.sf(abs(z)))


def bh(pvalues: Sequence[float]) -> np.ndarray:
    """Benjamini–Hochberg q-values; NaN p-values stay NaN and are not counted in the family."""
    from scipy.stats import false_discovery_control

    p = np.asarray(pvalues, float)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        q[ok] = false_discovery_control(p[ok], method="bh")
    return q


# ------------------------------------------------------------------------------------- tables
def _check_columns(df, cols: Sequence[str], source: str | None) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(f"column(s) {', '.join(missing)} not found (columns: {', '.join(map(str, df.columns))})",
                         source)


def _levels(df, level_col: str | None) -> list[tuple[str, object]]:
    if level_col is None:
        return [("all", df)]
    out = []
    for lv, g in df.groupby(level_col, sort=True, dropna=True):
        out.append((_level_name(lv), g))
    return out


def _level_name(lv) -> str:
    try:
        f = float(lv)
        return str(int(f)) if f.is_integer() else str(lv)
    except (TypeError, ValueError):
        return str(lv)


def _groups(g, col: str) -> list[tuple[str, object]]:
    return [(str(k), sub) for k, sub in g.groupby(col, sort=True, dropna=True)]


def correlation_table(df, x: str, y: str, by: Sequence[str] = (), level_col: str | None = None,
                      source: str | None = None, conf: float = 0.95):
    """Tidy table: one row per level × (overall + each group of each ``by`` column)."""
    import pandas as pd

    _check_columns(df, [x, y, *by] + ([level_col] if level_col else []), source)
    rows = []
    for lv, g in _levels(df, level_col):
        c = correlate(g[x], g[y], conf)
        rows.append({"level": lv, "by": "all", "group": "all", "x": x, "y": y, **asdict(c)})
        for col in by:
            for name, sub in _groups(g, col):
                c = correlate(sub[x], sub[y], conf)
                rows.append({"level": lv, "by": col, "group": name, "x": x, "y": y, **asdict(c)})
    out = pd.DataFrame(rows)
    if len(out):
        out["q_bh"] = bh(out["p"])
        out["q_bh_spearman"] = bh(out["p_spearman"])
    return out


def comparison_table(df, x: str, y: str, by: Sequence[str], level_col: str | None = None,
                     source: str | None = None):
    """Fisher z-tests between every pair of groups of each ``by`` column, per level; BH q-values."""
    import pandas as pd

    _check_columns(df, [x, y, *by] + ([level_col] if level_col else []), source)
    rows = []
    for lv, g in _levels(df, level_col):
        for col in by:
            stats = [(name, correlate(sub[x], sub[y])) for name, sub in _groups(g, col)]
            for (a, ca), (b, cb) in itertools.combinations(stats, 2):
                z, p = fisher_z_test(ca.r, ca.n, cb.r, cb.n)
                rows.append({"level": lv, "by": col, "group_a": a, "group_b": b, "n_a": ca.n, "n_b": cb.n,
                             "r_a": ca.r, "r_b": cb.r, "z": z, "p": p})
    cols = ["level", "by", "group_a", "group_b", "n_a", "n_b", "r_a", "r_b", "z", "p"]
    out = pd.DataFrame(rows, columns=cols)
    out["q_bh"] = bh(out["p"]) if len(out) else []
    return out


def read_metrics(path, level_col: str | None = "VertLevel"):
    """Read a metrics CSV (or TSV) for :func:`correlation_table`; checks the level column."""
    import pandas as pd
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise InputError("metrics file not found", path)
    try:
        df = pd.read_csv(path, sep=None, engine="python", na_values=["n/a", "nan", "NaN", ""])
    except Exception as exc:  # pandas raises several types
        raise InputError(f"unreadable metrics table ({type(exc).__name__}: {exc})", path) from None
    if level_col and level_col not in df.columns:
        raise InputError(f"level column {level_col!r} not found (columns: {', '.join(map(str, df.columns))}); "
                         "pass --level-col or --no-levels", path)
    return df
