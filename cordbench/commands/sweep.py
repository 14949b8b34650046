"""``cordbench sweep``: run a Ray Tune sweep from ``configs/sweeps/*.yaml`` (or resume one)."""

from __future__ import annotations

import argparse

from cordbench.commands._run_args import KeysHelpFormatter, LazyText

HELP = "run a Ray Tune sweep (configs/sweeps/*.yaml) locally or on a cluster; --resume finishes an interrupted one"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "config",
        nargs="?",
        help="sweep YAML (configs/sweeps/*.yaml; the old sweeps/*.yaml paths and "
        "bare names such as quickstart work too)",
    )
    p.add_argument("--address", help="join a running Ray cluster: auto | ray://host:10001 (default: local Ray)")
    p.add_argument("--resume", metavar="DIR", help="finish the sweep in this folder (<storage>/<name>)")
    p.add_argument("--storage", metavar="DIR", help="storage folder or URI (overrides the config's storage)")
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="sweep key override, e.g. search.num_samples=4, config.trainer.max_epochs=1, "
        "space.model.lr.loguniform=[1e-4,1e-2] (repeatable)",
    )
    p.add_argument("--check", action="store_true", help="validate the sweep and every trial config, then stop")
    p.add_argument(
        "--overwrite", action="store_true", help="delete an earlier sweep of the same name in the storage folder first"
    )
    p.formatter_class = KeysHelpFormatter
    p.epilog = LazyText(sweep_keys_help)


def sweep_keys_help() -> str:
    """The ``--help`` table of every sweep-file key (:class:`core.schema.SweepConfig`)."""
    from core.schema import SweepConfig, key_table

    return (
        "sweep keys (core/schema.py), set in the sweep file or with --override KEY=VALUE; config holds run-config\n"
        "keys (cordbench fit --help), space maps a dotted run-config key to one distribution:\n"
        + key_table(SweepConfig)
    )


def summary_table(frame) -> str:
    """The results table printed at the end (knob columns included)."""
    drop = {"error", "run_dir", "params", "attempts", "early_stopped", "data", "task"}
    cols = [c for c in frame.columns if c not in drop]
    out = frame[cols].copy()
    for c in ("val_dice", "test_dice"):
        out[c] = out[c].map(lambda v: "" if v != v or v is None else f"{float(v):.4f}")
    return out.to_string(index=False)


def run(args: argparse.Namespace) -> int:
    from core.errors import ConfigError
    from sweeps.config import load_sweep

    if bool(args.config) == bool(args.resume):
        raise ConfigError("give either a sweep config or --resume DIR")
    if args.resume:
        if args.override or args.storage or args.overwrite:
            raise ConfigError("--override/--storage/--overwrite cannot be used with --resume")
        if args.check:
            load_sweep(args.resume, check_data=False)
            print(f"{args.resume}: sweep.yaml is valid")
            return 0
        from sweeps.runner import resume_sweep

        outcome = resume_sweep(args.resume, address=args.address)
    else:
        sweep = load_sweep(args.config, overrides=args.override, storage=args.storage)
        print(
            f"sweep {sweep.name}: {sweep.n_trials} trial(s), {len(sweep.dims)} swept key(s), "
            f"{sweep.n_validated} config(s) validated -> {sweep.sweep_dir}",
            flush=True,
        )
        if args.check:
            return 0
        from sweeps.runner import run_sweep

        outcome = run_sweep(sweep, address=args.address, overwrite=args.overwrite)
    frame = outcome.frame
    print(f"\nsweep folder: {outcome.sweep_dir}  ({outcome.seconds:.0f} s)")
    print(f"results: {outcome.results_csv}\n")
    print(summary_table(frame))
    failed = frame[frame["status"] != "TERMINATED"]
    for _, row in failed.iterrows():
        print(f"trial {row['trial_id']}: {row['status']} {row['error'] if row['error'] == row['error'] else ''}")
    return 1 if len(failed) else 0
