"""Index a spine-generic-style BIDS data set: images, their labels, participants.

Naming handled (``spine-generic/data-multi-subject`` since 2024, and the pre-2024 names):

- images ``sub-<id>[/ses-<s>]/{anat,dwi}/sub-<id>[_ses-<s>]_<contrast>.nii[.gz]`` where
  ``<contrast>`` is the entity/suffix chain, e.g. ``T2w``, ``flip-1_mt-on_MTS``, ``rec-average_dwi``;
  DWI images get their ``.bval``/``.bvec`` when present;
- labels ``derivatives/labels/sub-<id>/{anat,dwi}/<image stem>_<entities>_<suffix>.nii[.gz]`` with
  any order of BIDS entities (``label-SC_seg``, ``label-discs_desc-warp_dlabel``,
  ``desc-rater2_label-rootlets_dseg``, ``label-SC_desc-levels_dseg`` ...) and soft segmentations in
  ``derivatives/labels_softseg*/``;
- pre-2024 names: ``_seg-manual``, ``_seg-manual_labeled``, ``_labels-disc-manual``,
  ``_labels-manual`` (C3/C5 points), ``_gmseg-manual``, ``_wmseg-manual``, ``_csfseg-manual``,
  ``_label-<X>_seg-manual``.

A label whose image is absent (not downloaded, or a git-annex placeholder) is kept, indexed under
its image stem, on an :class:`ImageRecord` with ``exists=False``; :meth:`BidsIndex.select` leaves
such records out unless asked. Subject ids keep their ``sub-`` prefix (as in participants.tsv).
No ``dataset_description.json`` is needed anywhere.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from core.errors import InputError
from core.paths import require_dir

log = logging.getLogger(__name__)

DATATYPES = ("anat", "dwi")
DEFAULT_LABELS_DIR = "derivatives/labels"
SOFTSEG_GLOB = "derivatives/labels_softseg*"

_ID = r"[A-Za-z0-9]+"
_ENT = rf"{_ID}-{_ID}"
_NIFTI = re.compile(r"^(?P<stem>[^.]+)\.(?P<ext>nii\.gz|nii)$")
_SIDECAR = re.compile(r"^(?P<stem>[^.]+)\.(?P<ext>bval|bvec)$")
# an image: sub, optional ses, then the contrast chain = entities followed by one bare suffix
_IMAGE = re.compile(rf"^(?P<sub>sub-{_ID})(?:_(?P<ses>ses-{_ID}))?_(?P<contrast>(?:{_ENT}_)*{_ID})$")
# a label: the image stem, then the derivative part (anything, parsed by _parse_deriv)
_LABEL = re.compile(
    rf"^(?P<sub>sub-{_ID})(?:_(?P<ses>ses-{_ID}))?_(?P<contrast>(?:{_ENT}_)*{_ID})_"
    rf"(?P<deriv>.+)$"
)
# the BIDS derivative part: entities then a bare suffix
_DERIV_NEW = re.compile(rf"^(?P<ents>(?:{_ENT}_)*)(?P<suffix>{_ID})$")
_ENTITY = re.compile(rf"(?P<key>{_ID})-(?P<value>{_ID})_")
_RATER_DESC = re.compile(r"^rater(?P<n>\d+)$")
_SUFFIX_RATER = re.compile(r"^(?P<suffix>mask|seg)(?P<n>\d+)$")  # GM-challenge BIDS: ..._mask3
# pre-2024 names -> (label, suffix, desc)
_DERIV_OLD: list[tuple[re.Pattern, tuple[str | None, str, str]]] = [
    (re.compile(r"^seg-manual$"), ("SC", "seg", "manual")),
    (re.compile(r"^seg-manual_labeled$"), ("SC", "dseg", "levels")),
    (re.compile(r"^labels-disc-manual$"), ("discs", "dlabel", "manual")),
    (re.compile(r"^labels-manual$"), ("vertebrae", "dlabel", "manual")),
    (re.compile(r"^gmseg-manual$"), ("GM", "seg", "manual")),
    (re.compile(r"^wmseg-manual$"), ("WM", "seg", "manual")),
    (re.compile(r"^csfseg-manual$"), ("CSF", "seg", "manual")),
    (re.compile(rf"^label-(?P<label>{_ID})_seg-manual$"), (None, "seg", "manual")),
]
# preference among descs when label() is asked without one (first wins)
_DESC_PREFERENCE = (None, "manual", "staple")


@dataclass(frozen=True)
class LabelFile:
    """One label file of an image."""

    path: Path
    label: str  # "SC", "canal", "GM", "WM", "discs", "spine", "rootlets", "CSF", "vertebrae", ...
    suffix: str  # "seg", "dlabel", "dseg", "mask", "softseg", ...
    desc: str | None = None  # "rater1", "staple", "warp", "levels", "manual", "softseg", ...
    rater: int | None = None  # from desc-rater<N> or a numbered suffix (mask<N>)
    source: str = DEFAULT_LABELS_DIR  # derivative folder, relative to the data set root
    entities: tuple[tuple[str, str], ...] = ()  # every other entity of the label name


@dataclass
class ImageRecord:
    """One image (or the expected place of one, see ``exists``) and its labels."""

    subject: str  # "sub-amu01"
    session: str | None  # "ses-01" or None
    datatype: str  # "anat" | "dwi"
    contrast: str  # BIDS chain after sub-XXX[_ses-YY]_: "T2w", "flip-1_mt-on_MTS", "rec-average_dwi"
    path: Path
    bval: Path | None = None
    bvec: Path | None = None
    labels: list[LabelFile] = field(default_factory=list)
    exists: bool = True  # False: only labels refer to this image (absent or annex placeholder)

    @property
    def stem(self) -> str:
        """File name without extension, e.g. ``sub-amu01_T2w``."""
        return _NIFTI.match(self.path.name).group("stem")

    def label(
        self, label: str, desc: str | None = None, suffix: str | None = None, source: str | None = None
    ) -> LabelFile | None:
        """The label file of type ``label``; ``desc=None`` prefers no desc, then manual, staple.

        With ``desc`` given only that desc matches. Returns None when there is none.
        """
        found = [
            lf
            for lf in self.labels
            if lf.label == label
            and (suffix is None or lf.suffix == suffix)
            and (desc is None or lf.desc == desc)
            and (source is None or lf.source == source)
        ]
        if not found:
            return None

        def rank(lf: LabelFile) -> tuple:
            pref = _DESC_PREFERENCE.index(lf.desc) if lf.desc in _DESC_PREFERENCE else len(_DESC_PREFERENCE)
            return (lf.source != DEFAULT_LABELS_DIR, pref, lf.desc or "", lf.suffix, str(lf.path))

        return min(found, key=rank)

    def raters(self, label: str, suffix: str | None = None) -> list[LabelFile]:
        """Per-rater label files of type ``label``, sorted by rater number."""
        out = [
            lf
            for lf in self.labels
            if lf.label == label and lf.rater is not None and (suffix is None or lf.suffix == suffix)
        ]
        return sorted(out, key=lambda lf: lf.rater)


@dataclass
class BidsIndex:
    """All images of a data set with their labels, and participants.tsv."""

    root: Path
    images: list[ImageRecord]
    participants: object | None = None  # pandas.DataFrame (str dtype) or None
    unparsed: list[Path] = field(default_factory=list)  # NIfTI files whose name was not understood
    exclude: dict[str, list[str]] = field(default_factory=dict)  # exclude.yml: metric -> file names

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dir(
        cls,
        root: str | Path,
        labels_dir: str = DEFAULT_LABELS_DIR,
        strict: bool = True,
        softseg_glob: str | None = SOFTSEG_GLOB,
    ) -> BidsIndex:
        """Index a data set on disk.

        ``strict``: a missing/unreadable ``participants.tsv``, a subject folder without images, a
        subject absent from participants.tsv, or an image/label present twice (.nii and .nii.gz)
        raise :class:`InputError`. Non-strict, these are logged and tolerated.
        """
        root = require_dir(root, "BIDS data set folder")
        rel: list[str] = []
        present: set[str] = set()
        label_dirs = [labels_dir] + (
            [str(p.relative_to(root)) for p in sorted(root.glob(softseg_glob)) if p.is_dir()] if softseg_glob else []
        )
        bases = [root] + [root / d for d in label_dirs if (root / d).is_dir()]
        subject_dirs = sorted(p for p in root.glob("sub-*") if p.is_dir())
        for base in bases:
            for sub_dir in sorted(p for p in base.glob("sub-*") if p.is_dir()):
                for dt_dir in _datatype_dirs(sub_dir):
                    for f in sorted(dt_dir.iterdir()):
                        if _NIFTI.match(f.name) or _SIDECAR.match(f.name):
                            r = f.relative_to(root).as_posix()
                            rel.append(r)
                            if f.exists():  # False for a broken (not fetched) git-annex symlink
                                present.add(r)
        extra = [n for n in ("participants.tsv", "exclude.yml") if (root / n).is_file()]
        idx = cls._build(root, rel + extra, present, label_dirs, strict)
        for sub_dir in subject_dirs:
            if not any(im.subject == sub_dir.name and im.exists for im in idx.images):
                _complain(strict, f"subject folder has no image in {'/'.join(DATATYPES)}/", sub_dir)
        idx._check_listed_have_images(strict)
        return idx

    @classmethod
    def from_filelist(
        cls,
        filelist: str | Path,
        root: str | Path | None = None,
        labels_dir: str = DEFAULT_LABELS_DIR,
        strict: bool = True,
        softseg_glob: str | None = SOFTSEG_GLOB,
    ) -> BidsIndex:
        """Index a list of relative paths (one a line) without touching the files.

        ``root`` (default: the list's folder) is where paths are anchored; participants.tsv is
        read from it when the list names it and it exists.
        """
        filelist = Path(filelist)
        try:
            lines = filelist.read_text().splitlines()
        except OSError as exc:
            raise InputError(f"cannot read file list ({exc.strerror})", filelist) from None
        root = Path(root) if root is not None else filelist.parent
        rel = [ln.strip().removeprefix("./") for ln in lines]
        rel = [r for r in rel if r and not r.startswith("#")]
        pattern = re.compile(re.escape(softseg_glob).replace(r"\*", r"[^/]*")) if softseg_glob else None
        label_dirs = [labels_dir] + sorted(
            {"/".join(r.split("/")[:2]) for r in rel if pattern and pattern.fullmatch("/".join(r.split("/")[:2]))}
        )
        meta = [r for r in rel if r in ("participants.tsv", "exclude.yml") and (root / r).is_file()]
        nifti = [r for r in rel if r not in ("participants.tsv", "exclude.yml")]
        idx = cls._build(root, nifti + meta, set(nifti), label_dirs, strict)
        subjects_listed = {r.split("/")[0] for r in rel if re.match(rf"^sub-{_ID}/", r)}
        for s in sorted(subjects_listed):
            if not any(im.subject == s and im.exists for im in idx.images):
                _complain(strict, f"subject {s} has no image in {'/'.join(DATATYPES)}/", filelist)
        idx._check_listed_have_images(strict)
        return idx

    @classmethod
    def _build(
        cls, root: Path, rel: Sequence[str], present: set[str], label_dirs: Sequence[str], strict: bool
    ) -> BidsIndex:
        """Pair images and labels from relative POSIX paths (``present``: files that exist)."""
        records: dict[tuple, ImageRecord] = {}
        seen_img: dict[tuple, str] = {}
        sidecars: dict[str, dict[str, str]] = {}
        label_items: list[tuple[tuple, str, LabelFile]] = []
        unparsed: list[Path] = []
        label_dirs = [d.strip("/") for d in label_dirs]
        for r in rel:
            parts = PurePosixPath(r).parts
            name = parts[-1]
            src = next((d for d in label_dirs if r.startswith(d + "/")), None)
            if src is None and parts[0].startswith("sub-"):
                sc = _SIDECAR.match(name)
                if sc:
                    sidecars.setdefault(sc.group("stem"), {})[sc.group("ext")] = r
                    continue
                m = _NIFTI.match(name)
                dt = _datatype_of(parts)
                im = _IMAGE.match(m.group("stem")) if m else None
                if not m or dt is None:
                    continue
                if im is None or not _consistent(parts, im.group("sub"), im.group("ses")):
                    unparsed.append(root / r)
                    continue
                key = (im.group("sub"), im.group("ses"), dt, im.group("contrast"))
                if key in seen_img:
                    _complain(strict, f"image present twice (also {seen_img[key]})", root / r)
                    continue
                seen_img[key] = r
                rec = records.get(key)
                if rec is None:
                    records[key] = ImageRecord(*key, path=root / r, exists=r in present)
                else:  # created earlier by a label: fill in the real file
                    rec.path, rec.exists = root / r, r in present
            elif src is not None:
                m = _NIFTI.match(name)
                dt = _datatype_of(parts)
                if not m or dt is None:
                    continue
                lm = _LABEL.match(m.group("stem"))
                parsed = _parse_deriv(lm.group("deriv")) if lm else None
                if parsed is None or not _consistent(parts, lm.group("sub"), lm.group("ses")):
                    unparsed.append(root / r)
                    continue
                label, suffix, desc, rater, ents = parsed
                key = (lm.group("sub"), lm.group("ses"), dt, lm.group("contrast"))
                label_items.append((key, m.group("ext"), LabelFile(root / r, label, suffix, desc, rater, src, ents)))
        for key, ext, lf in label_items:
            rec = records.get(key)
            if rec is None:  # label of an image that is not there: keep it under the image stem
                sub, ses, dt, contrast = key
                stem = "_".join(x for x in (sub, ses, contrast) if x)
                sdir = [sub] + ([ses] if ses else []) + [dt]
                rec = records[key] = ImageRecord(
                    sub, ses, dt, contrast, root.joinpath(*sdir, f"{stem}.{ext}"), exists=False
                )
            dup = next(
                (
                    o
                    for o in rec.labels
                    if (o.label, o.suffix, o.desc, o.rater, o.source, o.entities)
                    == (lf.label, lf.suffix, lf.desc, lf.rater, lf.source, lf.entities)
                ),
                None,
            )
            if dup is not None:
                _complain(strict, f"label present twice (also {dup.path.name})", lf.path)
                continue
            rec.labels.append(lf)
        for rec in records.values():
            if rec.datatype == "dwi":
                car = sidecars.get(rec.stem, {})
                rec.bval = root / car["bval"] if "bval" in car else None
                rec.bvec = root / car["bvec"] if "bvec" in car else None
            rec.labels.sort(key=lambda lf: (lf.source, lf.label, lf.desc or "", lf.suffix, lf.path.name))
        orphans = [rec for rec in records.values() if not rec.exists]
        if orphans:
            log.info("%d indexed image(s) are absent (labels only), e.g. %s", len(orphans), orphans[0].path)
        if unparsed:
            log.warning("%d NIfTI file name(s) not understood, e.g. %s", len(unparsed), unparsed[0])
        images = sorted(records.values(), key=lambda x: (x.subject, x.session or "", x.datatype, x.contrast))
        participants = (
            read_participants(root / "participants.tsv", required=strict)
            if "participants.tsv" in rel or strict
            else None
        )
        exclude = read_exclude(root / "exclude.yml") if "exclude.yml" in rel else {}
        idx = cls(root=root, images=images, participants=participants, unparsed=unparsed, exclude=exclude)
        if participants is not None:
            listed = set(participants["participant_id"])
            missing = sorted({im.subject for im in images if im.exists} - listed)
            if missing:
                _complain(
                    strict,
                    f"subjects not listed in participants.tsv: {', '.join(missing[:5])}"
                    + (" ..." if len(missing) > 5 else ""),
                    root / "participants.tsv",
                )
        return idx

    def _check_listed_have_images(self, strict: bool) -> None:
        """participants.tsv rows whose subject has no image in the data set (strict: an error)."""
        if self.participants is None:
            return
        missing = sorted(set(self.participants["participant_id"]) - set(self.subjects()))
        if missing:
            _complain(
                strict,
                f"lists subjects without images: {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""),
                self.root / "participants.tsv",
            )

    # ------------------------------------------------------------------ queries
    def subjects(self) -> list[str]:
        """Subjects with at least one existing image, sorted."""
        return sorted({im.subject for im in self.images if im.exists})

    def select(
        self,
        contrast: str,
        label: str,
        desc: str | None = None,
        *,
        suffix: str | None = None,
        include_missing: bool = False,
    ) -> list[ImageRecord]:
        """Images of ``contrast`` that have a label of type ``label`` (and ``desc``/``suffix``)."""
        return [
            im
            for im in self.images
            if im.contrast == contrast
            and (im.exists or include_missing)
            and im.label(label, desc=desc, suffix=suffix) is not None
        ]

    def image(self, subject: str, contrast: str, session: str | None = None) -> ImageRecord | None:
        """The record of one subject's image of ``contrast`` (None when absent)."""
        return next(
            (im for im in self.images if im.subject == subject and im.contrast == contrast and im.session == session),
            None,
        )

    def participant(self, subject: str) -> dict[str, str]:
        """The participants.tsv row of ``subject`` as a dict ({} when unknown)."""
        if self.participants is None:
            return {}
        rows = self.participants[self.participants["participant_id"] == subject]
        return {} if rows.empty else {k: v for k, v in rows.iloc[0].items()}

    def contrasts(self) -> list[str]:
        """All contrasts with at least one existing image."""
        return sorted({im.contrast for im in self.images if im.exists})


# ---------------------------------------------------------------------- helpers
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def safe_name(value: str, what: str, path: str | Path | None = None) -> str:
    """``value`` if it can be one path component of an output (no separator, no ``..``); else InputError.

    Output paths are built from BIDS names (subject, session, file stems); a name like
    ``../../x`` or ``sub-01/../..`` must never let a write escape the output folder.
    """
    v = str(value)
    if not _SAFE_NAME.fullmatch(v) or ".." in v:
        raise InputError(
            f"{what} {v!r} cannot name an output file or folder (letters, digits, '_', '-', '.', "
            "'+' only; no path separator or '..')",
            path,
        )
    return v


def read_participants(path: str | Path, required: bool = True):
    """Read participants.tsv (all columns as str, ``n/a`` → NaN); checks ids are unique."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        if required:
            raise InputError("participants.tsv not found", path)
        return None
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, na_values=["n/a"], keep_default_na=False)
    except Exception as exc:  # pandas raises many types (ParserError, UnicodeDecodeError, ...)
        raise InputError(f"unreadable participants table ({type(exc).__name__}: {exc})", path) from None
    if "participant_id" not in df.columns:
        raise InputError(f"no participant_id column (columns: {', '.join(map(str, df.columns))})", path)
    ids = df["participant_id"]
    if ids.isna().any():
        raise InputError(f"empty participant_id on row(s) {list(ids[ids.isna()].index + 2)}", path)
    bad = [s for s in ids if not re.fullmatch(rf"sub-{_ID}", s)]
    if bad:
        raise InputError(f"participant_id not of the form sub-<alphanumeric>: {bad[:5]}", path)
    dups = sorted(set(ids[ids.duplicated()]))
    if dups:
        raise InputError(f"duplicated participant_id: {', '.join(dups)}", path)
    return df


def read_exclude(path: str | Path) -> dict[str, list[str]]:
    """Read spine-generic's ``exclude.yml`` (metric or contrast → list of file names to exclude)."""
    from core import yamlio

    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"unreadable exclude file ({exc})", path) from None
    data = yamlio.loads(text, path) or {}  # an empty exclude file excludes nothing
    if not isinstance(data, dict) or not all(isinstance(v, (list, type(None))) for v in data.values()):
        raise InputError("exclude file must map each key to a list of file names", path)
    return {str(k): [str(x) for x in (v or [])] for k, v in data.items()}


def parse_derivative(deriv: str) -> tuple[str, str, str | None, int | None, tuple] | None:
    """``(label, suffix, desc, rater, entities)`` of the part of a label name after its image stem
    (``label-SC_seg``, ``seg-manual``, …; both namings above), None when it is not a label name."""
    return _parse_deriv(deriv)


def _parse_deriv(deriv: str) -> tuple[str, str, str | None, int | None, tuple] | None:
    """Parse the part of a label name after the image stem → (label, suffix, desc, rater, entities)."""
    for pat, (label, suffix, desc) in _DERIV_OLD:
        m = pat.match(deriv)
        if m:
            return (label or m.group("label"), suffix, desc, None, ())
    m = _DERIV_NEW.match(deriv)
    if not m:
        return None
    ents = {e.group("key"): e.group("value") for e in _ENTITY.finditer(m.group("ents"))}
    label = ents.pop("label", None)
    if label is None:
        return None
    desc = ents.pop("desc", None)
    suffix = m.group("suffix")
    rater = None
    rd = _RATER_DESC.match(desc) if desc else None
    if rd:
        rater = int(rd.group("n"))
    sr = _SUFFIX_RATER.match(suffix)
    if sr:
        suffix, rater = sr.group("suffix"), int(sr.group("n"))
    return label, suffix, desc, rater, tuple(sorted(ents.items()))


def _datatype_of(parts: Sequence[str]) -> str | None:
    """The datatype folder of a path (parent of the file), if it is one we index."""
    return parts[-2] if len(parts) >= 2 and parts[-2] in DATATYPES else None


def _consistent(parts: Sequence[str], sub: str, ses: str | None) -> bool:
    """The file name's subject/session agree with its folders."""
    folders = parts[:-2]
    if sub not in folders:
        return False
    return ses is None or ses in folders


def _datatype_dirs(sub_dir: Path) -> Iterable[Path]:
    for d in DATATYPES:
        if (sub_dir / d).is_dir():
            yield sub_dir / d
    for ses in sorted(sub_dir.glob("ses-*")):
        for d in DATATYPES:
            if (ses / d).is_dir():
                yield ses / d


def _complain(strict: bool, message: str, path: str | Path) -> None:
    if strict:
        raise InputError(message, path)
    log.warning("%s: %s", path, message)
