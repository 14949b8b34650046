"""A sweep trial with several DDP processes: a Ray ``TorchTrainer`` driven by the Tune trial.

``resources: {workers: N, cpu: K}`` (CPU, gloo) or ``{workers: N, gpu: N, cpu: K}`` (one GPU
per worker, NCCL; ``gpu: N`` alone still means N workers) runs the trial as N Ray Train
workers. Each worker calls :func:`runs.runner.fit` with the Ray Lightning pieces passed
as parameters (``RayDDPStrategy`` + ``RayLightningEnvironment`` as Trainer arguments,
``prepare_trainer`` as the Trainer wrapper): every worker trains on its own subjects, the
validation and test records of all workers are gathered (every subject once), and only
world rank 0 writes the run folder (``trial.json`` included) and the one wandb run.

The trial's ``cpu`` is shared: :data:`sweeps.trainable.DRIVER_CPU` for the Tune trial actor
that drives the TorchTrainer, the rest split evenly between the workers (torch threads =
the worker's share, rounded, at least 1). Metrics reach Tune through Ray's
``TuneReportCallback`` (rank 0's report, ``val_*`` names like every trial). A DDP trial
retried by Tune restarts from its first epoch. With a URI storage, rank 0 uploads the run folder
to ``<uri>/trials/<id>`` when the trial finishes.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from runs.run_folder import RunFolder
from sweeps.records import TRIAL_RECORD, Elapsed
from sweeps.trainable import DRIVER_CPU, TrialSetup, begin_trial, final_report, report_callback, write_finished


def worker_resources(setup: TrialSetup) -> dict[str, float]:
    """Ray resources of one worker: its share of the trial's CPUs, and one GPU if the trial has GPUs."""
    n = setup.workers
    cpu = max(DRIVER_CPU, (float(setup.resources.get("cpu", 1)) - DRIVER_CPU) / n)
    return {"CPU": round(cpu, 4), **({"GPU": 1} if setup.gpus > 0 else {})}


def ddp_trainer_kwargs() -> dict[str, Any]:
    """Extra ``pl.Trainer`` arguments of a DDP worker (Ray's Lightning integration)."""
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment

    return {
        "strategy": RayDDPStrategy(find_unused_parameters=False),
        "plugins": [RayLightningEnvironment()],
        "devices": "auto",
        "accelerator": "auto",
    }


def build_ddp_trainer(
    cfg: dict[str, Any], setup: TrialSetup, trial_id: str, callbacks: list[Any] | None = None, attempts: int = 1
):
    """A Ray ``TorchTrainer`` running :func:`ddp_worker_loop` on ``setup.workers`` workers."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    res = worker_resources(setup)
    scaling = ScalingConfig(num_workers=setup.workers, use_gpu="GPU" in res, resources_per_worker=res)
    storage = setup.sweep_dir if setup.remote else str(Path(setup.sweep_dir, "ddp"))
    return TorchTrainer(
        ddp_worker_loop,
        train_loop_config={
            "cfg": cfg,
            "cpu_per_worker": res["CPU"],
            "attempts": attempts,
            "upload_to": _upload_uri(setup, trial_id),
        },
        scaling_config=scaling,
        run_config=RunConfig(
            name=f"ddp_{trial_id}",
            storage_path=storage,
            callbacks=list(callbacks or []),
            failure_config=FailureConfig(max_failures=0),
        ),
    )


def _upload_uri(setup: TrialSetup, trial_id: str) -> str | None:
    """``<uri>/trials/<id>`` when the sweep's storage is a URI, else None."""
    if not setup.remote:
        return None
    from sweeps.records import TRIALS_DIR
    from sweeps.storage import join

    return join(setup.sweep_dir, TRIALS_DIR, trial_id)


def ddp_worker_loop(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: ``fit`` (train, validate, test) under DDP; rank 0 writes ``trial.json``."""
    import ray.train
    import torch
    from ray.train.lightning import prepare_trainer

    from runs.runner import fit

    torch.set_num_threads(max(1, round(float(loop_config["cpu_per_worker"]))))
    cfg = copy.deepcopy(loop_config["cfg"])
    run_dir = Path(cfg["output_dir"])
    rank = ray.train.get_context().get_world_rank()
    attempts = int(loop_config.get("attempts", 1))
    elapsed = Elapsed(run_dir, attempts) if rank == 0 else None
    cb = report_callback(on_report=elapsed.update if elapsed else None, train_worker=True)
    result = fit(cfg, callbacks=[cb], trainer_kwargs=ddp_trainer_kwargs(), wrap_trainer=prepare_trainer)
    final = final_report(cb, result, cfg["data"]["task"])
    if rank == 0:
        write_finished(run_dir, cfg["name"], result, final, attempts, elapsed.update(), cb.timing)
        if loop_config.get("upload_to"):  # a URI storage: rank 0's staging folder goes up, like any trial's
            from sweeps.storage import upload_dir

            upload_dir(run_dir, loop_config["upload_to"], last=[TRIAL_RECORD])  # completion marker last
    if cb.final is not None:  # the last epoch's report, with the test Dice (every rank reports)
        last = RunFolder(run_dir).last_ckpt
        cb.report(None, final, int(final["epoch"]) - 1, str(last) if rank == 0 and last.exists() else None)


def train_ddp(cfg: dict[str, Any], setup: TrialSetup, trial_id: str, attempts: int = 1) -> None:
    """Run the trial's TorchTrainer from inside the Tune trial (metrics forwarded to Tune)."""
    from ray.tune.integration.ray_train import TuneReportCallback

    build_ddp_trainer(cfg, setup, trial_id, callbacks=[TuneReportCallback()], attempts=attempts).fit()


def train_ddp_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """Ray Tune function trainable of a DDP trial (chosen by ``sweeps.runner.make_trainable``)."""
    start = begin_trial(config, setup)
    if start is not None:
        trial_id, _, cfg, attempts = start
        train_ddp(cfg, setup, trial_id, attempts)
