"""Real labelled scans as an evaluation set (``cordbench test --real DIR``, ``leaderboard --real DIR``).

A real set is a folder in one of two layouts (docs/data.md, "Real labelled scans"):

* **BIDS** (the folder holds ``sub-*/``): spine-generic naming, old or new, read by
  :class:`data_modules.bids.BidsIndex`. Every existing image with a cord mask (``_label-SC_seg``,
  ``_seg-manual``) or a GM mask (``_label-GM_seg``, ``_gmseg-manual``) in ``derivatives/labels`` is
  used; those masks are manual (spine-generic's ``derivatives/labels`` are manually corrected).
  Contrast: the BIDS suffix chain (``T2w``, ``T2star``, …).
* **flat**: any tree of NIfTI files. In each folder an image ``<stem>.nii[.gz]`` pairs with the label
  files ``<stem>_<derivative>.nii[.gz]`` of the same folder (:data:`FLAT_LABELS`):

  =================================================================  =====  =========
  ``<stem>_seg-manual``, ``<stem>_label-SC_seg``                      cord   manual
  ``<stem>_gmseg_manual``, ``<stem>_gmseg-manual``, ``<stem>_label-GM_seg``  GM     manual
  ``<stem>_seg-deepseg``                                              cord   automatic
  =================================================================  =====  =========

  Other label names of either BIDS naming (levels, discs, WM, …) are recognised as labels and not
  used; a NIfTI that is no label and has none is listed as unpaired. Contrast: the BIDS suffix when
  the stem ends with one, else the name (``t2s``/``t2star``/``gre`` → T2star, ``t2`` → T2w, ``t1`` → T1w).

Ground truth is a **manual** mask. ``automatic`` masks (``_seg-deepseg``: SCT's ``sct_deepseg_sc``
output, as in ``sct_testing_data/t2s``, which has no manual cord mask) are kept apart: scoring
against them measures agreement with that tool, never accuracy. Names match case-sensitively, so
``cordbench predict``'s own ``<stem>_label-sc_seg`` is never a label, nor is any mask whose JSON
sidecar says cordbench generated it. Every label is checked against its image's grid (shape and
affine) when the set is read: a mismatch is one line naming both files.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import InputError

MANUAL, AUTOMATIC = "manual", "automatic"
LABEL_KINDS = ("SC", "GM")  # cord, gray matter
#: Label names of the flat layout beyond the BIDS ones (SCT's testing-data names): derivative -> (kind, reference)
FLAT_LABELS: dict[str, tuple[str, str]] = {"gmseg_manual": ("GM", MANUAL), "seg-deepseg": ("SC", AUTOMATIC)}
_OTHER = ("", "")  # a recognised label name that is not used
#: A NIfTI file name: the stem is everything before the final ``.nii``/``.nii.gz`` (dots included: ``t2.v2.nii.gz``)
_NIFTI = re.compile(r"^(?P<stem>.+?)\.(?:nii\.gz|nii)$")
_BIDS_SUFFIX = re.compile(r"_(?P<suffix>T1w|T2w|T2star|MTS|dwi|UNIT1|PD|FLAIR)$")
_CONTRAST_WORDS = (
    ("T2star", ("t2s", "t2star", "t2starw", "gre", "megre")),
    ("T2w", ("t2", "t2w")),
    ("T1w", ("t1", "t1w")),
    ("dwi", ("dwi", "dmri")),
)
PAIRING_HELP = (
    "pairing rule: <stem>.nii.gz with <stem>_seg-manual.nii.gz (cord) or <stem>_gmseg_manual.nii.gz "
    "(GM) in the same folder, or a BIDS tree with derivatives/labels/..._label-SC_seg / _label-GM_seg; "
    "see docs/data.md"
)


@dataclass(frozen=True)
class RealLabel:
    """One reference mask of a real image."""

    path: Path
    kind: str  # "SC" | "GM"
    reference: str  # "manual" (ground truth) | "automatic" (another tool's output)


@dataclass
class RealImage:
    """One real image and its reference masks (by kind)."""

    id: str  # unique within the set: the file stem (made unique with its folder when needed)
    path: Path
    contrast: str  # "T2w", "T2star", … ("unknown" when the name does not say)
    labels: dict[str, RealLabel] = field(default_factory=dict)


@dataclass
class RealSet:
    """The images of a real set with their masks, and the NIfTI files left out (with the reason)."""

    root: Path
    layout: str  # "bids" | "flat"
    images: list[RealImage]
    unpaired: list[dict[str, str]] = field(default_factory=list)  # {"image": relative path, "reason": …}

    def rel(self, path: Path) -> str:
        """``path`` relative to the set's folder (POSIX)."""
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def fingerprint(self) -> str:
        """SHA-256 over every used file's relative path and content (the leaderboard's cache key)."""
        from core import io

        h = hashlib.sha256()
        for im in self.images:
            for p in [im.path, *(lf.path for lf in im.labels.values())]:
                h.update(f"{self.rel(p)}\0{io.sha256(p)}\n".encode())
        return h.hexdigest()


def contrast_of(stem: str) -> str:
    """Contrast from a flat file stem: its BIDS suffix, else a contrast word of the name, else ``unknown``."""
    m = _BIDS_SUFFIX.search(stem)
    if m:
        return m.group("suffix")
    words = [w for w in re.split(r"[_\-.]+", stem.lower()) if w]
    for contrast, names in _CONTRAST_WORDS:
        if any(w in names for w in words):
            return contrast
    return "unknown"


def _label_of(deriv: str) -> tuple[str, str] | None:
    """``(kind, reference)`` of a label name after its image stem; :data:`_OTHER` for an unused label; None."""
    from data_modules.bids import parse_derivative

    if deriv in FLAT_LABELS:
        return FLAT_LABELS[deriv]
    parsed = parse_derivative(deriv)
    if parsed is None:
        return None
    label, suffix, desc, rater, ents = parsed
    if label in LABEL_KINDS and suffix in ("seg", "mask") and desc in (None, MANUAL) and rater is None and not ents:
        return label, MANUAL
    return _OTHER


def _made_by_cordbench(mask: Path) -> bool:
    """Whether the mask's JSON sidecar (``cordbench predict``) names cordbench as its generator."""
    m = _NIFTI.match(mask.name)
    side = mask.with_name(f"{m.group('stem')}.json") if m else None
    if side is None or not side.is_file():
        return False
    try:
        gen = json.loads(side.read_text()).get("GeneratedBy") or []
    except (OSError, ValueError, AttributeError):
        return False
    return any(isinstance(g, dict) and g.get("Name") == "cordbench" for g in gen)


def _add_label(image: RealImage, label: RealLabel) -> None:
    """Keep the better reference of a kind (manual over automatic); two of one standing is an error."""
    old = image.labels.get(label.kind)
    if old is None or (old.reference == AUTOMATIC and label.reference == MANUAL):
        image.labels[label.kind] = label
    elif old.reference == label.reference:
        raise InputError(
            f"two {label.reference} {label.kind} masks for {image.path.name}: {old.path.name} and "
            f"{label.path.name} (keep one)",
            label.path.parent,
        )


def _flat(root: Path) -> tuple[list[RealImage], list[dict[str, str]]]:
    """Images and their masks of a flat layout, and the unpaired NIfTI files."""
    by_dir: dict[Path, dict[str, Path]] = {}
    for f in sorted(root.rglob("*")):
        m = _NIFTI.match(f.name)
        if not m or not f.is_file() or any(p.startswith(".") for p in f.relative_to(root).parts):
            continue
        files = by_dir.setdefault(f.parent, {})
        if m.group("stem") in files:
            raise InputError(f"present twice (also {files[m.group('stem')].name})", f)
        files[m.group("stem")] = f
    images: list[RealImage] = []
    unpaired: list[dict[str, str]] = []
    for files in by_dir.values():
        owner: dict[str, tuple[str, tuple[str, str]]] = {}
        for x in files:
            for s in sorted((s for s in files if x.startswith(s + "_")), key=len, reverse=True):
                lab = _label_of(x[len(s) + 1 :])
                if lab is not None:
                    owner[x] = (s, lab)
                    break
        for stem in sorted(s for s in files if s not in owner):
            im = RealImage(stem, files[stem], contrast_of(stem))
            for x, (s, (kind, ref)) in sorted(owner.items()):
                if s != stem or not kind:
                    continue
                if _made_by_cordbench(files[x]):
                    unpaired.append(
                        {
                            "image": files[x].relative_to(root).as_posix(),
                            "reason": "not a reference: its JSON sidecar says cordbench made it",
                        }
                    )
                else:
                    _add_label(im, RealLabel(files[x], kind, ref))
            if im.labels:
                images.append(im)
            else:
                unpaired.append(
                    {"image": files[stem].relative_to(root).as_posix(), "reason": "no label file pairs with it"}
                )
    return _unique_ids(images, root), unpaired


def _unique_ids(images: list[RealImage], root: Path) -> list[RealImage]:
    """Stems as ids; a stem found in several folders gets its folder path as prefix."""
    from data_modules.bids import safe_name

    stems = [im.id for im in images]
    for im in images:
        if stems.count(im.id) > 1:
            parts = im.path.parent.relative_to(root).parts
            im.id = "_".join([*parts, im.id])
        safe_name(im.id, "real image id", im.path)
    return sorted(images, key=lambda im: im.id)


def _bids(root: Path) -> tuple[list[RealImage], list[dict[str, str]]]:
    """Images of a BIDS tree with a cord or GM mask in ``derivatives/labels`` (manual)."""
    from data_modules.bids import DEFAULT_LABELS_DIR, BidsIndex

    index = BidsIndex.from_dir(root, strict=False, softseg_glob=None)
    images, unpaired = [], []
    for rec in index.images:
        if not rec.exists:
            continue
        im = RealImage(rec.stem, rec.path, rec.contrast)
        for kind in LABEL_KINDS:
            found = [
                lf
                for lf in (rec.label(kind, suffix=s, source=DEFAULT_LABELS_DIR) for s in ("seg", "mask"))
                if lf is not None and lf.rater is None and not _made_by_cordbench(lf.path)
            ]
            if found:
                im.labels[kind] = RealLabel(found[0].path, kind, MANUAL)
        if im.labels:
            images.append(im)
        else:
            unpaired.append(
                {
                    "image": rec.path.relative_to(root).as_posix(),
                    "reason": f"no cord or GM mask in {DEFAULT_LABELS_DIR}",
                }
            )
    return _unique_ids(images, root), unpaired


def check_grids(image: RealImage) -> list[str]:
    """Check every mask of ``image`` against the image's grid (InputError naming both files).

    Returns the kinds whose mask is empty (no voxel > 0): those are left out of the image's labels.
    """
    from core import io

    img = io.load_nifti(image.path, ndim=3, kind=f"{image.contrast} image")
    empty = []
    for kind, lf in list(image.labels.items()):
        lbl_img, lbl = io.load_label(lf.path, kind=f"{kind} mask")
        io.check_same_grid(img, lbl_img, image.path, lf.path)
        if not (lbl > 0).any():
            empty.append(kind)
            del image.labels[kind]
    return empty


def read_real_set(root: str | Path) -> RealSet:
    """Read a real set (BIDS when the folder holds ``sub-*/``, else flat); see the module docstring.

    One line naming the folder when nothing pairs, or the files when a mask is off its image's grid.
    """
    from core.paths import require_dir

    root = require_dir(root, "real data folder")
    layout = "bids" if any(p.is_dir() for p in root.glob("sub-*")) else "flat"
    images, unpaired = _bids(root) if layout == "bids" else _flat(root)
    kept = []
    for im in images:
        empty = check_grids(im)
        for kind in empty:
            unpaired.append({"image": im.path.relative_to(root).as_posix(), "reason": f"its {kind} mask is empty"})
        if im.labels:
            kept.append(im)
    if not kept:
        found = f"{len(unpaired)} NIfTI image(s), none with a usable mask" if unpaired else "no NIfTI image"
        raise InputError(f"no real image/label pair ({found}; {PAIRING_HELP})", root)
    return RealSet(root, layout, kept, sorted(unpaired, key=lambda u: u["image"]))
