"""``cordbench leaderboard``: rank a sweep's models/configs with CIs and paired tests; write reports."""

from __future__ import annotations

import argparse

from core.ranges import SEED_MAX, Range, add_number
from core.tasks import TASK_NAMES

HELP = "statistical leaderboard of a sweep folder (bootstrap CIs, Wilcoxon vs best, ablation plots)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "sweep_dir",
        metavar="SWEEP_DIR",
        help="sweep folder holding results.csv and trials/, or its URI (s3://bucket/sweeps/NAME)",
    )
    p.add_argument("--metric", default="dice", help="per-subject metric to rank on (default: dice)")
    p.add_argument("--task", help=f"task to rank when the sweep holds several ({' | '.join(TASK_NAMES)})")
    p.add_argument(
        "--class", dest="cls", metavar="CLASS", help="scored class (default: the task's own class, else the only one)"
    )
    p.add_argument(
        "--by",
        choices=("model", "config"),
        default="model",
        help="one entry per model, or per configuration (model + preset + knobs)",
    )
    p.add_argument(
        "-o", "--out", help="report folder (default: SWEEP_DIR/leaderboard; for a URI: outputs/leaderboards/NAME)"
    )
    p.add_argument(
        "--upload",
        action="store_true",
        help="URI sweep: also write the reports back to SWEEP_DIR/leaderboard/ in the bucket",
    )
    add_number(
        p, "--n-boot", kind=int, range=Range(1, 10_000_000), default=10000, help="bootstrap resamples (default: 10000)"
    )
    add_number(p, "--seed", kind=int, range=Range(0, SEED_MAX), default=0, help="bootstrap seed (default: 0)")
    add_number(
        p,
        "--alpha",
        range=Range(0, 1, lo_open=True, hi_open=True),
        default=0.05,
        help="level of the Holm-corrected tests (default: 0.05)",
    )
    add_number(
        p,
        "--delta",
        range=Range(0, None),
        default=0.01,
        help="equivalence margin: 'tied' when the 95%% CI of the paired difference to the best lies "
        "within ±DELTA (metric units; default: 0.01 Dice)",
    )
    p.add_argument("--no-cost", action="store_true", help="skip FLOPs/latency measurement")
    p.add_argument("--no-wandb", action="store_true", help="do not log the leaderboard to wandb")
    p.add_argument(
        "--morphometrics",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="per-level CSA error of each model's cord masks and FA vs SAC/CSA from them (default: on "
        "when the task is sc and the trials' data has manual cord masks and vertebral levels)",
    )
    p.add_argument(
        "--real",
        metavar="DIR",
        help="also score every ranked trial's best checkpoint on the real labelled scans in DIR (as "
        "`cordbench test --real DIR`; cached per trial) and add real-data columns with 95%% CIs",
    )
    p.add_argument(
        "--ensembles",
        action="store_true",
        help="add an '<entry> (ensemble)' row per entry with >= 2 trials: the trials' class probabilities "
        "averaged on the held-out subjects they share, ranked with the same paired statistics",
    )
    p.add_argument(
        "--soft-csa",
        action="store_true",
        help="also measure CSA from the models' soft cord probabilities (partial volume) beside the "
        "thresholded masks' (task sc; needs the morphometric columns)",
    )
    p.add_argument(
        "--precision",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="precision columns: CoV of the cord area across contrasts, sessions and sites, ICC(3,1) between "
        "sessions, Bland-Altman against the reference masks, with 95%% CIs (default: on when the data have more "
        "than one contrast or session per subject; docs/leaderboard.md)",
    )
    p.add_argument(
        "--precision-data",
        metavar="DIR",
        help="measure precision on every subject of this BIDS data set (e.g. `cordbench phantom --sessions 2`) "
        "instead of the trials' held-out subjects",
    )
    p.add_argument(
        "--external",
        action="append",
        metavar="NAME=OUT",
        default=[],
        help="rank a `cordbench score` folder (another tool's masks) as entry NAME beside the sweep's models "
        "(repeatable)",
    )
    p.add_argument(
        "--by-contrast",
        action="store_true",
        help="also rank each image contrast of a multi-contrast sweep on its own (one board per contrast in "
        "OUT/contrast-<C>/; docs/leaderboard.md)",
    )
    p.add_argument(
        "--refresh-morphometrics",
        action="store_true",
        help="recompute each trial's morphometrics.csv even when it is newer than the checkpoint",
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from core.outputs import check_output_dir
    from leaderboard import render_leaderboard
    from leaderboard.external import parse_external

    externals = dict(parse_external(spec) for spec in args.external)
    if args.out:
        check_output_dir(args.out, inputs={"SWEEP_DIR": args.sweep_dir}, what="--out folder")

    files = render_leaderboard(
        args.sweep_dir,
        metric=args.metric,
        task=args.task,
        cls=args.cls,
        by=args.by,
        out=args.out,
        n_boot=args.n_boot,
        seed=args.seed,
        wandb=not args.no_wandb,
        cost=not args.no_cost,
        alpha=args.alpha,
        delta=args.delta,
        morphometrics=args.morphometrics,
        refresh_morphometrics=args.refresh_morphometrics,
        log=lambda line: print(line, file=sys.stderr, flush=True),
        upload=args.upload,
        real=args.real,
        ensembles=args.ensembles,
        soft_csa=args.soft_csa,
        precision=args.precision,
        precision_data=args.precision_data,
        externals=externals,
        by_contrast=args.by_contrast,
    )
    print(files.markdown)
    print(f"HTML report: {files.html}")
    print(f"plot:        {files.png}")
    for knob, path in files.ablation.items():
        print(f"ablation:    {path}  ({knob})")
    print(f"table:       {files.csv}")
    for contrast, path in files.by_contrast.items():
        print(f"contrast:    {path}  ({contrast})")
    if args.upload:
        print(f"uploaded:    {args.sweep_dir.rstrip('/')}/leaderboard/")
    if files.precision is not None:
        print(f"precision:   {files.precision}")
    if files.morphometrics is not None:
        print(f"morphometry: {files.morphometrics}")
    if files.wandb_run is not None:
        print(f"wandb run:   {files.wandb_run}  (upload: wandb sync {files.wandb_run})")
    return 0
