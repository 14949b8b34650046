"""A whole phantom cohort: subjects (in parallel), participants.tsv, descriptions, cohort.json.

The cohort is written into a temporary sibling folder and moved into place at the end, so a
reader never sees a half-written cohort. Re-running with the same seed, size and options on an
existing phantom folder is a no-op (``force`` regenerates); a folder that is not a phantom is
never touched.
"""

from __future__ import annotations

import csv
import io as _io
import logging
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from core import __version__, io
from core.errors import ConfigError, InputError
from data_modules.phantom import layout
from data_modules.phantom.anatomy import LEVEL_NAMES, gm_normalised_area
from data_modules.phantom.dwi import scheme_paths
from data_modules.phantom.options import PhantomOptions, cohort_options_dict, parse_corr, parse_exclude
from data_modules.phantom.population import (
    FA_CORD_MU,
    PARTICIPANT_COLUMNS,
    SIGMA_FA,
    SIGMA_LEVEL,
    SIGMA_SUBJECT,
    STENOSIS_LEVELS,
    STENOSIS_SPREAD,
    load_sites,
    sac_csa_moments,
)
from data_modules.phantom.subject import generate_subject

log = logging.getLogger(__name__)
COHORT_JSON = f"{layout.TRUTH_DIR}/cohort.json"
TRUTH_TABLE = f"{layout.TRUTH_DIR}/truth_levels.tsv"
TRUTH_TABLE_COLUMNS = (
    "participant_id",
    "sex",
    "manufacturer",
    "institution_id",
    "level",
    "VertLevel",
    "planted_r",
    "csa_mm2",
    "canal_area_mm2",
    "sac_mm2",
    "sac_csa_ratio",
    "gm_area_mm2",
    "fa_cord",
    "md_cord",
    "rd_cord",
    "ad_cord",
    "fa_wm",
    "fa_gm",
    "fa_cord_dwi_mask",
    "tilt_deg",
    "angle_to_si_deg",
    "stenosis_level",
    "stenosis_severity",
)

DEFINITIONS = {
    "coordinates": "World = scanner RAS+ mm. s = arc length along the centerline from the top of C1 "
    "(s=0) downward; u (toward the subject's right) and v (anterior) span the plane "
    "perpendicular to the centerline at s.",
    "levels": "Level Ck is the slab between the perpendicular planes at the discs labelled k and k+1 "
    "(SCT disc convention: 1 top of C1, 2 C1/C2, 3 C2/C3, ..., 8 C7/T1). Level maps hold 1..7 on "
    "cord voxels, 0 for cord outside C1..C7.",
    "csa_mm2": "Arc-length mean over the level of the analytic cord cross-section area pi*a(s)*b(s) in the "
    "plane perpendicular to the centerline. It equals the level's cord volume divided by its "
    "arc length (cross-sections are centred on the centerline), and what angle-corrected "
    "axial-slice areas average to.",
    "canal_area_mm2": "Same for the canal (thecal sac, cord included): pi*A*B.",
    "sac_mm2": "canal_area_mm2 - csa_mm2 (space available for the cord).",
    "sac_csa_ratio": "Arc-length mean of SAC(s)/CSA(s) over the level (equals the planted SAC/CSA); "
    "sac_csa_ratio_of_means = sac_mm2 / csa_mm2.",
    "labels": "Images mix tissues by partial volume (linear ramp of the signed distance to each boundary over "
    "the voxel's width along the boundary normal). T2w/T2* labels binarise these fractions "
    "slice by slice across S-I keeping round(sum of fractions) voxels (all full ones plus the "
    "partial ones with the largest fractions), so each slice's label area equals its "
    "partial-volume area within one voxel; canal >= cord >= GM are nested. DWI labels take the "
    "tissue at the voxel centre (DWI voxels hold one tissue each).",
    "dti": "Cord tensors are axially symmetric with the principal eigenvector along the centerline "
    "tangent; WM/GM FA/MD/AD/RD are constant within a level. fa_cord etc.: cross-section-area "
    "weighted WM/GM mean (planted); *_cord_dwi_mask: mean over the DWI cord-mask voxels of the "
    "level (each DWI voxel holds the tissue at its centre, no partial volume), i.e. what a "
    "noise-free fit averaged on the mask returns.",
    "snr": "Rician noise sigma = white-matter signal (b0 for DWI) / SNR, before the bias field.",
    "planted_correlation": "Within a level and a group, Pearson r(FA_cord, SAC/CSA) = planted r in the "
    "population: FA_cord = mu_FA + sigma_FA*(r*xhat + sqrt(1-r^2)*e) with xhat the "
    "level's SAC/CSA standardised by its exact population mean/SD. SAC/CSA has a "
    "subject-level latent shared by the levels, so levels of a subject are correlated.",
}


def _is_phantom(out: Path) -> bool:
    return (out / COHORT_JSON).is_file()


def _matches(out: Path, n_subjects: int, seed: int, options: PhantomOptions) -> bool:
    import json

    try:
        prev = json.loads((out / COHORT_JSON).read_text())
    except (OSError, ValueError):
        return False
    return (
        prev.get("n_subjects") == n_subjects
        and prev.get("seed") == seed
        and prev.get("options") == cohort_options_dict(options)
    )


def _job(args: tuple) -> dict[str, Any]:
    tmp, index, seed, options, sites = args
    return generate_subject(tmp, index=index, seed=seed, options=options, sites=sites)


def auto_workers(n_subjects: int) -> int:
    """Default parallelism: up to 2 processes (the machine is shared), 1 for tiny cohorts."""
    if n_subjects <= 2:
        return 1
    return max(1, min(2, os.cpu_count() or 1, n_subjects))


def generate_cohort(
    out: str | Path,
    n_subjects: int = 20,
    seed: int = 0,
    *,
    workers: int | None = None,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> Path:
    """Generate a phantom cohort at ``out`` and return ``out``.

    ``options`` are :class:`PhantomOptions` fields (``snr``, ``tilt_max``, ``orientation``,
    ``oblique``, ``corr``, ``dwi``, ...). Subjects are identical to :func:`generate_subject` with
    the same seed and options whatever ``n_subjects`` or ``workers``.
    """
    out = Path(out)
    opts = PhantomOptions.from_kwargs(options)
    if int(n_subjects) < 1:
        raise ConfigError(f"phantom: number of subjects must be >= 1, got {n_subjects}")
    n_subjects, seed = int(n_subjects), int(seed)
    unknown = sorted({sub for _, sub in parse_exclude(opts.exclude)} - {f"sub-{i + 1:03d}" for i in range(n_subjects)})
    if unknown:
        raise ConfigError(f"phantom option exclude names subjects not in the cohort: {', '.join(unknown)}")
    if out.exists() and not out.is_dir():
        raise InputError("phantom output exists and is not a folder", out)
    if out.is_dir() and any(out.iterdir()):
        if not _is_phantom(out):
            raise InputError(
                "phantom output folder is not empty and holds no phantom cohort "
                f"({COHORT_JSON} missing); choose an empty or new folder",
                out,
            )
        if not force and _matches(out, n_subjects, seed, opts):
            log.info("phantom cohort at %s is up to date", out)
            return out
        if not force:
            raise InputError(
                "folder holds a phantom cohort generated with other settings "
                "(seed, subjects or options differ); use force=True / --force to replace it",
                out,
            )
    sites, sites_source = load_sites()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        results = _run_subjects(tmp, n_subjects, seed, opts, sites, workers, progress)
        _write_cohort_files(tmp, results, n_subjects, seed, opts, sites_source)
        _swap_into_place(tmp, out, replace=force, n=n_subjects, seed=seed, opts=opts)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _run_subjects(
    tmp: Path,
    n: int,
    seed: int,
    opts: PhantomOptions,
    sites: list[dict[str, Any]],
    workers: int | None,
    progress: Callable[[int, int], None] | None,
) -> list[dict[str, Any]]:
    workers = auto_workers(n) if workers is None or workers <= 0 else min(int(workers), n)
    jobs = [(tmp, i, seed, opts, sites) for i in range(n)]
    results: list[dict[str, Any]] = []
    if workers == 1 or opts.truth_only:
        for job in jobs:
            results.append(_job(job))
            if progress:
                progress(len(results), n)
        return results
    gm_normalised_area()  # warm the cache in the parent (inherited by nothing under spawn, but cheap)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        for res in pool.map(_job, jobs):
            results.append(res)
            if progress:
                progress(len(results), n)
    return results


def _tsv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), delimiter="\t", lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({c: ("n/a" if r.get(c) is None else r.get(c)) for c in columns})
    return buf.getvalue()


def _write_cohort_files(
    root: Path, results: list[dict[str, Any]], n: int, seed: int, opts: PhantomOptions, sites_source: str
) -> None:
    parts = [r["participant"] for r in results]
    io.write_text(root / "participants.tsv", _tsv(parts, PARTICIPANT_COLUMNS))
    io.write_json(root / "participants.json", layout.PARTICIPANTS_JSON)
    io.write_json(root / "dataset_description.json", layout.dataset_description(n, seed))
    io.write_text(root / "README.md", _readme(n, seed))
    if opts.exclude:
        io.write_text(root / "exclude.yml", layout.exclude_yml(parse_exclude(opts.exclude)))
    io.write_json(
        root / layout.LABELS_DIR / "dataset_description.json",
        layout.derivative_description("labels", "phantom labels (exact, from the analytic anatomy)"),
    )
    io.write_json(
        root / layout.TRUTH_DIR / "dataset_description.json",
        layout.derivative_description("phantom-truth", "analytic ground truth of the phantom"),
    )
    rows = []
    sessions = [None] if opts.sessions == 1 else [f"ses-{s:02d}" for s in range(1, opts.sessions + 1)]
    columns = TRUTH_TABLE_COLUMNS if opts.sessions == 1 else ("participant_id", "session", *TRUTH_TABLE_COLUMNS[1:])
    for r in results:
        t = r["truth"]
        for ses, name in ((ses, name) for ses in sessions for name in LEVEL_NAMES):
            lv = t["levels"][name]  # one anatomy: every session's truth is the same, level by level
            rows.append(
                {
                    "participant_id": t["participant_id"],
                    "session": ses,
                    "sex": t["sex"],
                    "manufacturer": t["manufacturer"],
                    "institution_id": t["institution_id"],
                    "level": name,
                    "VertLevel": lv["level"],
                    "planted_r": t["planted_r"],
                    "tilt_deg": round(t["tilt_deg"], 4),
                    "stenosis_level": t["stenosis"]["level"],
                    "stenosis_severity": t["stenosis"]["severity"],
                    **{k: lv.get(k) for k in TRUTH_TABLE_COLUMNS if k in lv and k != "level"},
                }
            )
    io.write_text(root / TRUTH_TABLE, _tsv(rows, columns))
    mean, sd = sac_csa_moments(opts)
    bval, bvec, scheme_source = scheme_paths()
    corr = parse_corr(opts.corr)
    cohort = {
        "generator": "cordbench phantom",
        "version": __version__,
        "seed": seed,
        "n_subjects": n,
        "options": cohort_options_dict(opts),
        "planted_correlation": {
            "x": "sac_csa_ratio (per level)",
            "y": "fa_cord (per level)",
            "spec": opts.corr,
            "groups": corr,
            "rule": "a subject's r is the most specific matching key: SEX:VENDOR > SEX > VENDOR > * ; no match: r = 0",
            "sac_csa_population_mean": dict(zip(LEVEL_NAMES, mean.tolist())),
            "sac_csa_population_sd": dict(zip(LEVEL_NAMES, sd.tolist())),
            "sac_csa_sigma_subject": SIGMA_SUBJECT,
            "sac_csa_sigma_level": SIGMA_LEVEL,
            "stenosis_levels": [f"C{k}" for k in STENOSIS_LEVELS],
            "stenosis_neighbour_weight": STENOSIS_SPREAD,
            "fa_cord_mean": dict(zip(LEVEL_NAMES, FA_CORD_MU.tolist())),
            "fa_cord_sd": SIGMA_FA,
            "subjects_per_group": _group_counts(results),
        },
        "sources": {
            "dwi_scheme": scheme_source,
            "dwi_bval_sha256": io.sha256(bval),
            "dwi_bvec_sha256": io.sha256(bvec),
            "sites": sites_source,
        },
        "gm_normalised_area": gm_normalised_area(),
        "definitions": DEFINITIONS,
        "subjects": [
            {
                "participant_id": r["truth"]["participant_id"],
                "sex": r["truth"]["sex"],
                "manufacturer": r["truth"]["manufacturer"],
                "planted_r": r["truth"]["planted_r"],
                "planted_r_group": r["truth"]["planted_r_group"],
            }
            for r in results
        ],
    }
    io.write_json(root / COHORT_JSON, cohort)


def _group_counts(results: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in results:
        key = r["truth"]["planted_r_group"]
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def _swap_into_place(tmp: Path, out: Path, replace: bool, n: int, seed: int, opts: PhantomOptions) -> None:
    """Move the finished cohort to ``out``.

    If another process finished the same cohort first (parallel trials sharing a cache folder),
    its copy is kept and ours dropped, so readers of ``out`` never see files vanish. An existing
    cohort is replaced only when ``replace`` (``force``) was asked for.
    """
    if out.is_dir() and not any(out.iterdir()):
        try:
            out.rmdir()
        except OSError:
            pass
    if out.exists() and replace and _is_phantom(out):
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        if out.exists():
            raise FileExistsError(str(out))
        os.replace(tmp, out)
    except OSError:
        if _is_phantom(out) and _matches(out, n, seed, opts):
            log.info("phantom cohort at %s was written by another process; keeping it", out)
            return
        raise InputError("phantom output folder appeared while generating and holds something else", out) from None


def _readme(n: int, seed: int) -> str:
    return (
        f"# cordbench phantom cohort\n\nSynthetic spine-generic-style BIDS data set ({n} subjects, seed {seed}) "
        "with exactly known ground truth, written by `cordbench phantom`.\n\n"
        "- images: `sub-XXX/anat/sub-XXX_T2w.nii.gz`, `sub-XXX_T2star.nii.gz`, `sub-XXX/dwi/sub-XXX_dwi.*`, "
        "`sub-XXX_rec-average_dwi.nii.gz`\n- labels: `derivatives/labels/` (spine-generic names)\n"
        "- truth: `derivatives/phantom-truth/sub-XXX/sub-XXX_truth.json`, `truth_levels.tsv`, and "
        "`cohort.json` (options, planted correlations, definitions).\n"
    )


__all__ = ["generate_cohort", "auto_workers", "COHORT_JSON", "TRUTH_TABLE"]
