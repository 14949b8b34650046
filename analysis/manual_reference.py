"""A subject's manual reference measurement: per-level CSA, canal, SAC, SAC/CSA and FA from its manual labels.

The leaderboard's morphometric columns (:mod:`leaderboard.morphometrics`) measure each
model's predicted cord mask against this, with the **same** manual level map
(``label-SC_desc-levels_dseg``, else built from the manual cord mask and ``label-discs_dlabel``)
and manual canal (``label-canal_seg``). The files are found by the study's indexer
(:func:`analysis.study.find_jobs`, so the naming rules are the study's), measured by
:mod:`analysis.morphometrics` (angle-corrected axial slices, SCT conventions) and FA by
:func:`analysis.dti.run_dti` (WLS) on the DWI cord mask. Results are memoised: the small ones for
every subject of a sweep, the big arrays for the latest few (:func:`clear_caches` forgets them).
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import InputError

LEVELS = tuple(range(1, 8))  # C1..C7


@dataclass
class ManualRef:
    """A subject's manual measurements (small: memoised for every subject of a sweep)."""

    root: str
    subject: str
    image: Path  # the T2w image the model segments
    affine: np.ndarray  # its native affine
    shape: tuple[int, ...]
    table: pd.DataFrame  # manual per-level table (VertLevel, n_slices, CSA, canal_area, SAC, SAC_CSA)
    fa: dict[int, float] = field(default_factory=dict)
    fa_note: str = ""  # why FA is missing ("" when present)
    note: str = ""  # warnings of the manual measurement


@dataclass
class AnatArrays:
    """The manual arrays a model's mask is measured with (RPI): big, so only the latest few are kept."""

    seg: np.ndarray  # manual cord mask (bool)
    affine_rpi: np.ndarray
    levels: np.ndarray  # manual level map (int16)
    canal: np.ndarray | None  # manual canal (bool)


@lru_cache(maxsize=8)
def subject_jobs(root: str):
    """``(subject -> analysis.study.SubjectJob, BidsIndex)`` of a data set (manual labels)."""
    from analysis.study import find_jobs
    from data_modules.bids import BidsIndex

    jobs, _, _ = find_jobs(root, "labels")
    return {j.subject: j for j in jobs}, BidsIndex.from_dir(root, strict=False)


def subject_job(root: str, subject: str):
    """The study job (manual files) of a subject whose anatomy can be measured; one clear line otherwise."""
    job = subject_jobs(root)[0].get(subject)
    if job is None:
        if "_ses-" in subject:
            raise InputError(f"subject {subject}: sessions are not supported by the morphometric columns", root)
        raise InputError(f"subject {subject} not found", root)
    if "anat" in job.excluded:
        raise InputError(f"subject {subject} excluded ({job.excluded['anat']})", root)
    if "anat" in job.missing:
        raise InputError(f"subject {subject}: {job.missing['anat']}", root)
    return job


def _levels_array(job, seg_img) -> np.ndarray:
    """Manual level map on the T2w grid: the levels dseg, else levels from the manual mask and the discs."""
    from core.io import check_same_grid, load_label

    if job.levels is not None:
        lv_img, lv = load_label(job.levels, kind="vertebral levels", require_nonempty=True)
        check_same_grid(seg_img, lv_img, job.seg, job.levels)
        return lv
    from data_modules.levels import level_map_from_files

    _, lv = level_map_from_files(job.seg, job.discs)
    return np.asarray(lv)


@lru_cache(maxsize=2)
def anat_arrays(root: str, subject: str) -> AnatArrays:
    """Load one subject's manual cord mask, level map and canal in RPI (checked on one grid)."""
    from analysis.centerline import to_rpi
    from analysis.morphometrics import binary_mask, check_levels_cover_cord, load_mask_rpi

    job = subject_job(root, subject)
    seg_img, seg_data, aff = load_mask_rpi(job.seg, "segmentation")
    seg = binary_mask(seg_data, job.seg, "segmentation")
    if not seg.any():
        raise InputError("manual cord segmentation is empty", job.seg)
    lv, _ = to_rpi(np.round(_levels_array(job, seg_img)).astype(np.int16), seg_img.affine)
    check_levels_cover_cord(seg, lv, job.seg, job.levels or job.discs)
    canal = None
    if job.canal is not None:
        _, cd, _ = load_mask_rpi(job.canal, "canal segmentation", seg_img, job.seg)
        canal = binary_mask(cd, job.canal, "canal segmentation")
    return AnatArrays(seg, aff, lv, canal)


def _fa(job) -> tuple[dict[int, float], str]:
    """Manual per-level FA (levels 1..7) and the reason when there is none."""
    if "dwi" in job.excluded:
        return {}, f"excluded ({job.excluded['dwi']})"
    if "dwi" in job.missing:
        return {}, job.missing["dwi"]
    from analysis.dti import run_dti

    with tempfile.TemporaryDirectory(prefix="cordbench-lb-") as tmp:
        levels = job.dwi_levels
        if levels is None:
            from core.io import save_nifti
            from data_modules.levels import level_map_from_files

            if job.dwi_discs is None:
                return {}, "no vertebral levels on the DWI grid (label-SC_desc-levels_dseg or label-discs_dlabel)"
            img, lv = level_map_from_files(job.dwi_mask, job.dwi_discs)
            levels = save_nifti(lv, img.affine, Path(tmp) / "dwi_levels.nii.gz", header=img.header, dtype=np.int16)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = run_dti(job.dwi, job.bval, job.bvec, job.dwi_mask, levels)
    out = {}
    for _, r in res.table.iterrows():
        if r["VertLevel"] != "" and int(r["VertLevel"]) in LEVELS and np.isfinite(r["MEAN(FA)"]):
            out[int(r["VertLevel"])] = float(r["MEAN(FA)"])
    return out, "" if out else "no DWI level C1-C7 inside the cord mask"


@lru_cache(maxsize=4096)
def manual_reference(root: str, subject: str, contrast: str = "T2w") -> ManualRef:
    """Measure one subject's manual masks, FA per level (memoised: shared by every trial of a sweep)."""
    from analysis.morphometrics import compute_perslice, per_level_table
    from core.io import check_same_grid, load_nifti

    job = subject_job(root, subject)
    rec = subject_jobs(root)[1].image(subject, contrast)
    if rec is None or not rec.exists:
        raise InputError(f"subject {subject} has no {contrast} image", root)
    img = load_nifti(rec.path, ndim=3, kind=f"{contrast} image")
    seg_img = load_nifti(job.seg, ndim=3, kind="segmentation")
    check_same_grid(img, seg_img, rec.path, job.seg)
    arr = anat_arrays(root, subject)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = per_level_table(compute_perslice(arr.seg, arr.affine_rpi, arr.levels, arr.canal))
    fa, fa_note = _fa(job)
    return ManualRef(
        root=root,
        subject=subject,
        image=rec.path,
        affine=np.asarray(img.affine, float),
        shape=tuple(img.shape[:3]),
        table=table,
        fa=fa,
        fa_note=fa_note,
        note=" | ".join(f"manual: {w.message}" for w in caught),
    )


def clear_caches() -> None:
    """Forget memoised manual measurements and data-set indexes (after labels changed on disk)."""
    manual_reference.cache_clear()
    anat_arrays.cache_clear()
    subject_jobs.cache_clear()
