"""Morphometric columns of the leaderboard: CSA error of each model's cord masks, FA vs SAC/CSA.

For every ranked trial of task ``sc``, the best checkpoint (``checkpoints/best.ckpt``, loaded with
:func:`cordbench.checkpoints.load_module`) predicts each held-out subject's T2w image on its native
grid (:func:`cordbench.inference.predict_array`). :mod:`analysis.morphometrics` then measures the
predicted and the manual cord masks the same way (angle-corrected axial slices, SCT conventions,
:func:`~analysis.morphometrics.compute_perslice` + :func:`~analysis.morphometrics.per_level_table`)
with the **same** manual level map (``label-SC_desc-levels_dseg``, else built from the manual cord
mask and ``label-discs_dlabel``) and the manual canal (``label-canal_seg``):

* per subject and vertebral level C1..C7 present in the manual measurement, the CSA error
  ``100·(CSA_model − CSA_manual)/CSA_manual`` (%); a level the model's mask misses entirely
  counts as CSA 0 (−100 %), an empty prediction as −100 % at every level;
* SAC = canal − cord and SAC/CSA per level from the model's cord mask and the manual canal;
* FA per level from the manual DWI cord mask (:func:`analysis.dti.run_dti`, WLS) when the subject
  has a DWI with ``.bval``/``.bvec`` and a cord mask on the DWI grid; otherwise a reason.

One CSV per trial, ``trials/<id>/morphometrics.csv`` (one row per subject × level; a subject that
could not be measured gets one row with ``note``), is the cache: it is reused while it is newer than
the checkpoint. :func:`entry_morphometrics` pools the trials of each leaderboard entry as the Dice
column does (a subject's value is the mean over the entry's trials that tested it) and gives the
mean absolute and signed (bias) CSA error per level and overall with percentile-bootstrap CIs over
subjects, and the Pearson r of FA vs SAC/CSA (:func:`analysis.stats.correlate`: Fisher-z CI) from
the model's masks beside the same r from the manual masks. See ``docs/leaderboard.md``.
"""
from __future__ import annotations

import math
import tempfile
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from cordbench import run_folder
from cordbench.errors import ConfigError, CordbenchError, InputError
from cordbench.run_folder import RunFolder

CACHE_NAME = run_folder.MORPHOMETRICS      # a trial's cache, in its run folder
CHECKPOINT = Path(run_folder.BEST_CKPT)    # relative to the run folder
LEVELS = tuple(range(1, 8))  # C1..C7
LEVEL_NAMES = {L: f"C{L}" for L in LEVELS}
CACHE_COLUMNS = ["subject", "VertLevel", "CSA_manual", "CSA_model", "csa_error_pct", "n_slices_manual",
                 "n_slices_model", "canal_area", "SAC_manual", "SAC_model", "SAC_CSA_manual", "SAC_CSA_model",
                 "FA", "fa_note", "note"]


# ------------------------------------------------------------------------------------ trial files
def trial_config(trial_dir: Path) -> dict[str, Any]:
    """The trial's resolved config (:meth:`RunFolder.read_config`)."""
    return RunFolder(Path(trial_dir)).read_config()


def data_root(trial_dir: Path, cfg: dict[str, Any] | None = None) -> Path:
    """The data set folder the trial used: the data description's ``root``, else the phantom's cache folder."""
    run = RunFolder(Path(trial_dir))
    cfg = cfg if cfg is not None else run.read_config()
    desc = run.read_data_description()
    root = desc.get("root")
    data = cfg.get("data") or {}
    if root in (None, "", "None"):
        if str(desc.get("data") or data.get("name")) != "phantom":
            raise InputError(f"{run.data.name} names no data root", run.data)
        from data_modules.phantom_dm import default_phantom_root

        p = data.get("phantom") or {}
        root = default_phantom_root(int(p.get("subjects", 20)), int(p.get("seed", 0)), float(p.get("snr", 30.0)),
                                    bool(p.get("dwi", False)))
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"data set folder {root} of the trial not found", run.data)
    return root


def test_subjects(trial_dir: Path) -> list[str]:
    """Held-out subjects of the trial (:meth:`RunFolder.test_subjects`)."""
    return RunFolder(Path(trial_dir)).test_subjects()


def trial_task(cfg: dict[str, Any]) -> str:
    """The trial's task (``data.task``, default ``sc``)."""
    return str((cfg.get("data") or {}).get("task") or "sc")


# ------------------------------------------------------------------------------ manual reference
@dataclass
class ManualRef:
    """A subject's manual measurements (small: memoised for every subject of a sweep)."""

    root: str
    subject: str
    image: Path                     # the T2w image the model segments
    affine: np.ndarray              # its native affine
    shape: tuple[int, ...]
    table: pd.DataFrame             # manual per-level table (VertLevel, n_slices, CSA, canal_area, SAC, SAC_CSA)
    fa: dict[int, float] = field(default_factory=dict)
    fa_note: str = ""               # why FA is missing ("" when present)
    note: str = ""                  # warnings of the manual measurement


@dataclass
class AnatArrays:
    """The manual arrays a model's mask is measured with (RPI): big, so only the latest few are kept."""

    seg: np.ndarray                 # manual cord mask (bool)
    affine_rpi: np.ndarray
    levels: np.ndarray              # manual level map (int16)
    canal: np.ndarray | None        # manual canal (bool)


@lru_cache(maxsize=8)
def _index(root: str):
    """``(subject -> analysis.study.SubjectJob, BidsIndex)`` of a data set (manual labels)."""
    from analysis.study import find_jobs
    from data_modules.bids import BidsIndex

    jobs, _, _ = find_jobs(root, "labels")
    return {j.subject: j for j in jobs}, BidsIndex.from_dir(root, strict=False)


def _job(root: str, subject: str):
    job = _index(root)[0].get(subject)
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
    from cordbench.io import check_same_grid, load_label

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

    job = _job(root, subject)
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
            from cordbench.io import save_nifti
            from data_modules.levels import level_map_from_files

            if job.dwi_discs is None:
                return {}, "no vertebral levels on the DWI grid (label-SC_desc-levels_dseg or label-discs_dlabel)"
            img, lv = level_map_from_files(job.dwi_mask, job.dwi_discs)
            levels = save_nifti(lv, img.affine, Path(tmp) / "dwi_levels.nii.gz", header=img.header,
                                dtype=np.int16)
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
    from cordbench.io import check_same_grid, load_nifti

    job = _job(root, subject)
    rec = _index(root)[1].image(subject, contrast)
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
    return ManualRef(root=root, subject=subject, image=rec.path, affine=np.asarray(img.affine, float),
                     shape=tuple(img.shape[:3]), table=table, fa=fa, fa_note=fa_note,
                     note=" | ".join(f"manual: {w.message}" for w in caught))


def clear_caches() -> None:
    """Forget memoised manual measurements and data-set indexes (after labels changed on disk)."""
    manual_reference.cache_clear()
    anat_arrays.cache_clear()
    _index.cache_clear()


# ------------------------------------------------------------------------------- one subject
def compare_subject(ref: ManualRef, pred: np.ndarray) -> pd.DataFrame:
    """Rows (one per manual level C1..C7) comparing a predicted cord mask (native grid) with the manual one."""
    from analysis.centerline import to_rpi
    from analysis.morphometrics import compute_perslice, per_level_table

    pred = np.asarray(pred)
    if pred.shape[:3] != ref.shape:
        raise InputError(f"predicted mask shape {pred.shape[:3]} != image shape {ref.shape}", ref.image)
    seg, aff = to_rpi(pred > 0, ref.affine)
    notes = [ref.note] if ref.note else []
    model = pd.DataFrame(columns=["VertLevel", "n_slices", "CSA", "SAC", "SAC_CSA"])
    if not seg.any():
        notes.append("empty prediction (CSA 0 at every level)")
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            arr = anat_arrays(ref.root, ref.subject)
            model = per_level_table(compute_perslice(seg, aff, arr.levels, arr.canal))
        notes += [f"model: {w.message}" for w in caught]
    model = model.set_index("VertLevel") if len(model) else model
    rows = []
    for _, m in ref.table.iterrows():
        L = int(m["VertLevel"])
        if L not in LEVELS:
            continue
        found = bool(len(model)) and L in model.index
        csa_model = float(model.loc[L, "CSA"]) if found else 0.0
        mm = model.loc[L] if found else pd.Series(dtype=float)
        rows.append({"subject": ref.subject, "VertLevel": L, "CSA_manual": float(m["CSA"]), "CSA_model": csa_model,
                     "csa_error_pct": 100.0 * (csa_model - float(m["CSA"])) / float(m["CSA"]),
                     "n_slices_manual": int(m["n_slices"]), "n_slices_model": int(mm["n_slices"]) if found else 0,
                     "canal_area": _get(m, "canal_area"), "SAC_manual": _get(m, "SAC"), "SAC_model": _get(mm, "SAC"),
                     "SAC_CSA_manual": _get(m, "SAC_CSA"), "SAC_CSA_model": _get(mm, "SAC_CSA"),
                     "FA": ref.fa.get(L, math.nan), "fa_note": ref.fa_note if L not in ref.fa else "",
                     "note": " | ".join(notes)})
    if not rows:
        return _failed_row(ref.subject, "no manual level C1-C7")
    return pd.DataFrame(rows, columns=CACHE_COLUMNS)


def _get(row: pd.Series, key: str) -> float:
    """A finite value of a row, else NaN."""
    return float(row[key]) if key in row and np.isfinite(row[key]) else math.nan


def _describe(exc: BaseException) -> str:
    """``Type: message (at file:line)`` of an unexpected exception."""
    import traceback

    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}{where}"


def _failed_row(subject: str, reason: str) -> pd.DataFrame:
    return pd.DataFrame([{"subject": subject, "note": f"failed: {reason}"}], columns=CACHE_COLUMNS)


def predict_subject(module: Any, image: Path) -> np.ndarray:
    """The model's cord mask on the native grid of ``image`` (voxels of the ``sc`` class)."""
    from cordbench.inference import predict_array
    from cordbench.io import check_image_values, load_nifti

    img = load_nifti(image, ndim=3, kind="input image")
    data = np.asanyarray(img.dataobj).astype(np.float32)
    check_image_values(data, image)
    labels = predict_array(module, data, np.asarray(img.affine))
    values = list((module.hparams.get("classes") or {}).get("sc") or [1])
    return np.isin(labels, values)


def load_model(path: Path) -> Any:
    """The trial's best checkpoint as a module (weights only, task ``sc`` checked)."""
    from cordbench.checkpoints import load_module

    return load_module(path, expect={"task": "sc"})


# --------------------------------------------------------------------------------- one trial
@dataclass
class TrialMorpho:
    """A trial's per-subject × level table, or the reason there is none."""

    trial_id: str
    frame: pd.DataFrame | None
    reason: str = ""
    cached: bool = False


def cache_is_fresh(trial_dir: Path) -> bool:
    """``morphometrics.csv`` exists, is not older than ``best.ckpt`` and has the current columns."""
    csv, ckpt = trial_dir / CACHE_NAME, trial_dir / CHECKPOINT
    if not csv.exists() or not ckpt.exists() or csv.stat().st_mtime < ckpt.stat().st_mtime:
        return False
    try:
        cols = pd.read_csv(csv, nrows=0).columns
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError):
        return False
    return list(cols) == CACHE_COLUMNS


def read_cache(path: Path) -> pd.DataFrame:
    """Read a trial's ``morphometrics.csv``."""
    df = pd.read_csv(path, dtype={"subject": str})
    for c in ("fa_note", "note"):
        df[c] = df[c].fillna("").astype(str)
    return df


def trial_morphometrics(trial_dir: str | Path, trial_id: str | None = None, refresh: bool = False,
                        log: Callable[[str], None] | None = None) -> TrialMorpho:
    """Compute (or read from the cache) one trial's per-subject × level morphometric comparison."""
    trial_dir = Path(trial_dir)
    tid = trial_id or trial_dir.name
    if not refresh and cache_is_fresh(trial_dir):
        return TrialMorpho(tid, read_cache(trial_dir / CACHE_NAME), cached=True)
    try:
        cfg = trial_config(trial_dir)
        task = trial_task(cfg)
        if task != "sc":
            return TrialMorpho(tid, None, f"task {task} (cord masks needed: task sc)")
        ckpt = trial_dir / CHECKPOINT
        if not ckpt.exists():
            return TrialMorpho(tid, None, f"no checkpoint ({CHECKPOINT.as_posix()} missing)")
        root = data_root(trial_dir, cfg)
        subjects = test_subjects(trial_dir)
        contrast = str((cfg.get("data") or {}).get("contrast") or "T2w")
        module = load_model(ckpt)
    except CordbenchError as exc:
        return TrialMorpho(tid, None, str(exc))
    except Exception as exc:  # an unexpected failure of one trial must not sink the leaderboard: reported
        return TrialMorpho(tid, None, _describe(exc))
    if log is not None:
        log(f"morphometrics of trial {tid}: {len(subjects)} held-out subject(s)")
    frames = []
    for sub in subjects:
        try:
            ref = manual_reference(str(root.resolve()), sub, contrast)
            frames.append(compare_subject(ref, predict_subject(module, ref.image)))
        except CordbenchError as exc:
            frames.append(_failed_row(sub, str(exc)))
        except Exception as exc:  # recorded in the CSV and listed in the report, never silently dropped
            frames.append(_failed_row(sub, _describe(exc)))
    df = pd.concat(frames, ignore_index=True)[CACHE_COLUMNS]
    RunFolder(trial_dir).write_morphometrics(df)
    return TrialMorpho(tid, read_cache(trial_dir / CACHE_NAME))


# ----------------------------------------------------------------------------- availability
def labels_available(trial_dir: Path) -> str:
    """"" when the trial's data has manual T2w cord masks and levels for a held-out subject, else why not."""
    try:
        cfg = trial_config(trial_dir)
        if trial_task(cfg) != "sc":
            return f"task {trial_task(cfg)} (cord masks needed: task sc)"
        root = data_root(trial_dir, cfg)
        jobs = _index(str(root.resolve()))[0]
        subjects = test_subjects(trial_dir)
    except CordbenchError as exc:
        return str(exc)
    ok = [s for s in subjects if s in jobs and "anat" not in jobs[s].missing and "anat" not in jobs[s].excluded]
    if not ok:
        first = jobs.get(subjects[0])
        why = first.missing.get("anat") or first.excluded.get("anat") if first is not None else "not in the data set"
        return f"no held-out subject with a manual cord mask and vertebral levels in {root} ({subjects[0]}: {why})"
    return ""


# -------------------------------------------------------------------------------- per entry
@dataclass
class MorphoSummary:
    """What the reports show about morphometrics."""

    enabled: bool
    reason: str = ""                                                # why the columns are off / n/a
    columns: pd.DataFrame = field(default_factory=pd.DataFrame)     # one row per entry (merged into the table)
    levels: pd.DataFrame = field(default_factory=pd.DataFrame)      # entry × level: MAE, bias with CIs
    per_subject: pd.DataFrame = field(default_factory=pd.DataFrame)  # entry × subject × level values
    trials: dict[str, TrialMorpho] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    fa_reason: str = ""                                             # why the FA correlation is n/a ("" if not)


def _ci(values: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float]:
    from cordbench.leaderboard.stats import bootstrap_ci

    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if not v.size:
        return math.nan, math.nan, math.nan
    lo, hi = bootstrap_ci(v, n_boot=n_boot, seed=seed)
    return float(v.mean()), lo, hi


def pooled_rows(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Subject × level values of one entry: model quantities averaged over its trials, manual ones kept.

    Adds ``abs_error_pct`` (mean over trials of |error|) beside the signed ``csa_error_pct``.
    """
    long = pd.concat(frames, ignore_index=True)
    long = long[long["VertLevel"].notna()].copy()
    if long.empty:
        return long
    long["VertLevel"] = long["VertLevel"].astype(int)
    long["abs_error_pct"] = long["csa_error_pct"].abs()
    model = ["CSA_model", "csa_error_pct", "abs_error_pct", "SAC_model", "SAC_CSA_model"]
    manual = ["CSA_manual", "canal_area", "SAC_manual", "SAC_CSA_manual", "FA"]
    g = long.groupby(["subject", "VertLevel"])
    out = g[model].mean().join(g[manual].first()).join(g.size().rename("n_trials"))
    return out.reset_index()


def _subject_overall(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Per subject: mean over its levels (per trial) of |error| and of the signed error, then over trials."""
    per_trial = []
    for i, f in enumerate(frames):
        f = f[f["VertLevel"].notna()]
        if f.empty:
            continue
        per_trial.append(f.assign(abs_error_pct=f["csa_error_pct"].abs(), trial=i)
                         .groupby(["trial", "subject"])[["abs_error_pct", "csa_error_pct"]].mean())
    if not per_trial:
        return pd.DataFrame(columns=["subject", "abs_error_pct", "csa_error_pct"])
    return pd.concat(per_trial).groupby("subject").mean().reset_index()


def summarise_entry(entry: str, frames: list[pd.DataFrame], n_boot: int, seed: int
                    ) -> tuple[dict[str, Any], list[dict[str, Any]], pd.DataFrame]:
    """Entry columns, per-level rows and the pooled subject × level table of one entry."""
    from analysis.stats import correlate

    rows = pooled_rows(frames)
    overall = _subject_overall(frames)
    col: dict[str, Any] = {"entry": entry}
    m, lo, hi = _ci(overall["abs_error_pct"].to_numpy(float), n_boot, seed)
    col.update({"csa_mae_pct": m, "csa_mae_ci_low": lo, "csa_mae_ci_high": hi})
    m, lo, hi = _ci(overall["csa_error_pct"].to_numpy(float), n_boot, seed)
    col.update({"csa_bias_pct": m, "csa_bias_ci_low": lo, "csa_bias_ci_high": hi,
                "csa_n_subjects": int(overall["abs_error_pct"].notna().sum())})
    levels = []
    for L in LEVELS:
        sub = rows[rows["VertLevel"] == L] if len(rows) else rows
        if not len(sub):
            continue
        mae = _ci(sub["abs_error_pct"].to_numpy(float), n_boot, seed)
        bias = _ci(sub["csa_error_pct"].to_numpy(float), n_boot, seed)
        levels.append({"entry": entry, "level": LEVEL_NAMES[L], "n_subjects": int(sub["subject"].nunique()),
                       "mae_pct": mae[0], "mae_ci_low": mae[1], "mae_ci_high": mae[2],
                       "bias_pct": bias[0], "bias_ci_low": bias[1], "bias_ci_high": bias[2]})
        col[f"csa_mae_{LEVEL_NAMES[L]}"] = mae[0]
        col[f"csa_bias_{LEVEL_NAMES[L]}"] = bias[0]
    for src in ("model", "manual"):
        c = correlate(rows["FA"], rows[f"SAC_CSA_{src}"]) if len(rows) else correlate([], [])
        col.update({f"r_{src}": c.r, f"r_{src}_ci_low": c.ci_low, f"r_{src}_ci_high": c.ci_high,
                    f"p_{src}": c.p, f"n_{src}": c.n})
    return col, levels, rows.assign(entry=entry)


def _r_reason(rows: pd.DataFrame, frames: list[pd.DataFrame]) -> str:
    """Why the FA vs SAC/CSA correlation of an entry is undefined."""
    from analysis.stats import MIN_N

    if not np.isfinite(rows["FA"].to_numpy(float)).any():
        notes = pd.concat(frames)["fa_note"].fillna("").astype(str)
        notes = notes[notes != ""]
        return notes.value_counts().index[0] if len(notes) else "no FA"
    if not np.isfinite(rows["SAC_CSA_manual"].to_numpy(float)).any():
        return "no manual canal label (label-canal_seg) for SAC"
    n = int((np.isfinite(rows["FA"].to_numpy(float)) & np.isfinite(rows["SAC_CSA_model"].to_numpy(float))).sum())
    if n < MIN_N:
        return f"{n} subject-level(s) with FA and SAC/CSA (a correlation needs {MIN_N})"
    return "constant FA or SAC/CSA"


def entry_morphometrics(sweep: Any, trials: pd.DataFrame, task: str | None, enabled: bool | None = None,
                        n_boot: int = 10000, seed: int = 0, refresh: bool = False,
                        log: Callable[[str], None] | None = None) -> MorphoSummary:
    """Morphometric columns of each entry of ``trials`` (rows of results.csv with an ``entry`` column).

    ``enabled`` None: on when the task is ``sc`` and the trials' data has manual cord masks and
    vertebral levels (else off, with the reason); True: required (a clear error otherwise); False: off.
    """
    if enabled is False:
        return MorphoSummary(False, "disabled (--no-morphometrics)")
    if task is not None and task != "sc":
        if enabled:
            raise ConfigError(f"--morphometrics needs task sc (cord masks); this leaderboard ranks task {task!r}")
        return MorphoSummary(False, f"task {task}: cord masks needed (task sc)")
    dirs = {row["trial_id"]: sweep.trial_dir(row) for _, row in trials.iterrows()}
    fresh = {tid: not refresh and cache_is_fresh(d) for tid, d in dirs.items()}
    why = {tid: "" if fresh[tid] else labels_available(d) for tid, d in dirs.items()}
    if all(why.values()):
        first = next(iter(why.values()), "no trial")
        if enabled:
            raise InputError(f"--morphometrics: no trial's data has the labels needed ({first})", sweep.root)
        return MorphoSummary(False, f"off: {first}")
    out = MorphoSummary(True)
    for tid, d in dirs.items():
        out.trials[tid] = trial_morphometrics(d, tid, refresh=refresh, log=log) if not why[tid] \
            else TrialMorpho(tid, None, why[tid])
    cols, levels, per_subject = [], [], []
    for entry, grp in trials.groupby("entry", sort=False):
        frames = [out.trials[t].frame for t in grp["trial_id"] if out.trials[t].frame is not None]
        usable = [f for f in frames if f["VertLevel"].notna().any()]
        if not usable:
            reasons = sorted({out.trials[t].reason for t in grp["trial_id"] if out.trials[t].reason} |
                             {str(n) for f in frames for n in f["note"] if n})
            cols.append({"entry": entry, "morpho_note": "; ".join(reasons) or "no subject measured"})
            continue
        col, lv, ps = summarise_entry(str(entry), usable, n_boot, seed)
        col["fa_note"] = _r_reason(ps, usable) if not np.isfinite(col["r_model"]) else ""
        cols.append(col)
        levels += lv
        per_subject.append(ps)
    out.columns = pd.DataFrame(cols)
    out.levels = pd.DataFrame(levels)
    out.per_subject = pd.concat(per_subject, ignore_index=True) if per_subject else pd.DataFrame()
    for tid, tm in out.trials.items():
        if tm.frame is None:
            out.notes.append(f"trial {tid}: no morphometrics ({tm.reason})")
        else:
            failed = tm.frame[tm.frame["VertLevel"].isna()]
            for _, r in failed.iterrows():
                out.notes.append(f"trial {tid}, {r['subject']}: {r['note']}")
    fa_notes = out.columns["fa_note"] if "fa_note" in out.columns else pd.Series(dtype=str)
    fa_notes = fa_notes.fillna("").astype(str)
    out.fa_reason = fa_notes[fa_notes != ""].iloc[0] if (fa_notes != "").any() else ""
    return out
