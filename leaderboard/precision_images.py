"""The images of a BIDS data set that the precision columns measure, and one image's measurement.

Every existing anatomical image (``anat/``) counts: a subject's sessions (``ses-``) — or, without
sessions, its runs (``run-`` entity: scan–rescan within a session, as the GM imaging challenge's
``run-1``/``run-2``) — and its contrasts (the BIDS suffix chain without the run entity). Its
reference is its own cord mask (``label-SC_seg``/``seg-manual``, the phantom's exact truth mask) and
its level map ``label-SC_desc-levels_dseg`` (else none: pooled over all slices,
:mod:`analysis.image_areas`). One row per image and mask kind is what ``precision.csv`` holds
(:data:`COLUMNS`), for a trial (its best checkpoint's masks) or an external entry (``cordbench score``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from analysis.image_areas import AREA_KEYS

COLUMNS = [
    "subject",
    "session",
    "contrast",
    "image",
    "kind",
    "scope",
    "n_slices",
    *AREA_KEYS,
    *(f"ref_{k}" for k in AREA_KEYS),
    "note",
]
_RUN = re.compile(r"(?:^|_)(run-[A-Za-z0-9]+)(?=_)")


@dataclass(frozen=True)
class PrecisionImage:
    """One anatomical image of a subject and its reference files."""

    subject: str  # sub-X
    session: str  # ses-YY, run-N, or "" (one acquisition)
    contrast: str  # T2w, T2star, T2starw, ...
    path: Path
    stem: str
    cord: Path | None  # reference cord mask
    levels: Path | None  # vertebral level map on the image's grid
    gm: Path | None = None  # reference GM mask

    @property
    def sid(self) -> str:
        """The data modules' subject id of the image (``sub-X`` or ``sub-X_ses-YY``)."""
        return self.subject if not self.session.startswith("ses-") else f"{self.subject}_{self.session}"


def split_run(subject: str, session: str | None, contrast: str) -> tuple[str, str]:
    """``(session, contrast)``: the BIDS session, else the ``run-`` entity of the contrast chain."""
    m = _RUN.search(contrast + "_")
    run = m.group(1) if m else ""
    bare = _RUN.sub("", contrast + "_").strip("_") if m else contrast
    return (session or run or ""), bare


def index_images(root: str | Path) -> list[PrecisionImage]:
    """Every existing ``anat`` image of the BIDS tree ``root`` with its reference files."""
    from data_modules.bids import BidsIndex

    out = []
    for rec in BidsIndex.from_dir(Path(root), strict=False, softseg_glob=None).images:
        if not rec.exists or rec.datatype != "anat":
            continue
        session, contrast = split_run(rec.subject, rec.session, rec.contrast)
        cord = rec.label("SC", suffix="seg")
        levels = rec.label("SC", desc="levels", suffix="dseg")
        gm = rec.label("GM", suffix="seg")
        out.append(
            PrecisionImage(
                rec.subject,
                session,
                contrast,
                rec.path,
                rec.stem,
                cord.path if cord else None,
                levels.path if levels else None,
                gm.path if gm else None,
            )
        )
    return out


def participants_sites(root: str | Path) -> dict[str, str]:
    """Subject → site (participants.tsv ``institution_id``, else ``site``); {} when unknown."""
    from data_modules.bids import read_participants

    tsv = Path(root) / "participants.tsv"
    if not tsv.is_file():
        return {}
    df = read_participants(tsv, required=False)
    if df is None:
        return {}
    col = next((c for c in ("institution_id", "site") if c in df.columns), None)
    if col is None:
        return {}
    return {str(r["participant_id"]): str(r[col]) for _, r in df.iterrows() if isinstance(r[col], str) and r[col]}


@lru_cache(maxsize=4096)
def reference_areas(mask: Path | None, levels: Path | None) -> dict[str, Any]:
    """Areas of a reference mask (memoised: shared by every entry)."""
    from analysis.image_areas import file_areas

    if mask is None:
        return {k: np.nan for k in AREA_KEYS}
    return file_areas(mask, levels)


def load_levels(im: PrecisionImage):
    """The image's level map array (None without one)."""
    if im.levels is None:
        return None
    from core.io import load_label

    return load_label(im.levels, kind="vertebral levels")[1]


def measure(im: PrecisionImage, mask: np.ndarray, affine: np.ndarray, kind: str = "SC") -> dict[str, Any]:
    """One ``precision.csv`` row: the areas of ``mask`` (on the image's grid) beside the reference's."""
    from analysis.image_areas import mask_areas
    from core.errors import InputError

    shape = tuple(np.asarray(mask).shape[:3])
    levels = load_levels(im)
    if levels is not None and levels.shape[:3] != shape:
        raise InputError(f"mask shape {shape} != level map shape {levels.shape[:3]}", im.levels)
    areas = mask_areas(mask, affine, levels)
    ref_path = im.cord if kind == "SC" else im.gm
    ref = reference_areas(ref_path, im.levels)
    row = {
        "subject": im.subject,
        "session": im.session,
        "contrast": im.contrast,
        "image": im.stem,
        "kind": kind,
        "scope": areas["scope"],
        "n_slices": areas["n_slices"],
        **{k: areas[k] for k in AREA_KEYS},
        **{f"ref_{k}": ref[k] for k in AREA_KEYS},
        "note": "" if ref_path is not None else "no reference mask",
    }
    return row


def clear_caches() -> None:
    """Forget memoised reference measurements."""
    reference_areas.cache_clear()
