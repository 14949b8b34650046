"""Terminal tables of run results."""

from __future__ import annotations

from typing import Any

SHOWN = ("dice", "jaccard", "tpr", "precision", "hd95", "msd")


def metrics_table(summary: dict[str, Any], shown: tuple[str, ...] = SHOWN) -> str:
    """Per-class table (mean ± sd over held-out subjects) from ``test_summary.json`` content."""
    metrics = summary.get("metrics", {})
    classes = sorted({k.split("/")[0] for k in metrics if k.count("/") == 1})  # rater<N>/<class>/<m>: CSV only
    head = f"{'class':<8}" + "".join(f"{m:>16}" for m in shown)
    lines = [head, "-" * len(head)]
    for c in classes:
        cells = []
        for m in shown:
            s = metrics.get(f"{c}/{m}")
            if not isinstance(s, dict) or s.get("mean") is None:
                cells.append("n/a")
                continue
            sd = s.get("std")
            cells.append(f"{s['mean']:.4f} ± {sd:.3f}" if sd == sd and sd is not None else f"{s['mean']:.4f}")
        lines.append(f"{c:<8}" + "".join(f"{x:>16}" for x in cells))
    grid = f"; scored on the {summary['scoring']} grid" if summary.get("scoring") else ""
    raters = sorted({k.split("/")[0] for k in metrics if k.count("/") == 2})
    extra = f"; per-rater scores ({', '.join(raters)}) in test_metrics.csv" if raters else ""
    post = f"; post-processing: {summary['postprocess']}" if summary.get("postprocess") else ""
    lines.append(f"(n = {summary.get('n_subjects', '?')} held-out subjects; distances in mm{grid}{post}{extra})")
    return "\n".join(lines)
