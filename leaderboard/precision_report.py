"""The precision columns in the reports: a detail table, method notes and ``precision.png``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from leaderboard.precision_compare import COMPARED

#: (column, heading, digits) of the detail table (pooled C2–C5 cord area)
SHOWN = (
    ("cov_contrast", "CoV contrast %", 2),
    ("cov_session", "CoV session %", 2),
    ("icc_session", "ICC(3,1) session", 3),
    ("cov_site", "CoV site %", 2),
    ("ba_bias", "BA bias mm²", 2),
    ("ba_loa_low", "BA LoA low", 2),
    ("ba_loa_high", "BA LoA high", 2),
)


def enabled(lb: Any) -> bool:
    """Whether the leaderboard has precision columns."""
    p = getattr(lb, "precision", None)
    return p is not None and p.enabled and "precision_n_subjects" in p.columns


def _fmt(v: Any, digits: int) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{float(v):.{digits}f}"


def _cell(r: pd.Series, col: str, digits: int) -> str:
    if col not in r or pd.isna(r[col]):
        return "n/a"
    out = f"{_fmt(r[col], digits)} [{_fmt(r.get(col + '_ci_low'), digits)}, {_fmt(r.get(col + '_ci_high'), digits)}]"
    key = "ba_loa" if col.startswith("ba_loa") else col
    label = r.get(f"{key}_vs_best")
    if key in COMPARED and isinstance(label, str) and col != "ba_loa_low":
        out += f" ({label.split(' —')[0]})"
    return out


def detail_table(lb: Any) -> tuple[str, list[str], list[list[str]]]:
    """(title, headers, rows): each entry's pooled C2–C5 cord-area precision with CIs and labels vs the best."""
    t = lb.table.set_index("entry")
    rows = []
    for entry in lb.table["entry"]:
        r = t.loc[entry]
        rows.append([str(entry), _fmt(r.get("precision_n_subjects"), 0), *(_cell(r, c, d) for c, _, d in SHOWN)])
    heads = ["entry", "subjects", *(h for _, h, _ in SHOWN)]
    return "Precision — cord area C2–C5 (95% CI; vs best)", heads, rows


def notes(lb: Any) -> list[str]:
    """Method notes of the precision columns."""
    p = getattr(lb, "precision", None)
    if p is None:
        return []
    if not p.enabled:
        return [f"Precision columns: {p.reason}."]
    out = [
        f"Precision columns: every anatomical image (session or run × contrast) of {p.root} measured per "
        "vertebral level C2–C5 and pooled (angle-corrected slice areas, SCT conventions); cov_contrast / "
        "cov_session: mean over subjects of 100·SD/mean across contrasts / sessions; icc_session: ICC(3,1); "
        "cov_site: CoV of the per-site means; ba_*: Bland–Altman against each image's reference mask. 95% CIs: "
        "bootstrap over subjects. Labels vs the best: Wilcoxon + Holm and the paired CI for the CoVs, the paired "
        "bootstrap CI alone for ICC, site CoV and Bland–Altman (docs/leaderboard.md).",
    ]
    return out + list(p.notes)


def plot(lb: Any, path: Path) -> Path:
    """Dot-and-CI plot of the pooled cov_contrast, cov_session, icc_session and |ba_bias| per entry."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = lb.table
    panels = [("cov_contrast", "CoV across contrasts (%)"), ("cov_session", "CoV across sessions (%)")]
    panels += [("icc_session", "ICC(3,1) between sessions"), ("ba_bias", "Bland–Altman bias (mm²)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 0.9 + 0.45 * max(1, len(t))), sharey=True)
    y = range(len(t))
    for ax, (col, title) in zip(axes, panels):
        if col in t:
            v = t[col].astype(float)
            lo = (v - t[f"{col}_ci_low"].astype(float)).clip(lower=0)
            hi = (t[f"{col}_ci_high"].astype(float) - v).clip(lower=0)
            ax.errorbar(v, list(y), xerr=[lo.fillna(0), hi.fillna(0)], fmt="o", color="#2b5797", capsize=3)
        if col == "ba_bias":
            ax.axvline(0, color="#999", lw=0.8)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(list(y), [str(e) for e in t["entry"]], fontsize=8)
    axes[0].invert_yaxis()
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path
