"""Any tool's masks as a leaderboard entry: ``cordbench score PRED --ref ROOT -o OUT``.

``PRED`` is a folder of predicted cord (and GM) masks: BIDS derivatives in spine-generic naming
(``derivatives/<tool>/sub-X[/ses-Y]/anat/sub-X[_ses-Y]_<contrast>_label-SC_seg.nii.gz``; the old
``_seg-manual`` / SCT's ``_seg`` names too; ``label-GM_seg`` / ``_gmseg-manual`` for GM) or a flat folder
of such files: a mask pairs with the image of ``ROOT`` whose file stem its name starts with, wherever
it lies. Every mask is checked against its image's grid. ``OUT`` then holds what a trial's run folder
holds for the leaderboard, computed exactly as ``cordbench test`` / the leaderboard compute them:

* ``test_metrics.csv`` — one row per image of ``--contrast`` with a reference mask: the cord's
  ``sc/<metric>`` of :func:`evaluation.scoring.class_metrics` (native grid, IRP orientation, native
  spacing — what ``cordbench test`` and ``test --real`` score); ``subject`` is the data modules' id
  (``sub-X``, ``sub-X_ses-Y``; ``sub-X_run-N`` for runs);
* ``test_summary.json`` — post-processing ``as given`` (the masks are scored as the tool wrote them),
  the folders, the masks found, the images without a reference (measured for precision only);
* ``morphometrics.csv`` — :func:`leaderboard.morphometrics.compare_subject` per scored subject;
* ``precision.csv`` — every mask's areas (:mod:`leaderboard.precision_images`);
* ``external.json`` — the marker the leaderboard reads (``--external NAME=OUT``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import ConfigError, InputError
from leaderboard import precision_images as pim
from runs.run_folder import EXTERNAL, RunFolder

_NIFTI = re.compile(r"^(?P<stem>[^.]+)\.(?:nii\.gz|nii)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def mask_kind(deriv: str) -> str | None:
    """``SC`` / ``GM`` for a mask name after its image stem (``label-SC_seg``, ``seg-manual``, ``seg``, …)."""
    from data_modules.bids import parse_derivative

    if deriv in ("seg", "label-SC_mask"):
        return "SC"
    if deriv in ("gmseg", "gmseg_manual"):
        return "GM"
    parsed = parse_derivative(deriv)
    if parsed is None:
        return None
    label, suffix = parsed[0], parsed[1]
    return label if label in ("SC", "GM") and suffix in ("seg", "mask") else None


@dataclass
class Pairing:
    """The masks of ``PRED`` paired with ``ROOT``'s images."""

    masks: list[tuple[pim.PrecisionImage, str, Path]] = field(default_factory=list)  # (image, kind, mask)


def pair_masks(pred: Path, images: list[pim.PrecisionImage]) -> Pairing:
    """Pair every NIfTI of ``pred`` with its image (longest matching stem); one line naming a bad file."""
    files = sorted(p for p in pred.rglob("*") if p.is_file() and _NIFTI.match(p.name))
    if not files:
        raise InputError("no NIfTI mask in the predictions folder (empty?)", pred)
    by_stem = {im.stem: im for im in images}
    out = Pairing()
    seen: dict[tuple[str, str], Path] = {}
    for f in files:
        stem = _NIFTI.match(f.name).group("stem")
        owners = sorted((s for s in by_stem if stem.startswith(s + "_")), key=len, reverse=True)
        if not owners:
            raise InputError("no image of the reference folder has this mask's name stem (missing image?)", f)
        kind = mask_kind(stem[len(owners[0]) + 1 :])
        if kind is None:
            raise InputError(f"not a cord or GM mask name after the image stem {owners[0]!r}", f)
        key = (owners[0], kind)
        if key in seen:
            raise InputError(f"a second {kind} mask for {owners[0]} (also {seen[key]})", f)
        seen[key] = f
        out.masks.append((by_stem[owners[0]], kind, f))
    return out


def _score_id(im: pim.PrecisionImage) -> str:
    return f"{im.subject}_{im.session}" if im.session else im.subject


def score_folder(
    pred: str | Path,
    ref: str | Path,
    out: str | Path,
    contrast: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score the masks of ``pred`` against ``ref`` into ``out`` (see the module docstring); the summary."""
    from core import io
    from evaluation.scoring import class_metrics
    from leaderboard.morphometrics import CACHE_COLUMNS, _failed_row, compare_subject
    from leaderboard.precision import CACHE

    pred, ref, out = Path(pred), Path(ref), Path(out)
    if not pred.is_dir():
        raise InputError("predictions folder not found", pred)
    if not ref.is_dir() or not any(p.is_dir() for p in ref.glob("sub-*")):
        raise InputError("reference folder is not a BIDS data set (no sub-*/ folder)", ref)
    images = pim.index_images(ref)
    pairing = pair_masks(pred, images)
    labelled = sorted({im.contrast for im, kind, _ in pairing.masks if kind == "SC" and im.cord is not None})
    if not labelled:
        first = pairing.masks[0][2]
        raise InputError(
            "no predicted cord mask has a reference cord mask in the reference folder (missing label)", first
        )
    contrast = contrast or ("T2w" if "T2w" in labelled else labelled[0])
    if contrast not in labelled:
        raise ConfigError(f"--contrast {contrast!r}: no predicted cord mask of it has a reference; scored: {labelled}")
    records, morpho, precision, unlabelled = [], [], [], []
    for im, kind, path in pairing.masks:
        img = io.load_nifti(im.path, ndim=3, kind=f"{im.contrast} image")
        mask_img, mask = io.load_label(path, kind=f"predicted {kind} mask")
        io.check_same_grid(img, mask_img, im.path, path)
        affine = np.asarray(img.affine, float)
        precision.append(pim.measure(im, mask > 0, affine, kind))
        if kind != "SC":
            continue
        if im.cord is None:
            unlabelled.append(path.relative_to(pred).as_posix())
            continue
        if im.contrast != contrast:
            continue
        _, target = io.load_label(im.cord, kind="reference cord mask")
        records.append({"subject": _score_id(im), **class_metrics(mask > 0, target > 0, affine, "sc")})
        try:
            from analysis.manual_reference import manual_reference

            morpho.append(compare_subject(manual_reference(str(ref.resolve()), im.sid, contrast), mask > 0))
        except InputError as exc:
            morpho.append(_failed_row(_score_id(im), str(exc)))
        if log is not None:
            log(f"scored {path.name}")
    summary = {
        "postprocess": "as given",
        "scoring": "native",
        "predictions": str(pred.resolve()),
        "reference": str(ref.resolve()),
        "contrast": contrast,
        "n_subjects": len(records),
        "masks": len(pairing.masks),
        "unlabelled": unlabelled,
    }
    run = RunFolder(out)
    out.mkdir(parents=True, exist_ok=True)
    run.write_test_outputs(records, summary)
    if morpho:
        run.write_morphometrics(pd.concat(morpho, ignore_index=True)[CACHE_COLUMNS])
    io.write_csv(out / CACHE, pd.DataFrame(precision, columns=pim.COLUMNS).assign(data_root=str(ref.resolve())))
    io.write_json(out / EXTERNAL, {"name": "cordbench score", **summary})
    return summary


# ------------------------------------------------------------------------------- leaderboard side
def parse_external(spec: str) -> tuple[str, Path]:
    """``NAME=OUT`` of ``--external``; OUT must be a ``cordbench score`` folder."""
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise ConfigError(f"--external takes NAME=FOLDER, got {spec!r}")
    if not _NAME.match(name):
        raise ConfigError(f"--external name {name!r}: letters, digits and _.+- only")
    folder = Path(path)
    if not (folder / EXTERNAL).is_file():
        raise InputError(f"not a `cordbench score` output folder ({EXTERNAL} missing)", folder)
    return name, folder


def external_rows(results: pd.DataFrame, externals: dict[str, Path]) -> pd.DataFrame:
    """``results.csv``-like rows of the external entries (``trial_id`` ``external:NAME``, ``run_dir`` OUT)."""
    rows = []
    taken = set(results["model"].astype(str))
    for name, folder in externals.items():
        if name in taken:
            raise ConfigError(f"--external name {name!r} is also a model of the sweep; choose another")
        row: dict[str, Any] = {c: math.nan for c in results.columns}
        row.update({"trial_id": f"external:{name}", "model": name, "status": "ok", "run_dir": str(folder.resolve())})
        for c in ("task", "data"):
            if c in results.columns:
                vals = results[c].dropna().astype(str).unique()
                row[c] = vals[0] if len(vals) == 1 else math.nan
        row["external"] = name
        rows.append(row)
    return pd.DataFrame(rows)


def missing_subjects(long: pd.DataFrame, externals: dict[str, Path]) -> list[str]:
    """One line per external entry missing some of the subjects the sweep's trials tested."""
    ext_ids = {f"external:{n}" for n in externals}
    held = set(long.loc[~long["trial_id"].isin(ext_ids), "subject"])
    lines = []
    for name in externals:
        have = set(long.loc[long["trial_id"] == f"external:{name}", "subject"])
        miss = sorted(held - have)
        if miss:
            lines.append(
                f"external {name}: {len(miss)} held-out subject(s) without a mask ({', '.join(miss[:10])}"
                + (", …" if len(miss) > 10 else "")
                + "); paired tests use the subjects in common"
            )
    return lines
