"""Arguments shared by fit / validate / test (LightningCLI-style config + shortcuts)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from core import schema
from core.ranges import add_number
from core.schema import RunConfig
from core.tasks import TASK_NAMES
from lightning_modules.presets import PRESET_NAMES


class LazyText(str):
    """Help text rendered only when the help is shown (``render``), not each time the parser is built."""

    def __new__(cls, render: Callable[[], str]) -> LazyText:
        self = super().__new__(cls, "")
        self.render = render  # type: ignore[attr-defined]
        return self


class KeysHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the key table's lines as they are and renders :class:`LazyText` when the help is shown."""

    def _format_text(self, text: str) -> str:
        return super()._format_text(text.render() if isinstance(text, LazyText) else text)  # type: ignore[attr-defined]


def config_keys_help() -> str:
    """The ``--help`` table of every run-config key: type, default, range and choices from :mod:`core.schema`."""
    from core.schema import RunConfig, key_table
    from runs.config import choices

    return (
        "config keys (core/schema.py), set in a -c file or as --section.key=value; a recipe key left null\n"
        "takes the model preset's training recipe (runs/recipes.py):\n" + key_table(RunConfig, choices)
    )


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """``--config`` files, common shortcuts; any ``--section.key=value`` override is accepted too (listed in the
    help after the options)."""
    p.formatter_class = KeysHelpFormatter
    p.epilog = LazyText(config_keys_help)
    p.add_argument(
        "-c",
        "--config",
        action="append",
        default=[],
        metavar="YAML",
        help="config file(s) in configs/, merged left to right",
    )
    p.add_argument("--model", help="registered network name (model.name)")
    p.add_argument("--preset", choices=PRESET_NAMES, help="model preset (model.preset)")
    p.add_argument("--data", help="data set: phantom | spine_generic | gmchallenge (data.name)")
    p.add_argument("--root", help="data set folder (data.root)")
    p.add_argument("--task", choices=TASK_NAMES, help="data.task")
    add_number(
        p, "--max-epochs", kind=int, range=schema.get(RunConfig, "trainer.max_epochs").range, help="trainer.max_epochs"
    )
    add_number(
        p,
        "--seed",
        kind=int,
        range=schema.get(RunConfig, "seed_everything").range,
        help="seed_everything (also the split seed unless set)",
    )
    p.add_argument("--name", help="run name")
    p.add_argument("-o", "--output-dir", help="run folder (default outputs/runs/<name>)")


def check_run_dir(cfg: dict[str, Any]) -> dict[str, Any]:
    """The run folder must be a folder we can write (checked before any data is read); returns ``cfg``."""
    from core.outputs import check_output_dir
    from runs.runner import run_dir

    check_output_dir(run_dir(cfg), inputs={"data.root": cfg["data"].get("root")}, what="run folder")
    return cfg


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Resolved config: files, then shortcuts, then dotted overrides."""
    from runs.config import load_config

    extra: dict[str, Any] = {}
    if args.model:
        extra.setdefault("model", {})["name"] = args.model
        extra.setdefault("name", f"{args.model}-{args.preset or 'small'}")
    if args.preset:
        extra.setdefault("model", {})["preset"] = args.preset
    if args.data:
        extra.setdefault("data", {})["name"] = args.data
    if args.root:
        extra.setdefault("data", {})["root"] = args.root
    if args.task:
        extra.setdefault("data", {})["task"] = args.task
    if args.max_epochs is not None:
        extra.setdefault("trainer", {})["max_epochs"] = args.max_epochs
    if args.seed is not None:
        extra["seed_everything"] = args.seed
    if args.name:
        extra["name"] = args.name
    if args.output_dir:
        extra["output_dir"] = args.output_dir
    return load_config(args.config, args.overrides, extra)


def evaluate_command(args: argparse.Namespace, stage: str):
    """``validate``/``test``: evaluate ``--ckpt`` under the run folder's lock; None on a DDP worker rank.

    A DDP worker (rank > 0) re-runs the command line: rank 0 holds the lock and prints the summary,
    so the worker evaluates without locking and the caller prints nothing.
    """
    from core.distributed import is_global_zero
    from runs.run_guard import RunLock, is_worker_rank
    from runs.runner import evaluate, run_dir

    cfg = check_run_dir(config_from_args(args))
    if is_worker_rank():
        evaluate(cfg, args.ckpt, stage=stage)
        return None
    with RunLock(run_dir(cfg), stage):
        result = evaluate(cfg, args.ckpt, stage=stage)
    return result if is_global_zero() else None


def ensemble_command(args: argparse.Namespace):
    """``test --ckpt A --ckpt B … [--tta]``: score the ensemble under the run folder's lock
    (:func:`runs.ensemble_eval.evaluate_ensemble`; one process)."""
    from core.errors import ConfigError
    from runs.ensemble_eval import evaluate_ensemble
    from runs.run_guard import RunLock
    from runs.runner import run_dir

    if args.real:
        raise ConfigError("--real scores one checkpoint: give a single --ckpt without --tta")
    cfg = check_run_dir(config_from_args(args))
    if (run_dir(cfg) / "checkpoints").exists():  # a member's own records would be replaced by the ensemble's
        raise ConfigError(
            "holds a training run: an ensemble's test goes into a run folder of its own (give -o DIR)", run_dir(cfg)
        )
    with RunLock(run_dir(cfg), "test"):
        return evaluate_ensemble(cfg, args.ckpt, args.tta)
