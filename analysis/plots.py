"""Figures for cohort statistics (matplotlib ``Figure`` objects, Agg canvas, atomic PNG writes).

* :func:`scatter_by_level` — one figure per grouping column: a panel per level, points and a
  least-squares line per group, r in the legend.
* :func:`correlation_heatmap` — r by level × group (overall first) with BH significance marks
  (``*`` q < 0.05, ``**`` q < 0.01, ``***`` q < 0.001).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from analysis.stats import correlate


def _save(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from core.io import atomic_path

    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    return path


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "-", str(text)).strip("-") or "x"


def stars(q: float) -> str:
    """Significance marks for a q-value."""
    if not np.isfinite(q):
        return ""
    return "***" if q < 1e-3 else "**" if q < 1e-2 else "*" if q < 0.05 else ""


def scatter_by_level(df, x: str, y: str, by: str | None, level_col: str | None, out_dir: str | Path) -> Path:
    """Scatter of ``y`` vs ``x`` per level, coloured by ``by`` (None: one group), with OLS lines."""
    from matplotlib.figure import Figure

    levels = [("all", df)] if level_col is None else [(lv, g) for lv, g in df.groupby(level_col, sort=True)]
    n = max(1, len(levels))
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(3.6 * ncols, 3.2 * nrows))
    cmap = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    groups = sorted(df[by].dropna().astype(str).unique()) if by else ["all"]
    for i, (lv, g) in enumerate(levels):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for j, name in enumerate(groups):
            sub = g if by is None else g[g[by].astype(str) == name]
            xs, ys = sub[x].to_numpy(float), sub[y].to_numpy(float)
            ok = np.isfinite(xs) & np.isfinite(ys)
            color = cmap[j % len(cmap)]
            c = correlate(xs, ys)
            label = f"{name} (n={c.n}, r={c.r:.2f})" if np.isfinite(c.r) else f"{name} (n={c.n})"
            ax.scatter(xs[ok], ys[ok], s=12, alpha=0.7, color=color, label=label)
            if np.isfinite(c.slope):
                xx = np.linspace(xs[ok].min(), xs[ok].max(), 2)
                ax.plot(xx, c.slope * xx + c.intercept, color=color, lw=1.5)
        ax.set_title(f"level {lv}" if level_col else "all", fontsize=9)
        ax.set_xlabel(x, fontsize=8)
        ax.set_ylabel(y, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="best")
    fig.suptitle(f"{y} vs {x}" + (f" by {by}" if by else ""), fontsize=10)
    return _save(fig, Path(out_dir) / f"scatter_{slug(y)}_vs_{slug(x)}_by-{slug(by or 'all')}.png")


def correlation_heatmap(table, by: str, out_path: str | Path, title: str = "") -> Path:
    """Heatmap of r (levels × [overall, groups of ``by``]) from :func:`analysis.stats.correlation_table`."""
    from matplotlib.figure import Figure

    sub = table[(table["by"] == by) | (table["by"] == "all")]
    cols = ["all"] + sorted(sub.loc[sub["by"] == by, "group"].unique().tolist())
    levels: Sequence[str] = list(dict.fromkeys(sub["level"].astype(str)))
    r = np.full((len(levels), len(cols)), np.nan)
    q = np.full_like(r, np.nan)
    for _, row in sub.iterrows():
        i = levels.index(str(row["level"]))
        j = cols.index("all" if row["by"] == "all" else row["group"])
        r[i, j], q[i, j] = row["r"], row["q_bh"]
    fig = Figure(figsize=(1.4 + 1.1 * len(cols), 1.0 + 0.5 * len(levels)))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(np.ma.masked_invalid(r), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    for i in range(len(levels)):
        for j in range(len(cols)):
            txt = "n/a" if not np.isfinite(r[i, j]) else f"{r[i, j]:.2f}{stars(q[i, j])}"
            ax.text(
                j,
                i,
                txt,
                ha="center",
                va="center",
                fontsize=8,
                color="white" if np.isfinite(r[i, j]) and abs(r[i, j]) > 0.6 else "black",
            )
    ax.set_xticks(range(len(cols)), cols, fontsize=8, rotation=30)
    ax.set_yticks(range(len(levels)), [f"level {lv}" for lv in levels], fontsize=8)
    fig.colorbar(im, ax=ax, label="Pearson r")
    ax.set_title(title or f"r by level × {by}  (* q<0.05, ** q<0.01, *** q<0.001, BH)", fontsize=9)
    return _save(fig, Path(out_path))


def bar_with_ci(table, by: str, out_path: str | Path) -> Path:
    """Per-level r with its 95% CI for each group of ``by`` (a forest-like summary)."""
    from matplotlib.figure import Figure

    sub = table[table["by"] == by]
    levels = list(dict.fromkeys(sub["level"].astype(str)))
    groups = sorted(sub["group"].unique())
    fig = Figure(figsize=(1.5 + 1.2 * len(levels), 3.2))
    ax = fig.add_subplot(1, 1, 1)
    w = 0.8 / max(1, len(groups))
    for j, gname in enumerate(groups):
        g = sub[sub["group"] == gname].set_index(sub[sub["group"] == gname]["level"].astype(str))
        xs, ys, lo, hi = [], [], [], []
        for i, lv in enumerate(levels):
            if lv in g.index and np.isfinite(g.loc[lv, "r"]):
                xs.append(i - 0.4 + w * (j + 0.5))
                ys.append(g.loc[lv, "r"])
                lo.append(g.loc[lv, "r"] - g.loc[lv, "ci_low"])
                hi.append(g.loc[lv, "ci_high"] - g.loc[lv, "r"])
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", capsize=3, label=gname)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(levels)), [f"level {lv}" for lv in levels], fontsize=8)
    ax.set_ylabel("Pearson r (95% CI)")
    ax.legend(fontsize=7)
    return _save(fig, Path(out_path))


def level_boxplots(metrics, columns: Sequence[str], level_col: str, out_path: str | Path) -> Path:
    """Box plots of each metric per level (one panel per metric)."""
    from matplotlib.figure import Figure

    cols = [c for c in columns if c in metrics and metrics[c].notna().any()]
    n = max(1, len(cols))
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(3.4 * ncols, 2.8 * nrows))
    levels = sorted(metrics[level_col].dropna().unique())
    for i, c in enumerate(cols):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        data = [metrics.loc[metrics[level_col] == lv, c].dropna().to_numpy(float) for lv in levels]
        ax.boxplot(data, showfliers=True)
        ax.set_xticks(range(1, len(levels) + 1), [f"C{int(lv)}" for lv in levels], fontsize=7)
        ax.set_title(c, fontsize=9)
        ax.tick_params(labelsize=7)
    return _save(fig, Path(out_path))
