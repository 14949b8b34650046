"""The Lightning callback of a sweep trial: validation metrics and a checkpoint to Tune every epoch.

Built by :func:`sweeps.trainable.report_callback` (this module imports Lightning; the trainable
module stays cheap to import).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl

from sweeps.records import TUNE_CHECKPOINT, TUNE_META


class TuneReport(pl.Callback):
    """Report ``val/*`` metrics as ``val_*`` plus ``epoch`` (epochs done) and a checkpoint.

    See :func:`sweeps.trainable.report_callback`.
    """

    def __init__(self, resume_epoch: int = -1, on_report=None, train_worker: bool = False):
        self.resume_epoch = resume_epoch
        self.on_report = on_report
        self.train_worker = train_worker
        self.validated_epoch = -1
        self.reports = 0
        self.timing = {"train_steps": 0.0, "eval_steps": 0.0, "report": 0.0}
        self.final: dict[str, float] | None = None  # last epoch's metrics, reported after the test
        self._t0 = 0.0

    def _start(self, *args, **kwargs) -> None:
        self._t0 = time.perf_counter()

    def _stop(self, key: str) -> None:
        self.timing[key] += time.perf_counter() - self._t0

    on_train_batch_start = _start
    on_validation_batch_start = _start
    on_test_batch_start = _start

    def on_train_batch_end(self, *args, **kwargs) -> None:
        self._stop("train_steps")

    def on_validation_batch_end(self, *args, **kwargs) -> None:
        self._stop("eval_steps")

    def on_test_batch_end(self, *args, **kwargs) -> None:
        self._stop("eval_steps")

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.validated_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        epoch = trainer.current_epoch
        if epoch <= self.resume_epoch or self.validated_epoch != epoch:
            return
        metrics = {
            k.replace("/", "_"): float(v)
            for k, v in trainer.callback_metrics.items()
            if k.startswith(("val/", "train/"))
        }
        metrics["epoch"] = epoch + 1
        for lg in trainer.loggers:  # flush per-epoch metrics.csv now (a lost node keeps them)
            if type(lg).__name__ == "CSVLogger":
                lg.save()
        if self.on_report is not None:
            self.on_report()
        if trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs:
            # the last epoch is reported after the test: Tune stops a trial that reaches
            # its time limit (ASHA max_t) right at that report
            self.final = metrics
            return
        self.report(trainer, metrics, epoch)

    def report(self, trainer, metrics: dict[str, float], epoch: int, ckpt_file: str | None = None) -> None:
        """``tune.report`` with a checkpoint (saved from ``trainer`` or copied from ``ckpt_file``)."""
        if self.train_worker:
            import ray.train as session
        else:
            from ray import tune as session

        t0 = time.perf_counter()
        if trainer is None and ckpt_file is None:
            session.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="cordbench-ckpt-") as tmp:
            if ckpt_file is not None:
                shutil.copy2(ckpt_file, Path(tmp, TUNE_CHECKPOINT))
            else:  # under DDP a collective: every rank calls it, rank 0 writes
                trainer.save_checkpoint(str(Path(tmp, TUNE_CHECKPOINT)))
            if not Path(tmp, TUNE_CHECKPOINT).exists():  # a DDP rank other than 0
                session.report(metrics)
                return
            Path(tmp, TUNE_META).write_text(json.dumps({"epoch": epoch}))
            session.report(metrics, checkpoint=session.Checkpoint.from_directory(tmp))
        self.timing["report"] += time.perf_counter() - t0
        self.reports += 1
