"""A sweep folder with planted effects: per-subject Dice = subject base + model effect + seed noise
(``tests/test_leaderboard_stats.py``, ``tests/test_html.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SUBJECTS = [f"sub-{i:02d}" for i in range(16)]


def make_sweep(
    root: Path, effects: dict[str, float], seeds=(0, 1), noise=0.004, extra_rows=(), subjects=SUBJECTS, knob=None
) -> Path:
    """A sweep folder with per-subject Dice = subject base + model effect + seed noise."""
    rng = np.random.default_rng(42)
    base = rng.uniform(0.70, 0.90, len(subjects))
    rows = []
    for i, (entry, eff) in enumerate(effects.items()):
        model, _, kv = entry.partition(":")
        for seed in seeds:
            tid = f"t{len(rows):03d}"
            d = root / "trials" / tid
            d.mkdir(parents=True)
            dice = np.clip(base + eff + rng.normal(0, noise, len(subjects)), 0, 1)
            pd.DataFrame({"subject": subjects, "sc/dice": dice, "sc/hd95": 10 * (1 - dice)}).to_csv(
                d / "test_metrics.csv", index=False
            )
            row = {
                "trial_id": tid,
                "status": "TERMINATED",
                "error": None,
                "model": model,
                "preset": "tiny",
                "seed": seed,
                "data": "phantom",
                "task": "sc",
                "run_dir": f"trials/{tid}",
                "params": 1000 + i,
            }
            if knob:
                row[knob] = int(kv) if kv else None
            rows.append(row)
    rows += list(extra_rows)
    pd.DataFrame(rows).to_csv(root / "results.csv", index=False)
    return root
