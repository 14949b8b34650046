"""PMJ-based CSA in the cohort study: per subject when its T2w has a PMJ label, gathered for the report.

Each subject with ``sub-X_T2w_label-PMJ_dlabel`` gets ``subjects/<sub>/<sub>_T2w_morphometrics_pmj.csv``
(SCT's columns, :mod:`analysis.pmj`) at :data:`PMJ_DISTANCE_MM` ± :data:`PMJ_EXTENT_MM`/2 along the
centerline — SCT's tutorial values, C2–C3 on average (Bédard & Cohen-Adad 2022). A PMJ that cannot
be measured (window past the cord, PMJ below it) is a warning of that subject, never a failure of
its per-level metrics. ``pmj_csa.csv`` gathers the rows, one per subject.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

PMJ_DISTANCE_MM = 64.0
PMJ_EXTENT_MM = 30.0
PMJ_CSV_SUFFIX = "_T2w_morphometrics_pmj.csv"
PMJ_COLUMNS = ["participant_id", "Slice (I->S)", "DistancePMJ", "MEAN(area)", "STD(area)", "SUM(length)", "mask_type"]


def subject_pmj(job: Any, opts: Any, sub_dir: Path, perslice=None) -> Path | None:
    """Write the PMJ CSV of one subject (``analysis.study.SubjectJob`` with a ``pmj`` label, measured with
    the ``StudyOptions``); a measurement refused by :mod:`analysis.pmj` becomes a warning of the subject.
    ``perslice``: its per-slice metrics already measured with the same options (reused)."""
    from analysis.pmj import pmj_morphometrics_from_files
    from core.errors import CordbenchError
    from core.io import write_csv

    try:
        table = pmj_morphometrics_from_files(
            job.seg,
            job.pmj,
            distance=PMJ_DISTANCE_MM,
            extent=PMJ_EXTENT_MM,
            canal=job.canal,
            angle_correction=opts.angle_correction,
            centerline_method=opts.centerline_method,
            perslice=perslice,
        )
    except CordbenchError as exc:
        warnings.warn(f"PMJ CSA not measured: {exc}", stacklevel=2)
        return None
    return write_csv(sub_dir / f"{job.subject}{PMJ_CSV_SUFFIX}", table)


def gather_pmj(out: Path, subjects: Iterable[str]):
    """One row per subject with a PMJ CSV under ``out/subjects`` (columns :data:`PMJ_COLUMNS`)."""
    import pandas as pd

    frames = []
    for sub in subjects:
        path = Path(out) / "subjects" / sub / f"{sub}{PMJ_CSV_SUFFIX}"
        if path.is_file():
            frames.append(pd.read_csv(path, dtype={"Slice (I->S)": str}).assign(participant_id=sub))
    if not frames:
        return pd.DataFrame(columns=PMJ_COLUMNS)
    return pd.concat(frames, ignore_index=True)[PMJ_COLUMNS]


def report_section(table) -> str:
    """The report's PMJ section (empty when no subject has a PMJ label)."""
    from core.html import frame_table

    if table is None or not len(table):
        return ""
    return (
        "<h2>CSA at a distance from the PMJ</h2>"
        f"<p>Mean angle-corrected CSA (mm²) of the axial slices {PMJ_DISTANCE_MM:g} ± {PMJ_EXTENT_MM / 2:g} mm "
        "along the centerline below the pontomedullary junction (SCT's <code>-pmj -pmj-distance "
        f"{PMJ_DISTANCE_MM:g} -pmj-extent {PMJ_EXTENT_MM:g}</code>), for the "
        f"{len(table)} subject(s) with a PMJ label; <code>pmj_csa.csv</code>.</p>" + frame_table(table)
    )
