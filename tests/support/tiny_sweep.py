"""The tiny sweep: four real ``runs.runner.fit`` runs (tiny networks, phantom cohort of 6 subjects,
one short epoch, offline wandb) laid out as ``cordbench sweep`` lays out a sweep, plus one failed
trial row and a ``results.csv``; each trial's ``precision.csv`` cache is measured once.

``tests/conftest.py`` builds it once per session (the ``real_sweep`` fixture); the leaderboard,
tracking, real-data and morphometrics tests read it, and copy it where they write.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: (trial_id, model, seed, options)
TRIALS = [
    ("t000", "unet", 0, {}),
    ("t001", "unet", 1, {}),
    ("t002", "sattisunet", 0, {"skip_connections": 0}),
    ("t003", "sattisunet", 0, {"skip_connections": 1}),
]
FAILED = ("t004", "sattisunet", 1, {"skip_connections": 1}, "RuntimeError: out of memory (simulated)")
GROUP = "lb-test-sweep"


def trial_config(
    phantom: Path, out: Path, trial_id: str, model: str, seed: int, options: dict[str, Any]
) -> dict[str, Any]:
    """Resolved config of one trial (what the sweep runner would hand to ``fit``)."""
    from runs.config import load_config

    extra = {
        "name": f"{GROUP}-{trial_id}",
        "seed_everything": seed,
        "output_dir": str(out),
        "model": {"name": model, "preset": "tiny", "options": dict(options)},
        "data": {
            "name": "phantom",
            "root": str(phantom),
            "task": "sc",
            "spacing": [2.0, 2.0, 2.0],
            "patch_size": [24, 24],
            "batch_size": 4,
            "samples_per_volume": 2,
            "queue_length": 8,
            "phantom": {"subjects": 6, "seed": 0},
            "split": {"val_fraction": 0.15, "test_fraction": 0.5, "seed": 0},
        },
        "trainer": {
            "max_epochs": 1,
            "accelerator": "cpu",
            "devices": 1,
            "limit_train_batches": 2,
            "enable_progress_bar": False,
            "log_every_n_steps": 1,
        },
        "logger": {"wandb": {"enabled": True, "mode": "offline", "group": GROUP, "job_type": "trial"}},
    }
    return load_config([], [], extra)


def build_sweep(root: Path) -> Path:
    """Run the trials into ``root/trials/<id>/`` and write ``results.csv`` and ``sweep.yaml``."""
    from data_modules.phantom import generate_cohort
    from runs.runner import fit

    root.mkdir(parents=True, exist_ok=True)
    phantom = root.parent / "phantom"
    # the cohort the first fit would generate (data.phantom: 6 subjects, seed 0, defaults), in one process
    generate_cohort(phantom, n_subjects=6, seed=0, snr=30.0, dwi=False, workers=1)
    rows = []
    for trial_id, model, seed, options in TRIALS:
        out = root / "trials" / trial_id
        result = fit(trial_config(phantom, out, trial_id, model, seed, options))
        rows.append(
            {
                "trial_id": trial_id,
                "status": "TERMINATED",
                "error": "",
                "model": model,
                "preset": "tiny",
                "seed": seed,
                "data": "phantom",
                "task": "sc",
                "skip_connections": options.get("skip_connections"),
                "val_dice": result.val.get("val/dice"),
                "test_dice": result.test_summary["metrics"]["sc/dice"]["mean"],
                "run_dir": f"trials/{trial_id}",
                "epochs": 1,
                "seconds": result.seconds,
                "params": None,
            }
        )
    tid, model, seed, options, error = FAILED
    rows.append(
        {
            "trial_id": tid,
            "status": "ERROR",
            "error": error,
            "model": model,
            "preset": "tiny",
            "seed": seed,
            "data": "phantom",
            "task": "sc",
            "skip_connections": options["skip_connections"],
            "run_dir": f"trials/{tid}",
        }
    )
    pd.DataFrame(rows).to_csv(root / "results.csv", index=False)
    (root / "sweep.yaml").write_text(f"name: {GROUP}\n")
    # each trial's precision.csv (the leaderboard's per-image cache, on by default: the phantom has two
    # contrasts) is measured once here, so that the copies the leaderboard tests make reuse it
    from leaderboard.precision import trial_precision

    for trial_id, *_ in TRIALS:
        trial_precision(root / "trials" / trial_id, None)
    return root


# ------------------------------------------------------------------------------ wandb records
def wandb_records(run_dir: Path) -> list[dict[str, Any]]:
    """Every record of an offline run, read with wandb's own reader (``wandb leet inspect --json``)."""
    exe = Path(sys.executable).parent / "wandb"
    proc = subprocess.run(
        [str(exe), "leet", "inspect", "--json", str(run_dir)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip().startswith("{")]


def wandb_run_info(run_dir: Path) -> dict[str, Any]:
    """The run record (group, job type, tags, config), the merged summary and the artifact records."""
    records = wandb_records(run_dir)
    run = next(r["run"] for r in records if r.get("type") == "run")
    summary: dict[str, Any] = {}
    for r in records:
        if r.get("type") == "summary":
            summary.update(r["summary"].get("update") or {})
    return {
        "run": run,
        "summary": summary,
        "artifacts": [r["artifact"] for r in records if r.get("type") == "artifact"],
        "exit": next((r["exit"] for r in records if r.get("type") == "exit"), None),
    }


def exact_bootstrap_cdf(values: list[float]):
    """CDF of the bootstrap mean over all n**n equally likely resamples (small n only)."""
    n = len(values)
    means = np.sort([np.mean(c) for c in itertools.product(values, repeat=n)])
    return lambda x: np.searchsorted(means, x, side="right") / means.size
