"""``cordbench phantom``: write the synthetic spine-generic-style cohort with known ground truth."""

from __future__ import annotations

import argparse
import math

from core.errors import ConfigError
from core.ranges import SEED_MAX, Range, add_number, check_value
from data_modules.phantom.options import parse_contrasts
from data_modules.phantom.randomise_options import RANGES, RandomiseOptions, from_config

HELP = "generate the phantom cohort (spine-generic BIDS naming, exact CSA/SAC/DTI truth)"


def _float_or_inf(text: str) -> float:
    return math.inf if text.strip().lower() in ("inf", "none", "off") else float(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    p.add_argument("--out", "-o", required=True, help="output folder (created; must be empty or a phantom)")
    add_number(
        p, "--subjects", "-n", kind=int, range=Range(1, 10_000), default=20, help="number of subjects (default 20)"
    )
    add_number(
        p, "--seed", kind=int, range=Range(0, SEED_MAX), default=0, help="random seed (same seed -> identical arrays)"
    )
    add_number(
        p,
        "--snr",
        parse=_float_or_inf,
        range=Range(0, None, allow_inf=True),
        default=30.0,
        help="Rician SNR on white matter (b0 for DWI); 0 or inf = noise-free (default 30)",
    )
    add_number(p, "--tilt-min", range=Range(0, 45), default=0.0, help="minimum cord tilt to S-I in degrees (default 0)")
    add_number(
        p, "--tilt-max", range=Range(0, 45), default=10.0, help="maximum cord tilt to S-I in degrees (default 10)"
    )
    p.add_argument(
        "--orientation",
        default="LAS",
        help="voxel orientation of every image, nibabel code (LAS = SCT's RPI; PSR like "
        "sct_testing_data t2; RPI, LPI, ...), default LAS",
    )
    add_number(p, "--oblique", range=Range(-60, 60), default=0.0, help="rotate every image grid by DEG (default 0)")
    p.add_argument(
        "--corr",
        default="M=0.6,F=0.1",
        help="planted Pearson r of FA vs SAC/CSA per level and group: KEY=R[,KEY=R], keys *, M, F, "
        "Siemens, GE, Philips or SEX:VENDOR (default 'M=0.6,F=0.1')",
    )
    add_number(p, "--stenosis-prob", range=Range(0, 1), default=0.5, help="share of subjects with a stenosis (0.5)")
    p.add_argument("--no-dwi", action="store_true", help="skip DWI (faster)")
    p.add_argument(
        "--pmj",
        action="store_true",
        help="also cover 20 mm of cord above C1 and write a PMJ point label on the T2w grid "
        "(sub-X_T2w_label-PMJ_dlabel) with the CSA truth along the centerline from it",
    )
    p.add_argument(
        "--contrasts",
        metavar="LIST",
        help="images to write, comma-separated, of T1w, T2w, T2star, MTS (= MTon and MToff), MTon, MToff, dwi: "
        "separate BIDS images of the same anatomy, each with its own exact labels (default: T2w,T2star,dwi)",
    )
    p.add_argument("--truth-only", action="store_true", help="participants and ground truth only, no images")
    p.add_argument("--float32", action="store_true", help="store images as float32 (default int16)")
    p.add_argument(
        "--randomise",
        action="store_true",
        help="domain randomisation of T2w/T2* (random tissue values, grid, FOV, artefacts, surrounding "
        "anatomy; truth unchanged; docs/phantom.md); ranges from --randomise-config",
    )
    p.add_argument(
        "--randomise-config",
        metavar="YAML",
        help="YAML mapping of randomisation ranges (the data.phantom.randomise keys); implies --randomise "
        "unless it says enabled: false",
    )
    add_number(
        p,
        "--sessions",
        kind=int,
        range=Range(1, 20),
        default=1,
        help="acquisitions of each subject's anatomy, written as sub-X/ses-YY/ (each repositioned: "
        "grid rotated and shifted, new voxel sizes, noise, bias field, and contrast under --randomise; "
        "truth identical; docs/phantom.md); default 1 = no session folders",
    )
    p.add_argument(
        "--layout",
        choices=["cordbench", "spine-generic"],
        default="cordbench",
        help="cordbench: every label incl. level maps and DWI WM/GM masks (default); spine-generic: only the "
        "label kinds data-multi-subject holds (cord/canal, discs on T2w, cord only on the DWI, no level map; "
        "docs/phantom.md)",
    )
    add_number(
        p,
        "--dwi-shift",
        metavar="MM",
        range=Range(-30, 30),
        default=0.0,
        help="spine-generic layout: the subject moved MM superiorly between the T2w and the DWI (default 0)",
    )
    add_number(
        p,
        "--dwi-rotation",
        metavar="DEG",
        range=Range(-10, 10),
        default=0.0,
        help="spine-generic layout: and rotated DEG about the R-L axis through the cord's middle (default 0)",
    )
    p.add_argument(
        "--exclude",
        default="",
        metavar="KEY=SUB[,...]",
        help="spine-generic layout: write exclude.yml with these entries, e.g. dti_fa=sub-002,csa_t2=sub-003",
    )
    add_number(p, "--workers", kind=int, range=Range(0, 256), default=0, help="processes (0 = auto: up to 2)")
    p.add_argument("--force", action="store_true", help="replace a phantom generated with other settings")


def _randomise(args: argparse.Namespace) -> RandomiseOptions | None:
    """The randomisation options of the command line (None: off)."""
    if args.randomise_config:
        from runs.config import load_yaml

        block = load_yaml(args.randomise_config)
        for key, value in block.items():
            if key in RANGES:
                check_value(value, RANGES[key], f"key {key!r}", args.randomise_config)
        try:
            options = from_config(block, enabled_by_default=True)
        except (TypeError, ConfigError) as exc:
            raise ConfigError(str(exc), args.randomise_config) from None
        if options is None and args.randomise:
            raise ConfigError(
                "key 'enabled' is false but --randomise asks for randomisation: drop one of them",
                args.randomise_config,
            )
        return options
    return RandomiseOptions() if args.randomise else None


def _contrasts(args: argparse.Namespace) -> tuple[tuple[str, ...] | None, bool]:
    """``(anatomical contrasts or None for the default, write DWI)`` of ``--contrasts`` and ``--no-dwi``."""
    if args.contrasts is None:
        return None, not args.no_dwi
    items = [c.strip() for c in args.contrasts.split(",") if c.strip()]
    if "dwi" in items and args.no_dwi:
        raise ConfigError("--contrasts lists dwi but --no-dwi is given: drop one of them")
    anat = [m for c in items if c != "dwi" for m in (("MTon", "MToff") if c == "MTS" else (c,))]
    if not anat:
        raise ConfigError(f"--contrasts {args.contrasts!r} names no anatomical contrast (T1w, T2w, T2star, MTS)")
    return parse_contrasts(anat), "dwi" in items


def run(args: argparse.Namespace) -> int:
    """Generate, then print where everything is and how long it took."""
    import time

    from core.outputs import check_writable_dir
    from data_modules.phantom import generate_cohort
    from data_modules.phantom.cohort import COHORT_JSON, TRUTH_TABLE

    check_writable_dir(args.out)
    contrasts, dwi = _contrasts(args)
    t0 = time.perf_counter()

    def progress(i: int, n: int) -> None:
        print(f"\rphantom: {i}/{n} subjects", end="" if i < n else "\n", flush=True)

    out = generate_cohort(
        args.out,
        n_subjects=args.subjects,
        seed=args.seed,
        workers=args.workers,
        force=args.force,
        progress=progress,
        snr=args.snr,
        tilt_min=args.tilt_min,
        tilt_max=args.tilt_max,
        orientation=args.orientation.upper(),
        oblique=args.oblique,
        corr=args.corr,
        stenosis_prob=args.stenosis_prob,
        dwi=dwi,
        **({"contrasts": contrasts} if contrasts else {}),
        truth_only=args.truth_only,
        dtype="float32" if args.float32 else "int16",
        randomise=_randomise(args),
        sessions=args.sessions,
        pmj=args.pmj,
        layout=args.layout,
        dwi_shift=args.dwi_shift,
        dwi_rotation=args.dwi_rotation,
        exclude=args.exclude,
    )
    dt = time.perf_counter() - t0
    print(f"phantom cohort: {out} ({args.subjects} subjects, seed {args.seed}) in {dt:.1f} s")
    print(f"  ground truth: {out / TRUTH_TABLE} and {out / COHORT_JSON}")
    return 0
