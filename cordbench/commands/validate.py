"""``cordbench validate``: validation metrics of a checkpoint."""

from __future__ import annotations

import argparse

from cordbench.commands._run_args import add_run_arguments, evaluate_command

HELP = "validation metrics of a checkpoint on the config's validation subjects"
ACCEPTS_OVERRIDES = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--ckpt", required=True, help="checkpoint (.ckpt) to evaluate")


def run(args: argparse.Namespace) -> int:
    result = evaluate_command(args, "validate")
    if result is None:  # DDP: the summary is rank 0's
        return 0
    for k, v in sorted(result.val.items()):
        print(f"{k}: {v:.4f}")
    return 0
