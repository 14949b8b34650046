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

Rows with a missing x or y are dropped per test; a test needs n ≥ 4 (n − 3 > 0) and x and y that
vary, else its statistics are NaN, it is left out of the BH family and its ``note`` says why.
A non-numeric or infinite x/y cell, an x or y column constant throughout, a column name twice in
the header, and repeated rows (or a subject twice at one level) are an :class:`InputError` naming the
file (and the column). Values of any magnitude (1e300, 1e-300) are scaled by a power of two before
the tests and the line, so r, p and the slope/intercept are those of the values as written.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from core.errors import InputError

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
    if n < MIN_N or x.min() == x.max() or y.min() == y.max():
        return Correlation(n, nan, nan, nan, nan, nan, nan, nan, nan)
    # r and ρ do not change with a positive scale; the line is scaled back. Scaling each variable
    # by a power of two near its largest |value| (exact in floating point) keeps squares and sums
    # of values near 1e300 (or 1e-300) from overflowing (underflowing).
    sx, sy = _scale(x), _scale(y)
    x, y = x / sx, y / sy
    pr = stats.pearsonr(x, y)
    sr = stats.spearmanr(x, y)
    lo, hi = fisher_ci(float(pr.statistic), n, conf)
    slope, intercept = np.polyfit(x, y, 1)
    slope, intercept = slope * (sy / sx), intercept * sy
    return Correlation(
        n,
        float(pr.statistic),
        lo,
        hi,
        float(pr.pvalue),
        float(sr.statistic),
        float(sr.pvalue),
        float(slope),
        float(intercept),
    )


def _scale(v: np.ndarray) -> float:
    """A power of two near ``max |v|`` (1 for all zeros): dividing by it is exact."""
    m = float(np.abs(v).max())
    return 1.0 if m == 0 else float(2.0 ** np.frexp(m)[1])


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


def why_undefined(x: Sequence[float], y: Sequence[float]) -> str:
    """Why :func:`correlate` gives NaN for these values ("" when it does not): the ``note`` column."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if int(ok.sum()) < MIN_N:
        return f"n={int(ok.sum())} < {MIN_N}: not tested"
    if x[ok].min() == x[ok].max():
        return "x constant: r undefined"
    if y[ok].min() == y[ok].max():
        return "y constant: r undefined"
    return ""


# ------------------------------------------------------------------------------------- tables
def check_numeric(df, cols: Sequence[str], source: str | None) -> None:
    """Raise naming the first non-numeric cell (row number as in the file, header = line 1)."""
    import pandas as pd

    for col in cols:
        vals = df[col]
        num = pd.to_numeric(vals, errors="coerce")
        bad = vals.notna() & num.isna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(
                f"column {col!r} has {int(bad.sum())} non-numeric value(s), e.g. {vals.iloc[i]!r} on line {i + 2}",
                source,
            )


def check_finite(df, cols: Sequence[str], source: str | None) -> None:
    """Raise naming the first infinite cell: an infinity is no measurement, and a test would drop it silently."""
    import pandas as pd

    for col in cols:
        num = pd.to_numeric(df[col], errors="coerce")
        bad = np.isinf(num.to_numpy(dtype=float))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"column {col!r} has {int(bad.sum())} infinite value(s), e.g. {float(num.iloc[i]):g} on line {i + 2}: "
                "an infinity is no measurement and would be dropped from n; write n/a for a missing value",
                source,
            )


def check_unique_columns(path, source) -> None:
    """Raise when the header names a column twice (pandas would read the first as it and rename the other)."""
    import pandas as pd

    head = pd.read_csv(path, sep=None, engine="python", header=None, nrows=1, dtype=str).iloc[0].tolist()
    seen: dict[str, int] = {}
    for i, name in enumerate(head, start=1):
        if name in seen:
            raise InputError(
                f"column {name!r} appears twice in the header (columns {seen[name]} and {i}): which one is meant "
                "is unknown; rename or remove one",
                source,
            )
        seen[name] = i


def check_not_constant(df, cols: Sequence[str], source: str | None) -> None:
    """Raise when a whole column is constant (no correlation can be defined anywhere)."""
    import pandas as pd

    for col in cols:
        v = pd.to_numeric(df[col], errors="coerce").dropna()
        if len(v) >= 2 and v.nunique() == 1:
            raise InputError(
                f"column {col!r} is constant ({v.iloc[0]:g} in all {len(v)} rows): no correlation is defined", source
            )


_SYNONYMS = {"male": "m", "man": "m", "female": "f", "woman": "f"}  # sex codings seen in BIDS participants.tsv


def check_group_codings(df, by: Sequence[str], source) -> None:
    """Refuse a grouping column that spells one group several ways (``M`` and ``male``, ``GE`` and ``ge``).

    Such spellings would silently become separate groups (three sexes); the file must use one.
    """
    for col in by:
        if col not in df.columns:
            continue
        spellings: dict[str, set[str]] = {}
        for v in df[col].dropna().unique():
            key = " ".join(str(v).strip().lower().split())
            spellings.setdefault(_SYNONYMS.get(key, key), set()).add(str(v))
        mixed = [sorted(v) for v in spellings.values() if len(v) > 1]
        if mixed:
            raise InputError(
                f"column {col!r} spells one group several ways: "
                + "; ".join(" and ".join(repr(x) for x in m) for m in mixed)
                + " (they would count as separate groups); use one coding",
                source,
            )


def check_duplicates(df, level_col: str | None, source) -> None:
    """Refuse repeated rows (a table appended twice doubles n and shrinks p) and repeated subject × level."""
    dup = df.duplicated(keep="first")
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        filled = df.astype(object).where(df.notna(), "<NA>")
        first = int(np.flatnonzero((filled.iloc[:i] == filled.iloc[i]).all(axis=1).to_numpy())[0])
        raise InputError(
            f"{int(dup.sum())} row(s) repeat an earlier row exactly (e.g. line {i + 2} = line "
            f"{first + 2}): each subject would count twice; remove the duplicates",
            source,
        )
    key = [c for c in ("participant_id", "subject") if c in df.columns][:1]
    if key:
        key += [level_col] if level_col else []
        dk = df.duplicated(subset=key, keep=False)
        if dk.any():
            rows = np.flatnonzero(dk.to_numpy())
            what = " and ".join(f"{c} {df.iloc[rows[0]][c]}" for c in key)
            raise InputError(
                f"{what} appear(s) on {int((df[key] == df.iloc[rows[0]][key]).all(axis=1).sum())} "
                f"lines (e.g. lines {rows[0] + 2} and {rows[1] + 2}): one row per "
                f"{' × '.join(key)} expected",
                source,
            )


def _check_columns(df, cols: Sequence[str], source: str | None) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(
            f"column(s) {', '.join(missing)} not found (columns: {', '.join(map(str, df.columns))})", source
        )


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


def correlation_table(
    df,
    x: str,
    y: str,
    by: Sequence[str] = (),
    level_col: str | None = None,
    source: str | None = None,
    conf: float = 0.95,
):
    """Tidy table: one row per level × (overall + each group of each ``by`` column)."""
    import pandas as pd

    _check_columns(df, [x, y, *by] + ([level_col] if level_col else []), source)
    check_numeric(df, [x, y], source)
    check_finite(df, [x, y], source)
    check_not_constant(df, [x, y], source)
    check_group_codings(df, by, source)
    rows = []
    for lv, g in _levels(df, level_col):
        c = correlate(g[x], g[y], conf)
        rows.append(
            {"level": lv, "by": "all", "group": "all", "x": x, "y": y, **asdict(c), "note": why_undefined(g[x], g[y])}
        )
        for col in by:
            for name, sub in _groups(g, col):
                c = correlate(sub[x], sub[y], conf)
                rows.append(
                    {
                        "level": lv,
                        "by": col,
                        "group": name,
                        "x": x,
                        "y": y,
                        **asdict(c),
                        "note": why_undefined(sub[x], sub[y]),
                    }
                )
    out = pd.DataFrame(rows)
    if len(out):
        out["q_bh"] = bh(out["p"])
        out["q_bh_spearman"] = bh(out["p_spearman"])
    return out


def comparison_table(df, x: str, y: str, by: Sequence[str], level_col: str | None = None, source: str | None = None):
    """Fisher z-tests between every pair of groups of each ``by`` column, per level; BH q-values."""
    import pandas as pd

    _check_columns(df, [x, y, *by] + ([level_col] if level_col else []), source)
    rows = []
    for lv, g in _levels(df, level_col):
        for col in by:
            stats = [(name, correlate(sub[x], sub[y])) for name, sub in _groups(g, col)]
            for (a, ca), (b, cb) in itertools.combinations(stats, 2):
                z, p = fisher_z_test(ca.r, ca.n, cb.r, cb.n)
                rows.append(
                    {
                        "level": lv,
                        "by": col,
                        "group_a": a,
                        "group_b": b,
                        "n_a": ca.n,
                        "n_b": cb.n,
                        "r_a": ca.r,
                        "r_b": cb.r,
                        "z": z,
                        "p": p,
                    }
                )
    cols = ["level", "by", "group_a", "group_b", "n_a", "n_b", "r_a", "r_b", "z", "p"]
    out = pd.DataFrame(rows, columns=cols)
    out["q_bh"] = bh(out["p"]) if len(out) else []
    return out


def read_metrics(path, level_col: str | None = "VertLevel"):
    """Read a metrics CSV (or TSV) for :func:`correlation_table`; checks the level column."""
    from pathlib import Path

    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputError("metrics file not found", path)
    try:
        df = pd.read_csv(path, sep=None, engine="python", na_values=["n/a", "nan", "NaN", ""])
        check_unique_columns(path, path)
    except InputError:
        raise
    except Exception as exc:  # pandas raises several types
        raise InputError(f"unreadable metrics table ({type(exc).__name__}: {exc})", path) from None
    if level_col and level_col not in df.columns:
        raise InputError(
            f"level column {level_col!r} not found (columns: {', '.join(map(str, df.columns))}); "
            "pass --level-col or --no-levels",
            path,
        )
    check_duplicates(df, level_col, path)
    return df
