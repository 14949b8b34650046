"""Resume bookkeeping of a sweep trial (``sweeps/trainable.py``, file names and the trial record in
``sweeps/records.py``), fast: a fake run folder, a fake
Tune session (trial id, ``report``, ``get_checkpoint`` patched on ``ray.tune``) holding a real
``tune.Checkpoint`` directory, and a stand-in ``runs.runner.fit`` that drives the trial's
report callback like Lightning does after a restore (the restored epoch's end fires again).

The slow Ray tests (``test_sweeps_fault.py``) check the same on a real cluster that loses a node.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import sweeps.trainable as T
from runs.run_folder import CHECKPOINTS, LAST_CKPT, METRICS, WANDB
from sweeps.records import (
    ATTEMPTS,
    PREVIOUS_METRICS,
    RESUME_DIR,
    TRIAL_RECORD,
    TRIALS_DIR,
    TUNE_CHECKPOINT,
    TUNE_META,
    read_trial_record,
)
from tests.support.sweep_trials import FakeSession, trial_setup


def metrics_rows(epochs, attempt: int) -> pd.DataFrame:
    """CSVLogger-like rows: one validation and one training row per epoch."""
    rows = []
    for e in epochs:
        rows.append(
            {"epoch": e, "step": 10 * e + 9, "val/dice": 0.5 + e / 10 + attempt / 1000, "train/loss_epoch": None}
        )
        rows.append({"epoch": e, "step": 10 * e + 9, "val/dice": None, "train/loss_epoch": 1.0 / (e + 1)})
    return pd.DataFrame(rows)


def epochs_of(path: Path) -> list[int]:
    return pd.read_csv(path)["epoch"].drop_duplicates().tolist()


# ------------------------------------------------------------------------ take / merge metrics
def test_take_metrics_keeps_rows_up_to_and_including_the_restored_epoch(tmp_path):
    metrics_rows(range(4), 1).to_csv(tmp_path / METRICS, index=False)  # attempt 1 got to epoch 3
    T.take_metrics(tmp_path, resume_epoch=1)
    assert not (tmp_path / METRICS).exists()  # Lightning's CSVLogger starts it afresh
    prev = pd.read_csv(tmp_path / PREVIOUS_METRICS)
    assert prev["epoch"].tolist() == [0, 0, 1, 1]
    pd.testing.assert_frame_equal(prev, metrics_rows(range(2), 1), check_dtype=False)


def test_take_metrics_on_a_second_restore_keeps_both_earlier_attempts(tmp_path):
    metrics_rows(range(2), 1).to_csv(tmp_path / PREVIOUS_METRICS, index=False)  # attempt 1, epochs 0-1
    metrics_rows(range(2, 5), 2).to_csv(tmp_path / METRICS, index=False)  # attempt 2, epochs 2-4
    T.take_metrics(tmp_path, resume_epoch=3)
    prev = pd.read_csv(tmp_path / PREVIOUS_METRICS)
    want = pd.concat([metrics_rows(range(2), 1), metrics_rows(range(2, 4), 2)], ignore_index=True)
    pd.testing.assert_frame_equal(prev, want, check_dtype=False)
    assert not (tmp_path / METRICS).exists()


def test_take_metrics_without_any_metrics_is_a_no_op(tmp_path):
    T.take_metrics(tmp_path, resume_epoch=2)
    assert list(tmp_path.iterdir()) == []


def test_merge_metrics_appends_this_attempt_to_the_earlier_ones(tmp_path):
    metrics_rows(range(2), 1).to_csv(tmp_path / PREVIOUS_METRICS, index=False)
    metrics_rows(range(2, 4), 2).to_csv(tmp_path / METRICS, index=False)
    T.merge_metrics(tmp_path)
    got = pd.read_csv(tmp_path / METRICS)
    want = pd.concat([metrics_rows(range(2), 1), metrics_rows(range(2, 4), 2)], ignore_index=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert not (tmp_path / PREVIOUS_METRICS).exists()


def test_merge_metrics_keeps_earlier_rows_when_this_attempt_logged_nothing(tmp_path):
    metrics_rows(range(3), 1).to_csv(tmp_path / PREVIOUS_METRICS, index=False)
    T.merge_metrics(tmp_path)
    assert epochs_of(tmp_path / METRICS) == [0, 1, 2]
    assert not (tmp_path / PREVIOUS_METRICS).exists()


def test_merge_metrics_without_earlier_attempts_leaves_metrics_alone(tmp_path):
    metrics_rows(range(2), 1).to_csv(tmp_path / METRICS, index=False)
    before = (tmp_path / METRICS).read_bytes()
    T.merge_metrics(tmp_path)
    assert (tmp_path / METRICS).read_bytes() == before


# ------------------------------------------------------------------------------ finished record
def test_finished_record(tmp_path):
    assert T.finished_record is read_trial_record  # what train_trial reads
    assert read_trial_record(tmp_path) is None
    (tmp_path / TRIAL_RECORD).write_text('{"trial_id": "t0", "last_report": {"val_dice": 0.8')  # cut short
    assert read_trial_record(tmp_path) is None
    (tmp_path / TRIAL_RECORD).write_text(json.dumps({"trial_id": "t0", "last_report": {"val_dice": 0.8}}))
    assert read_trial_record(tmp_path) == {"trial_id": "t0", "last_report": {"val_dice": 0.8}}


def no_fit(*args, **kwargs):
    raise AssertionError("a finished trial must not be trained again")


def test_a_finished_trial_is_reported_again_not_retrained(tmp_path, monkeypatch):
    import runs.runner

    run = tmp_path / TRIALS_DIR / "t0"
    run.mkdir(parents=True)
    last = {"val_dice": 0.81, "epoch": 4, "test_dice": 0.77}
    (run / TRIAL_RECORD).write_text(json.dumps({"trial_id": "t0", "last_report": last, "attempts": 1}))
    session = FakeSession("t0").install(monkeypatch)
    monkeypatch.setattr(runs.runner, "fit", no_fit)
    T.train_trial({}, trial_setup(tmp_path))
    assert session.reports == [({**last, "already_finished": 1}, None)]
    assert sorted(p.name for p in run.iterdir()) == [TRIAL_RECORD]  # nothing else touched


class FakeTrainer:
    """The parts of a Lightning Trainer the report callback reads."""

    def __init__(self, max_epochs: int):
        self.max_epochs, self.current_epoch, self.sanity_checking = max_epochs, 0, False
        self.callback_metrics: dict[str, float] = {}
        self.loggers: list = []

    def save_checkpoint(self, path: str) -> None:
        Path(path).write_text(f"weights after epoch {self.current_epoch}")


def restored_fit(run: Path, resume_epoch: int, max_epochs: int, seen: dict):
    """A stand-in for ``runs.runner.fit`` resuming from ``resume_epoch``: checks what it is
    given, writes this attempt's metrics.csv and fires the callback's epoch ends (the restored
    epoch first, as Lightning does)."""
    from runs.runner import RunResult

    def fit(cfg, callbacks=(), ckpt_path=None, test=True):
        seen["ckpt_path"] = ckpt_path
        seen["ckpt_text"] = Path(ckpt_path).read_text()
        seen["metrics_during_fit"] = (run / METRICS).exists()
        seen["previous_epochs"] = epochs_of(run / PREVIOUS_METRICS)
        cb = callbacks[0]
        trainer = FakeTrainer(max_epochs)
        for epoch in range(resume_epoch, max_epochs):
            trainer.current_epoch = epoch
            trainer.callback_metrics = {"val/dice": 0.5 + epoch / 10, "train/loss": 1.0 / (epoch + 1)}
            cb.on_validation_end(trainer, None)
            cb.on_train_epoch_end(trainer, None)
        metrics_rows(range(resume_epoch + 1, max_epochs), 2).to_csv(run / METRICS, index=False)
        (run / CHECKPOINTS).mkdir(exist_ok=True)
        (run / CHECKPOINTS / LAST_CKPT).write_text("last")
        return RunResult(
            out=run,
            best_ckpt=str(run / CHECKPOINTS / "best.ckpt"),
            val={"val/dice": 0.8},
            test_records=[{"subject": "sub-01", "sc/dice": 0.6}, {"subject": "sub-02", "sc/dice": 0.8}],
            seconds=2.0,
        )

    return fit


def test_a_restored_trial_resumes_from_the_tune_checkpoint_with_each_epoch_once(tmp_path, monkeypatch):
    """Attempt 1 got to epoch 2 and was lost after Tune's checkpoint of epoch 1 (0-based)."""
    from ray import tune

    import runs.runner

    run = tmp_path / TRIALS_DIR / "t0"
    run.mkdir(parents=True)
    metrics_rows(range(3), 1).to_csv(run / METRICS, index=False)
    (run / ATTEMPTS).write_text("1")
    (run / WANDB / "offline-run-20260101_000000-t0").mkdir(parents=True)
    ck = tmp_path / "tune-ckpt"
    ck.mkdir()
    (ck / TUNE_CHECKPOINT).write_text("weights after epoch 1")
    (ck / TUNE_META).write_text(json.dumps({"epoch": 1}))
    session = FakeSession("t0", tune.Checkpoint.from_directory(str(ck))).install(monkeypatch)
    seen: dict = {}
    monkeypatch.setattr(runs.runner, "fit", restored_fit(run, 1, 4, seen))
    T.train_trial({}, trial_setup(tmp_path))
    # fit got Tune's checkpoint (copied into the run folder) and the rows of epochs 0-1 were set aside
    assert seen["ckpt_path"] == str(run / RESUME_DIR / TUNE_CHECKPOINT)
    assert seen["ckpt_text"] == "weights after epoch 1"
    assert seen["metrics_during_fit"] is False and seen["previous_epochs"] == [0, 1]
    assert not (run / RESUME_DIR).exists() and not (run / PREVIOUS_METRICS).exists()
    # metrics.csv: every epoch exactly once, the restored epoch from attempt 1
    m = pd.read_csv(run / METRICS)
    assert epochs_of(run / METRICS) == [0, 1, 2, 3] and len(m) == 8
    want = pd.concat([metrics_rows(range(2), 1), metrics_rows(range(2, 4), 2)], ignore_index=True)
    pd.testing.assert_frame_equal(m, want, check_dtype=False)
    # Tune: epoch 3 (index 2) with a checkpoint, then the last epoch with the test Dice; the restored
    # epoch is not reported again
    assert [r[0]["epoch"] for r in session.reports] == [3, 4]
    assert session.reports[0][1] == {"epoch": 2}
    assert session.reports[1][0]["test_dice"] == pytest.approx(0.7)
    assert session.reports[1][0]["val_dice"] == pytest.approx(0.8)
    # the run folder is marked finished after two attempts; the interrupted wandb run is set aside
    rec = json.loads((run / TRIAL_RECORD).read_text())
    assert rec["attempts"] == 2 and (run / ATTEMPTS).read_text() == "2"
    assert rec["last_report"]["epoch"] == 4 and rec["last_report"]["test_dice"] == pytest.approx(0.7)
    assert [p.name for p in (run / WANDB).iterdir()] == ["interrupted"]
    assert (run / WANDB / "interrupted" / "offline-run-20260101_000000-t0").is_dir()


def test_report_callback_skips_epochs_up_to_the_restored_one():
    reported = []
    cb = T.report_callback(resume_epoch=2)
    cb.report = lambda trainer, metrics, epoch, ckpt_file=None: reported.append((epoch, metrics["epoch"]))
    trainer = FakeTrainer(max_epochs=6)
    for epoch in range(1, 6):
        trainer.current_epoch = epoch
        trainer.callback_metrics = {"val/dice": 0.1 * epoch, "lr": 1e-3}
        cb.on_validation_end(trainer, None)
        cb.on_train_epoch_end(trainer, None)
    assert reported == [(3, 4), (4, 5)]  # epochs 1-2 already reported by the lost attempt
    assert cb.final == {"val_dice": pytest.approx(0.5), "epoch": 6}  # the last one waits for the test
    # an epoch that was not validated (validation every other epoch) is not reported
    cb2 = T.report_callback()
    cb2.report = lambda trainer, metrics, epoch, ckpt_file=None: reported.append(epoch)
    trainer.current_epoch = 0
    cb2.on_train_epoch_end(trainer, None)
    assert len(reported) == 2
