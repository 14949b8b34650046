"""``cordbench stats``: correlations per level and group, Fisher z-tests, BH, plots."""

from __future__ import annotations

import argparse

HELP = "Pearson/Spearman per level and group with Fisher CIs, Fisher z-tests between groups, BH-FDR, plots"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    p.add_argument("metrics", help="metrics table (CSV/TSV; one row per subject × level)")
    p.add_argument("--x", required=True, help="x column (e.g. FA)")
    p.add_argument("--y", required=True, help="y column (e.g. SAC_CSA)")
    p.add_argument("--by", default="", help="comma-separated grouping columns (e.g. sex,manufacturer)")
    p.add_argument("--level-col", default="VertLevel", help="level column (default VertLevel)")
    p.add_argument("--no-levels", action="store_true", help="ignore levels: one pooled analysis")
    p.add_argument("--no-plots", action="store_true", help="tables only")
    p.add_argument("-o", "--out", required=True, help="output folder")


def run(args: argparse.Namespace) -> int:
    """Compute and write correlations.csv, comparisons.csv and plots/."""
    import sys
    from pathlib import Path

    from analysis.stats import read_metrics
    from analysis.stats_report import write_statistics
    from core.outputs import check_not_input, check_output_dir

    check_output_dir(args.out, inputs={"metrics": args.metrics})
    for name in ("correlations.csv", "comparisons.csv"):
        check_not_input(Path(args.out) / name, {"metrics": args.metrics})
    level_col = None if args.no_levels else args.level_col
    df = read_metrics(args.metrics, level_col)
    by = [b.strip() for b in args.by.split(",") if b.strip()]
    res = write_statistics(df, args.x, args.y, by, level_col, args.out, source=args.metrics, plots=not args.no_plots)
    corr, comp = res["correlations"], res["comparisons"]
    undefined = corr[(corr["note"] != "") & ~corr["note"].str.endswith("not tested")] if len(corr) else corr
    if len(undefined):
        r0 = undefined.iloc[0]
        print(
            f"warning: {args.metrics}: {len(undefined)} correlation(s) undefined (see the note column of "
            f"correlations.csv), e.g. level {r0['level']} {r0['by']}={r0['group']}: {r0['note']}",
            file=sys.stderr,
        )
    overall = corr[corr["by"] == "all"]
    for _, r in overall.iterrows():
        print(
            f"level {r['level']}: n={r['n']} r={r['r']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] "
            f"p={r['p']:.3g} q={r['q_bh']:.3g}"
        )
    sig = comp[comp["q_bh"] < 0.05] if len(comp) else comp
    print(f"{len(comp)} group comparisons, {len(sig)} with q < 0.05; wrote {args.out}")
    return 0
