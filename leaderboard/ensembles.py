"""Ensemble rows and soft-mask CSA columns of the leaderboard (``--ensembles``, ``--soft-csa``).

**``--ensembles``**: for every entry with at least two ranked trials (seeds, folds), an
``<entry> (ensemble)`` row: the trials' best checkpoints combined by :func:`evaluation.ensemble.predict_image`
(mean of class probabilities — what ``cordbench predict --ckpt A --ckpt B`` writes) on the held-out
subjects *every* trial of the entry tested, each scored on its native grid
(:func:`evaluation.scoring.score_native`) into the ranked column. The row joins the ranking with the
same paired statistics as every entry (bootstrap CI over subjects, Wilcoxon vs the best, Holm). With
the morphometric columns on, its CSA error is measured as the trials' (``leaderboard.morphometrics``).

**``--soft-csa``** (task ``sc``): the CSA error columns measured from the model's *soft* cord
probability (partial volume, :mod:`analysis.morphometrics` detects a soft mask) beside the thresholded
mask's: ``csa_soft_mae_pct`` / ``csa_soft_bias_pct`` (+ 95 % bootstrap CIs) per entry — each trial
alone for a plain entry (pooled over its trials as the other columns), the combined probability for an
ensemble row. The soft map is the class probability restricted to the predicted (post-processed) mask
dilated by one voxel (26-neighbourhood): partial volume lives at the mask's border, and the network's
far-field probabilities (typically 1e-4) would otherwise add up to whole voxels per slice. The
comparison is against the same manual reference as the thresholded column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import CordbenchError
from data_modules.contrasts import measured

SUFFIX = " (ensemble)"
SOFT_COLUMNS = ("csa_soft_mae_pct", "csa_soft_mae_ci_low", "csa_soft_mae_ci_high", "csa_soft_bias_pct")


@dataclass
class EnsembleSummary:
    """What the ensembles add to a leaderboard."""

    long: pd.DataFrame  # rows in build_leaderboard's ``long`` format for the ensemble entries
    base: dict[str, str] = field(default_factory=dict)  # ensemble entry -> its entry
    morpho: dict[str, list[pd.DataFrame]] = field(default_factory=dict)  # entry -> thresholded CSA frames
    soft: dict[str, list[pd.DataFrame]] = field(default_factory=dict)  # entry -> soft CSA frames
    notes: list[str] = field(default_factory=list)


def soft_map(probs: np.ndarray, labels: np.ndarray, values: list[int]) -> np.ndarray:
    """The class probability (sum over ``values``) inside the predicted mask dilated by one voxel; 0 elsewhere."""
    from scipy import ndimage

    p = np.clip(probs[list(values)].sum(0), 0.0, 1.0).astype(np.float32)
    near = ndimage.binary_dilation(labels > 0, structure=np.ones((3, 3, 3), bool))
    return np.where(near, p, 0.0).astype(np.float32)


def _data_module(trial_dir: Path):
    """The trial's data module (indexed, not loaded), its data root and config."""
    from data_modules.registry import build_datamodule
    from leaderboard.morphometrics import data_root, trial_config

    cfg = trial_config(trial_dir)
    root = data_root(trial_dir, cfg)
    data = {**cfg["data"], "root": str(root)}
    return build_datamodule(data), root, cfg


def _measure(members: list[Any], subjects: list[str], dm: Any, root: Path, contrast: str, how: dict[str, Any]):
    """Per subject: the record (ranked column) and the thresholded / soft CSA comparisons of the ensemble."""
    from analysis.manual_reference import manual_reference
    from evaluation.ensemble import predict_image
    from evaluation.scoring import score_native
    from leaderboard.morphometrics import compare_subject

    values, hard, soft = [], [], []
    classes = {k: list(v) for k, v in dm.class_map.items()}
    for sub in subjects:
        pred, scored = None, None
        if how["column"] is not None:
            img, targets = dm.native_targets(sub)
            aff = np.asarray(img.affine)
            data = np.asanyarray(img.dataobj).astype(np.float32)
            pred = predict_image(members, data, aff, with_maps=how["soft"])
            scored = img.get_filename()
            values.append((sub, score_native(pred.labels, aff, targets, sub, classes).get(how["column"], np.nan)))
        if how["morpho"] or how["soft"]:
            import nibabel as nib

            ref = manual_reference(str(root.resolve()), sub, contrast)
            if pred is None or scored is None or Path(scored).resolve() != Path(ref.image).resolve():
                img = nib.load(str(ref.image))  # the image the manual reference measures, if not the scored one
                data = np.asanyarray(img.dataobj).astype(np.float32)
                pred = predict_image(members, data, np.asarray(img.affine), with_maps=how["soft"])
            cord = np.isin(pred.labels, classes.get("sc", [1]))
            if how["morpho"]:
                hard.append(compare_subject(ref, cord))
            if how["soft"]:
                soft.append(compare_subject(ref, soft_map(pred.probs, cord, classes.get("sc", [1]))))
    return values, hard, soft


def entry_ensembles(
    sweep: Any,
    trials: pd.DataFrame,
    column: str,
    knobs: list[str],
    ensembles: bool = True,
    morpho: bool = False,
    soft_csa: bool = False,
    log: Callable[[str], None] | None = None,
) -> EnsembleSummary:
    """The ensemble rows (``ensembles``) and the soft CSA frames (``soft_csa``) of every entry of ``trials``."""
    from leaderboard.morphometrics import CHECKPOINT, test_subjects
    from runs.ensemble_eval import load_members

    out = EnsembleSummary(pd.DataFrame())
    rows = []
    for entry, grp in trials.groupby("entry", sort=False):
        dirs = [sweep.trial_dir(r) for _, r in grp.iterrows()]
        try:
            dm, root, cfg = _data_module(dirs[0])
            contrast = measured(cfg["data"].get("contrast"))
            if soft_csa:  # every trial alone: its soft CSA
                for d in dirs:
                    member = load_members([d / CHECKPOINT])
                    subs = test_subjects(d)
                    how = {"column": None, "morpho": False, "soft": True}
                    out.soft.setdefault(str(entry), []).extend(_measure(member, subs, dm, root, contrast, how)[2])
            if not ensembles or len(dirs) < 2:
                continue
            members = load_members([d / CHECKPOINT for d in dirs])
            shared = [s for s in test_subjects(dirs[0]) if all(s in test_subjects(d) for d in dirs[1:])]
            if not shared:
                out.notes.append(f"{entry}{SUFFIX}: its trials share no held-out subject")
                continue
            if log is not None:
                log(f"ensemble of {len(members)} trial(s) of {entry}: {len(shared)} shared held-out subject(s)")
            how = {"column": column, "morpho": morpho, "soft": soft_csa}
            values, hard, soft = _measure(members, shared, dm, root, contrast, how)
        except CordbenchError as exc:
            out.notes.append(f"{entry}{SUFFIX}: not built ({exc})")
            continue
        name = f"{entry}{SUFFIX}"
        out.base[name] = str(entry)
        first = grp.iloc[0]
        for sub, value in values:
            rows.append(
                {
                    "entry": name,
                    "trial_id": name,
                    "model": first["model"],
                    "seed": None,
                    "subject": sub,
                    "value": float(value),
                    **{k: None for k in knobs},
                }
            )
        if hard:
            out.morpho[name] = [pd.concat(hard, ignore_index=True)]
        if soft:
            out.soft[name] = [pd.concat(soft, ignore_index=True)]
    out.long = pd.DataFrame(rows, columns=["entry", "trial_id", "model", "seed", "subject", "value", *knobs])
    return out


def morpho_columns(
    frames: dict[str, list[pd.DataFrame]], n_boot: int, seed: int, prefix: str = "csa"
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """One row per entry with the columns of :func:`leaderboard.morpho_pool.summarise_entry` (the CSA errors and
    the FA vs SAC/CSA correlation), and its per-level rows. ``prefix`` ``csa_soft`` keeps only the CSA error
    columns, renamed for the soft masks (and no level rows)."""
    from leaderboard.morpho_pool import correlation_reason, summarise_entry

    cols, levels = [], []
    for entry, fs in frames.items():
        usable = [f for f in fs if f["VertLevel"].notna().any()]
        if not usable:
            continue
        col, lv, ps = summarise_entry(entry, usable, n_boot, seed)
        if prefix == "csa":
            col["fa_note"] = correlation_reason(ps, usable) if not np.isfinite(col["r_model"]) else ""
            cols.append(col)
            levels += lv
            continue
        keep = {k: v for k, v in col.items() if k == "entry" or k.startswith("csa_")}
        cols.append({k.replace("csa_", f"{prefix}_", 1) if k != "entry" else k: v for k, v in keep.items()})
    return pd.DataFrame(cols), levels


def soft_table(table: pd.DataFrame) -> tuple[str, list[str], list[list[str]]]:
    """(title, headers, rows) of the soft vs thresholded CSA error table of the reports."""

    def cell(r: pd.Series, key: str) -> str:
        v = r.get(key, np.nan)
        if v is None or not np.isfinite(float(v)):
            return "n/a"
        lo, hi = r.get(key.replace("_pct", "_ci_low")), r.get(key.replace("_pct", "_ci_high"))
        ci = f" [{float(lo):.2f}, {float(hi):.2f}]" if lo is not None and np.isfinite(float(lo)) else ""
        return f"{float(v):.2f}{ci}"

    heads = ["entry", "thresholded CSA |err| %", "soft CSA |err| %", "thresholded bias %", "soft bias %"]
    rows = [
        [
            str(r["entry"]),
            cell(r, "csa_mae_pct"),
            cell(r, "csa_soft_mae_pct"),
            cell(r, "csa_bias_pct"),
            cell(r, "csa_soft_bias_pct"),
        ]
        for _, r in table.iterrows()
    ]
    return "Soft (partial-volume) vs thresholded CSA error", heads, rows


def add_columns(ens: EnsembleSummary, morpho: Any, n_boot: int, seed: int) -> Any:
    """``morpho`` (a :class:`~leaderboard.morpho_pool.MorphoSummary`) with the ensemble rows' CSA columns
    and every entry's soft CSA columns added."""
    if not morpho.enabled:
        return morpho
    extra, levels = morpho_columns(ens.morpho, n_boot, seed)
    cols = pd.concat([morpho.columns, extra], ignore_index=True) if len(extra) else morpho.columns
    if levels:
        morpho.levels = pd.concat([morpho.levels, pd.DataFrame(levels)], ignore_index=True)
    soft, _ = morpho_columns(ens.soft, n_boot, seed, prefix="csa_soft")
    if len(soft):
        cols = cols.merge(soft, on="entry", how="left")
    morpho.columns = cols
    morpho.notes += ens.notes
    return morpho


def notes(lb: Any) -> list[str]:
    """Method lines of the reports for the ensemble rows and the soft CSA columns."""
    out = []
    ens = lb.meta.get("ensembles")
    if isinstance(ens, dict):
        out.append(
            f"Ensembles: {len(ens['entries'])} '<entry>{SUFFIX}' row(s); the entry's trials' best checkpoints "
            "combined as `cordbench predict --ckpt A --ckpt B` combines them (mean of class probabilities, "
            "evaluation/ensemble.py) on the held-out subjects every trial tested, then ranked like any entry "
            "('trials' = its members; no seed spread)."
            + (f" Not built: {'; '.join(ens['notes'])}." if ens["notes"] else "")
        )
    if lb.meta.get("soft_csa"):
        out.append(
            "Soft CSA: the cord probability measured as a partial-volume mask (SCT's soft-mask CSA), restricted to "
            "the predicted mask dilated by one voxel; each trial alone for an entry, the combined probability for an "
            "ensemble row; same manual reference as the thresholded columns."
        )
    return out
