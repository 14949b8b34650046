"""Build and run one experiment (fit / validate / test) from a resolved config.

Used by ``cordbench fit|validate|test`` and by every sweep trial, so a trial is exactly a
``cordbench fit`` run. The run folder's files are named, written and read by
:mod:`runs.run_folder` (resolved config, split, data description, per-epoch metrics,
best/last checkpoints, per-subject test metrics — scored on each subject's native grid unless
``data.scoring: preprocessed`` — and their summary, which names the scoring, the scored
predictions, the QC panels and report, the offline wandb run); a fit
that stops on an error (e.g. a NaN loss, :class:`TrainingDivergedError`) leaves a failure record
with the reason instead. Every input is validated before anything is written, so a bad input
never overwrites the records of an earlier run in the same folder. Under DDP (Lightning
``strategy: ddp`` or a Ray ``TorchTrainer`` worker) only global rank 0 writes (see
:mod:`core.distributed`).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import schema
from core.distributed import is_global_zero, rank_and_world, write_first
from core.errors import ConfigError, CordbenchError
from core.paths import output_dir
from evaluation.evaluator import SubjectEvaluator
from evaluation.postprocess import mode_of, resolve
from runs import provenance
from runs.config import dump, network_options
from runs.run_folder import BEST, FAILURE, RunFolder


@dataclass
class RunResult:
    """What a run leaves behind."""

    out: Path
    best_ckpt: str | None = None
    val: dict[str, float] = field(default_factory=dict)
    test_records: list[dict[str, Any]] = field(default_factory=list)
    test_summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def run_dir(cfg: dict[str, Any]) -> Path:
    """``output_dir`` of the config, else ``outputs/runs/<name>``."""
    return Path(cfg["output_dir"]) if cfg.get("output_dir") else output_dir() / "runs" / cfg["name"]


def quiet() -> None:
    """Silence the noisiest third-party warnings (documented, harmless on CPU)."""
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*GPU available but not used.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    warnings.filterwarnings("ignore", ".*IterableDataset. has .__len__. defined.*")  # fast 2D loader: exact
    warnings.filterwarnings("ignore", ".*torch.utils._pytree.*")
    warnings.filterwarnings("ignore", ".*exists and is not empty.*")
    warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
    # Lightning probes for SLURM even with its SLURM support off (build_trainer): cordbench does not use `srun`
    warnings.filterwarnings("ignore", ".*The `srun` command is available on your system but is not used.*")
    import logging

    import pytorch_lightning  # noqa: F401  (sets its own log level on import: override after)

    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")


def build_module(cfg: dict[str, Any], dm: Any):
    """A :class:`SegmentationModule` for the config and data module.

    Its arguments are the config keys that declare an ``hparam`` in the schema (:func:`core.schema.hparams`),
    plus what the data module knows (classes, task, contrast, preprocessing) and the resolved network options
    and post-processing rule.
    """
    from lightning_modules.module import SegmentationModule

    module = SegmentationModule(
        **schema.hparams(cfg),
        options=network_options(cfg),
        num_classes=dm.num_classes,
        in_channels=1,
        spatial_dims=dm.spatial_dims,
        classes={k: list(v) for k, v in dm.class_map.items()},
        task=dm.task.name,
        contrast=dm.contrast,
        preprocessing=dm.preprocessing.to_dict(),
        postprocess=resolve(cfg["model"].get("postprocess"), dm.task.name),
    )
    module.evaluator = SubjectEvaluator(cfg["data"]["scoring"])
    return module


def build_loggers(cfg: dict[str, Any], out: Path, csv: bool = True) -> list[Any]:
    """CSV logger (unless ``csv`` is false); wandb (offline unless a key or the config says online) when enabled."""
    from pytorch_lightning.loggers import CSVLogger

    loggers: list[Any] = [CSVLogger(save_dir=str(out), name="", version="")] if csv else []
    wb = cfg["logger"]["wandb"]
    if wb["enabled"]:
        from runs.tracking import make_wandb_logger

        logger = make_wandb_logger(cfg, out)
        if logger is not None:
            loggers.append(logger)
    return loggers


def epoch_printer():
    """A callback printing one line per epoch (used when the progress bar is off, e.g. in logs)."""
    from runs.trainer_parts import EpochPrinter

    return EpochPrinter()


def build_trainer(
    cfg: dict[str, Any],
    out: Path,
    callbacks: Sequence[Any] = (),
    loggers: Sequence[Any] | None = None,
    checkpoint: bool = True,
    trainer_kwargs: Mapping[str, Any] | None = None,
):
    """A ``pl.Trainer`` from the ``trainer`` section plus checkpointing into ``out/checkpoints``.

    ``trainer_kwargs`` adds or replaces Trainer arguments that cannot live in the YAML config
    (a Ray DDP strategy object, cluster-environment plugins). ``precision: auto`` is resolved
    by :func:`core.devices.choose_precision`. The data modules shard subjects across DDP
    ranks themselves (:mod:`data_modules.sharding`), so Lightning does not wrap the loaders
    (``use_distributed_sampler=False``).
    """
    import pytorch_lightning as pl
    from lightning_fabric.plugins.environments import ClusterEnvironment, LightningEnvironment
    from pytorch_lightning.callbacks import ModelCheckpoint

    from core.devices import choose_precision, cuda_capability
    from runs.checkpoints import atomic_checkpoint_io

    t = {k: v for k, v in {**cfg["trainer"], **(trainer_kwargs or {})}.items() if v is not None}
    set_deterministic_env(cfg)
    t["precision"] = choose_precision(t.get("precision"), cuda_capability(uses_cuda(cfg)))
    t.setdefault("use_distributed_sampler", False)
    plugins = list(t.pop("plugins", None) or []) + [atomic_checkpoint_io()]
    if not any(isinstance(p, ClusterEnvironment) for p in plugins):
        # Lightning's SLURM detection off on purpose: a run (or a sweep trial inside a SLURM job) is
        # one process or Lightning's own DDP launch, never ranks taken from SLURM_* variables
        plugins.append(LightningEnvironment())
    cbs = list(callbacks)
    if not t.get("enable_progress_bar", True):
        cbs.append(epoch_printer())
    if checkpoint:
        cbs.append(
            ModelCheckpoint(
                dirpath=str(RunFolder(out).checkpoints),
                filename=BEST,
                monitor="val/dice",
                mode="max",
                save_last=True,
                save_top_k=1,
                auto_insert_metric_name=False,
                enable_version_counter=False,
            )
        )
    return pl.Trainer(
        default_root_dir=str(out),
        callbacks=cbs,
        logger=list(loggers or []),
        enable_model_summary=False,
        plugins=plugins,
        **t,
    )


def uses_cuda(cfg: dict[str, Any]) -> bool:
    """Whether the trainer section will run on a CUDA device."""
    import torch

    acc = str(cfg["trainer"].get("accelerator") or "auto").lower()
    return acc in ("gpu", "cuda", "auto") and torch.cuda.is_available()


def set_deterministic_env(cfg: dict[str, Any]) -> bool:
    """``trainer.deterministic`` on CUDA: ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (cuBLAS reproducibility).

    Must be in the environment before the first cuBLAS call of the process (set here, before the
    Trainer exists; Lightning's ``deterministic=True`` writes the same value when it builds the
    Trainer, then calls ``torch.use_deterministic_algorithms(True)`` and turns ``cudnn.benchmark``
    off). Returns whether the variable is set for this run.
    """
    if not cfg["trainer"].get("deterministic") or not uses_cuda(cfg):
        return False
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    return True


def prepare(cfg: dict[str, Any], before_write: Callable[[Path], None] | None = None, keep_records: bool = False):
    """Seed everything, build and set up the data module, write config/split records.

    ``before_write(out)`` runs once the inputs are valid (``fit --overwrite`` clears the earlier run
    there); ``keep_records`` (validate/test in a training run's folder) keeps that run's records,
    refusing a split that differs from its ``split.json``.
    """
    import pytorch_lightning as pl

    from data_modules.registry import build_datamodule

    out = run_dir(cfg)
    pl.seed_everything(int(cfg["seed_everything"]), workers=True, verbose=False)
    dm = build_datamodule(cfg["data"])
    dm.setup("fit")  # validates every file first: a bad input leaves an existing run folder untouched
    if not is_global_zero():  # DDP: only global rank 0 writes the run folder
        return out, dm
    if before_write is not None:
        before_write(out)
    folder = RunFolder(out)
    desc = dm.describe()
    if keep_records and folder.config.exists():
        from runs.run_guard import check_evaluate, check_same_split

        check_evaluate(cfg, out)
        check_same_split(out, desc["split"])
        provenance.record_start(folder, dm, evaluation=True)
        return out, dm
    folder.write_config(dump(cfg))
    folder.write_data_description(desc)
    provenance.record_start(folder, dm)
    return out, dm


def write_test_outputs(out: Path, records: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per-subject ``test_metrics.csv`` and the aggregated ``test_summary.json`` (written by rank 0 only).

    The summary's ``by_contrast`` holds the same statistics per image contrast (the records' ``contrast``).
    """
    from evaluation.metrics import aggregate

    summary = {
        "n_subjects": len(records),
        "metrics": aggregate([{k: v for k, v in r.items() if k != "subject"} for r in records]),
        **(extra or {}),
    }
    by_contrast: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("contrast") is not None:
            by_contrast.setdefault(str(r["contrast"]), []).append(r)
    if by_contrast:  # the same statistics over each contrast's images (one row each in test_metrics.csv)
        summary["by_contrast"] = {
            c: {
                "n_subjects": len(rows),
                "metrics": aggregate([{k: v for k, v in r.items() if k != "subject"} for r in rows]),
            }
            for c, rows in sorted(by_contrast.items())
        }
    if is_global_zero():
        RunFolder(out).write_test_outputs(records, summary)
    return summary


def subject_outputs(out: Path):
    """The callback writing each test subject's native prediction and QC panel (``runs.subject_outputs``)."""
    from runs.subject_outputs import SubjectOutputWriter

    return SubjectOutputWriter(out)


def write_test_qc(out: Path, records: list[dict[str, Any]]) -> Path | None:
    """``<run>/qc/index.html`` linking the test subjects' panels and metrics (none without records; rank 0 only)."""
    from runs.subject_outputs import write_qc_report

    return write_qc_report(out, records) if records and is_global_zero() else None


def fit(
    cfg: dict[str, Any],
    callbacks: Sequence[Any] = (),
    ckpt_path: str | None = None,
    test: bool = True,
    trainer_kwargs: Mapping[str, Any] | None = None,
    wrap_trainer: Callable[[Any], Any] | None = None,
    plan: Any = None,
) -> RunResult:
    """Train, keep the best checkpoint by ``val/dice``, then test it on the held-out subjects.

    ``trainer_kwargs`` (extra ``pl.Trainer`` arguments, see :func:`build_trainer`) and
    ``wrap_trainer`` (applied to the built Trainer, e.g. ``ray.train.lightning.prepare_trainer``)
    customise the Trainer of a DDP worker. Under DDP every rank runs this function; only global
    rank 0 writes files, and the test records of all ranks are gathered (every subject once).
    ``plan`` (a :class:`runs.run_guard.FitPlan`, from ``cordbench fit``): resume from the
    run's own checkpoint or replace the earlier run; Ctrl-C is recorded as ``interrupted``.
    """
    from runs import run_guard

    quiet()
    t0 = time.perf_counter()
    ckpt_path = (plan.ckpt_path if plan is not None else None) or ckpt_path
    resumed = None
    if ckpt_path:
        from runs.checkpoints import check_training_checkpoint, read_checkpoint

        ckpt = read_checkpoint(ckpt_path)  # weights only: one clear line when corrupted or unsafe
        check_training_checkpoint(ckpt, cfg, ckpt_path)
        resumed = ckpt if plan is not None and plan.resume else None
    out, dm = prepare(cfg, before_write=plan.before_write if plan is not None else None)
    if is_global_zero():
        RunFolder(out).clear_failure()  # a stale record of an earlier attempt
    module = build_module(cfg, dm)
    if ckpt_path:
        from runs.checkpoints import check_weights

        check_weights(module.state_dict(), ckpt["state_dict"], dict(ckpt["hyper_parameters"]), ckpt_path)
    trainer = build_trainer(
        cfg,
        out,
        [*callbacks, subject_outputs(out), *run_guard.fit_callbacks(out, resumed)],
        build_loggers(cfg, out),
        trainer_kwargs=trainer_kwargs,
    )
    if wrap_trainer is not None:
        trainer = wrap_trainer(trainer)

    def interrupted(exc: BaseException) -> CordbenchError:
        record_failure(out, exc, trainer, status="interrupted")
        return run_guard.interrupted_error(out, trainer)

    with run_guard.interrupts(trainer, interrupted):
        try:
            trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
        except Exception as exc:
            record_failure(out, exc, trainer)
            if isinstance(exc, CordbenchError) and exc.path is None:  # e.g. TrainingDivergedError: name the run
                raise type(exc)(f"{exc} (recorded in {FAILURE_FILE})", out) from exc
            raise
    result = RunResult(out=out, val={k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")})
    ckpt_cb = trainer.checkpoint_callback
    result.best_ckpt = ckpt_cb.best_model_path if ckpt_cb is not None and ckpt_cb.best_model_path else None
    if test and dm.split.get("test"):
        with run_guard.interrupts(trainer, interrupted):
            trainer.test(module, datamodule=dm, ckpt_path=result.best_ckpt or None, verbose=False)
        result.test_records = list(module.test_records)
        result.test_summary = write_test_outputs(
            out,
            result.test_records,
            {
                "checkpoint": result.best_ckpt,
                "model": cfg["model"]["name"],
                "preset": cfg["model"]["preset"],
                "task": dm.task.name,
                "scoring": module.evaluator.scoring,
                "postprocess": mode_of(module),
                "inference_rule": _rule(module),
            },
        )
        write_test_qc(out, result.test_records)
    finish_records(out, result.best_ckpt)
    result.seconds = time.perf_counter() - t0
    for lg in trainer.loggers:
        if type(lg).__name__ == "WandbLogger":
            from runs.tracking import finish_wandb

            finish_wandb(lg, result)
    return result


def finish_records(out: Path, ckpt: str | None = None) -> None:
    """Rank 0, at a run's end: the provenance's end time and the model card (``runs.model_card``, never fatal)."""
    if not is_global_zero():
        return
    folder = RunFolder(out)
    provenance.record_end(folder)
    from runs.model_card import refresh_model_card

    refresh_model_card(folder, ckpt)


FAILURE_FILE = FAILURE  # the name this module exported before runs.run_folder existed


def record_failure(out: Path, exc: BaseException, trainer: Any = None, status: str = "failed") -> Path:
    """Write ``failure.json`` (status, error type, reason, epoch/step reached) in the run folder.

    ``status`` is ``failed`` or ``interrupted`` (Ctrl-C: the reason says so; ``--resume`` continues).
    """
    import datetime

    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    if status == "interrupted":
        reason = "interrupted (Ctrl-C / SIGINT); continue with --resume"
    rec: dict[str, Any] = {
        "status": status,
        "error": "KeyboardInterrupt" if status == "interrupted" else type(exc).__name__,
        "reason": reason,
        "time": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    if trainer is not None:
        rec.update(epoch=int(trainer.current_epoch), global_step=int(trainer.global_step))
    rank, world = rank_and_world()
    folder = RunFolder(out)
    if world == 1:
        return folder.write_failure(rec)
    # DDP: the rank that failed first writes (Lightning then kills the others); a peer that fails
    # only because that rank is gone (a broken collective) must not replace its reason
    import json

    write_first(folder.failure, json.dumps({**rec, "rank": rank, "world_size": world}, indent=2))
    return folder.failure


#: The config key behind each field of the preprocessing contract (for the mismatch message).
_PRE_KEYS = {
    "spacing": "data.spacing",
    "crop": "data.crop",
    "train_crop": "data.crop",
    "min_shape": "data.patch_size",
    "normalisation": "data.preset",
    "preset": "data.preset",
    "task": "data.task",
    "classes": "data.task",
    "num_classes": "data.task",
    "spatial_dims": "data.spatial_dims",
}
#: fields of the contract that only say how a trained network is run: the checkpoint's own are used
INFERENCE_FIELDS = ("inference", "inference_overlap", "inference_blend")


def _rule(module: Any) -> str:
    from lightning_modules.volume import inference_rule

    return inference_rule(module.hparams)


def with_checkpoint_inference(cfg: dict[str, Any], module: Any) -> dict[str, Any]:
    """``cfg`` with the checkpoint's label-free inference rule (``centre`` for checkpoints that recorded
    none), so validation/test score what ``cordbench predict`` writes with it."""
    from data_modules.preprocessing import Preprocessing

    own = Preprocessing.from_hparams(module.hparams)
    return {**cfg, "data": {**cfg["data"], **{k: getattr(own, k) for k in INFERENCE_FIELDS}}}


def check_preprocessing(cfg: Mapping[str, Any], module: Any, ckpt: str | Path) -> None:
    """Refuse to score a checkpoint through another preprocessing than its own (the chain ``predict`` uses):
    one line naming the first differing field, both values and the config key behind it."""
    from core.tasks import TASKS
    from data_modules.preprocessing import Preprocessing

    if not module.hparams.get("preprocessing"):  # a checkpoint older than the contract: nothing to compare
        return
    own = Preprocessing.from_hparams(module.hparams).to_dict()
    here = Preprocessing.from_config(cfg["data"], TASKS[cfg["data"]["task"]]).to_dict()
    # the contrast list records what a run trained on; the chain is the same for every contrast
    diff = [k for k in own if own[k] != here.get(k) and k not in INFERENCE_FIELDS and k != "contrasts"]
    if diff:
        k = diff[0]
        raise ConfigError(
            f"the checkpoint was trained with preprocessing {k}={own[k]!r} but this config gives "
            f"{here.get(k)!r} ({_PRE_KEYS.get(k, 'data.*')}): scoring it so would not match what "
            "`cordbench predict` writes; use the run's config (--config <run>/config.yaml) or set "
            "the same data keys",
            ckpt,
        )


def evaluate(cfg: dict[str, Any], ckpt: str, stage: str = "test") -> RunResult:
    """Validate or test a checkpoint (``stage`` = validate | test) on the configured split."""
    from runs.checkpoints import load_module

    quiet()
    t0 = time.perf_counter()
    from core.tasks import TASKS

    # checked before anything is written: a checkpoint of another task, class count or
    # dimensionality would otherwise score garbage silently
    task = TASKS[cfg["data"]["task"]]
    module = load_module(
        ckpt,
        expect={"num_classes": task.num_classes, "task": task.name, "spatial_dims": int(cfg["data"]["spatial_dims"])},
    )
    from runs.attribution import check_network

    check_network(cfg, module.hparams, ckpt)
    check_preprocessing(cfg, module, ckpt)
    cfg = with_checkpoint_inference(cfg, module)
    out, dm = prepare(cfg, keep_records=True)
    # a training run's per-epoch metrics.csv is its record: Lightning's CSVLogger would delete it
    trainer = build_trainer(
        cfg,
        out,
        [subject_outputs(out)],
        checkpoint=False,
        loggers=build_loggers(cfg, out, csv=not RunFolder(out).metrics.exists()),
    )
    module.evaluator = SubjectEvaluator(cfg["data"]["scoring"])
    if cfg["model"].get("postprocess") is not None:  # e.g. --model.postprocess=none: the raw argmax's metrics
        module.hparams.postprocess = cfg["model"]["postprocess"]
    result = RunResult(out=out, best_ckpt=ckpt)
    from runs import run_guard

    if stage == "validate":
        with run_guard.interrupts(trainer, lambda exc: run_guard.evaluation_interrupted(out, stage)):
            trainer.validate(module, datamodule=dm, verbose=False)
        result.val = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    else:
        with run_guard.interrupts(trainer, lambda exc: run_guard.evaluation_interrupted(out, stage)):
            trainer.test(module, datamodule=dm, verbose=False)
        result.test_records = list(module.test_records)
        result.test_summary = write_test_outputs(
            out,
            result.test_records,
            {
                "checkpoint": ckpt,
                "scoring": module.evaluator.scoring,
                "postprocess": mode_of(module),
                "inference_rule": _rule(module),
            },
        )
        write_test_qc(out, result.test_records)
    finish_records(out, ckpt)
    result.seconds = time.perf_counter() - t0
    return result
