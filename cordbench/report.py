"""Terminal tables of run results."""
from __future__ import annotations

from typing import Any

SHOWN = ("dice", "jaccard", "tpr", "precision", "hd95", "msd")


def metrics_table(summary: dict[str, Any], shown: tuple[str, ...] = SHOWN) -> str:
    """Per-class table (mean ± sd over held-out subjects) from ``test_summary.json`` content."""
    metrics = summary.get("metrics", {})
    classes = sorted({k.split("/")[0] for k in metrics if "/" in k})
    head = f"{'class':<8}" + "".join(f"{m:>16}" for m in shown)
    lines = [head, "-" * len(head)]
    for c in classes:
        cells = []
        for m in shown:
            s = metrics.get(f"{c}/{m}")
            cells.append(f"{s['mean']:>9.4f} ± {s['std']:<5.3f}" if isinstance(s, dict) and s.get("mean") is not None
                         else f"{'n/a':>16}")
        lines.append(f"{c:<8}" + "".join(f"{x:>16}" for x in cells))
    lines.append(f"(n = {summary.get('n_subjects', '?')} held-out subjects; distances in mm)")
    return "\n".join(lines)
