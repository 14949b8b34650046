"""Morphometric columns of the leaderboard: CSA error of each model's cord masks, FA vs SAC/CSA.

For every ranked trial of task ``sc``, the best checkpoint (``checkpoints/best.ckpt``, loaded with
:func:`runs.checkpoints.load_module`) predicts each held-out subject's T2w image on its native
grid (:func:`evaluation.inference.predict_class_mask`). :mod:`analysis.morphometrics` then measures the
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

Split by job: this module reads the trials (:class:`~runs.run_folder.RunFolder`), compares
and caches; the manual side is :mod:`analysis.manual_reference`, the pooling and CIs
:mod:`leaderboard.morpho_pool`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import manual_reference as manual
from analysis.manual_reference import LEVELS, ManualRef, anat_arrays, manual_reference
from core.errors import ConfigError, CordbenchError, InputError
from data_modules.contrasts import measured
from leaderboard.morpho_pool import (  # noqa: F401
    LEVEL_NAMES,
    MorphoSummary,
    TrialMorpho,
    correlation_reason,
    summarise_entry,
)
from runs import run_folder
from runs.run_folder import RunFolder

CACHE_NAME = run_folder.MORPHOMETRICS  # a trial's cache, in its run folder
CHECKPOINT = Path(run_folder.BEST_CKPT)  # relative to the run folder
CACHE_COLUMNS = [
    "subject",
    "VertLevel",
    "CSA_manual",
    "CSA_model",
    "csa_error_pct",
    "n_slices_manual",
    "n_slices_model",
    "canal_area",
    "SAC_manual",
    "SAC_model",
    "SAC_CSA_manual",
    "SAC_CSA_model",
    "FA",
    "fa_note",
    "note",
]


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
        from data_modules.phantom.randomise_options import from_config
        from data_modules.phantom_dm import default_phantom_root

        p = data.get("phantom") or {}
        root = default_phantom_root(
            int(p.get("subjects", 20)),
            int(p.get("seed", 0)),
            float(p.get("snr", 30.0)),
            bool(p.get("dwi", False)),
            from_config(p.get("randomise")),
        )
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


def clear_caches() -> None:
    """Forget memoised manual measurements and data-set indexes (after labels changed on disk)."""
    manual.clear_caches()


# ------------------------------------------------------------------------------- one subject
def compare_subject(ref: ManualRef, pred: np.ndarray) -> pd.DataFrame:
    """Rows (one per manual level C1..C7) comparing a predicted cord mask (native grid) with the manual one.

    A floating-point ``pred`` in [0, 1] is measured as a soft mask (partial volume,
    :mod:`analysis.morphometrics`); any other is binarised (``> 0``)."""
    from analysis.centerline import to_rpi
    from analysis.morphometrics import compute_perslice, per_level_table

    pred = np.asarray(pred)
    if pred.shape[:3] != ref.shape:
        raise InputError(f"predicted mask shape {pred.shape[:3]} != image shape {ref.shape}", ref.image)
    seg, aff = to_rpi(pred if pred.dtype.kind == "f" else pred > 0, ref.affine)
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
        rows.append(
            {
                "subject": ref.subject,
                "VertLevel": L,
                "CSA_manual": float(m["CSA"]),
                "CSA_model": csa_model,
                "csa_error_pct": 100.0 * (csa_model - float(m["CSA"])) / float(m["CSA"]),
                "n_slices_manual": int(m["n_slices"]),
                "n_slices_model": int(mm["n_slices"]) if found else 0,
                "canal_area": _get(m, "canal_area"),
                "SAC_manual": _get(m, "SAC"),
                "SAC_model": _get(mm, "SAC"),
                "SAC_CSA_manual": _get(m, "SAC_CSA"),
                "SAC_CSA_model": _get(mm, "SAC_CSA"),
                "FA": ref.fa.get(L, math.nan),
                "fa_note": ref.fa_note if L not in ref.fa else "",
                "note": " | ".join(notes),
            }
        )
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
    """The model's cord mask on the native grid of ``image`` (:func:`evaluation.inference.predict_class_mask`)."""
    from evaluation.inference import predict_class_mask

    return predict_class_mask(module, image, "sc")


def load_model(path: Path) -> Any:
    """The trial's best checkpoint as a module (weights only, task ``sc`` checked)."""
    from runs.checkpoints import load_module

    return load_module(path, expect={"task": "sc"})


# --------------------------------------------------------------------------------- one trial
def cache_is_fresh(trial_dir: Path) -> bool:
    """``morphometrics.csv`` exists, is not older than ``best.ckpt`` and has the current columns."""
    csv, ckpt = trial_dir / CACHE_NAME, trial_dir / CHECKPOINT
    external = (trial_dir / run_folder.EXTERNAL).is_file()  # `cordbench score` wrote it: no checkpoint
    if not csv.exists() or (not external and (not ckpt.exists() or csv.stat().st_mtime < ckpt.stat().st_mtime)):
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


def trial_morphometrics(
    trial_dir: str | Path, trial_id: str | None = None, refresh: bool = False, log: Callable[[str], None] | None = None
) -> TrialMorpho:
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
        contrast = measured((cfg.get("data") or {}).get("contrast"))
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
    """ "" when the trial's data has manual T2w cord masks and levels for a held-out subject, else why not."""
    try:
        cfg = trial_config(trial_dir)
        if trial_task(cfg) != "sc":
            return f"task {trial_task(cfg)} (cord masks needed: task sc)"
        root = data_root(trial_dir, cfg)
        jobs = manual.subject_jobs(str(root.resolve()))[0]
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
def entry_morphometrics(
    sweep: Any,
    trials: pd.DataFrame,
    task: str | None,
    enabled: bool | None = None,
    n_boot: int = 10000,
    seed: int = 0,
    refresh: bool = False,
    log: Callable[[str], None] | None = None,
) -> MorphoSummary:
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
        out.trials[tid] = (
            trial_morphometrics(d, tid, refresh=refresh, log=log) if not why[tid] else TrialMorpho(tid, None, why[tid])
        )
    cols, levels, per_subject = [], [], []
    for entry, grp in trials.groupby("entry", sort=False):
        frames = [out.trials[t].frame for t in grp["trial_id"] if out.trials[t].frame is not None]
        usable = [f for f in frames if f["VertLevel"].notna().any()]
        if not usable:
            reasons = sorted(
                {out.trials[t].reason for t in grp["trial_id"] if out.trials[t].reason}
                | {str(n) for f in frames for n in f["note"] if n}
            )
            cols.append({"entry": entry, "morpho_note": "; ".join(reasons) or "no subject measured"})
            continue
        col, lv, ps = summarise_entry(str(entry), usable, n_boot, seed)
        col["fa_note"] = correlation_reason(ps, usable) if not np.isfinite(col["r_model"]) else ""
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
