"""``cordbench fit``: train a model, keep the best checkpoint, test it on held-out subjects."""

from __future__ import annotations

import argparse

from cordbench.commands._run_args import add_run_arguments, check_run_dir, config_from_args

HELP = "train a model (config in configs/*.yaml), then test the best checkpoint"
ACCEPTS_OVERRIDES = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--ckpt-path", help="resume training from this checkpoint")
    p.add_argument("--no-test", action="store_true", help="skip the test on held-out subjects")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in the run folder from its last (or interrupted) checkpoint, same config",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run in the run folder (removed once the new run's inputs are valid)",
    )


def run(args: argparse.Namespace) -> int:
    from core.distributed import is_global_zero
    from runs.recipes import training_line
    from runs.report import metrics_table
    from runs.run_folder import RunFolder
    from runs.run_guard import RunLock, is_worker_rank, latest_checkpoint, plan_fit
    from runs.runner import fit, run_dir

    cfg = config_from_args(args)
    out = run_dir(check_run_dir(cfg))
    if is_global_zero():
        print(training_line(cfg), flush=True)
    if is_worker_rank():  # a DDP worker re-running this command: rank 0 locked and planned the folder
        last = latest_checkpoint(out) if args.resume else None
        result = fit(cfg, ckpt_path=str(last) if last else args.ckpt_path, test=not args.no_test)
    else:
        with RunLock(out, "fit"):  # first: a run in progress is reported as such, not as an earlier run
            plan = plan_fit(cfg, out, resume=args.resume, overwrite=args.overwrite, ckpt_path=args.ckpt_path)
            result = fit(cfg, test=not args.no_test, plan=plan)
    if not is_global_zero():  # DDP: the summary is rank 0's
        return 0
    print(f"\nrun: {result.out}  ({result.seconds:.0f} s)")
    print(f"best checkpoint: {result.best_ckpt}")
    print("validation: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(result.val.items())))
    if result.test_summary:
        print(f"\ntest metrics ({cfg['model']['name']}, task {cfg['data']['task']}):")
        print(metrics_table(result.test_summary))
        print(f"per-subject metrics: {RunFolder(result.out).test_metrics}")
    return 0
