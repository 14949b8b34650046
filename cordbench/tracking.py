"""wandb through Lightning's ``WandbLogger``: offline by default, never fatal.

Mode: ``logger.wandb.mode`` if set, else ``online`` when ``WANDB_API_KEY`` is set, else
``offline``. Run files go inside the run folder (``<run>/wandb/``); ``wandb sync <run>/wandb/
offline-run-*`` uploads them later. If wandb cannot start, the run falls back to offline with
one warning, and if even that fails it continues without wandb.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

KNOB_KEYS = ("skip_connections", "depths", "num_heads", "skip_heads", "embed_dim", "attentive_skips", "depth",
             "base_channels")


def wandb_mode(cfg: dict[str, Any]) -> str:
    """Resolved wandb mode for a run config."""
    mode = cfg["logger"]["wandb"].get("mode")
    if mode:
        return mode
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def run_tags(cfg: dict[str, Any]) -> list[str]:
    """Tags: model, preset, data set, task and the ablation knobs set in the config."""
    m, d = cfg["model"], cfg["data"]
    tags = [f"model:{m['name']}", f"preset:{m['preset']}", f"data:{d['name']}", f"task:{d['task']}"]
    for k, v in sorted((m.get("options") or {}).items()):
        if k in KNOB_KEYS:
            tags.append(f"{k}:{v}")
    return tags + list(cfg["logger"]["wandb"].get("tags") or [])


def make_wandb_logger(cfg: dict[str, Any], out: Path):
    """A ``WandbLogger`` for the run, or None when wandb is disabled or cannot start."""
    wb = cfg["logger"]["wandb"]
    mode = wandb_mode(cfg)
    if mode == "disabled":
        return None
    from pytorch_lightning.loggers import WandbLogger

    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")
    kwargs = dict(project=wb["project"], entity=wb.get("entity"), group=wb.get("group"), job_type=wb["job_type"],
                  tags=run_tags(cfg), name=cfg["name"], save_dir=str(out), config=cfg)
    for attempt in ((mode,) if mode == "offline" else (mode, "offline")):
        try:
            logger = WandbLogger(mode=attempt, **kwargs)
            _ = logger.experiment  # start the run now so failures surface here
            return logger
        except Exception as exc:  # network, auth, disk: never fail the run for tracking
            warnings.warn(f"wandb {attempt} failed ({type(exc).__name__}: {exc}); "
                          + ("falling back to offline" if attempt != "offline" else "continuing without wandb"))
    return None


def finish_wandb(logger: Any, result: Any) -> None:
    """Write final metrics, the per-subject table and the checkpoint reference; close the run."""
    try:
        import wandb

        run = logger.experiment
        summary = {f"final/{k}": v for k, v in result.val.items()}
        for key, stats in (result.test_summary.get("metrics") or {}).items():
            if isinstance(stats, dict) and "mean" in stats:
                summary[f"test/{key}"] = stats["mean"]
        summary["checkpoint"] = str(result.best_ckpt or "")
        summary["run_dir"] = str(result.out)
        run.summary.update(summary)
        if result.test_records:
            cols = list(result.test_records[0])
            run.log({"test/per_subject": wandb.Table(columns=cols, data=[[r.get(c) for c in cols]
                                                                            for r in result.test_records])})
        run.finish()
    except Exception as exc:
        warnings.warn(f"wandb finish failed: {exc}")
