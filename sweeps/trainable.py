"""One sweep trial = one ``cordbench fit`` run into ``<sweep>/trials/<trial_id>/``.

The Ray Tune function trainable :func:`train_trial` resolves the trial's run config (base
config + sampled knobs + device settings), and calls :func:`runs.runner.fit` with one
extra Lightning callback (:func:`report_callback`) that reports the validation metrics of
every epoch to Tune together with a checkpoint. A trial restored by Tune (node lost, driver
resumed) restarts from ``tune.get_checkpoint()``; a trial whose run folder already holds a
finished run (``trial.json``) is not trained again.

Devices: a CPU trial uses as many torch threads as it has CPUs; a trial with a GPU (or a
fraction of one) trains with AMP (``precision: auto``: ``bf16-mixed`` on Ampere and newer,
``16-mixed`` otherwise); a trial with ``resources.workers`` > 1 (or ``gpu`` > 1) trains with DDP
on a Ray ``TorchTrainer``, one worker per GPU or per CPU share (:mod:`sweeps.ddp_trial`).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runs.run_folder import RunFolder
from sweeps import records
from sweeps.config import Dim, apply_params, decode_params, is_uri
from sweeps.records import (
    PREVIOUS_METRICS,
    RESUME_DIR,
    TRIAL_RECORD,
    TRIALS_DIR,
    TUNE_CHECKPOINT,
    TUNE_META,
    Elapsed,
    next_attempt,
    read_trial_record,
    write_trial_record,
)

# names this module exported before sweeps.records existed
DONE_FILE, CKPT_NAME, PREV_METRICS = TRIAL_RECORD, TUNE_CHECKPOINT, PREVIOUS_METRICS
DRIVER_CPU = 0.01  # CPU a DDP trial's driver (the Tune trial actor) holds, out of the trial's `cpu`


@dataclass
class TrialSetup:
    """Everything a trial needs besides its sampled parameters (picklable, sent once)."""

    run_config: dict[str, Any]
    dims: list[Dim]
    sweep_name: str
    sweep_dir: str  # local absolute folder or URI
    resources: dict[str, Any] = field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    sweep_file: str = ""

    @property
    def remote(self) -> bool:
        return is_uri(self.sweep_dir)

    @property
    def gpus(self) -> float:
        return float(self.resources.get("gpu", 0) or 0)

    @property
    def workers(self) -> int:
        return ddp_workers(self.resources)

    @property
    def ddp(self) -> bool:
        return self.workers > 1


def ddp_workers(resources: Mapping[str, Any]) -> int:
    """DDP processes per trial: ``resources.workers``, else one per GPU when ``gpu`` > 1, else 1."""
    if resources.get("workers"):
        return int(resources["workers"])
    gpu = resources.get("gpu", 0)
    return int(float(gpu)) if gpu not in (None, "auto") and float(gpu) > 1 else 1


# ------------------------------------------------------------------------------- configuration
def device_settings(resources: Mapping[str, Any], precision: str | None = "auto") -> dict[str, Any]:
    """``trainer`` keys for the trial's resources: CPU, one (fractional) GPU, or DDP workers.

    On GPU, ``precision`` stays as the config names it; ``auto`` (the default) becomes
    ``bf16-mixed`` or ``16-mixed`` in the process that trains, by its GPU
    (:func:`core.devices.choose_precision`).
    """
    gpu = float(resources.get("gpu", 0) or 0)
    prec = precision or "auto"
    if ddp_workers(resources) > 1:
        # each Ray Train worker sees exactly its own GPU (Ray sets CUDA_VISIBLE_DEVICES), or runs on CPU
        return {"accelerator": "gpu" if gpu > 0 else "cpu", "devices": "auto", "precision": prec}
    if gpu <= 0:
        return {"accelerator": "cpu", "devices": 1}
    return {"accelerator": "gpu", "devices": 1, "precision": prec}


def trial_config(setup: TrialSetup, params: Mapping[str, Any], trial_id: str, run_dir: str | Path) -> dict[str, Any]:
    """The trial's full run config (validated by the driver before the sweep started)."""
    values = decode_params(params, setup.dims)
    cfg = apply_params(setup.run_config, values, f"{setup.sweep_file or setup.sweep_name} trial {trial_id}")
    cfg["name"] = trial_id
    cfg["output_dir"] = str(run_dir)
    cfg["trainer"] = {
        **cfg["trainer"],
        **device_settings(setup.resources, cfg["trainer"].get("precision")),
        "enable_progress_bar": False,
    }
    wb = cfg["logger"]["wandb"]
    wb["group"] = wb.get("group") or setup.sweep_name
    wb["job_type"] = "sweep"
    wb["tags"] = list(wb.get("tags") or []) + [f"sweep:{setup.sweep_name}"]
    return cfg


def local_run_dir(setup: TrialSetup, trial_id: str) -> Path:
    """Where the trial writes its run folder: the sweep folder itself, or a local staging
    folder (uploaded to ``<uri>/trials/<id>`` at the end) when the storage is a URI."""
    if setup.remote:
        from sweeps.staging import staging_dir

        return staging_dir(setup.sweep_dir, trial_id)
    return Path(setup.sweep_dir, TRIALS_DIR, trial_id)


# ------------------------------------------------------------------------------------- reporting
def report_callback(resume_epoch: int = -1, on_report: Any = None, train_worker: bool = False):
    """A Lightning callback reporting validation metrics + a checkpoint to Tune every epoch.

    ``train_worker``: the callback runs in every worker of a Ray ``TorchTrainer`` (DDP trial):
    it reports through ``ray.train.report`` (every rank reports, rank 0 with the checkpoint),
    and Ray's ``TuneReportCallback`` forwards rank 0's metrics to Tune.

    Epochs up to ``resume_epoch`` (the one in the checkpoint the trial restarted from) are
    not reported again (Lightning re-fires the epoch end of a restored epoch). ``on_report``
    is called before each report (elapsed-time bookkeeping). The callback also times the
    training / validation / test batches and its own reporting + checkpointing
    (:attr:`timing`, seconds; written to ``trial.json`` for ``benchmarks/sweep_overhead.py``).
    """
    from sweeps.tune_report import TuneReport

    return TuneReport(resume_epoch, on_report, train_worker)


@contextlib.contextmanager
def restored_checkpoint(run_dir: Path) -> Iterator[tuple[str | None, int]]:
    """``(ckpt_path, epoch)`` of Tune's checkpoint for this trial, copied into the run folder."""
    from ray import tune

    ckpt = tune.get_checkpoint()
    if ckpt is None:
        yield None, -1
        return
    dest = run_dir / RESUME_DIR
    if dest.exists():
        shutil.rmtree(dest)
    ckpt.to_directory(str(dest))
    meta = json.loads((dest / TUNE_META).read_text()) if (dest / TUNE_META).exists() else {"epoch": -1}
    _set_aside_interrupted_wandb(run_dir)
    try:
        yield str(dest / CKPT_NAME), int(meta["epoch"])
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def _set_aside_interrupted_wandb(run_dir: Path) -> None:
    """Keep one wandb run per trial: move runs of an interrupted attempt to ``wandb/interrupted/``."""
    wdir = RunFolder(run_dir).wandb
    for run in sorted(wdir.glob("offline-run-*")) + sorted(wdir.glob("run-*")):
        target = wdir / "interrupted" / run.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(run), str(target))


def take_metrics(run_dir: Path, resume_epoch: int) -> None:
    """Before a restored attempt: keep the rows of earlier attempts up to the restored epoch in
    ``.metrics.previous.csv`` (Lightning's CSVLogger starts ``metrics.csv`` afresh)."""
    import pandas as pd

    from core import io

    metrics = RunFolder(run_dir).metrics
    frames = [pd.read_csv(p) for p in (run_dir / PREV_METRICS, metrics) if p.exists()]
    if not frames:
        return
    prev = pd.concat(frames, ignore_index=True)
    if "epoch" in prev.columns:
        prev = prev[prev["epoch"] <= resume_epoch]
    io.write_csv(run_dir / PREV_METRICS, prev)
    metrics.unlink(missing_ok=True)


def merge_metrics(run_dir: Path) -> None:
    """After a restored attempt: ``metrics.csv`` = earlier attempts' rows + this attempt's rows."""
    import pandas as pd

    from core import io

    prev_path, path = run_dir / PREV_METRICS, RunFolder(run_dir).metrics
    if not prev_path.exists():
        return
    frames = [pd.read_csv(prev_path)] + ([pd.read_csv(path)] if path.exists() else [])
    io.write_csv(path, pd.concat(frames, ignore_index=True))
    prev_path.unlink()


#: Failures (``failure.json`` ``error``) that a retry would only repeat: the trial fails at once.
NOT_RETRIED = {"TrainingDivergedError"}


def _previous_failure(run_dir: Path) -> dict[str, Any] | None:
    """The failure record left by an earlier attempt of this trial (see ``runs.runner.record_failure``)."""
    return RunFolder(run_dir).read_failure()


finished_record = read_trial_record


def write_finished(
    run_dir: Path,
    trial_id: str,
    result: Any,
    last_metrics: dict[str, float],
    attempts: int,
    seconds: float | None = None,
    timing: dict[str, float] | None = None,
    restored_from: str | None = None,
) -> dict[str, Any]:
    """Mark the run folder finished (``trial.json``: last reported metrics, timing over all attempts,
    ``restored_from``: the Tune checkpoint this last attempt started from, None if it started afresh)."""
    record = {
        "trial_id": trial_id,
        "seconds": float(result.seconds if seconds is None else seconds),
        "fit_seconds": float(result.seconds),
        "best_ckpt": result.best_ckpt,
        "val": result.val,
        "last_report": last_metrics,
        "attempts": attempts,
        "timing": {k: round(v, 4) for k, v in (timing or {}).items()},
        "restored_from": restored_from,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_trial_record(run_dir, record)
    return record


# ---------------------------------------------------------------------------------------- trainable
def remote_folder(setup: TrialSetup) -> Any:
    """URI storage: the trial's :class:`sweeps.staging.RemoteRunFolder` (the bucket holds the run
    folder, this node only stages it); local storage: None."""
    if not setup.remote:
        return None
    from ray import tune

    from sweeps.staging import RemoteRunFolder

    return RemoteRunFolder(setup.sweep_dir, tune.get_context().get_trial_id(), TRIAL_RECORD)


def begin_trial(
    config: dict[str, Any], setup: TrialSetup, remote: Any = None
) -> tuple[str, Path, dict[str, Any], int] | None:
    """What every trial does first: ``(trial id, run folder, run config, attempt)``, or None when
    the run folder already holds a finished run (reported again, not retrained). A retry of a
    trial that diverged is refused (:data:`NOT_RETRIED`). With a URI storage the staging folder
    is first replaced by the bucket's copy (``remote``, default :func:`remote_folder`)."""
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    run_dir = local_run_dir(setup, trial_id)
    remote = remote if remote is not None else remote_folder(setup)
    done = remote.finished_record() if remote else finished_record(run_dir)
    if done is not None:  # finished before the driver was killed: report again, don't retrain
        tune.report({**done.get("last_report", {}), "already_finished": 1})
        return None
    cfg = trial_config(setup, config, trial_id, run_dir)
    if remote:
        remote.pull()
    run_dir.mkdir(parents=True, exist_ok=True)
    attempts = next_attempt(run_dir)
    if remote:
        remote.push()
    previous = _previous_failure(run_dir)
    if attempts > 1 and previous and previous.get("error") in NOT_RETRIED:
        from lightning_modules.module import TrainingDivergedError

        raise TrainingDivergedError(
            f"{previous.get('reason')} (in an earlier attempt; not retried: a seeded, "
            "deterministic run diverges again)",
            run_dir,
        )
    return trial_id, run_dir, cfg, attempts


def train_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """Ray Tune function trainable: one ``cordbench fit`` run with per-epoch reports (DDP trials:
    :func:`sweeps.ddp_trial.train_ddp_trial`)."""
    remote = remote_folder(setup)
    start = begin_trial(config, setup, remote)
    if start is None:
        return
    trial_id, run_dir, cfg, attempts = start
    import torch

    from runs.runner import fit

    torch.set_num_threads(max(1, int(float(setup.resources.get("cpu", 1)))))
    elapsed = Elapsed(run_dir, attempts)
    on_report = elapsed.update if remote is None else lambda: (elapsed.update(), remote.push())
    from ray import tune

    restored_from = checkpoint_uri(tune.get_checkpoint())
    try:
        with restored_checkpoint(run_dir) as (ckpt_path, epoch):
            if ckpt_path:
                take_metrics(run_dir, epoch)
            cb = report_callback(resume_epoch=epoch, on_report=on_report)
            result = fit(cfg, callbacks=[cb], ckpt_path=ckpt_path)
            merge_metrics(run_dir)
    except BaseException:
        if remote:  # failure.json etc. for the next attempt, wherever it runs
            with contextlib.suppress(Exception):
                remote.push()
        raise
    final = final_report(cb, result, cfg["data"]["task"])
    write_finished(run_dir, trial_id, result, final, attempts, elapsed.update(), cb.timing, restored_from=restored_from)
    if remote:
        remote.finish()  # every file, then trial.json last
    if cb.final is not None:  # last epoch + test Dice, now that the run folder is complete
        last_ckpt = RunFolder(run_dir).last_ckpt
        cb.report(None, final, int(final["epoch"]) - 1, str(last_ckpt) if last_ckpt.exists() else None)
    if remote:
        remote.remove_local()


def checkpoint_uri(ckpt: Any) -> str | None:
    """Where a Tune checkpoint lives (``s3://bucket/…`` for an object store), None for no checkpoint."""
    if ckpt is None:
        return None
    scheme = getattr(ckpt.filesystem, "type_name", "local")
    return ckpt.path if scheme == "local" else f"{scheme}://{ckpt.path}"


def final_report(cb: Any, result: Any, task: str) -> dict[str, Any]:
    """A trial's last report: the report callback's last epoch (the fit's validation metrics when it
    reported none) with ``test_dice``, the task's main metric (:func:`sweeps.records.main_dice`,
    looked up at call time: the one definition), when the test scored a Dice."""
    final = dict(cb.final or {k.replace("/", "_"): v for k, v in result.val.items()})
    test = records.main_dice(result.test_records, task)
    if test is not None:
        final["test_dice"] = test
    return final


def trial_resources(setup_resources: Mapping[str, Any]) -> dict[str, float]:
    """Resources Tune reserves for the trial actor (DDP trials: the workers reserve CPUs and GPUs)."""
    cpu, gpu = float(setup_resources.get("cpu", 1)), float(setup_resources.get("gpu", 0) or 0)
    if ddp_workers(setup_resources) > 1:
        # the trial only drives a TorchTrainer: DRIVER_CPU of the trial's `cpu`, the rest its workers'
        return {"cpu": DRIVER_CPU, "gpu": 0}
    return {"cpu": cpu, "gpu": gpu}
