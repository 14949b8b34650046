"""``cordbench dti``: tensor fit (WLS/OLS), FA/MD/RD/AD maps and per-level means inside the cord."""

from __future__ import annotations

import argparse

HELP = "DTI tensor fit (dipy WLS/OLS): FA/MD/RD/AD maps and per-level means in the white matter or the cord"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    p.add_argument("--dwi", required=True, help="4D DWI (NIfTI)")
    p.add_argument("--bval", required=True, help="b-values (one row or column)")
    p.add_argument("--bvec", required=True, help="b-vectors, 3×N (FSL) or N×3")
    p.add_argument("--mask", help="cord mask on the DWI grid")
    p.add_argument("--wm-mask", help="white-matter mask on the DWI grid: means over the WM (as spine-generic/SCT)")
    p.add_argument("--gm-mask", help="gray-matter mask on the DWI grid: with --mask, WM = cord minus GM")
    p.add_argument("--levels", help="vertebral level map on the DWI grid (also the mask when --mask is absent)")
    p.add_argument("--fit-method", choices=["WLS", "OLS"], default="WLS", help="tensor fit (default WLS)")
    p.add_argument(
        "--level-mode",
        choices=["slice", "voxel"],
        default="slice",
        help="level of a voxel: its slice's rounded mean label (SCT, default) or its own label",
    )
    p.add_argument("--maps", help="folder for FA/MD/RD/AD maps (NIfTI on the DWI grid)")
    p.add_argument("--prefix", default="", help="file-name prefix of the maps")
    p.add_argument("-o", "--out", required=True, help="output CSV (one row per level)")


def run(args: argparse.Namespace) -> int:
    """Fit, write maps and CSV; scheme/signal warnings are printed to stderr."""
    import sys
    import warnings
    from pathlib import Path

    from analysis.dti import DTI_METRICS, run_dti
    from core.io import write_csv
    from core.outputs import check_not_input, check_output_dir, check_output_file

    inputs = {"--dwi": args.dwi, "--bval": args.bval, "--bvec": args.bvec, "--mask": args.mask, "--levels": args.levels}
    check_output_file(args.out, inputs=inputs)
    if args.maps:
        check_output_dir(args.maps, inputs=inputs, what="--maps folder")
        for name in DTI_METRICS:
            check_not_input(Path(args.maps) / f"{args.prefix}{name}.nii.gz", {**inputs, "-o": args.out})

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = run_dti(
            args.dwi,
            args.bval,
            args.bvec,
            args.mask,
            args.levels,
            fit_method=args.fit_method,
            maps_dir=args.maps,
            map_prefix=args.prefix,
            level_mode=args.level_mode,
            wm_mask=args.wm_mask,
            gm_mask=args.gm_mask,
        )
    if args.gm_mask is not None and args.mask is None and args.levels is None and args.wm_mask is None:
        print(
            "warning: --gm-mask without --mask/--levels is ignored (WM = cord minus GM needs the cord)", file=sys.stderr
        )
    if (
        args.mask is None and args.levels is None and args.wm_mask is None
    ):  # after the inputs were checked: errors stay one line
        print("warning: no --mask/--levels: means cover the whole volume", file=sys.stderr)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    write_csv(args.out, res.table)
    region = res.table["Region"].iloc[0] if len(res.table) else ""
    print(
        f"wrote {args.out} ({len(res.table)} rows, region: {region})"
        + (f" and maps in {args.maps}" if args.maps else "")
    )
    return 0
