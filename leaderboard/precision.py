"""Precision columns of the leaderboard: how reproducible each entry's cord area is.

For every ranked trial of task ``sc`` (or ``gm``: cord and grey matter), the best checkpoint predicts the
cord (and GM) on **every** anatomical
image (each session or run, each contrast) of the held-out subjects — or of every subject of
``--precision-data DIR``, a data set held out by construction (e.g. a phantom cohort with
``--sessions``) — on its native grid (:func:`evaluation.inference.predict_class_mask`), and the mask
is measured per level C2–C5 and pooled (:mod:`analysis.image_areas`) beside the image's reference
mask measured the same way (:mod:`leaderboard.precision_images`). The table is cached per trial as
``precision.csv`` (reused while newer than the checkpoint and measured on the same data folder).
External entries (``--external NAME=OUT``, ``cordbench score``) bring their own ``precision.csv``.

Per entry, an image's value is the mean over the entry's trials that measured it (as the Dice
column pools seeds); then :mod:`leaderboard.precision_stats` gives ``cov_contrast``,
``cov_session``, ``icc_session``, ``cov_site`` and the Bland–Altman ``ba_*`` with subject-bootstrap
CIs, and :mod:`leaderboard.precision_compare` the paired comparison with the best entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.image_areas import AREA_KEYS, POOLED
from core.errors import ConfigError, CordbenchError, InputError
from leaderboard import precision_images as pim
from leaderboard.precision_stats import METRICS, column_name, measurement, precision

CACHE = "precision.csv"  # a trial's (or external entry's) per-image areas
#: task -> (mask kind, the model's class) measured: the cord, and the grey matter when the task segments it
KINDS = {"sc": (("SC", "sc"),), "gm": (("SC", "sc"), ("GM", "gm"))}


@dataclass
class PrecisionSummary:
    """What the reports show about precision."""

    enabled: bool
    reason: str = ""
    columns: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per entry (merged into the table)
    images: pd.DataFrame = field(default_factory=pd.DataFrame)  # entry × image pooled areas
    notes: list[str] = field(default_factory=list)
    root: str = ""


def _root_and_subjects(trial_dir: Path, data: Path | None) -> tuple[Path, set[str] | None]:
    """The data folder measured and the participants to measure (None: all of ``data``)."""
    from leaderboard.morphometrics import data_root, test_subjects

    if data is not None:
        return data, None
    held = {s.split("_ses-")[0] for s in test_subjects(trial_dir)}
    return data_root(trial_dir), held


def _images(root: Path, subjects: set[str] | None) -> list[pim.PrecisionImage]:
    return [im for im in _indexed(str(root.resolve())) if subjects is None or im.subject in subjects]


_INDEX: dict[str, list[pim.PrecisionImage]] = {}


def _indexed(root: str) -> list[pim.PrecisionImage]:
    if root not in _INDEX:
        _INDEX[root] = pim.index_images(root)
    return _INDEX[root]


def repeated(images: list[pim.PrecisionImage]) -> bool:
    """Whether the images hold a subject measured more than once (contrasts or sessions)."""
    seen: dict[str, set[tuple[str, str]]] = {}
    for im in images:
        seen.setdefault(im.subject, set()).add((im.session, im.contrast))
    return any(len(v) > 1 for v in seen.values())


def read_cache(path: Path) -> pd.DataFrame:
    """A ``precision.csv``."""
    df = pd.read_csv(path, dtype={"subject": str, "session": str, "contrast": str, "image": str}, keep_default_na=False)
    for k in AREA_KEYS:
        for c in (k, f"ref_{k}"):
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def _fresh(trial_dir: Path, root: Path) -> bool:
    from runs.run_folder import BEST_CKPT

    csv, ckpt = trial_dir / CACHE, trial_dir / BEST_CKPT
    if not csv.exists() or not ckpt.exists() or csv.stat().st_mtime < ckpt.stat().st_mtime:
        return False
    try:
        head = pd.read_csv(csv, nrows=1, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError):
        return False
    return list(head.columns) == [*pim.COLUMNS, "data_root"] and (
        head.empty or str(head["data_root"].iloc[0]) == str(root.resolve())
    )


def trial_precision(
    trial_dir: Path, data: Path | None, refresh: bool = False, log: Callable[[str], None] | None = None
) -> tuple[pd.DataFrame | None, str]:
    """``(per-image table, "")`` of one trial (computed or cached), or ``(None, reason)``."""
    from core import io
    from leaderboard.morphometrics import _describe, trial_config, trial_task
    from runs.checkpoints import load_module
    from runs.run_folder import BEST_CKPT

    try:
        task = trial_task(trial_config(trial_dir))
        if task not in KINDS:
            return None, f"task {task}: cord masks needed (task sc or gm)"
        root, subjects = _root_and_subjects(trial_dir, data)
        if not refresh and _fresh(trial_dir, root):
            return read_cache(trial_dir / CACHE), ""
        if not (trial_dir / BEST_CKPT).exists():
            return None, f"no checkpoint ({BEST_CKPT} missing)"
        images = _images(root, subjects)
        if not images:
            return None, f"no anatomical image of the held-out subjects in {root}"
        module = load_module(trial_dir / BEST_CKPT, expect={"task": task})
    except CordbenchError as exc:
        return None, str(exc)
    except Exception as exc:  # one broken trial must not sink the leaderboard: reported with the reason
        return None, _describe(exc)
    if log is not None:
        log(f"precision of trial {trial_dir.name}: {len(images)} image(s)")
    from core.io import load_nifti
    from evaluation.inference import predict_class_masks

    rows = []
    for im in images:
        try:
            masks = predict_class_masks(module, im.path, tuple(cls for _, cls in KINDS[task]))
            affine = np.asarray(load_nifti(im.path, ndim=3).affine, float)
            rows += [pim.measure(im, masks[cls], affine, kind) for kind, cls in KINDS[task]]
        except Exception as exc:  # recorded in precision.csv and listed under Method, never dropped silently
            why = str(exc) if isinstance(exc, CordbenchError) else _describe(exc)
            rows.append({"subject": im.subject, "session": im.session, "contrast": im.contrast, "note": why})
    df = pd.DataFrame(rows, columns=pim.COLUMNS).assign(data_root=str(root.resolve()))
    io.write_csv(trial_dir / CACHE, df)
    return read_cache(trial_dir / CACHE), ""


def pooled_images(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Image × kind table of one entry: areas averaged over its trials (references are the same)."""
    long = pd.concat(frames, ignore_index=True)
    keys = ["subject", "session", "contrast", "kind", "scope"]
    cols = [*AREA_KEYS, *(f"ref_{k}" for k in AREA_KEYS)]
    long = long[long["kind"].astype(str) != ""]
    return long.groupby(keys, dropna=False)[cols].mean().reset_index()


def entry_columns(
    entry: str, images: pd.DataFrame, sites: pd.Series, n_boot: int, seed: int
) -> tuple[dict[str, Any], dict[str, dict]]:
    """One entry's precision columns and its pooled-area estimates (for the paired comparisons)."""
    col: dict[str, Any] = {"entry": entry, "precision_n_subjects": int(images["subject"].nunique())}
    pooled: dict[str, dict] = {}
    for kind in sorted(set(images["kind"])):
        for key in AREA_KEYS:
            rows = measurement(images, key, kind)
            if not np.isfinite(rows["value"].to_numpy(float)).any():
                continue
            est = precision(rows, sites, n_boot, seed)
            if key == POOLED:
                pooled[kind] = est
            for m in METRICS:
                name = column_name(m, key, kind)
                col.update({name: est[m].value, f"{name}_ci_low": est[m].ci_low, f"{name}_ci_high": est[m].ci_high})
    return col, pooled


def entry_precision(
    sweep: Any,
    trials: pd.DataFrame,
    enabled: bool | None = None,
    data: str | Path | None = None,
    n_boot: int = 10000,
    seed: int = 0,
    alpha: float = 0.05,
    refresh: bool = False,
    log: Callable[[str], None] | None = None,
) -> PrecisionSummary:
    """Precision columns of each entry of ``trials`` (results rows with ``entry``; externals have ``external``)."""
    from leaderboard.precision_compare import compare_with_best

    if enabled is False:
        return PrecisionSummary(False, "disabled (--no-precision)")
    data_dir = Path(data) if data is not None else None
    if data_dir is not None and not data_dir.is_dir():
        raise InputError("--precision-data folder not found", data_dir)
    dirs = {str(r["trial_id"]): sweep.trial_dir(r) for _, r in trials.iterrows()}
    ext = {str(r["trial_id"]) for _, r in trials.iterrows() if _is_external(r)}
    root = data_dir
    if root is None:
        for tid, d in dirs.items():
            if tid in ext:
                continue
            try:
                root = _root_and_subjects(d, None)[0]
                break
            except CordbenchError:
                continue
    if root is None:
        if enabled:
            raise ConfigError("--precision: no trial names its data folder; give one with --precision-data DIR")
        return PrecisionSummary(False, "off: no trial names its data folder")
    if enabled is None and not repeated(_images(root, None)):
        return PrecisionSummary(False, f"off: {root} has one image per subject (one contrast, one session)")
    out = PrecisionSummary(True, root=str(root))
    frames: dict[str, pd.DataFrame] = {}
    held: set[str] = set()
    for tid, d in dirs.items():
        if tid not in ext and data_dir is None:
            try:
                held |= _root_and_subjects(d, None)[1] or set()
            except CordbenchError:
                pass
    for tid, d in dirs.items():
        if tid in ext:  # `cordbench score` measured every mask; the sweep's held-out subjects only count
            path = d / CACHE
            df, why = (read_cache(path), "") if path.is_file() else (None, f"no {CACHE} in {d}")
            if df is not None and data_dir is None:
                df = df[df["subject"].isin(held)]
        else:
            df, why = trial_precision(d, data_dir, refresh=refresh, log=log)
        if df is None:
            out.notes.append(f"trial {tid}: no precision ({why})")
        else:
            frames[tid] = df
            for _, r in df[df["note"].astype(str) != ""].iterrows():
                out.notes.append(f"trial {tid}, {r['subject']} {r['session']} {r['contrast']}: {r['note']}")
    sites = pd.Series(pim.participants_sites(root), dtype=object)
    cols, pooled, per_entry = [], {}, []
    for entry, grp in trials.groupby("entry", sort=False):
        fs = [frames[str(t)] for t in grp["trial_id"] if str(t) in frames]
        if not fs:
            cols.append({"entry": entry, "precision_note": "no trial measured"})
            continue
        images = pooled_images(fs)
        if images.empty:
            cols.append({"entry": entry, "precision_note": "no image measured"})
            continue
        mixed = sorted(s for s, n in images.groupby("subject")["scope"].nunique().items() if n > 1)
        if mixed:
            out.notes.append(
                f"{entry}: the pooled area of {', '.join(mixed[:5])} mixes images with a level map (C2-C5 slices) "
                "and without one (all slices): its CoV compares different cord extents"
            )
        col, pooled[entry] = entry_columns(str(entry), images, sites, n_boot, seed)
        cols.append(col)
        per_entry.append(images.assign(entry=entry))
    out.columns = pd.DataFrame(cols)
    out.images = pd.concat(per_entry, ignore_index=True) if per_entry else pd.DataFrame()
    if len(per_entry) > 1:
        cmp = compare_with_best(out.images, sites, n_boot=n_boot, seed=seed, alpha=alpha)
        out.columns = out.columns.merge(cmp, on="entry", how="left")
    if "precision_n_subjects" not in out.columns:
        out.enabled, out.reason = False, "no entry measured: " + ("; ".join(out.notes[:3]) or "no image")
    return out


def _is_external(row: pd.Series) -> bool:
    v = row.get("external")
    return isinstance(v, str) and bool(v)


__all__ = ["PrecisionSummary", "entry_precision", "trial_precision", "CACHE", "column_name"]
