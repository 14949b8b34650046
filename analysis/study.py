"""The cohort study behind ``cordbench analyze``: per-subject morphometrics and DTI, statistics, report.

Per subject (one Ray task each, or in-process with ``workers=0``):

* anatomy — cord mask ``<seg source>/sub-X/anat/sub-X_T2w_label-SC_seg`` (``labels`` =
  ``derivatives/labels``; any other folder, e.g. ``derivatives/cordbench``, holds a model's
  predictions under the same names), vertebral levels from ``label-SC_desc-levels_dseg`` (or,
  failing that, from ``label-discs_dlabel`` via :mod:`data_modules.levels`), canal from
  ``label-canal_seg`` (the source's, else the manual one) → per-level CSA, canal area, SAC, SAC/CSA
  (:mod:`analysis.morphometrics`: SCT's axial-slice average by default, or volume / arc length
  with ``level_method="volume"``);
* diffusion — ``sub-X/dwi/sub-X_dwi`` + ``.bval``/``.bvec``, cord mask and levels on the DWI grid
  (``rec-average_dwi_label-SC_seg``; levels given, from DWI discs, or carried over from the T2w:
  :mod:`analysis.dwi_levels`, ``subjects.csv``'s ``dwi_levels_*`` columns) → per-level FA/MD/RD/AD
  (:mod:`analysis.dti`, WLS by default), in the **white matter** when the DWI grid has a WM mask
  (``…_label-WM_seg``) or a GM mask (``…_label-GM_seg``: WM = cord − GM), else in the cord;
  ``metrics.csv``'s ``dti_region`` says which (``WM`` or ``cord``).

``exclude.yml`` in the data set, and the ``exclude`` file (``analyze --exclude``, e.g. exported from
a QC report), remove the named subjects' anatomy, diffusion or everything (:mod:`analysis.exclusions`);
exclusions are listed in the report with their reason. A T2w PMJ label adds the CSA at a distance
from the PMJ (:mod:`analysis.study_pmj`, ``pmj_csa.csv``). A subject whose processing raises,
or whose worker dies, is listed with the reason; the others finish.

Outputs in ``OUT``: ``metrics.csv`` (one row per subject × level, merged with participants.tsv),
``subjects.csv`` (status, reasons, seconds), ``subjects/<sub>/`` (SCT-style CSVs, DTI maps),
``stats/`` (correlations, comparisons, figures), ``report.html`` and ``summary.json``.
"""

from __future__ import annotations

import os
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from analysis.exclusions import Exclusions, apply_exclusions, exclusion_scope  # noqa: F401
from analysis.morphometrics import LEVEL_COL  # the study's level column (SCT's)
from analysis.progress import ProgressBar
from core.errors import ConfigError, CordbenchError, InputError
from core.paths import require_dir

if TYPE_CHECKING:  # annotations only: pandas is imported where it is used
    import pandas as pd

METRIC_COLUMNS = [
    "CSA",
    "canal_area",
    "SAC",
    "SAC_CSA",
    "n_slices",
    "length_mm",
    "FA",
    "MD",
    "RD",
    "AD",
    "dti_voxels",
    "dti_region",
]
DWI_LEVEL_COLUMNS = ("method", "shift_mm", "residual_mm")  # subjects.csv: dwi_levels_<key>


# ------------------------------------------------------------------------------------ jobs
@dataclass
class SubjectJob:
    """Input files of one subject (None when absent) and what is excluded."""

    subject: str
    seg: Path | None = None
    levels: Path | None = None
    discs: Path | None = None
    canal: Path | None = None
    dwi: Path | None = None
    bval: Path | None = None
    bvec: Path | None = None
    dwi_mask: Path | None = None
    dwi_levels: Path | None = None
    dwi_discs: Path | None = None
    dwi_wm: Path | None = None
    dwi_gm: Path | None = None
    pmj: Path | None = None
    seg_source: str = "labels"
    excluded: dict[str, str] = field(default_factory=dict)  # "anat"/"dwi" -> reason
    missing: dict[str, str] = field(default_factory=dict)  # "anat"/"dwi" -> what is missing


@dataclass
class StudyOptions:
    """Options of the per-subject processing."""

    fit_method: str = "WLS"
    angle_correction: bool = True
    centerline_method: str = "bspline"
    level_method: str = "slice"  # slice (SCT's axial-slice average) | volume (volume / arc length)
    dwi_levels_transfer: str = "registered"  # T2w → DWI levels: registered (centreline S-I shift) | world
    write_maps: bool = True
    out_dir: str = ""


@dataclass
class SubjectResult:
    """What one subject produced."""

    subject: str
    status: str  # ok | partial | failed | excluded
    rows: list[dict[str, Any]]
    reasons: dict[str, str]
    warnings: list[str]
    seconds: float
    dwi_levels: dict[str, Any] = field(default_factory=dict)  # method, shift_mm, residual_mm


def _resolve_source(root: Path, seg_source: str) -> str:
    if seg_source in ("labels", "derivatives/labels"):
        return "derivatives/labels"
    p = Path(seg_source)
    rel = p if not p.is_absolute() else (p.relative_to(root) if p.is_relative_to(root) else None)
    if rel is None:
        raise ConfigError(f"--seg-source {seg_source}: must be 'labels' or a folder inside {root}")
    require_dir(root / rel, "segmentation source folder")
    return rel.as_posix().strip("/")


def find_jobs(bids_dir: str | Path, seg_source: str = "labels") -> tuple[list[SubjectJob], Any, dict]:
    """Index the data set (``data_modules.bids``) and list each subject's inputs.

    Returns ``(jobs, participants DataFrame or None, exclude dict)``.
    """
    from data_modules.bids import BidsIndex

    root = Path(bids_dir)
    src = _resolve_source(root, seg_source)
    idx = BidsIndex.from_dir(root, strict=False)
    pidx = (
        BidsIndex.from_dir(root, labels_dir=src, strict=False, softseg_glob=None)
        if src != "derivatives/labels"
        else idx
    )
    from data_modules.bids import safe_name

    jobs = []
    for sub in idx.subjects():
        job = SubjectJob(subject=safe_name(sub, "subject id", root), seg_source=src)
        t2 = idx.image(sub, "T2w")
        t2p = pidx.image(sub, "T2w")
        if t2 is not None:
            pred = t2p.label("SC", suffix="seg", source=src) if t2p is not None else None
            job.seg = pred.path if pred is not None else None
            lv = t2.label("SC", desc="levels", suffix="dseg")
            job.levels = lv.path if lv is not None else None
            discs = t2.label("discs", suffix="dlabel")
            job.discs = discs.path if discs is not None else None
            pmj = t2.label("PMJ", suffix="dlabel")
            job.pmj = pmj.path if pmj is not None else None
            canal = (t2p.label("canal", suffix="seg", source=src) if t2p is not None else None) or t2.label(
                "canal", suffix="seg"
            )
            job.canal = canal.path if canal is not None else None
        if job.seg is None:
            job.missing["anat"] = f"no T2w cord segmentation in {src}"
        elif job.levels is None and job.discs is None:
            job.missing["anat"] = "no vertebral levels (label-SC_desc-levels_dseg or label-discs_dlabel)"
        dwi = idx.image(sub, "dwi")
        avg = idx.image(sub, "rec-average_dwi")
        avgp = pidx.image(sub, "rec-average_dwi")
        if dwi is not None and dwi.exists:
            job.dwi, job.bval, job.bvec = dwi.path, dwi.bval, dwi.bvec
        if avg is not None:
            m = (avgp.label("SC", suffix="seg", source=src) if avgp is not None else None) or avg.label(
                "SC", suffix="seg"
            )
            lv = avg.label("SC", desc="levels", suffix="dseg")
            d = avg.label("discs", suffix="dlabel")
            job.dwi_mask = m.path if m is not None else None
            job.dwi_levels = lv.path if lv is not None else None
            for tissue in ("WM", "GM"):
                t = (avgp.label(tissue, suffix="seg", source=src) if avgp is not None else None) or avg.label(
                    tissue, suffix="seg"
                )
                setattr(job, f"dwi_{tissue.lower()}", t.path if t is not None else None)
            job.dwi_discs = d.path if d is not None else None
        if job.dwi is None:
            job.missing["dwi"] = "no DWI"
        elif job.bval is None or job.bvec is None:
            job.missing["dwi"] = "DWI without .bval/.bvec"
        elif job.dwi_mask is None and job.dwi_levels is None:
            job.missing["dwi"] = "no cord mask on the DWI grid"
        jobs.append(job)
    apply_exclusions(jobs, Exclusions("exclude.yml", idx.exclude or {}))
    return jobs, idx.participants, idx.exclude


# ------------------------------------------------------------------------------ per subject
def _anat(job: SubjectJob, opts: StudyOptions, sub_dir: Path, record: dict) -> dict[int, dict[str, float]]:
    from analysis.morphometrics import aggregate, morphometrics_from_files, per_level_table
    from core.io import write_csv
    from data_modules.levels import save_levels_from_discs

    levels = job.levels or save_levels_from_discs(
        job.seg, job.discs, sub_dir / f"{job.subject}_T2w_levels.nii.gz", "T2w cord mask"
    )
    ps = morphometrics_from_files(
        job.seg, levels, job.canal, angle_correction=opts.angle_correction, centerline_method=opts.centerline_method
    )
    write_csv(sub_dir / f"{job.subject}_T2w_morphometrics.csv", aggregate(ps, Path(job.seg).name))
    write_csv(sub_dir / f"{job.subject}_T2w_morphometrics_perslice.csv", ps)
    if job.pmj is not None:
        from analysis.study_pmj import subject_pmj

        subject_pmj(job, opts, sub_dir, ps)
    if opts.level_method == "volume":
        from analysis.morphometrics import volume_per_level_from_files

        table = volume_per_level_from_files(job.seg, levels, job.canal, centerline_method=opts.centerline_method)
        write_csv(sub_dir / f"{job.subject}_T2w_morphometrics_volume.csv", table)
        slices = per_level_table(ps).set_index(LEVEL_COL)["n_slices"]
        table["n_slices"] = table[LEVEL_COL].map(slices)
    elif opts.level_method == "slice":
        table = per_level_table(ps)
    else:
        raise ConfigError(f"level method {opts.level_method!r}: slice or volume")
    keys = ("CSA", "canal_area", "SAC", "SAC_CSA", "n_slices", "length_mm")
    return {int(r[LEVEL_COL]): {k: r[k] for k in keys if k in r and np.isfinite(r[k])} for _, r in table.iterrows()}


def _dwi(job: SubjectJob, opts: StudyOptions, sub_dir: Path, record: dict) -> dict[int, dict[str, float]]:
    from analysis.dti import run_dti
    from analysis.dwi_levels import study_dwi_levels
    from core.io import write_csv

    levels, how = study_dwi_levels(job, sub_dir / f"{job.subject}_dwi_levels.nii.gz", opts.dwi_levels_transfer)
    record.update(how)
    res = run_dti(
        job.dwi,
        job.bval,
        job.bvec,
        job.dwi_mask,
        levels,
        fit_method=opts.fit_method,
        maps_dir=sub_dir / "dti_maps" if opts.write_maps else None,
        map_prefix=f"{job.subject}_dwi_",
        wm_mask=job.dwi_wm,
        gm_mask=job.dwi_gm,
    )
    write_csv(sub_dir / f"{job.subject}_dwi_dti.csv", res.table)
    out = {}
    for _, r in res.table.iterrows():
        if r[LEVEL_COL] != "":
            out[int(r[LEVEL_COL])] = {
                "FA": r["MEAN(FA)"],
                "MD": r["MEAN(MD)"],
                "RD": r["MEAN(RD)"],
                "AD": r["MEAN(AD)"],
                "dti_voxels": r["Size [vox]"],
                "dti_region": r["Label"],
            }
    return out


def process_subject(job: SubjectJob, opts: StudyOptions) -> SubjectResult:
    """Compute one subject's per-level metrics; every failure becomes a reason, never an exception."""
    t0 = time.perf_counter()
    reasons: dict[str, str] = {}
    caught: list[str] = []
    per_level: dict[int, dict[str, Any]] = {}
    if not opts.out_dir:
        raise ConfigError("StudyOptions.out_dir is not set")
    from data_modules.bids import safe_name

    sub_dir = Path(opts.out_dir) / "subjects" / safe_name(job.subject, "subject id")
    parts: list[tuple[str, Callable]] = [("anat", _anat), ("dwi", _dwi)]
    attempted = 0
    record: dict[str, Any] = {}
    for part, fn in parts:
        if part in job.excluded:
            reasons[part] = f"excluded ({job.excluded[part]})"
            continue
        if part in job.missing:
            reasons[part] = f"missing: {job.missing[part]}"
            continue
        attempted += 1
        try:
            with warnings.catch_warnings(record=True) as wlist:
                warnings.simplefilter("always")
                got = fn(job, opts, sub_dir, record)
            caught += [f"{part}: {w.message}" for w in wlist]
            for lv, vals in got.items():
                per_level.setdefault(lv, {}).update(vals)
        except CordbenchError as exc:
            reasons[part] = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a bug or unexpected data: keep the cohort going, record it
            tb = traceback.extract_tb(exc.__traceback__)[-1]
            reasons[part] = f"{type(exc).__name__}: {exc} (at {Path(tb.filename).name}:{tb.lineno})"
    rows = [{"participant_id": job.subject, LEVEL_COL: lv, **vals} for lv, vals in sorted(per_level.items())]
    if not rows:
        status = "excluded" if job.excluded and attempted == 0 and set(job.missing) <= set(job.excluded) else "failed"
    elif any(k in reasons for k in ("anat", "dwi")):
        status = "partial"
    else:
        status = "ok"
    return SubjectResult(job.subject, status, rows, reasons, caught, time.perf_counter() - t0, record)


# ------------------------------------------------------------------------------- execution
def _failure(job: SubjectJob, reason: str) -> SubjectResult:
    return SubjectResult(job.subject, "failed", [], {"worker": reason}, [], float("nan"))


def run_subjects(
    jobs: Sequence[SubjectJob], opts: StudyOptions, workers: int = 2, address: str | None = None, progress: bool = True
) -> list[SubjectResult]:
    """Process subjects: in-process when ``workers == 0``, else as Ray tasks (one CPU each)."""
    bar = ProgressBar(len(jobs), "subjects", enabled=progress)
    results: list[SubjectResult] = []
    if workers == 0 and address is None:
        for job in jobs:
            results.append(process_subject(job, opts))
            bar.advance(job.subject)
        bar.close()
        return results
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray
    from ray.exceptions import RayError, RayTaskError

    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:  # address="local": a new local instance, never a `ray start` cluster running on this machine
            ray.init(address="local", num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
        started = True
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(process_subject)
        refs = {task.remote(job, opts): job for job in jobs}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                job = refs[ref]
                try:
                    res = ray.get(ref)
                except RayTaskError as exc:
                    res = _failure(job, f"task error: {str(exc).strip().splitlines()[-1]}")
                except RayError as exc:
                    res = _failure(job, f"worker died ({type(exc).__name__}): {str(exc).strip().splitlines()[0][:300]}")
                results.append(res)
                bar.advance(job.subject)
    finally:
        bar.close()
        if started:
            ray.shutdown()
    order = {j.subject: i for i, j in enumerate(jobs)}
    return sorted(results, key=lambda r: order[r.subject])


# ---------------------------------------------------------------------------------- cohort
def merge_metrics(results: Sequence[SubjectResult], participants) -> pd.DataFrame:
    """One row per subject × level, with the participants.tsv columns appended."""
    import pandas as pd

    rows = [r for res in results for r in res.rows]
    df = pd.DataFrame(rows, columns=["participant_id", LEVEL_COL] + METRIC_COLUMNS)
    if len(rows):
        df = pd.DataFrame(rows).reindex(columns=["participant_id", LEVEL_COL] + METRIC_COLUMNS)
    if participants is not None:
        df = df.merge(participants, on="participant_id", how="left")
    return df.sort_values(["participant_id", LEVEL_COL]).reset_index(drop=True)


@dataclass
class StudySummary:
    """What ``analyze`` did."""

    n_subjects: int
    status: dict[str, int]
    seconds: float
    out_dir: str
    report: str
    metrics_csv: str
    failed: list[dict[str, Any]]


def analyze(
    bids_dir: str | Path,
    out_dir: str | Path,
    *,
    seg_source: str = "labels",
    workers: int = 2,
    address: str | None = None,
    x: str = "FA",
    y: str = "SAC_CSA",
    by: Sequence[str] = ("sex", "manufacturer", "institution_id"),
    opts: StudyOptions | None = None,
    progress: bool = True,
    exclude: str | Path | None = None,
) -> StudySummary:
    """Run the whole study (see module docstring) and write every output; ``exclude``: an exclude file."""
    from analysis.stats_report import write_statistics
    from core.io import write_csv, write_json

    t0 = time.perf_counter()
    out = Path(out_dir)
    opts = opts or StudyOptions()
    opts.out_dir = str(out)
    excl = None
    if exclude is not None:
        from analysis.exclusions import read_exclusions

        excl = read_exclusions(exclude)
    jobs, participants, _ = find_jobs(bids_dir, seg_source)
    if not jobs:
        raise InputError("no subject with images found", bids_dir)
    if excl is not None:
        apply_exclusions(jobs, excl)
    if participants is not None:
        missing = [b for b in by if b not in participants.columns]
        if missing:
            raise InputError(
                f"grouping column(s) {missing} not in participants.tsv (columns: "
                f"{', '.join(map(str, participants.columns))})",
                Path(bids_dir) / "participants.tsv",
            )
        from analysis.stats import check_group_codings

        check_group_codings(participants, by, Path(bids_dir) / "participants.tsv")
    results = run_subjects(jobs, opts, workers=workers, address=address, progress=progress)
    metrics = merge_metrics(results, participants)
    write_csv(out / "metrics.csv", metrics)
    subjects = _subjects_table(results)
    write_csv(out / "subjects.csv", subjects)
    from analysis.study_pmj import gather_pmj

    pmj = gather_pmj(out, [j.subject for j in jobs])
    if len(pmj):
        write_csv(out / "pmj_csa.csv", pmj)
    by_ok = [b for b in by if b in metrics.columns]
    stats_res = None
    if x in metrics and y in metrics and metrics[[x, y]].notna().all(axis=1).sum() >= 4:
        stats_res = write_statistics(metrics, x, y, by_ok, LEVEL_COL, out / "stats", source=str(out / "metrics.csv"))
    from analysis.plots import level_boxplots

    box = (
        level_boxplots(
            metrics,
            [c for c in ("CSA", "SAC", "SAC_CSA", "FA", "MD", "RD", "AD") if c in metrics],
            LEVEL_COL,
            out / "plots" / "metrics_by_level.png",
        )
        if len(metrics)
        else None
    )
    seconds = time.perf_counter() - t0
    status = subjects["status"].value_counts().to_dict() if len(subjects) else {}
    from analysis.study_report import write_report

    report = write_report(
        out,
        bids_dir=str(bids_dir),
        seg_source=seg_source,
        metrics=metrics,
        subjects=subjects,
        stats=stats_res,
        boxplot=box,
        x=x,
        y=y,
        by=by_ok,
        seconds=seconds,
        workers=workers,
        address=address,
        level_method=opts.level_method,
        pmj=pmj,
        exclusions=excl,
    )
    failed = subjects[subjects["status"] != "ok"][["participant_id", "status", "reasons"]].to_dict("records")
    summary = StudySummary(
        len(jobs),
        {str(k): int(v) for k, v in status.items()},
        seconds,
        str(out),
        str(report),
        str(out / "metrics.csv"),
        failed,
    )
    write_json(
        out / "summary.json",
        {
            **asdict(summary),
            "options": asdict(opts),
            "seg_source": seg_source,
            "workers": workers,
            "x": x,
            "y": y,
            "by": by_ok,
        },
    )
    return summary


def _subjects_table(results: Sequence[SubjectResult]):
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "participant_id": r.subject,
                "status": r.status,
                "n_levels": len(r.rows),
                "reasons": "; ".join(f"{k}: {v}" for k, v in r.reasons.items()),
                "warnings": " | ".join(r.warnings),
                "seconds": round(r.seconds, 3),
                **{f"dwi_levels_{k}": r.dwi_levels.get(k) for k in DWI_LEVEL_COLUMNS},
            }
            for r in results
        ],
        columns=["participant_id", "status", "n_levels", "reasons", "warnings", "seconds"]
        + [f"dwi_levels_{k}" for k in DWI_LEVEL_COLUMNS],
    )
