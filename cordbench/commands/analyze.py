"""``cordbench analyze``: the whole cohort study (morphometrics, DTI, statistics, HTML report)."""

from __future__ import annotations

import argparse

from core.ranges import Range, add_number

HELP = "cohort study on a BIDS data set: per-level CSA/SAC/SAC_CSA and DTI, statistics, HTML report (Ray)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    p.add_argument("bids_dir", help="BIDS data set (spine-generic naming)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument(
        "--seg-source",
        default="labels",
        help="cord masks: 'labels' (derivatives/labels, manual) or a derivatives folder holding a "
        "model's predictions with the same names, e.g. derivatives/cordbench",
    )
    p.add_argument("--address", help="Ray cluster address (default: a local Ray instance)")
    add_number(
        p, "--workers", kind=int, range=Range(0, 1024), default=2, help="local Ray workers (0 = in-process, no Ray)"
    )
    p.add_argument("--x", default="FA", help="x of the correlation (default FA)")
    p.add_argument("--y", default="SAC_CSA", help="y of the correlation (default SAC_CSA)")
    p.add_argument("--by", default="sex,manufacturer,institution_id", help="grouping columns of participants.tsv")
    p.add_argument(
        "--level-method",
        choices=["slice", "volume"],
        default="slice",
        help="per-level CSA/SAC: mean of angle-corrected axial slices (SCT, default) or "
        "volume / arc length along the centerline (exact for tilted, quickly narrowing canals)",
    )
    p.add_argument(
        "--dwi-levels-transfer",
        choices=["registered", "world"],
        default="registered",
        help="DWI without levels or discs: carry the T2w's over through world coordinates, refined by a 1-D "
        "S-I registration of the cord centrelines (registered, default) or not (world); docs/analysis.md",
    )
    p.add_argument("--fit-method", choices=["WLS", "OLS"], default="WLS", help="DTI fit (default WLS)")
    p.add_argument("--no-maps", action="store_true", help="do not write DTI maps")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--exclude",
        metavar="FILE",
        help="exclude.yml (spine-generic's format, e.g. exported from a QC report) of subjects to leave "
        "out, on top of the data set's own exclude.yml; the reasons are listed in the report",
    )


def run(args: argparse.Namespace) -> int:
    """Run the study; exit 0 even when some subjects failed (they are listed in the report)."""
    from analysis.study import StudyOptions, analyze
    from core.outputs import check_output_dir

    check_output_dir(args.out, inputs={"bids_dir": args.bids_dir, "--exclude": args.exclude})
    opts = StudyOptions(
        fit_method=args.fit_method,
        write_maps=not args.no_maps,
        level_method=args.level_method,
        dwi_levels_transfer=args.dwi_levels_transfer,
    )
    by = [b.strip() for b in args.by.split(",") if b.strip()]
    s = analyze(
        args.bids_dir,
        args.out,
        seg_source=args.seg_source,
        workers=args.workers,
        address=args.address,
        x=args.x,
        y=args.y,
        by=by,
        opts=opts,
        progress=not args.no_progress,
        exclude=args.exclude,
    )
    print(
        f"{s.n_subjects} subjects in {s.seconds:.1f} s: " + ", ".join(f"{k} {v}" for k, v in sorted(s.status.items()))
    )
    for f in s.failed:
        print(f"  {f['participant_id']}: {f['status']} — {f['reasons']}")
    print(f"report: {s.report}")
    return 0
