"""Leaderboard reports: Markdown, CSV, sortable self-contained HTML, PNG plots (matplotlib Agg).

Why over ~450 lines: one writer per report format of the same tables (and the Method notes they
share); the tables themselves are built in :mod:`leaderboard.table`, the morphometric and
real-data cells in :mod:`leaderboard.morpho_pool` and :mod:`leaderboard.real`.
"""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any

import pandas as pd

from core import html, io
from leaderboard.table import Leaderboard, fmt_value

DPI = 100
PLOT_WIDTH_IN = 8.0
ABLATION_SIZE_IN = (6.4, 4.0)


# ------------------------------------------------------------------------------------ formatting
def _num(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}f}"


def _txt(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _p(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return "<1e-4" if v < 1e-4 else f"{v:.4f}"


def _params(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v / 1e6:.3f} M" if v >= 1e5 else f"{v / 1e3:.1f} k"


#: Plot/HTML colour of each comparison label (leaderboard.stats labels).
LABEL_COLORS = {
    "best": "#1b5e20",
    "tied": "#2e7d32",
    "worse": "#c62828",
    "undetermined — n too small": "#757575",
    "n/a": "#bdbdbd",
}


def _label(row: pd.Series) -> str:
    """The entry's label against the best (older tables without ``label``: from ``tied_with_best``)."""
    lab = row.get("label")
    if isinstance(lab, str) and lab:
        return lab
    if row["best"]:
        return "best"
    return "tied" if row["tied_with_best"] else ""


def _mark(row: pd.Series) -> str:
    return _label(row)


def _diff_cell(r: pd.Series, digits: int = 4) -> str:
    d = r.get("diff_to_best", float("nan"))
    if _nan(d):
        return "–"
    return f"{d:+.{digits}f} [{r['diff_ci_low']:+.{digits}f}, {r['diff_ci_high']:+.{digits}f}]"


def _nan(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _with_ci(r: pd.Series, key: str, lo: str, hi: str, digits: int = 2, na: str = "n/a") -> str:
    """``mean [lo, hi]`` of a row's columns, or ``na`` when the mean is missing."""
    v = r.get(key, float("nan"))
    if _nan(v):
        return na
    return f"{_num(v, digits)} [{_num(r.get(lo, float('nan')), digits)}, {_num(r.get(hi, float('nan')), digits)}]"


def _morpho_on(lb: Leaderboard) -> bool:
    return lb.morpho is not None and lb.morpho.enabled


def _na(r: pd.Series, key: str) -> str:
    """``n/a: <reason>`` for a morphometric cell without a value."""
    why = r.get(key, "")
    why = "" if _nan(why) else str(why)
    return f"n/a: {why}" if why else "n/a"


MORPHO_HEADS = [
    "CSA |err| % [95% CI]",
    "CSA bias % [95% CI]",
    "r FA–SAC/CSA model [95% CI]",
    "r FA–SAC/CSA manual [95% CI]",
]


def _morpho_cells(r: pd.Series) -> tuple[list[str], list[Any]]:
    na_csa = _na(r, "morpho_note")
    na_r = _na(r, "fa_note") if not _nan(r.get("csa_mae_pct", float("nan"))) else na_csa
    cells = [
        _with_ci(r, "csa_mae_pct", "csa_mae_ci_low", "csa_mae_ci_high", na=na_csa),
        _with_ci(r, "csa_bias_pct", "csa_bias_ci_low", "csa_bias_ci_high", na=na_csa),
        _with_ci(r, "r_model", "r_model_ci_low", "r_model_ci_high", 3, na=na_r),
        _with_ci(r, "r_manual", "r_manual_ci_low", "r_manual_ci_high", 3, na=na_r),
    ]
    raw = [r.get(k, float("nan")) for k in ("csa_mae_pct", "csa_bias_pct", "r_model", "r_manual")]
    return cells, raw


_LABEL_ORDER = {"best": 4, "tied": 3, "undetermined — n too small": 2, "worse": 1}


def display_rows(lb: Leaderboard) -> tuple[list[str], list[list[str]], list[list[Any]]]:
    """Column headers, formatted cells and raw sort values of the main table."""
    t = lb.table
    knobs = [k for k in ("preset", *lb.sweep.knobs) if k in t.columns and lb.meta["by"] == "config"]
    metric = lb.meta["column"]
    morpho = _morpho_on(lb)
    from leaderboard import real as real_cols

    real_on = lb.real is not None
    heads = [
        "rank",
        "entry",
        *knobs,
        "trials",
        "subjects",
        f"mean {metric}",
        "95% CI",
        "trial SD",
        "seeds",
        "seed SD",
        "params",
        "GFLOPs",
        "latency ms",
        *(MORPHO_HEADS if morpho else []),
        *(real_cols.heads(lb.real) if real_on else []),
        "Δ to best [95% CI]",
        "d_z",
        "p (Wilcoxon)",
        "p (Holm)",
        "vs best",
    ]
    cells, raw = [], []
    for _, r in t.iterrows():
        get = lambda k: r[k] if k in r else float("nan")  # noqa: E731
        m_cells, m_raw = _morpho_cells(r) if morpho else ([], [])
        if real_on:
            r_cells, r_raw = real_cols.cells(r)
            m_cells, m_raw = m_cells + r_cells, m_raw + r_raw
        cells.append(
            [
                str(r["rank"]),
                str(r["entry"]),
                *[_txt(r[k]) for k in knobs],
                str(r["n_trials"]),
                str(r["n_subjects"]),
                _num(r["mean"]) + (f" ({int(get('n_failed'))} failed)" if get("n_failed") > 0 else ""),
                f"[{_num(r['ci_low'])}, {_num(r['ci_high'])}]",
                _num(r["trial_sd"]),
                _txt(fmt_value(get("n_seeds"))),
                _num(get("seed_sd")),
                _params(get("params")),
                _num(get("gflops"), 3),
                _num(get("latency_ms"), 2),
                *m_cells,
                _diff_cell(r),
                _num(get("effect_dz"), 2),
                _p(r["p_wilcoxon"]),
                _p(r["p_holm"]),
                _mark(r),
            ]
        )
        raw.append(
            [
                r["rank"],
                str(r["entry"]),
                *[_txt(r[k]) for k in knobs],
                r["n_trials"],
                r["n_subjects"],
                r["mean"],
                r["ci_low"],
                r["trial_sd"],
                get("n_seeds"),
                get("seed_sd"),
                get("params"),
                get("gflops"),
                get("latency_ms"),
                *m_raw,
                get("diff_to_best"),
                get("effect_dz"),
                r["p_wilcoxon"],
                r["p_holm"],
                _LABEL_ORDER.get(_label(r), 0),
            ]
        )
    return heads, cells, raw


def detail_tables(lb: Leaderboard) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, headers, rows) of the detail tables below the main one: morphometrics, then real data per image."""
    from leaderboard import precision_report

    out = morpho_tables(lb)
    if lb.real is not None:
        from leaderboard.real import detail_table

        out.append(detail_table(lb.real, [str(e) for e in lb.table["entry"]]))
    if lb.meta.get("soft_csa") and "csa_soft_mae_pct" in lb.table:
        from leaderboard.ensembles import soft_table

        out.append(soft_table(lb.table))
    if precision_report.enabled(lb):
        out.append(precision_report.detail_table(lb))
    return out


def morpho_tables(lb: Leaderboard) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, headers, rows) of the morphometric detail tables: per-level CSA error, FA vs SAC/CSA."""
    if not _morpho_on(lb):
        return []
    from leaderboard.morpho_pool import LEVEL_NAMES

    m = lb.morpho
    entries = [str(e) for e in lb.table["entry"]]
    levels = [n for n in LEVEL_NAMES.values() if len(m.levels) and (m.levels["level"] == n).any()]
    by = {(str(r["entry"]), r["level"]): r for _, r in m.levels.iterrows()} if len(m.levels) else {}
    rows_t = {str(r["entry"]): r for _, r in lb.table.iterrows()}
    out = []
    for what, key in (("absolute error", "mae"), ("bias (signed error)", "bias")):
        rows = []
        for e in entries:
            r = rows_t[e]
            overall = _with_ci(r, f"csa_{key}_pct", f"csa_{key}_ci_low", f"csa_{key}_ci_high", na=_na(r, "morpho_note"))
            cells = [
                _with_ci(by[(e, L)], f"{key}_pct", f"{key}_ci_low", f"{key}_ci_high") if (e, L) in by else "–"
                for L in levels
            ]
            n = r.get("csa_n_subjects", float("nan"))
            rows.append([e, "–" if _nan(n) else str(int(n)), *cells, overall])
        out.append(
            (
                f"CSA {what} per vertebral level, % of the manual CSA (mean [95% CI] over subjects)",
                ["entry", "subjects", *levels, "overall"],
                rows,
            )
        )
    rows = []
    for e in entries:
        r = rows_t[e]
        na = _na(r, "fa_note") if not _nan(r.get("csa_mae_pct", float("nan"))) else _na(r, "morpho_note")
        row = [e]
        for src in ("model", "manual"):
            n = r.get(f"n_{src}", float("nan"))
            row += [
                _with_ci(r, f"r_{src}", f"r_{src}_ci_low", f"r_{src}_ci_high", 3, na=na),
                _p(r.get(f"p_{src}", float("nan"))),
                "–" if _nan(n) else str(int(n)),
            ]
        rows.append(row)
    out.append(
        (
            "FA vs SAC/CSA (Pearson r [95% CI], over held-out subject × level pairs)",
            ["entry", "r model masks", "p", "n", "r manual masks", "p", "n"],
            rows,
        )
    )
    return out


def _md_table(heads: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, heads)) + " |", "|" + "|".join("---" for _ in heads) + "|"]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(lines)


def method_notes(lb: Leaderboard) -> list[str]:
    """Plain-language statement of what the numbers are."""
    from leaderboard.provenance import notes as provenance_notes

    m = lb.meta
    direction = "higher" if m["higher_is_better"] else "lower"
    notes = [
        f"Metric `{m['column']}` on held-out subjects ({direction} is better); task {m['task'] or '–'}, "
        f"data {m['data'] or '–'}; entries by {m['by']}.",
        "Pooling: each subject's value is averaged over all of an entry's trials (seeds, folds) that tested it, "
        "so a subject counts once; mean and CI are over these per-subject values.",
        f"95% CI: percentile bootstrap of the mean over subjects, {m['n_boot']} resamples, seed {m['seed']}. "
        "Trial SD: standard deviation of the trial-level means (seed/fold spread).",
        "Seeds: 'seeds' counts an entry's seeds and 'seed SD' is the SD over seeds of each seed's mean on the "
        "subjects every seed tested (seed-to-seed spread). With ≥ 2 seeds the comparison stays paired by subject: "
        "seeds are averaged within each subject first, so the subject remains the unit of every test and CI.",
        *comparison_notes(lb),
        *m.get("notes", []),
        *provenance_notes(m),
        *lb.meta.get("external_notes", []),
    ]
    if _morpho_on(lb):
        notes += [
            "Morphometrics: each trial's best checkpoint segments every held-out subject's T2w image on its native "
            "grid; analysis.morphometrics measures the model's and the manual cord masks alike (angle-corrected "
            "axial slices, SCT conventions) with the manual level map and canal. CSA error = 100·(model − manual) "
            "/ manual per level C1–C7 (a level the model misses counts as −100 %); |err| and bias per subject "
            "average its levels, then the entry's trials; 95% CI: percentile bootstrap over subjects "
            f"({m['n_boot']} resamples).",
            "FA vs SAC/CSA: Pearson r (Fisher-z 95% CI) over the held-out subject × level pairs C1–C7; SAC/CSA "
            "from the model's cord mask (averaged over the entry's trials) and the manual canal, FA from the "
            "manual DWI cord mask (dipy WLS); 'manual' = the same pairs measured on the manual cord masks. "
            "Levels of one subject are not independent: read the CI as descriptive.",
        ]
        notes += lb.morpho.notes
    elif lb.morpho is not None:
        notes.append(f"Morphometric columns: {lb.morpho.reason}.")
    if lb.real is not None:
        from leaderboard.real import notes as real_notes

        notes += real_notes(lb.real, m["n_boot"])
    if lb.ensembles is not None:
        from leaderboard.ensembles import notes as ensemble_notes

        notes += ensemble_notes(lb)
    if "cost_input" in m:
        notes.append(
            f"Cost: params and forward FLOPs (torch.utils.flop_counter, CPU fused attention counted) at input "
            f"{', '.join(m['cost_input'].values()) or '–'}; latency = fastest of {m['latency_reps']} CPU "
            f"forward passes, batch 1, {m['latency_threads']} torch thread(s), measured by the leaderboard."
        )
    from leaderboard import precision_report

    notes += precision_report.notes(lb)
    return notes


def comparison_notes(lb: Leaderboard) -> list[str]:
    """How each entry is compared with the best, with the smallest p attainable for the n at hand."""
    from leaderboard import stats

    m = lb.meta
    t = lb.table
    alpha, delta = m["alpha"], m.get("delta", 0.01)
    k = int(m.get("n_comparisons", max(0, len(t) - 1)))
    notes = [
        f"Comparison with the best, on the subjects both tested: Δ = mean paired difference (entry − best) with "
        f"its percentile bootstrap 95% CI over subjects ({m['n_boot']} resamples); d_z = mean / SD of the paired "
        f"differences (Cohen's d_z; CSV: also the matched-pairs rank-biserial r); p (Wilcoxon) = two-sided "
        f"paired Wilcoxon signed-rank test (scipy, exact for n ≤ 50 without ties); p (Holm) = Holm-adjusted "
        f"over the {k} comparison(s).",
        f"Labels: 'tied' = CI of Δ contains 0 and lies within ±δ (δ = {delta:g}, --delta); 'worse' = Holm "
        f"p < α = {alpha:g} and CI of Δ excludes 0; 'undetermined — n too small' = neither (the test cannot "
        f"reach α with these subjects, or the CI is too wide to call it): more held-out subjects are needed.",
    ]
    ns = sorted({int(n) for n in t.get("n_pairs", pd.Series(dtype=float)).iloc[1:] if not _nan(n) and n > 0})
    for n in ns:
        p1, ph = stats.min_wilcoxon_p(n), stats.min_holm_p(n, k)
        verdict = "no entry can be found worse" if ph >= alpha else "an entry can be found worse"
        notes.append(
            f"Minimum attainable p with n = {n} subjects: 2/2^{n} = {p1:.3g} (exact two-sided Wilcoxon); "
            f"after Holm over {k} comparison(s) {ph:.3g} {'≥' if ph >= alpha else '<'} α = {alpha:g}: "
            f"{verdict}."
        )
    return notes


def to_markdown(lb: Leaderboard) -> str:
    """The whole leaderboard report as Markdown."""
    heads, cells, _ = display_rows(lb)
    m = lb.meta
    out = [
        f"# Leaderboard — sweep `{m['sweep']}`",
        "",
        f"{m['n_trials_ok']} trial(s) ranked, {m['n_trials_failed']} failed or unranked.",
        "",
        _md_table(heads, cells),
        "",
    ]
    tables = morpho_tables(lb)
    if tables:
        out += ["## Morphometrics", ""]
        for title, heads_m, rows_m in tables:
            out += [f"### {title}", "", _md_table(heads_m, rows_m), ""]
    for title, heads_m, rows_m in detail_tables(lb)[len(tables) :]:
        out += [f"## {title}", "", _md_table(heads_m, rows_m), ""]
    for knob, ab in lb.ablations.items():
        out += [
            f"## Ablation: {knob}",
            "",
            _md_table(
                [knob, "trials", "subjects", f"mean {m['column']}", "95% CI"],
                [
                    [
                        str(r[knob]),
                        str(r["n_trials"]),
                        str(r["n_subjects"]),
                        _num(r["mean"]),
                        f"[{_num(r['ci_low'])}, {_num(r['ci_high'])}]",
                    ]
                    for _, r in ab.iterrows()
                ],
            ),
            "",
        ]
    if len(lb.failed):
        out += [
            "## Failed or unranked trials",
            "",
            _md_table(list(lb.failed.columns), [[_txt(v) for v in r] for r in lb.failed.itertuples(index=False)]),
            "",
        ]
    out += ["## Method", ""] + [f"- {n}" for n in method_notes(lb)] + [""]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------ HTML
_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }}
table {{ border-collapse: collapse; font-size: 14px; margin: 12px 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; white-space: nowrap; }}
td:nth-child(2), th:nth-child(2) {{ text-align: left; }}
th {{ background: #2b5797; color: #fff; }}
tr.tied td {{ background: #e6f2e6; }} tr.best td {{ background: #bfe3bf; font-weight: bold; }}
tr.worse td {{ background: #fbe9e9; }} tr.undetermined td {{ background: #f2f2f2; }}
img {{ max-width: 100%; border: 1px solid #ddd; }} li {{ margin: 4px 0; }}
{sort_css}
</style></head><body>
<h1>{title}</h1>
<p>{summary}</p>
{table}
<p>Click a column header to sort.</p>
{extra}
<h2>Method</h2><ul>{notes}</ul>
{script}
</body></html>
"""


def _img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def to_html(lb: Leaderboard, images: dict[str, Path] | None = None) -> str:
    """A self-contained sortable HTML page (inline CSS/JS, plots as data URIs)."""
    heads, cells, raw = display_rows(lb)
    m = lb.meta
    classes = []
    for _, r in lb.table.iterrows():
        lab = _label(r)
        classes.append({"best": "best", "tied": "tied", "worse": "worse"}.get(lab, "undetermined" if lab else ""))
    rows = [[html.cell(c, v) for c, v in zip(row_cells, row_raw)] for row_cells, row_raw in zip(cells, raw)]
    main = html.table(heads, rows, table_id="leaderboard", row_classes=classes)
    extra = []
    for title, heads_m, rows_m in detail_tables(lb):
        rows_m = [[html.cell(c) for c in row] for row in rows_m]
        extra.append(f"<h2>{html.escape(title)}</h2>" + html.table(heads_m, rows_m))
    for title, path in (images or {}).items():
        extra.append(f"<h2>{html.escape(title)}</h2>{_img_tag(path, title)}")
    if len(lb.failed):
        frows = [[html.cell(_txt(v)) for v in r] for r in lb.failed.itertuples(index=False)]
        extra.append("<h2>Failed or unranked trials</h2>" + html.table(list(lb.failed.columns), frows))
    return _HTML.format(
        title=html.escape(f"Leaderboard — sweep {m['sweep']}"),
        summary=html.escape(f"{m['n_trials_ok']} trial(s) ranked on {m['column']}, {m['n_trials_failed']} failed."),
        table=main,
        extra="\n".join(extra),
        sort_css=html.SORT_CSS,
        script=html.SORT_SCRIPT,
        notes="".join(f"<li>{html.escape(n)}</li>" for n in method_notes(lb)),
    )


# ----------------------------------------------------------------------------------------- plots
def leaderboard_plot_size(n_entries: int) -> tuple[int, int]:
    """Pixel size (width, height) of ``leaderboard.png`` for ``n_entries`` entries."""
    return int(PLOT_WIDTH_IN * DPI), int(round((1.4 + 0.45 * max(1, n_entries)) * DPI))


def ablation_plot_size() -> tuple[int, int]:
    """Pixel size (width, height) of an ablation plot."""
    return int(ABLATION_SIZE_IN[0] * DPI), int(ABLATION_SIZE_IN[1] * DPI)


def _savefig(fig: Any, path: Path) -> Path:
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    return path


def plot_leaderboard(lb: Leaderboard, path: Path) -> Path:
    """Entries (rank order, best on top) with their mean and 95% CI, coloured by label (:data:`LABEL_COLORS`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = lb.table
    w, h = leaderboard_plot_size(len(t))
    fig, ax = plt.subplots(figsize=(w / DPI, h / DPI), dpi=DPI)
    y = list(range(len(t)))[::-1]
    colors = [LABEL_COLORS.get(_label(r), "#757575") for _, r in t.iterrows()]
    for yi, (_, r), c in zip(y, t.iterrows(), colors):
        ax.errorbar(
            [r["mean"]],
            [yi],
            xerr=[[r["mean"] - r["ci_low"]], [r["ci_high"] - r["mean"]]],
            fmt="o",
            color=c,
            ecolor=c,
            capsize=4,
            markersize=6,
        )
    ax.axvline(t["mean"].iloc[0], color="#888", linestyle="--", linewidth=1)
    ax.set_yticks(y)
    ax.set_yticklabels([str(e) if len(str(e)) <= 40 else str(e)[:38] + "…" for e in t["entry"]], fontsize=8)
    ax.set_xlabel(f"{lb.meta['column']} (mean, 95% bootstrap CI)")
    ax.set_title(
        f"sweep {lb.meta['sweep']} vs best: dark green = best, green = tied (±{lb.meta.get('delta', 0.01):g}), "
        f"red = worse (Holm), grey = undetermined (n too small)",
        fontsize=8,
    )
    ax.grid(axis="x", alpha=0.3)
    ax.set_ylim(-0.7, len(t) - 0.3)
    fig.subplots_adjust(left=0.35, right=0.97, top=1 - 0.45 / (h / DPI), bottom=0.6 / (h / DPI))
    try:
        return _savefig(fig, path)
    finally:
        plt.close(fig)


def plot_ablation(lb: Leaderboard, knob: str, path: Path) -> Path:
    """The metric (mean and 95% CI over subjects) as a function of one swept knob."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ab = lb.ablations[knob]
    fig, ax = plt.subplots(figsize=ABLATION_SIZE_IN, dpi=DPI)
    x = list(range(len(ab)))
    ax.errorbar(
        x,
        ab["mean"],
        yerr=[ab["mean"] - ab["ci_low"], ab["ci_high"] - ab["mean"]],
        fmt="o-",
        color="#2b5797",
        capsize=5,
    )
    ax.set_xticks(x)
    ax.set_xticklabels([str(v) for v in ab[knob]], fontsize=8)
    ax.set_xlabel(knob)
    ax.set_ylabel(f"{lb.meta['column']} (mean, 95% CI)")
    ax.set_title(f"ablation: {knob} (sweep {lb.meta['sweep']})", fontsize=10)
    ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.16, right=0.97, top=0.9, bottom=0.14)
    try:
        return _savefig(fig, path)
    finally:
        plt.close(fig)


def csv_frame(lb: Leaderboard) -> pd.DataFrame:
    """The table as written to ``leaderboard.csv`` (raw numbers, one row per entry)."""
    t = lb.table.copy()
    t.insert(len(t.columns), "metric", lb.meta["column"])
    return t


def write_reports(lb: Leaderboard, out: Path) -> dict[str, Any]:
    """Write leaderboard.{md,csv,png,html}, ablation_<knob>.png (and the morphometric CSVs) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Any] = {"png": plot_leaderboard(lb, out / "leaderboard.png"), "ablation": {}}
    for knob in lb.ablations:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in knob)
        paths["ablation"][knob] = plot_ablation(lb, knob, out / f"ablation_{safe}.png")
    paths["csv"] = io.write_csv(out / "leaderboard.csv", csv_frame(lb))
    if _morpho_on(lb) and len(lb.morpho.levels):
        paths["morphometrics"] = io.write_csv(out / "morphometrics.csv", lb.morpho.levels)
        io.write_csv(out / "morphometrics_subjects.csv", lb.morpho.per_subject)
    from leaderboard import precision_report

    paths["md"] = io.write_text(out / "leaderboard.md", to_markdown(lb))
    images = {"Leaderboard": paths["png"], **{f"Ablation: {k}": p for k, p in paths["ablation"].items()}}
    if precision_report.enabled(lb):
        paths["precision"] = images["Precision"] = precision_report.plot(lb, out / "precision.png")
        io.write_csv(out / "precision_images.csv", lb.precision.images)
    paths["html"] = io.write_text(out / "leaderboard.html", to_html(lb, images))
    return paths
