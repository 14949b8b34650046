"""Write a cohort's statistics: the correlation and comparison tables of :mod:`analysis.stats` as
CSV files, and their figures (:mod:`analysis.plots`), into one folder.

``out_dir/correlations.csv``, ``out_dir/comparisons.csv`` and ``out_dir/plots/*.png`` — used by
``cordbench stats`` and ``cordbench analyze`` (:mod:`analysis.study`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from analysis import plots as P
from analysis.stats import comparison_table, correlation_table
from core.io import write_csv


def write_statistics(
    df, x: str, y: str, by: Sequence[str], level_col: str | None, out_dir, source: str | None = None, plots: bool = True
) -> dict[str, object]:
    """Correlations, comparisons, scatter plots and heatmaps into ``out_dir``; returns tables and paths."""
    out_dir = Path(out_dir)
    corr = correlation_table(df, x, y, by, level_col, source)
    comp = comparison_table(df, x, y, by, level_col, source)
    result: dict[str, object] = {
        "correlations": corr,
        "comparisons": comp,
        "correlations_csv": write_csv(out_dir / "correlations.csv", corr),
        "comparisons_csv": write_csv(out_dir / "comparisons.csv", comp),
        "figures": [],
    }
    if plots:
        figs = [P.scatter_by_level(df, x, y, None, level_col, out_dir / "plots")]
        for col in by:
            figs.append(P.scatter_by_level(df, x, y, col, level_col, out_dir / "plots"))
            stem = f"{P.slug(y)}_vs_{P.slug(x)}_by-{P.slug(col)}"
            figs.append(P.correlation_heatmap(corr, col, out_dir / "plots" / f"heatmap_{stem}.png"))
            figs.append(P.bar_with_ci(corr, col, out_dir / "plots" / f"ci_{stem}.png"))
        result["figures"] = figs
    return result
