"""``cordbench test``: score a checkpoint on the held-out subjects of a config's split."""
from __future__ import annotations

import argparse

from cordbench.commands._run_args import add_run_arguments, evaluate_command

HELP = "test a checkpoint on the held-out subjects (per-subject metrics CSV)"
ACCEPTS_OVERRIDES = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--ckpt", required=True, help="checkpoint (.ckpt) to evaluate")


def run(args: argparse.Namespace) -> int:
    from cordbench.report import metrics_table
    from cordbench.run_folder import RunFolder

    result = evaluate_command(args, "test")
    if result is None:  # DDP: the summary is rank 0's
        return 0
    print(metrics_table(result.test_summary))
    print(f"per-subject metrics: {RunFolder(result.out).test_metrics}")
    return 0
