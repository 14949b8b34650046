"""Spinal Cord Grey Matter Segmentation Challenge 2016: indexing, rater fusion, task targets.

The Lightning data module (``data.name: gmchallenge``) is :mod:`data_modules.gmchallenge_dm`.

Two layouts are read:

- original (challenge download, often in ``train/`` and ``test/`` folders):
  ``site{1-4}-sc{01-20}-image.nii.gz``, ``-mask-r{1-4}.nii.gz`` (one image per rater holding
  GM = 1 and WM = 2; SC = GM ∪ WM) and ``-levels.txt``; ``sc11``–``sc20`` have images only;
- curated BIDS (``curate_gmsegchallenge2016.py``): ``sub-<site><NNN>/anat/sub-<site><NNN>_T2star.nii.gz``
  and ``derivatives/labels/sub-<site><NNN>/anat/sub-<site><NNN>_T2star_label-{SC,GM,WM}_desc-manual_mask{N}``
  (sites ucl, epm, uhz, vdb = site1..site4). The curation script as published forgets the ``_``
  before ``T2star`` in label names; both spellings are accepted.

Rater fusion (:func:`fuse_raters`): ``majority`` (plurality vote, see its docstring for ties),
``staple`` (SimpleITK's STAPLE / multi-label STAPLE) or ``random`` (one rater drawn per sample,
as ivadomed does).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core import io
from core.errors import ConfigError, InputError
from core.paths import require_dir

SITES = {"site1": "ucl", "site2": "epm", "site3": "uhz", "site4": "vdb"}
BIDS_TO_SITE = {v: k for k, v in SITES.items()}
GM, WM = 1, 2  # challenge encoding inside a -mask-rN file
RATER_MODES = ("majority", "staple", "random")

_ORIG = re.compile(
    r"^(?P<site>site[1-9])-sc(?P<n>\d{2})-(?:(?P<image>image)|mask-r(?P<rater>\d+)|(?P<levels>levels))"
    r"\.(?P<ext>nii\.gz|nii|txt)$"
)
_BIDS_IMG = re.compile(r"^(?P<sub>sub-(?P<site>[a-z]+)(?P<n>\d{3}))_T2star\.(?P<ext>nii\.gz|nii)$")
_BIDS_LBL = re.compile(
    r"^(?P<sub>sub-(?P<site>[a-z]+)(?P<n>\d{3}))_?T2star_label-(?P<label>SC|GM|WM)"
    r"_desc-manual_mask(?P<rater>\d+)\.(?P<ext>nii\.gz|nii)$"
)
_LEVEL_TOKEN = re.compile(r"\b(?P<region>[CTL])(?P<num>\d{1,2})\b", re.I)
_REGION_OFFSET = {"C": 0, "T": 7, "L": 19}  # C1..C7 → 1..7, T1..T12 → 8..19, L1.. → 20..


@dataclass
class GMSubject:
    """One challenge subject: image, per-rater label files, site, optional levels file."""

    subject: str  # "site1-sc01" (original) or "sub-ucl001" (BIDS)
    site: str  # "site1".."site4"
    number: int  # 1..20
    image: Path | None
    raters: dict[int, dict[str, Path]] = field(default_factory=dict)  # rater → {"mask"} or {"SC","GM","WM"}
    levels: Path | None = None

    @property
    def labelled(self) -> bool:
        return bool(self.raters)


# ------------------------------------------------------------------------------------ indexing
def index_gmchallenge(root: str | Path) -> list[GMSubject]:
    """Index either layout under ``root`` (original files in ``root`` or its sub-folders, or BIDS)."""
    root = require_dir(root, "GM challenge folder")
    if any(root.glob("sub-*")) or (root / "derivatives" / "labels").is_dir():
        subjects = _index_bids(root)
    else:
        subjects = _index_original(root)
    if not subjects:
        raise InputError("no GM challenge file found (expected site*-sc*-image.nii.gz or a BIDS tree)", root)
    return subjects


def _index_original(root: Path) -> list[GMSubject]:
    files = sorted(p for p in list(root.glob("*")) + list(root.glob("*/*")) if p.is_file())
    by_id: dict[str, GMSubject] = {}
    seen: dict[tuple, Path] = {}
    for p in files:
        m = _ORIG.match(p.name)
        if not m:
            continue
        sid = f"{m.group('site')}-sc{m.group('n')}"
        kind = "image" if m.group("image") else ("levels" if m.group("levels") else f"r{m.group('rater')}")
        if (m.group("ext") == "txt") != (kind == "levels"):
            continue
        if (sid, kind) in seen:
            raise InputError(f"{sid} {kind} present twice (also {seen[(sid, kind)]})", p)
        seen[(sid, kind)] = p
        s = by_id.setdefault(sid, GMSubject(sid, m.group("site"), int(m.group("n")), None))
        if kind == "image":
            s.image = p
        elif kind == "levels":
            s.levels = p
        else:
            s.raters[int(m.group("rater"))] = {"mask": p}
    return _finish(list(by_id.values()))


def _index_bids(root: Path) -> list[GMSubject]:
    by_id: dict[str, GMSubject] = {}
    seen: dict[tuple, Path] = {}

    def get(m: re.Match) -> GMSubject:
        site = BIDS_TO_SITE.get(m.group("site"), m.group("site"))
        return by_id.setdefault(m.group("sub"), GMSubject(m.group("sub"), site, int(m.group("n")), None))

    for p in sorted(root.glob("sub-*/anat/*")):
        m = _BIDS_IMG.match(p.name)
        if m:
            key = (m.group("sub"), "image")
            if key in seen:
                raise InputError(f"{m.group('sub')} T2star image present twice (also {seen[key]})", p)
            seen[key] = p
            get(m).image = p
    for p in sorted((root / "derivatives" / "labels").glob("sub-*/anat/*")):
        m = _BIDS_LBL.match(p.name)
        if m:
            key = (m.group("sub"), m.group("label"), m.group("rater"))
            if key in seen:
                raise InputError(f"label present twice (also {seen[key]})", p)
            seen[key] = p
            get(m).raters.setdefault(int(m.group("rater")), {})[m.group("label")] = p
    subjects = _finish(list(by_id.values()))
    tsv = root / "participants.tsv"
    if tsv.is_file():  # institution_id there is "site1".."site4" (curation script)
        from data_modules.bids import read_participants

        df = read_participants(tsv)
        sites = dict(zip(df["participant_id"], df.get("institution_id", df["participant_id"])))
        for s in subjects:
            if isinstance(sites.get(s.subject), str) and sites[s.subject].startswith("site"):
                s.site = sites[s.subject]
    return subjects


def _finish(subjects: list[GMSubject]) -> list[GMSubject]:
    for s in subjects:
        if s.image is None:
            some = next(iter(next(iter(s.raters.values())).values())) if s.raters else s.levels
            raise InputError(f"subject {s.subject} has labels but no image", some)
    return sorted(subjects, key=lambda s: (s.site, s.number, s.subject))


# ------------------------------------------------------------------------------------ reading
def load_rater_mask(files: dict[str, Path], image: Any, image_path: str | Path) -> np.ndarray:
    """One rater's labels on the image grid, in challenge encoding (0, GM = 1, WM = 2)."""
    if "mask" in files:
        img, arr = io.load_label(files["mask"], allowed=(0, GM, WM), require_nonempty=True, kind="GM challenge mask")
        io.check_same_grid(image, img, image_path, files["mask"])
        return arr.astype(np.uint8)
    parts = {}
    for name in ("SC", "GM", "WM"):
        if name in files:
            img, arr = io.load_label(files[name], allowed=(0, 1), kind=f"{name} mask")
            io.check_same_grid(image, img, image_path, files[name])
            parts[name] = arr > 0
    if "GM" not in parts or not ({"SC", "WM"} & parts.keys()):
        have = ", ".join(sorted(files))
        raise InputError(f"a rater needs GM and SC or WM masks, found {have}", next(iter(files.values())))
    sc = parts.get("SC", np.zeros_like(parts["GM"])) | parts.get("WM", np.zeros_like(parts["GM"])) | parts["GM"]
    out = np.zeros(sc.shape, np.uint8)
    out[sc] = WM
    out[parts["GM"]] = GM
    if not out.any():
        raise InputError("rater masks are empty", next(iter(files.values())))
    return out


def read_levels_txt(path: str | Path, n_slices: int | None = None) -> np.ndarray:
    """Per-slice vertebral level from a ``-levels.txt`` file (C1..C7 → 1..7, T1 → 8; 0 unknown).

    Accepted lines: ``<slice> <level>`` / ``<level> <slice>`` (comma, tab, colon or space
    separated), ``<level>: <first>-<last>`` (slice range), or ``<level>`` alone (line i = slice i).
    A level is ``C3``/``T1``/... or a bare number (C-level). The exact layout of the challenge's
    files could not be checked offline: anything else is rejected with the file named.
    """
    path = Path(path)
    try:
        lines = [ln.split("#")[0].strip() for ln in path.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"unreadable levels file ({exc})", path) from None
    lines = [ln for ln in lines if ln]
    pairs: list[tuple[int, int]] = []
    for i, ln in enumerate(lines):
        lv = _LEVEL_TOKEN.search(ln)
        rest = _LEVEL_TOKEN.sub(" ", ln) if lv else ln
        nums = re.findall(r"\d+(?:\s*-\s*\d+)?", rest)
        if lv:
            level = _REGION_OFFSET[lv.group("region").upper()] + int(lv.group("num"))
            if not nums:
                pairs.append((i, level))
                continue
        else:
            if len(nums) == 1 and "-" not in nums[0]:  # bare "<level>" number per line
                pairs.append((i, int(nums[0])))
                continue
            if len(nums) != 2:
                raise InputError(f"line {i + 1} {ln!r}: expected '<slice> <level>'", path)
            level, nums = int(nums[1]), nums[:1]
        if len(nums) != 1:
            raise InputError(f"line {i + 1} {ln!r}: expected one slice index or range", path)
        a, _, b = nums[0].partition("-")
        lo, hi = int(a), int(b) if b else int(a)
        pairs += [(s, level) for s in range(lo, hi + 1)]
    n = n_slices if n_slices is not None else (max(s for s, _ in pairs) + 1 if pairs else 0)
    out = np.zeros(n, np.int16)
    for s, level in pairs:
        if not 0 <= s < n:
            raise InputError(f"slice {s} outside 0..{n - 1}", path)
        out[s] = level
    return out


# ------------------------------------------------------------------------------------ fusion
def fuse_raters(
    masks: Sequence[np.ndarray], mode: str = "majority", rng: np.random.Generator | None = None
) -> np.ndarray:
    """Combine raters' label maps (same shape, integer classes) into one.

    - ``majority``: per voxel the class with most votes; ties go to a foreground class over
      background, and among foreground classes to the lowest value (GM = 1 before WM = 2).
    - ``staple``: SimpleITK STAPLE (binary masks: probability ≥ 0.5) or multi-label STAPLE
      (several classes; voxels STAPLE leaves undecided take the majority vote).
    - ``random``: one rater drawn with ``rng`` (required).
    """
    if not len(masks):
        raise ValueError("fuse_raters needs at least one mask")
    stack = np.stack([np.asarray(m) for m in masks]).astype(np.int64)
    if mode == "random":
        if rng is None:
            raise ValueError("mode 'random' needs an rng")
        return stack[int(rng.integers(len(masks)))].copy()
    if mode == "majority":
        return _majority(stack)
    if mode == "staple":
        return _staple(stack)
    raise ConfigError(f"key 'data.raters': unknown rater fusion {mode!r}; choose {', '.join(RATER_MODES)}")


def _majority(stack: np.ndarray) -> np.ndarray:
    values = np.unique(stack)
    order = sorted(values.tolist(), key=lambda v: (v == 0, v))  # preference for ties
    votes = np.stack([(stack == v).sum(axis=0) for v in order])
    return np.asarray(order, dtype=np.int64)[np.argmax(votes, axis=0)]  # argmax: first of equal maxima


def _staple(stack: np.ndarray) -> np.ndarray:
    import SimpleITK as sitk

    if stack.min() < 0 or stack.max() > 254:
        raise ValueError("STAPLE fusion needs labels in 0..254")
    fg = [v for v in np.unique(stack).tolist() if v != 0]
    if not fg:
        return np.zeros(stack.shape[1:], np.int64)
    images = [sitk.GetImageFromArray(m.astype(np.uint8)) for m in stack]
    if len(fg) == 1:
        prob = sitk.GetArrayFromImage(sitk.STAPLE(images, float(fg[0])))
        return np.where(prob >= 0.5, fg[0], 0).astype(np.int64)
    f = sitk.MultiLabelSTAPLEImageFilter()
    f.SetLabelForUndecidedPixels(255)
    out = sitk.GetArrayFromImage(f.Execute(images)).astype(np.int64)
    undecided = out == 255
    if undecided.any():
        out[undecided] = _majority(stack)[undecided]
    return out


def to_task_target(challenge: np.ndarray, task: str) -> np.ndarray:
    """Challenge encoding (GM 1, WM 2) → the task's target: ``gm`` WM 1 / GM 2, ``sc`` cord 1."""
    challenge = np.asarray(challenge)
    if task == "gm":
        return np.select([challenge == GM, challenge == WM], [2, 1], 0).astype(np.int16)
    if task == "sc":
        return (challenge > 0).astype(np.int16)
    raise ConfigError(f"key 'data.task': the GM challenge has tasks gm and sc, not {task!r}")


def perone_preprocess(in_plane_mm: float = 0.25, size: int = 200):
    """Perone et al. 2018: RAS, 0.25 mm in-plane (slice spacing kept), crop/pad to 200×200, z-score.

    The ``data.preset: perone`` chain of ``data_modules.preprocessing`` (task-independent parts).
    """
    from data_modules.preprocessing import Preprocessing, build_transform

    return build_transform(
        Preprocessing(
            spacing=(in_plane_mm, in_plane_mm, None),
            crop=(size, size),
            train_crop="centre",
            normalisation="zscore-after-crop",
            preset="perone",
        )
    )
