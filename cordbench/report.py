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
            if not isinstance(s, dict) or s.get("mean") is None:
                cells.append("n/a")
                continue
            sd = s.get("std")
            cells.append(f"{s['mean']:.4f} ± {sd:.3f}" if sd == sd and sd is not None else f"{s['mean']:.4f}")
        lines.append(f"{c:<8}" + "".join(f"{x:>16}" for x in cells))
    lines.append(f"(n = {summary.get('n_subjects', '?')} held-out subjects; distances in mm)")
    return "\n".join(lines)
