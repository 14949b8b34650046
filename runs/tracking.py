"""wandb through Lightning's ``WandbLogger``: offline by default, rank 0 only, never fatal.

What a run records: project / entity / group (the sweep name for sweep trials) / job type /
tags (model, preset, data set, task, seed and every ``model.options`` knob), the full resolved
config with the run's provenance record under ``provenance`` (and its main fields, flat, as
``provenance/*`` in the summary: commit, dirty flag, package versions, data, hardware), per-epoch metrics (Lightning), sample overlays (``SegmentationModule._log_overlay``),
the final validation and test metrics in the run summary, the per-subject test metrics as a
``wandb.Table`` and the best checkpoint as a summary path plus a reference artifact (the
file stays where it is; the artifact records its URI).

Mode: ``logger.wandb.mode`` if set, else ``online`` when ``WANDB_API_KEY`` is set, else
``offline``. Run files go inside the run folder (``<run>/wandb/``); ``wandb sync <run>/wandb/
offline-run-*`` uploads them later. If wandb cannot start, the run falls back to offline, and
if even that fails it continues without wandb — with exactly one warning either way. Under DDP
only global rank 0 creates a run (one wandb run per trial).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.distributed import RANK_VARS  # noqa: F401  (kept importable from here)

MAX_TAG = 64  # wandb's tag length limit


def wandb_mode(cfg: dict[str, Any]) -> str:
    """Resolved wandb mode for a run config."""
    mode = cfg["logger"]["wandb"].get("mode")
    if mode:
        return mode
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def is_global_rank_zero() -> bool:
    """False in any DDP worker but global rank 0 (see :func:`core.distributed.is_global_zero`)."""
    from core.distributed import is_global_zero

    return is_global_zero()


def run_tags(cfg: dict[str, Any]) -> list[str]:
    """Tags: model, preset, data set, task, seed and the knobs set in ``model.options``."""
    m, d = cfg["model"], cfg["data"]
    tags = [
        f"model:{m['name']}",
        f"preset:{m['preset']}",
        f"data:{d['name']}",
        f"task:{d['task']}",
        f"seed:{cfg.get('seed_everything')}",
    ]
    for k, v in sorted((m.get("options") or {}).items()):
        tags.append(f"{k}:{v}".replace(" ", ""))
    tags += [str(t) for t in cfg["logger"]["wandb"].get("tags") or []]
    return list(dict.fromkeys(t[:MAX_TAG] for t in tags))


def start_with_fallback(start: Callable[[str], Any], mode: str, what: str) -> Any:
    """``start(mode)``, else ``start("offline")``; None when both fail. At most one warning."""
    errors = []
    for attempt in (mode,) if mode == "offline" else (mode, "offline"):
        try:
            return _maybe_warn(start(attempt), errors, what, fell_back=True)
        except Exception as exc:  # network, auth, disk: never fail the run for tracking
            errors.append(f"{attempt}: {type(exc).__name__}: {exc}")
    _maybe_warn(None, errors, what, fell_back=False)
    return None


def _maybe_warn(result: Any, errors: list[str], what: str, fell_back: bool) -> Any:
    if errors:
        tail = "logging offline instead" if fell_back else "continuing without wandb"
        warnings.warn(f"wandb could not start for {what} ({'; '.join(errors)}); {tail}", RuntimeWarning, stacklevel=3)
    return result


def make_wandb_logger(cfg: dict[str, Any], out: Path):
    """A ``WandbLogger`` for the run, or None when wandb is disabled, cannot start, or rank ≠ 0."""
    wb = cfg["logger"]["wandb"]
    mode = wandb_mode(cfg)
    if mode == "disabled" or not is_global_rank_zero():
        return None
    from pytorch_lightning.loggers import WandbLogger

    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")
    kwargs = dict(
        project=wb["project"],
        entity=wb.get("entity"),
        group=wb.get("group"),
        job_type=wb["job_type"],
        tags=run_tags(cfg),
        name=cfg["name"],
        save_dir=str(out),
        config={**cfg, "provenance": _provenance(out)},
    )

    def start(attempt: str):
        logger = WandbLogger(mode=attempt, **kwargs)
        _ = logger.experiment  # start the run now so failures surface here
        return logger

    return start_with_fallback(start, mode, f"run {cfg['name']!r}")


def _provenance(out: Path) -> dict[str, Any] | None:
    """The run folder's ``provenance.json`` (``runs.provenance``): in the wandb config and, flat, in the summary."""
    from runs.run_folder import RunFolder

    return RunFolder(Path(out)).read_provenance()


def finish_wandb(logger: Any, result: Any) -> None:
    """Write final metrics, the per-subject table and the checkpoint reference; close the run."""
    try:
        import wandb

        run = logger.experiment
        summary: dict[str, Any] = {f"final/{k}": v for k, v in result.val.items()}
        for key, stats in (result.test_summary.get("metrics") or {}).items():
            if isinstance(stats, dict) and "mean" in stats:
                summary[f"test/{key}"] = stats["mean"]
        if result.test_summary:
            summary["test/n_subjects"] = result.test_summary.get("n_subjects")
        summary["checkpoint"] = str(result.best_ckpt or "")
        summary["run_dir"] = str(result.out)
        summary["seconds"] = float(result.seconds)
        from runs.provenance import summary_fields

        summary.update({k: v for k, v in summary_fields(_provenance(result.out)).items() if v is not None})
        run.summary.update(summary)
        if result.test_records:
            cols = list(result.test_records[0])
            run.log(
                {
                    "test/per_subject": wandb.Table(
                        columns=cols, data=[[r.get(c) for c in cols] for r in result.test_records]
                    )
                }
            )
        if result.best_ckpt and Path(result.best_ckpt).exists():
            _log_checkpoint_reference(run, Path(result.best_ckpt), summary)
        run.finish()
    except Exception as exc:
        warnings.warn(f"wandb finish failed: {exc}", RuntimeWarning)


def _log_checkpoint_reference(run: Any, ckpt: Path, summary: dict[str, Any]) -> None:
    """A ``model`` artifact referencing the checkpoint file by URI (not uploaded)."""
    import wandb

    try:
        # artifact metadata must be strict JSON: a non-finite metric (e.g. conformity -inf at Dice 0) is kept
        # as its text ("-inf", "nan"), not dropped with the whole artifact
        meta = {
            k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in summary.items()
            if k.startswith(("final/", "test/"))
        }
        art = wandb.Artifact(f"model-{run.id}", type="model", metadata=meta)
        art.add_reference(ckpt.resolve().as_uri(), name=ckpt.name, checksum=False)
        run.log_artifact(art, aliases=["best"])
    except Exception as exc:  # the summary path still names the checkpoint
        warnings.warn(f"wandb checkpoint artifact failed: {exc}", RuntimeWarning)


def wandb_defaults_from_trials(trial_configs: list[dict[str, Any]], sweep_name: str) -> dict[str, Any]:
    """project / entity / group / mode the sweep's trials used (group falls back to the sweep name)."""
    for cfg in trial_configs:
        wb = (cfg.get("logger") or {}).get("wandb") or {}
        if wb:
            return {
                "project": wb.get("project") or "cordbench",
                "entity": wb.get("entity"),
                "group": wb.get("group") or sweep_name,
                "mode": wb.get("mode"),
            }
    return {"project": "cordbench", "entity": None, "group": sweep_name, "mode": None}


def log_leaderboard(
    out: Path,
    table: Any,
    images: dict[str, Path],
    meta: dict[str, Any],
    project: str = "cordbench",
    entity: str | None = None,
    group: str | None = None,
    mode: str | None = None,
) -> Path | None:
    """A ``job_type=leaderboard`` run in the sweep's group: the table, the plots, the best entry.

    Returns the run's local folder, or None when wandb is disabled or could not start.
    """
    mode = mode or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
    if mode == "disabled" or not is_global_rank_zero():
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")
    import wandb

    out.mkdir(parents=True, exist_ok=True)

    def start(attempt: str):
        return wandb.init(
            project=project,
            entity=entity,
            group=group,
            job_type="leaderboard",
            mode=attempt,
            name=f"leaderboard-{group or meta.get('sweep')}",
            dir=str(out),
            config=meta,
            tags=[f"metric:{meta.get('column')}", f"by:{meta.get('by')}"],
            reinit="create_new",
        )

    run = start_with_fallback(start, mode, f"leaderboard of {meta.get('sweep')!r}")
    if run is None:
        return None
    try:
        run.log(
            {
                "leaderboard": wandb.Table(dataframe=table.astype(object).where(table.notna(), None)),
                **{f"plots/{k}": wandb.Image(str(p)) for k, p in images.items()},
            }
        )
        best = table.iloc[0]
        run.summary.update(
            {
                "best/entry": str(best["entry"]),
                "best/mean": float(best["mean"]),
                "best/ci_low": float(best["ci_low"]),
                "best/ci_high": float(best["ci_high"]),
                "n_entries": int(len(table)),
            }
        )
        run_dir = Path(run.dir).parent
        run.finish()
        return run_dir
    except Exception as exc:
        warnings.warn(f"wandb leaderboard logging failed: {exc}", RuntimeWarning)
        try:
            run.finish()
        except Exception:
            pass
        return None
