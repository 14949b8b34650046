"""Stand-ins for sweep trials: a finished trial folder on disk and a fake Ray Tune session
(``tests/test_sweeps_config.py``, ``tests/test_sweeps_trainable.py``, ``tests/test_sweeps_records.py``)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

import sweeps.trainable as T
from sweeps.records import TUNE_CHECKPOINT, TUNE_META


def fake_trial(root: Path, tid: str, dice: list[float], val: list[float], task: str = "sc") -> None:
    """A finished trial folder: config, per-epoch metrics, per-subject test metrics, trial record, 2 attempts."""
    run = root / "trials" / tid
    run.mkdir(parents=True)
    from runs.config import DEFAULTS, dump

    cfg = copy.deepcopy(DEFAULTS)
    cfg["model"].update(name="unet", preset="tiny", options={"skip_connections": 1})
    cfg["data"]["task"] = task
    cfg["trainer"]["max_epochs"] = len(val)
    (run / "config.yaml").write_text(dump(cfg))
    rows = []
    for e, v in enumerate(val):
        rows += [{"epoch": e, "step": e, "val/dice": v}, {"epoch": e, "step": e, "train/loss_epoch": 1.0}]
    pd.DataFrame(rows).to_csv(run / "metrics.csv", index=False)
    cls = {"sc": ["sc"], "gm": ["sc", "wm", "gm"]}[task]
    pd.DataFrame(
        {
            "subject": [f"sub-{i}" for i in range(len(dice))],
            **{f"{c}/dice": np.array(dice) * (k + 1) / len(cls) for k, c in enumerate(cls)},
            **{f"{c}/hd95": 1.0 for c in cls},
        }
    ).to_csv(run / "test_metrics.csv", index=False)
    (run / "trial.json").write_text(json.dumps({"seconds": 12.5}))
    (run / ".attempts").write_text("2")


# ---------------------------------------------------------------------------- the fake session
class FakeSession:
    """What ``train_trial`` sees of Ray Tune: a trial id, a restored checkpoint, the reports."""

    def __init__(self, trial_id: str, checkpoint=None):
        self.trial_id, self.checkpoint = trial_id, checkpoint
        self.reports: list[tuple[dict, dict | None]] = []  # (metrics, checkpoint meta.json or None)

    def report(self, metrics, checkpoint=None):
        meta = None
        if checkpoint is not None:
            with checkpoint.as_directory() as d:
                meta = json.loads(Path(d, TUNE_META).read_text())
                assert Path(d, TUNE_CHECKPOINT).is_file()
        self.reports.append((dict(metrics), meta))

    def install(self, monkeypatch) -> FakeSession:
        from ray import tune

        monkeypatch.setattr(tune, "get_context", lambda: SimpleNamespace(get_trial_id=lambda: self.trial_id))
        monkeypatch.setattr(tune, "get_checkpoint", lambda: self.checkpoint)
        monkeypatch.setattr(tune, "report", self.report)
        return self


def trial_setup(sweep_dir: Path) -> T.TrialSetup:
    from runs.config import load_config

    cfg = load_config([], ["logger.wandb.enabled=false", "trainer.max_epochs=4"])
    return T.TrialSetup(run_config=cfg, dims=[], sweep_name="fake", sweep_dir=str(sweep_dir))
