"""Fault tolerance of sweeps, with real Ray and real (tiny) trainings.

* node loss: a local multi-node Ray cluster (head with 0 CPUs + 2 one-CPU workers); one worker is
  removed while both trials train; the lost trial restarts from its last checkpoint on the other
  node and every trial finishes, each exactly once in results.csv, with every epoch once;
* driver kill: ``cordbench sweep`` (Optuna TPE searcher) is SIGKILLed after its first trial;
  ``cordbench sweep --resume DIR`` (in this process) finishes the remaining trials without
  re-running the finished one, and the searcher continues from its saved state (a restarted
  seeded TPE would repeat its first suggestions).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from core.paths import REPO_ROOT
from sweeps.records import read_results_csv
from tests.sweep_harness import (
    CORDBENCH,
    FAST,
    KILL_SWEEP,
    kill_driver_after_a_trial,
    sweep_losing_a_node,
)

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.subprocess]


@pytest.fixture
def sweep_env(monkeypatch):
    """The driver's environment defaults, restored after the test."""
    from sweeps.runner import ENV_DEFAULTS

    for k, v in ENV_DEFAULTS.items():
        monkeypatch.setenv(k, os.environ.get(k, v))


def _epochs(csv: Path) -> list[int]:
    df = pd.read_csv(csv)
    return [int(e) for e in df.loc[df["val/dice"].notna(), "epoch"]]


# ------------------------------------------------------------------------------------- node loss
def test_node_loss_every_trial_finishes_once(tmp_path: Path, sweep_phantom: Path, sweep_env):
    from sweeps.config import load_sweep

    sweep = load_sweep(
        REPO_ROOT / "sweeps" / "ci.yaml",
        storage=str(tmp_path),
        overrides=FAST + ["config.trainer.max_epochs=3", f"config.data.root={sweep_phantom}", "failure.max_failures=2"],
    )
    sweep_dir = Path(sweep.sweep_dir)

    def both_mid_run() -> bool:  # both trials reported an epoch, neither its last
        reports = [len(p.read_text().strip().splitlines()) - 1 for p in sweep_dir.glob("tune_*/progress.csv")]
        return len(reports) == 2 and min(reports) >= 1 and max(reports) < 3

    outcome = sweep_losing_a_node(sweep, both_mid_run, poll=0.1)
    frame = outcome.frame
    on_disk = read_results_csv(sweep_dir / "results.csv")
    assert list(on_disk["trial_id"]) == list(frame["trial_id"])
    assert len(frame) == 2 and frame["trial_id"].is_unique
    assert (frame["status"] == "TERMINATED").all() and (frame["epochs"] == 3).all()
    assert sorted(frame["attempts"]) == [1, 2]  # the trial of the lost node was restored once
    for _, row in frame.iterrows():
        run = sweep_dir / row["run_dir"]
        assert _epochs(run / "metrics.csv") == [0, 1, 2]  # every epoch exactly once, also after the restore
        tune_epochs = pd.read_csv(sweep_dir / f"tune_{row['trial_id']}" / "progress.csv")["epoch"].tolist()
        assert tune_epochs == [1, 2, 3]
        per_subject = pd.read_csv(run / "test_metrics.csv")
        assert row["test_dice"] == pytest.approx(per_subject["sc/dice"].mean())
        assert row["val_dice"] == pytest.approx(pd.read_csv(run / "metrics.csv")["val/dice"].max())


# ------------------------------------------------------------------------------------ driver kill
def test_driver_kill_then_resume(tmp_path: Path, sweep_phantom: Path, sweep_env, capsys):
    from ray.tune.search.optuna import OptunaSearch

    cfg = tmp_path / "killme.yaml"
    cfg.write_text(KILL_SWEEP.format(root=sweep_phantom, storage=tmp_path / "st"))
    sweep_dir = tmp_path / "st" / "killme"

    def terminated() -> set[str]:
        csv = sweep_dir / "results.csv"
        if not csv.exists():
            return set()
        partial = read_results_csv(csv)
        return set(partial.loc[partial["status"] == "TERMINATED", "trial_id"])

    finished = kill_driver_after_a_trial([CORDBENCH, "sweep", str(cfg)], tmp_path / "driver1.log", terminated, poll=0.2)
    partial = pd.read_csv(sweep_dir / "results.csv")  # the killed driver left a consistent partial file
    assert partial["trial_id"].is_unique and len(partial) < 3 and finished
    marks = {t: (sweep_dir / "trials" / t / "trial.json").stat().st_mtime_ns for t in finished}

    from cordbench.cli import main

    # the resume in this process (saves a Python start-up); Ray is started afresh
    assert main(["sweep", "--resume", str(sweep_dir)]) == 0, capsys.readouterr().err[-3000:]
    frame = pd.read_csv(sweep_dir / "results.csv")
    assert len(frame) == 3 and frame["trial_id"].is_unique
    assert (frame["status"] == "TERMINATED").all() and (frame["epochs"] == 2).all()
    for t in finished:  # finished before the kill: not trained again
        assert (sweep_dir / "trials" / t / "trial.json").stat().st_mtime_ns == marks[t]
        assert int(frame.loc[frame["trial_id"] == t, "attempts"].iloc[0]) == 1
    # the searcher continued: a TPE restarted with the same seed would suggest the first lr again
    assert frame["model.lr"].round(12).is_unique
    searcher = OptunaSearch()
    searcher.restore(str(sweep_dir / "searcher" / "searcher.pkl"))
    study = [t for t in searcher._ot_study.trials if t.state.name == "COMPLETE"]
    assert len(study) == 3
    assert sorted(round(t.params["model.lr"], 12) for t in study) == sorted(frame["model.lr"].round(12))
