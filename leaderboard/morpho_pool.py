"""Pooling of the leaderboard's morphometric comparisons per entry, with bootstrap CIs.

A subject's value is the mean over the entry's trials that tested it (as the Dice column pools);
the mean absolute and signed (bias) CSA error per level and overall get percentile-bootstrap CIs
over subjects, and the Pearson r of FA vs SAC/CSA (:func:`analysis.stats.correlate`: Fisher-z CI)
is computed from the model's masks beside the same r from the manual masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.manual_reference import LEVELS

LEVEL_NAMES = {L: f"C{L}" for L in LEVELS}


@dataclass
class TrialMorpho:
    """A trial's per-subject × level table, or the reason there is none."""

    trial_id: str
    frame: pd.DataFrame | None
    reason: str = ""
    cached: bool = False


@dataclass
class MorphoSummary:
    """What the reports show about morphometrics."""

    enabled: bool
    reason: str = ""  # why the columns are off / n/a
    columns: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per entry (merged into the table)
    levels: pd.DataFrame = field(default_factory=pd.DataFrame)  # entry × level: MAE, bias with CIs
    per_subject: pd.DataFrame = field(default_factory=pd.DataFrame)  # entry × subject × level values
    trials: dict[str, TrialMorpho] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    fa_reason: str = ""  # why the FA correlation is n/a ("" if not)


def _ci(values: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float]:
    from leaderboard.stats import bootstrap_ci

    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if not v.size:
        return math.nan, math.nan, math.nan
    lo, hi = bootstrap_ci(v, n_boot=n_boot, seed=seed)
    return float(v.mean()), lo, hi


def pooled_rows(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Subject × level values of one entry: model quantities averaged over its trials, manual ones kept.

    Adds ``abs_error_pct`` (mean over trials of |error|) beside the signed ``csa_error_pct``.
    """
    long = pd.concat(frames, ignore_index=True)
    long = long[long["VertLevel"].notna()].copy()
    if long.empty:
        return long
    long["VertLevel"] = long["VertLevel"].astype(int)
    long["abs_error_pct"] = long["csa_error_pct"].abs()
    model = ["CSA_model", "csa_error_pct", "abs_error_pct", "SAC_model", "SAC_CSA_model"]
    manual = ["CSA_manual", "canal_area", "SAC_manual", "SAC_CSA_manual", "FA"]
    g = long.groupby(["subject", "VertLevel"])
    out = g[model].mean().join(g[manual].first()).join(g.size().rename("n_trials"))
    return out.reset_index()


def _subject_overall(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Per subject: mean over its levels (per trial) of |error| and of the signed error, then over trials."""
    per_trial = []
    for i, f in enumerate(frames):
        f = f[f["VertLevel"].notna()]
        if f.empty:
            continue
        per_trial.append(
            f.assign(abs_error_pct=f["csa_error_pct"].abs(), trial=i)
            .groupby(["trial", "subject"])[["abs_error_pct", "csa_error_pct"]]
            .mean()
        )
    if not per_trial:
        return pd.DataFrame(columns=["subject", "abs_error_pct", "csa_error_pct"])
    return pd.concat(per_trial).groupby("subject").mean().reset_index()


def summarise_entry(
    entry: str, frames: list[pd.DataFrame], n_boot: int, seed: int
) -> tuple[dict[str, Any], list[dict[str, Any]], pd.DataFrame]:
    """Entry columns, per-level rows and the pooled subject × level table of one entry."""
    from analysis.stats import correlate

    rows = pooled_rows(frames)
    overall = _subject_overall(frames)
    col: dict[str, Any] = {"entry": entry}
    m, lo, hi = _ci(overall["abs_error_pct"].to_numpy(float), n_boot, seed)
    col.update({"csa_mae_pct": m, "csa_mae_ci_low": lo, "csa_mae_ci_high": hi})
    m, lo, hi = _ci(overall["csa_error_pct"].to_numpy(float), n_boot, seed)
    col.update(
        {
            "csa_bias_pct": m,
            "csa_bias_ci_low": lo,
            "csa_bias_ci_high": hi,
            "csa_n_subjects": int(overall["abs_error_pct"].notna().sum()),
        }
    )
    levels = []
    for L in LEVELS:
        sub = rows[rows["VertLevel"] == L] if len(rows) else rows
        if not len(sub):
            continue
        mae = _ci(sub["abs_error_pct"].to_numpy(float), n_boot, seed)
        bias = _ci(sub["csa_error_pct"].to_numpy(float), n_boot, seed)
        levels.append(
            {
                "entry": entry,
                "level": LEVEL_NAMES[L],
                "n_subjects": int(sub["subject"].nunique()),
                "mae_pct": mae[0],
                "mae_ci_low": mae[1],
                "mae_ci_high": mae[2],
                "bias_pct": bias[0],
                "bias_ci_low": bias[1],
                "bias_ci_high": bias[2],
            }
        )
        col[f"csa_mae_{LEVEL_NAMES[L]}"] = mae[0]
        col[f"csa_bias_{LEVEL_NAMES[L]}"] = bias[0]
    for src in ("model", "manual"):
        c = correlate(rows["FA"], rows[f"SAC_CSA_{src}"]) if len(rows) else correlate([], [])
        col.update(
            {
                f"r_{src}": c.r,
                f"r_{src}_ci_low": c.ci_low,
                f"r_{src}_ci_high": c.ci_high,
                f"p_{src}": c.p,
                f"n_{src}": c.n,
            }
        )
    return col, levels, rows.assign(entry=entry)


def correlation_reason(rows: pd.DataFrame, frames: list[pd.DataFrame]) -> str:
    """Why the FA vs SAC/CSA correlation of an entry is undefined."""
    from analysis.stats import MIN_N

    if not np.isfinite(rows["FA"].to_numpy(float)).any():
        notes = pd.concat(frames)["fa_note"].fillna("").astype(str)
        notes = notes[notes != ""]
        return notes.value_counts().index[0] if len(notes) else "no FA"
    if not np.isfinite(rows["SAC_CSA_manual"].to_numpy(float)).any():
        return "no manual canal label (label-canal_seg) for SAC"
    n = int((np.isfinite(rows["FA"].to_numpy(float)) & np.isfinite(rows["SAC_CSA_model"].to_numpy(float))).sum())
    if n < MIN_N:
        return f"{n} subject-level(s) with FA and SAC/CSA (a correlation needs {MIN_N})"
    return "constant FA or SAC/CSA"
