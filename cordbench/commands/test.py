"""``cordbench test``: score a checkpoint on the held-out subjects of a config's split."""
from __future__ import annotations

import argparse

from cordbench.commands._run_args import add_run_arguments, check_run_dir, config_from_args

HELP = "test a checkpoint on the held-out subjects (per-subject metrics CSV)"
ACCEPTS_OVERRIDES = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--ckpt", required=True, help="checkpoint (.ckpt) to evaluate")


def run(args: argparse.Namespace) -> int:
    from cordbench.report import metrics_table
    from cordbench.run_folder import RunFolder
    from cordbench.distributed import is_global_zero
    from cordbench.run_guard import RunLock, is_worker_rank
    from cordbench.runner import evaluate, run_dir

    cfg = check_run_dir(config_from_args(args))
    out = run_dir(cfg)
    if is_worker_rank():  # a DDP worker re-running this command: rank 0 holds the lock
        result = evaluate(cfg, args.ckpt, stage="test")
    else:
        with RunLock(out, "test"):
            result = evaluate(cfg, args.ckpt, stage="test")
    if not is_global_zero():  # DDP: the summary is rank 0's
        return 0
    print(metrics_table(result.test_summary))
    print(f"per-subject metrics: {RunFolder(result.out).test_metrics}")
    return 0
