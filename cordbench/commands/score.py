"""``cordbench score``: score another tool's masks against a data set's labels, as a leaderboard entry."""

from __future__ import annotations

import argparse

HELP = "score a folder of predicted masks (any tool) against a BIDS data set's labels, for the leaderboard"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    p.add_argument(
        "pred",
        metavar="PRED",
        help="predicted masks: BIDS derivatives (derivatives/<tool>/sub-X[/ses-Y]/anat/<image stem>_label-SC_seg"
        ".nii.gz; _seg-manual, _seg, label-GM_seg too) or a flat folder of such files",
    )
    p.add_argument("--ref", required=True, metavar="ROOT", help="BIDS data set with the images and reference labels")
    p.add_argument("-o", "--out", required=True, help="output folder (read by `cordbench leaderboard --external`)")
    p.add_argument(
        "--contrast", help="contrast scored into test_metrics.csv (default: T2w, else the first labelled one)"
    )


def run(args: argparse.Namespace) -> int:
    """Score, then say where the files are."""
    from core.outputs import check_output_dir
    from leaderboard.external import score_folder

    check_output_dir(args.out, inputs={"PRED": args.pred, "ROOT": args.ref}, what="--out folder")
    s = score_folder(args.pred, args.ref, args.out, contrast=args.contrast)
    print(f"scored {s['n_subjects']} {s['contrast']} image(s), {s['masks']} mask(s) measured; post-processing as given")
    for path in s["unlabelled"]:
        print(f"  no reference mask (precision only): {path}")
    print(f"entry folder: {args.out}  (cordbench leaderboard SWEEP --external NAME={args.out})")
    return 0
