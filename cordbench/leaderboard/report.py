"""Leaderboard reports: Markdown, CSV, sortable self-contained HTML, PNG plots (matplotlib Agg)."""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

import pandas as pd

from cordbench import io
from cordbench.leaderboard.table import Leaderboard

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


def _mark(row: pd.Series) -> str:
    if row["best"]:
        return "best"
    return "≈ best" if row["tied_with_best"] else ""


def display_rows(lb: Leaderboard) -> tuple[list[str], list[list[str]], list[list[Any]]]:
    """Column headers, formatted cells and raw sort values of the main table."""
    t = lb.table
    knobs = [k for k in ("preset", *lb.sweep.knobs) if k in t.columns and lb.meta["by"] == "config"]
    metric = lb.meta["column"]
    heads = ["rank", "entry", *knobs, "trials", "subjects", f"mean {metric}", "95% CI", "trial SD",
             "params", "GFLOPs", "latency ms", "p (Wilcoxon)", "p (Holm)", "vs best"]
    cells, raw = [], []
    for _, r in t.iterrows():
        get = lambda k: r[k] if k in r else float("nan")  # noqa: E731
        cells.append([str(r["rank"]), str(r["entry"]), *[_txt(r[k]) for k in knobs],
                      str(r["n_trials"]), str(r["n_subjects"]), _num(r["mean"]),
                      f"[{_num(r['ci_low'])}, {_num(r['ci_high'])}]", _num(r["trial_sd"]), _params(get("params")),
                      _num(get("gflops"), 3), _num(get("latency_ms"), 2), _p(r["p_wilcoxon"]), _p(r["p_holm"]),
                      _mark(r)])
        raw.append([r["rank"], str(r["entry"]), *[_txt(r[k]) for k in knobs], r["n_trials"], r["n_subjects"],
                    r["mean"], r["ci_low"], r["trial_sd"], get("params"), get("gflops"), get("latency_ms"),
                    r["p_wilcoxon"], r["p_holm"], int(bool(r["tied_with_best"])) + int(bool(r["best"]))])
    return heads, cells, raw


def _md_table(heads: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, heads)) + " |", "|" + "|".join("---" for _ in heads) + "|"]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(lines)


def method_notes(lb: Leaderboard) -> list[str]:
    """Plain-language statement of what the numbers are."""
    m = lb.meta
    direction = "higher" if m["higher_is_better"] else "lower"
    notes = [
        f"Metric `{m['column']}` on held-out subjects ({direction} is better); task {m['task'] or '–'}, "
        f"data {m['data'] or '–'}; entries by {m['by']}.",
        "Pooling: each subject's value is averaged over all of an entry's trials (seeds, folds) that tested it, "
        "so a subject counts once; mean and CI are over these per-subject values.",
        f"95% CI: percentile bootstrap of the mean over subjects, {m['n_boot']} resamples, seed {m['seed']}. "
        "Trial SD: standard deviation of the trial-level means (seed/fold spread).",
        f"p (Wilcoxon): two-sided paired Wilcoxon signed-rank test (scipy) of each entry against the best on the "
        f"subjects both tested; p (Holm): Holm-corrected over the {max(0, len(lb.table) - 1)} comparisons; "
        f"'≈ best' = not significantly different from the best at α = {m['alpha']}.",
    ]
    if "cost_input" in m:
        notes.append(f"Cost: params and forward FLOPs (torch.utils.flop_counter) at input "
                     f"{', '.join(m['cost_input'].values()) or '–'}; latency = fastest of {m['latency_reps']} CPU "
                     f"forward passes, batch 1, {m['latency_threads']} torch thread(s), measured by the leaderboard.")
    return notes


def to_markdown(lb: Leaderboard) -> str:
    """The whole leaderboard report as Markdown."""
    heads, cells, _ = display_rows(lb)
    m = lb.meta
    out = [f"# Leaderboard — sweep `{m['sweep']}`", "",
           f"{m['n_trials_ok']} trial(s) ranked, {m['n_trials_failed']} failed or unranked.", "", _md_table(heads, cells), ""]
    for knob, ab in lb.ablations.items():
        out += [f"## Ablation: {knob}", "",
                _md_table([knob, "trials", "subjects", f"mean {m['column']}", "95% CI"],
                          [[str(r[knob]), str(r["n_trials"]), str(r["n_subjects"]), _num(r["mean"]),
                            f"[{_num(r['ci_low'])}, {_num(r['ci_high'])}]"] for _, r in ab.iterrows()]), ""]
    if len(lb.failed):
        out += ["## Failed or unranked trials", "",
                _md_table(list(lb.failed.columns),
                          [[_txt(v) for v in r] for r in lb.failed.itertuples(index=False)]), ""]
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
th {{ background: #2b5797; color: #fff; cursor: pointer; user-select: none; }}
th.asc::after {{ content: " ▲"; }} th.desc::after {{ content: " ▼"; }}
tr.tied td {{ background: #e6f2e6; }} tr.best td {{ background: #bfe3bf; font-weight: bold; }}
img {{ max-width: 100%; border: 1px solid #ddd; }} li {{ margin: 4px 0; }}
</style></head><body>
<h1>{title}</h1>
<p>{summary}</p>
<table id="leaderboard"><thead><tr>{head}</tr></thead><tbody>
{body}
</tbody></table>
<p>Click a column header to sort.</p>
{extra}
<h2>Method</h2><ul>{notes}</ul>
<script>
(function () {{
  var table = document.getElementById("leaderboard");
  var heads = table.tHead.rows[0].cells;
  function sortBy(col, asc) {{
      var th = heads[col];
      for (var j = 0; j < heads.length; j++) heads[j].classList.remove("asc", "desc");
      th.classList.add(asc ? "asc" : "desc");
      var rows = Array.prototype.slice.call(table.tBodies[0].rows);
      rows.sort(function (a, b) {{
        var x = a.cells[col].getAttribute("data-v"), y = b.cells[col].getAttribute("data-v");
        var nx = x === "" ? NaN : Number(x), ny = y === "" ? NaN : Number(y), r;
        if (!isNaN(nx) && !isNaN(ny)) r = nx - ny;
        else if (isNaN(nx) !== isNaN(ny)) r = isNaN(nx) ? 1 : -1;
        else r = x < y ? -1 : x > y ? 1 : 0;
        return asc ? r : -r;
      }});
      rows.forEach(function (row) {{ table.tBodies[0].appendChild(row); }});
  }}
  for (var i = 0; i < heads.length; i++) {{
    heads[i].addEventListener("click", function (col) {{ return function () {{
      sortBy(col, !heads[col].classList.contains("asc"));
    }}; }}(i));
  }}
  // #sort=<column index>[-desc] in the URL sorts on load (used to test the sorting headless)
  var m = /^#sort=(\d+)(-desc)?$/.exec(window.location.hash);
  if (m && +m[1] < heads.length) sortBy(+m[1], !m[2]);
}})();
</script>
</body></html>
"""


def _img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def to_html(lb: Leaderboard, images: dict[str, Path] | None = None) -> str:
    """A self-contained sortable HTML page (inline CSS/JS, plots as data URIs)."""
    heads, cells, raw = display_rows(lb)
    m = lb.meta
    body = []
    for (_, r), row_cells, row_raw in zip(lb.table.iterrows(), cells, raw):
        cls = "best" if r["best"] else "tied" if r["tied_with_best"] else ""
        tds = "".join(f'<td data-v="{html.escape("" if isinstance(v, float) and math.isnan(v) else str(v))}">'
                      f"{html.escape(c)}</td>" for c, v in zip(row_cells, row_raw))
        body.append(f'<tr class="{cls}">{tds}</tr>')
    extra = []
    for title, path in (images or {}).items():
        extra.append(f"<h2>{html.escape(title)}</h2>{_img_tag(path, title)}")
    if len(lb.failed):
        fhead = "".join(f"<th>{html.escape(c)}</th>" for c in lb.failed.columns)
        frows = "".join("<tr>" + "".join(f"<td>{html.escape(_txt(v))}</td>" for v in r)
                        + "</tr>" for r in lb.failed.itertuples(index=False))
        extra.append(f"<h2>Failed or unranked trials</h2><table><thead><tr>{fhead}</tr></thead><tbody>{frows}</tbody></table>")
    return _HTML.format(
        title=html.escape(f"Leaderboard — sweep {m['sweep']}"),
        summary=html.escape(f"{m['n_trials_ok']} trial(s) ranked on {m['column']}, {m['n_trials_failed']} failed."),
        head="".join(f"<th>{html.escape(h)}</th>" for h in heads), body="\n".join(body), extra="\n".join(extra),
        notes="".join(f"<li>{html.escape(n)}</li>" for n in method_notes(lb)))


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
    """Entries (rank order, best on top) with their mean and 95% CI; tied-with-best in green."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = lb.table
    w, h = leaderboard_plot_size(len(t))
    fig, ax = plt.subplots(figsize=(w / DPI, h / DPI), dpi=DPI)
    y = list(range(len(t)))[::-1]
    colors = ["#2e7d32" if tied else "#c62828" for tied in t["tied_with_best"]]
    for yi, (_, r), c in zip(y, t.iterrows(), colors):
        ax.errorbar([r["mean"]], [yi], xerr=[[r["mean"] - r["ci_low"]], [r["ci_high"] - r["mean"]]], fmt="o",
                    color=c, ecolor=c, capsize=4, markersize=6)
    ax.axvline(t["mean"].iloc[0], color="#888", linestyle="--", linewidth=1)
    ax.set_yticks(y)
    ax.set_yticklabels([str(e) if len(str(e)) <= 40 else str(e)[:38] + "…" for e in t["entry"]], fontsize=8)
    ax.set_xlabel(f"{lb.meta['column']} (mean, 95% bootstrap CI)")
    ax.set_title(f"sweep {lb.meta['sweep']}: green = not significantly different from the best (Holm)", fontsize=9)
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
    ax.errorbar(x, ab["mean"], yerr=[ab["mean"] - ab["ci_low"], ab["ci_high"] - ab["mean"]], fmt="o-",
                color="#2b5797", capsize=5)
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
    """Write leaderboard.{md,csv,png,html} and ablation_<knob>.png into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Any] = {"png": plot_leaderboard(lb, out / "leaderboard.png"), "ablation": {}}
    for knob in lb.ablations:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in knob)
        paths["ablation"][knob] = plot_ablation(lb, knob, out / f"ablation_{safe}.png")
    paths["csv"] = io.write_csv(out / "leaderboard.csv", csv_frame(lb))
    paths["md"] = io.write_text(out / "leaderboard.md", to_markdown(lb))
    images = {"Leaderboard": paths["png"], **{f"Ablation: {k}": p for k, p in paths["ablation"].items()}}
    paths["html"] = io.write_text(out / "leaderboard.html", to_html(lb, images))
    return paths
