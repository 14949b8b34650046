"""The HTML report of ``cordbench analyze`` (:func:`analysis.study.analyze`): cohort, per-level
summary, statistics, figures, excluded and failed subjects, and the files written. Its tables are
:mod:`core.html`'s sortable tables, like the QC and leaderboard reports'."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from analysis.morphometrics import LEVEL_COL
from core.html import frame_table as _html_table


def _dti_region_text(metrics) -> str:
    """Which DTI region the metrics hold: 'white matter', 'cord mask' or both (per subject)."""
    names = {"WM": "white matter", "cord": "cord mask"}
    got = sorted({names.get(str(v), str(v)) for v in metrics.get("dti_region", []) if isinstance(v, str)})
    return " / ".join(got) if got else "cord mask"


def level_summary(metrics, columns: Sequence[str]):
    """Mean ± SD and n per level for each metric column."""
    import pandas as pd

    rows = []
    for lv, g in metrics.groupby(LEVEL_COL, sort=True):
        row: dict[str, Any] = {LEVEL_COL: int(lv), "subjects": int(g["participant_id"].nunique())}
        for c in columns:
            v = pd.to_numeric(g[c], errors="coerce").dropna()
            row[c] = (
                f"{v.mean():.4g} ± {v.std(ddof=1):.2g} (n={len(v)})"
                if len(v) > 1
                else (f"{v.mean():.4g} (n=1)" if len(v) else "")
            )
        rows.append(row)
    return pd.DataFrame(rows)


def write_report(
    out: Path,
    *,
    bids_dir: str,
    seg_source: str,
    metrics,
    subjects,
    stats,
    boxplot,
    x: str,
    y: str,
    by: Sequence[str],
    seconds: float,
    workers: int,
    address: str | None,
    level_method: str = "slice",
    pmj=None,
    exclusions=None,
) -> Path:
    """Write ``report.html`` (figures referenced relative to ``out``)."""
    import datetime

    from analysis.exclusions import report_section
    from analysis.study_pmj import report_section as pmj_section
    from core import html
    from core.io import write_text
    from core.qc_decisions import QC_SCRIPT, qc_section

    def img(path) -> str:
        rel = Path(path).relative_to(out).as_posix()
        return (
            f'<figure><img src="{html.escape(rel)}" alt="{html.escape(rel)}"><figcaption>{html.escape(rel)}'
            f"</figcaption></figure>"
        )

    status = subjects["status"].value_counts().to_dict() if len(subjects) else {}
    not_ok = subjects[subjects["status"] != "ok"][["participant_id", "status", "reasons"]]
    cols = [c for c in ("CSA", "SAC", "SAC_CSA", "canal_area", "FA", "MD", "RD", "AD") if c in metrics]
    parts = [
        "<h1>cordbench cohort analysis</h1>",
        f"<p>{html.escape(datetime.datetime.now().strftime('%Y-%m-%d %H:%M'))} · data "
        f"<code>{html.escape(bids_dir)}</code> · segmentation source <code>{html.escape(seg_source)}</code> · "
        f"{'Ray cluster ' + html.escape(address) if address else (f'{workers} local Ray workers' if workers else 'in-process')}"
        f" · {seconds:.1f} s</p>",
        "<h2>Subjects</h2>",
        "<p>"
        + ", ".join(f"{html.escape(str(k))}: {v}" for k, v in sorted(status.items()))
        + f" (total {len(subjects)})</p>",
        report_section(exclusions),
        "<h3>Subjects not fully processed (with the reason)</h3>",
        _html_table(not_ok),
        qc_section(subjects["participant_id"].tolist() if len(subjects) else []),
        "<h2>Metrics per vertebral level</h2>",
        "<p>CSA, canal area and SAC in mm² ("
        + (
            "mean of angle-corrected axial slices, SCT conventions"
            if level_method == "slice"
            else "level volume / arc length along the centerline"
        )
        + "); SAC_CSA = SAC / CSA; "
        "FA unitless, MD/RD/AD in mm²/s (mean within the "
        + html.escape(_dti_region_text(metrics))
        + " of the level's slices).</p>",
        _html_table(level_summary(metrics, cols)) if len(metrics) else "<p><em>no metrics</em></p>",
    ]
    if boxplot is not None:
        parts.append(img(boxplot))
    parts.append(pmj_section(pmj))
    parts.append(f"<h2>Statistics: {html.escape(y)} vs {html.escape(x)}</h2>")
    if stats is None:
        parts.append("<p><em>not computed: fewer than 4 subject-levels with both values</em></p>")
    else:
        corr, comp = stats["correlations"], stats["comparisons"]
        keep = ["level", "by", "group", "n", "r", "ci_low", "ci_high", "p", "q_bh", "rho", "p_spearman"]
        parts += [
            "<p>Pearson r with 95% CI (Fisher z), two-sided p, Benjamini–Hochberg q across levels × "
            "groups; Spearman ρ beside it.</p>",
            "<h3>Overall, per level</h3>",
            _html_table(corr[corr["by"] == "all"][keep]),
        ]
        for col in by:
            sub = corr[corr["by"] == col]
            small = int((sub["n"] < 4).sum())
            parts += [f"<h3>By {html.escape(col)}</h3>", _html_table(sub[sub["n"] >= 4][keep])]
            if small:
                parts.append(
                    f"<p>{small} level × group cells with fewer than 4 subjects are omitted here "
                    "(listed in stats/correlations.csv).</p>"
                )
        tested = comp[comp["z"].notna()] if len(comp) else comp
        parts += [
            "<h3>Fisher z-tests between groups</h3>",
            "<p>z = (z1 − z2)/√(1/(n1−3) + 1/(n2−3)), two-sided p, BH q across levels × pairs "
            f"({len(comp) - len(tested)} pairs without enough subjects omitted).</p>",
            _html_table(tested),
        ]
        parts += [img(f) for f in stats["figures"]]
    warn = subjects[subjects["warnings"].astype(str) != ""][["participant_id", "warnings"]] if len(subjects) else None
    lv_cols = ["participant_id", "dwi_levels_method", "dwi_levels_shift_mm", "dwi_levels_residual_mm"]
    if len(subjects) and all(c in subjects for c in lv_cols):
        parts += [
            "<h2>Vertebral levels on the DWI grid</h2>",
            "<p>given, discs-on-dwi, or carried over from the T2w through world coordinates "
            "(from-T2w-world) and an S-I shift found by a 1-D registration of the cord centrelines "
            "(from-T2w-registered); shift and residual (RMS centreline distance) in mm.</p>",
            _html_table(subjects[lv_cols]),
        ]
    parts += [
        "<h2>Warnings</h2>",
        _html_table(warn),
        "<h2>Files</h2><ul><li><code>metrics.csv</code> one row per subject × level</li>"
        "<li><code>subjects.csv</code> status and reasons</li><li><code>stats/</code> correlations.csv, "
        "comparisons.csv, plots</li><li><code>subjects/&lt;id&gt;/</code> SCT-style CSVs, DTI maps</li></ul>",
    ]
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
        "font-size:12px;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        "th{background:#eee}figure{display:inline-block;margin:0.5em}img{max-width:100%}"
        "figcaption{font-size:10px;color:#666}"
    ) + html.SORT_CSS
    doc = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>cordbench analysis</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}{html.SORT_SCRIPT}{QC_SCRIPT}</body></html>\n"
    )
    return write_text(out / "report.html", doc)
