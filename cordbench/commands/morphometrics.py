"""``cordbench morphometrics``: per-slice / per-level CSA, shape and SAC from a cord mask."""

from __future__ import annotations

import argparse

from core.ranges import Range, add_number

HELP = "cord CSA, diameters, shape and SAC per slice / vertebral level (sct_process_segmentation columns)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    p.add_argument("--seg", required=True, help="cord segmentation (NIfTI; labels > 0 or soft mask in [0, 1])")
    p.add_argument(
        "--soft",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure the segmentation as partial volume (area = Σ values × pixel area, as SCT); "
        "default: detected (values strictly between 0 and 1); --no-soft thresholds at 0.5. "
        "The CSV's mask_type column says which was used",
    )
    p.add_argument("--levels", help="vertebral level map on the same grid (cord voxels labelled 1..7)")
    p.add_argument("--canal", help="spinal canal segmentation on the same grid (enables SAC, SAC_CSA)")
    p.add_argument("--vert", help="vertebral levels to keep, e.g. 2:3 or 2,4 (one row over them unless --perlevel)")
    p.add_argument("--perlevel", action="store_true", help="one row per level (default when --levels and no --vert)")
    p.add_argument("--perslice", action="store_true", help="one row per axial slice")
    p.add_argument(
        "--level-method",
        choices=["slice", "volume"],
        default="slice",
        help="slice: SCT columns from angle-corrected axial slices (default); volume: per-level CSA, "
        "canal area, SAC, SAC_CSA as volume / arc length along the centerline (needs --levels)",
    )
    p.add_argument("--no-angle-corr", action="store_true", help="disable the centerline angle correction")
    p.add_argument(
        "--centerline-method",
        choices=["bspline", "polyfit"],
        default="bspline",
        help="centerline fit (default bspline, as SCT)",
    )
    add_number(p, "--smooth", range=Range(0, 1e6), default=30.0, help="bspline smoothing, as SCT's -centerline-smooth")
    p.add_argument(
        "--pmj",
        help="pontomedullary junction label on the same grid (a point, e.g. spine-generic's _label-PMJ_dlabel): "
        "measure at --pmj-distance along the centerline (SCT's -pmj); with --perslice, every slice's distance",
    )
    add_number(
        p, "--pmj-distance", range=Range(0, 1000), help="distance (mm) from the PMJ along the centerline (needs --pmj)"
    )
    add_number(
        p,
        "--pmj-extent",
        range=Range(0, 1000, lo_open=True),
        default=20.0,
        help="length (mm) of the window centred at --pmj-distance (default 20, as SCT)",
    )
    p.add_argument("-o", "--out", required=True, help="output CSV")


def run(args: argparse.Namespace) -> int:
    """Compute the metrics and write the CSV atomically."""
    import sys
    import warnings

    from analysis.morphometrics import parse_vert
    from core.io import write_csv
    from core.outputs import check_output_file

    check_output_file(
        args.out, inputs={"--seg": args.seg, "--levels": args.levels, "--canal": args.canal, "--pmj": args.pmj}
    )
    vert = parse_vert(args.vert)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table, how = _compute(args, vert)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    write_csv(args.out, table)
    print(f"wrote {args.out} ({len(table)} rows{how})")
    return 0


def _compute(args: argparse.Namespace, vert):
    """The output table and how it was computed (for the final line)."""
    from pathlib import Path

    from analysis.morphometrics import aggregate, morphometrics_from_files, present_levels

    if args.pmj is not None or args.pmj_distance is not None:
        return _compute_pmj(args, vert)
    if args.level_method == "volume":
        from analysis.morphometrics import volume_per_level_from_files
        from core.errors import ConfigError

        if args.levels is None:
            raise ConfigError("--level-method volume needs --levels")
        table = volume_per_level_from_files(
            args.seg, args.levels, args.canal, centerline_method=args.centerline_method, smooth=args.smooth
        )
        if vert is not None:
            table = table[table["VertLevel"].isin(present_levels(vert, table["VertLevel"]))]
        table.insert(0, "Filename", Path(args.seg).name)
        return table, ", volume / arc length"
    perslice = morphometrics_from_files(
        args.seg,
        args.levels,
        args.canal,
        soft=args.soft,
        angle_correction=not args.no_angle_corr,
        centerline_method=args.centerline_method,
        smooth=args.smooth,
    )
    return aggregate(
        perslice, Path(args.seg).name, vert=vert, perlevel=True if args.perlevel else None, perslice_rows=args.perslice
    ), ""


def _compute_pmj(args: argparse.Namespace, vert):
    """The table at a distance from the PMJ (``analysis.pmj``)."""
    from analysis.pmj import pmj_morphometrics_from_files
    from core.errors import ConfigError

    if args.pmj is None:
        raise ConfigError("--pmj-distance needs --pmj (the PMJ label)")
    clash = [o for o, v in (("--levels", args.levels), ("--vert", vert), ("--perlevel", args.perlevel)) if v]
    if clash or args.level_method == "volume":
        raise ConfigError(f"--pmj selects slices by distance: drop {', '.join(clash) or '--level-method volume'}")
    table = pmj_morphometrics_from_files(
        args.seg,
        args.pmj,
        distance=args.pmj_distance,
        extent=args.pmj_extent,
        perslice_rows=args.perslice,
        canal=args.canal,
        soft=args.soft,
        angle_correction=not args.no_angle_corr,
        centerline_method=args.centerline_method,
        smooth=args.smooth,
    )
    where = "per slice" if args.perslice else f"{args.pmj_distance:g} ± {args.pmj_extent / 2:g} mm"
    return table, f", from the PMJ: {where}"
