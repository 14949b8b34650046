"""``cordbench test``: score a checkpoint on the held-out subjects of a config's split, or on real scans."""

from __future__ import annotations

import argparse

from cordbench.commands._run_args import add_run_arguments, evaluate_command

HELP = "test a checkpoint on the held-out subjects (per-subject metrics CSV), or on real labelled scans (--real)"
ACCEPTS_OVERRIDES = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument(
        "--ckpt",
        required=True,
        action="append",
        help="checkpoint (.ckpt) to evaluate; repeat it to score the ensemble exactly as `predict` writes it",
    )
    from evaluation.ensemble import TTA_CHOICES

    p.add_argument(
        "--tta",
        choices=TTA_CHOICES,
        default="none",
        help="test-time augmentation of the scored prediction (as `predict --tta`; default none)",
    )
    p.add_argument(
        "--real",
        metavar="DIR",
        help="instead: score the checkpoint on real labelled scans in DIR (a BIDS folder or a flat "
        "folder of image/label pairs, docs/data.md) on each image's native grid; writes "
        "real_metrics.csv, real_summary.json and real_predictions/ into the run folder (-o, else "
        "the run folder holding the checkpoint, else the config's)",
    )


def run(args: argparse.Namespace) -> int:
    from runs.report import metrics_table
    from runs.run_folder import RunFolder

    if len(args.ckpt) > 1 or args.tta != "none":
        from cordbench.commands._run_args import ensemble_command

        result = ensemble_command(args)
        print(metrics_table(result.test_summary))
        print(f"ensemble of {len(args.ckpt)} checkpoint(s), TTA {args.tta}: {RunFolder(result.out).test_summary}")
        print(f"per-subject metrics: {RunFolder(result.out).test_metrics}")
        return 0
    args.ckpt = args.ckpt[0]
    if args.real:
        return run_real(args)
    result = evaluate_command(args, "test")
    if result is None:  # DDP: the summary is rank 0's
        return 0
    print(metrics_table(result.test_summary))
    print(f"per-subject metrics: {RunFolder(result.out).test_metrics}")
    return 0


def run_real(args: argparse.Namespace) -> int:
    """``test --real DIR``: checks the run folder, reads the checkpoint and the set, scores, prints the table."""
    from pathlib import Path

    from cordbench.commands._run_args import config_from_args
    from data_modules.real import read_real_set
    from runs.attribution import check_run_of_checkpoint
    from runs.checkpoints import load_module
    from runs.model_card import refresh_model_card
    from runs.real_eval import check_output, evaluate_real, real_table, run_folder_of
    from runs.run_folder import RunFolder
    from runs.run_guard import RunLock
    from runs.runner import quiet, run_dir

    out = Path(args.output_dir) if args.output_dir else run_folder_of(args.ckpt) or run_dir(config_from_args(args))
    check_output(out, Path(args.real), args.ckpt)
    check_run_of_checkpoint(out, args.ckpt)
    quiet()
    module = load_module(args.ckpt)
    real = read_real_set(args.real)
    with RunLock(out, "test --real"):
        result = evaluate_real(module, real, out, args.ckpt)
        refresh_model_card(RunFolder(out), args.ckpt)  # the card's real-data section, per contrast
    print(real_table(result))
    folder = RunFolder(out)
    print(f"per-image real metrics: {folder.real_metrics}\nreal summary: {folder.real_summary}")
    return 0
