"""``cordbench gmchallenge``: the GM-challenge protocol in one command, and its results table."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.tasks import TASKS

HELP = "run the GM challenge protocol (configs/sweeps/gmchallenge_perone.yaml) on the challenge data; print its table"
SWEEP = "configs/sweeps/gmchallenge_perone.yaml"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", nargs="?", help="the GM challenge folder (site*-sc*-image.nii.gz, -mask-r*.nii.gz)")
    p.add_argument("--sweep", default=SWEEP, help=f"protocol sweep YAML (default {SWEEP})")
    p.add_argument("--table", metavar="SWEEP_DIR", help="only print the table of a finished protocol sweep")
    p.add_argument("--class", dest="cls", default="gm", choices=tuple(TASKS["gm"].classes), help="class of the table")
    p.add_argument("--storage", metavar="DIR", help="sweep storage folder or URI (overrides the sweep's)")
    p.add_argument("--address", help="join a running Ray cluster (default: local Ray)")
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="sweep key override, as for cordbench sweep (e.g. config.trainer.max_epochs=5)",
    )
    p.add_argument("--check", action="store_true", help="validate the protocol and every trial config, then stop")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier protocol sweep of the same name")


def _require_data(root: str | None) -> Path:
    """The data folder; else the CLI's one error line (stderr, exit 2) saying how to get the data."""
    from core.errors import InputError
    from data_modules.gmchallenge import index_gmchallenge

    target = Path(root) if root else Path("data/gmchallenge")
    how = (
        f"get the data as `cordbench download gmchallenge {target}` explains, then run `cordbench gmchallenge {target}`"
    )
    if not root:
        raise InputError(f"no GM challenge folder given: {how}")
    try:
        labelled = any(s.labelled for s in index_gmchallenge(target))
    except InputError as exc:
        raise InputError(f"{exc}: {how}") from None
    if not labelled:
        raise InputError(f"no subject with rater masks: {how}", target)
    return target


def run(args: argparse.Namespace) -> int:
    from leaderboard.gmchallenge_table import table_for_sweep

    if args.table:
        print(table_for_sweep(args.table, args.cls)[1])
        return 0
    root = _require_data(args.root)
    from sweeps.config import load_sweep

    sweep = load_sweep(
        args.sweep, overrides=[f"config.data.root={root.resolve()}", *args.override], storage=args.storage
    )
    print(f"GM challenge protocol {sweep.name}: {sweep.n_trials} trial(s) -> {sweep.sweep_dir}", flush=True)
    if args.check:
        return 0
    from sweeps.runner import run_sweep

    outcome = run_sweep(sweep, address=args.address, overwrite=args.overwrite)
    failed = outcome.frame[outcome.frame["status"] != "TERMINATED"]
    for _, row in failed.iterrows():
        print(f"trial {row['trial_id']}: {row['status']} {row['error'] if row['error'] == row['error'] else ''}")
    table, text = table_for_sweep(outcome.sweep_dir, args.cls)
    print(text)
    print(f"\ntable: {Path(outcome.sweep_dir) / 'gmchallenge_table.csv'}")
    return 1 if len(failed) else 0
