"""``cordbench leaderboard --by-contrast``: one leaderboard per image contrast of a multi-contrast sweep.

Each trial's ``test_metrics.csv`` holds one row per scored image with its ``contrast``; the board of
contrast ``C`` ranks the entries on their ``C`` rows only, with the same statistics as the pooled
board (bootstrap CIs, paired tests against the best on the images the entries share). The
per-contrast boards carry the ranking columns only (no cost, morphometric, real-data, ensemble or
precision columns: those are the pooled board's) and are written to ``<out>/contrast-<C>/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from core.errors import InputError


def sweep_contrasts(sweep: Any) -> list[str]:
    """Every contrast in the ``contrast`` column of the sweep's readable ``test_metrics.csv`` files."""
    found: set[str] = set()
    for _, row in sweep.results.iterrows():
        try:
            df = sweep.run_folder(row).read_test_metrics()
        except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
            continue
        if "contrast" in df.columns:
            found.update(str(c) for c in df["contrast"].dropna())
    if not found:
        raise InputError("--by-contrast: no trial's test_metrics.csv has a contrast column", sweep.root)
    return sorted(found)


def build_by_contrast(sweep_dir: str | Path, out: Path, **options: Any) -> dict[str, dict[str, Path]]:
    """Write one board per contrast under ``out/contrast-<C>``; ``options`` as for ``build_leaderboard``
    (the optional columns are turned off). Returns ``{contrast: the paths write_reports gives}``."""
    from leaderboard.report import write_reports
    from leaderboard.table import build_leaderboard, load_sweep

    sweep = load_sweep(sweep_dir)
    keep = {
        k: v for k, v in options.items() if k in ("metric", "task", "cls", "by", "n_boot", "seed", "alpha", "delta")
    }
    off = {"cost": False, "morphometrics": False, "real": None, "ensembles": False, "precision": False}
    return {
        c: write_reports(build_leaderboard(sweep, contrast=c, **keep, **off), out / f"contrast-{c}")
        for c in sweep_contrasts(sweep)
    }


__all__ = ["build_by_contrast", "sweep_contrasts"]
