"""Which subjects an ``exclude.yml`` leaves out of the cohort study, and why.

The format is spine-generic's ``exclude.yml``: a mapping of a metric or contrast key (``csa_t2``,
``dti_fa``, …) to a list of subject ids or file names, each with its reason in a trailing comment::

    csa_t2:
    - sub-pavia04  # Motion artifact

Read through :mod:`core.yamlio` (the structure; :func:`core.yamlio.item_comments` for the reasons).
An entry naming a subject removes that subject's anatomy (keys or entries mentioning T2w, CSA,
SAC, canal), its diffusion (DWI, DTI, FA, MD, RD, AD) or everything (any other key, such as ``qc``
of cordbench's QC reports); entries naming no subject of the data set are listed, not applied.
A file exported from a cordbench QC report names the report in its first comment
(:data:`core.qc_decisions.EXPORT_HEADER`), shown in the study's report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import InputError

_SUB = re.compile(r"sub-[A-Za-z0-9]+")
_DWI_WORDS = ("dwi", "dti", "fa", "md", "rd", "ad", "diffusion")
_ANAT_WORDS = ("t2w", "csa", "sac", "canal", "t2")


@dataclass
class Exclusions:
    """The entries of one exclude file, their reasons and where the file came from."""

    source: str  # how the report names the file (``exclude.yml``, or the --exclude file's name)
    entries: dict[str, list[str]]
    notes: dict[str, str] = field(default_factory=dict)  # entry -> trailing comment
    origin: str | None = None  # the QC report the file was exported from
    unmatched: list[str] = field(default_factory=list)  # entries naming no subject of the data set


def exclusion_scope(key: str, entry: str) -> str:
    """``anat``, ``dwi`` or ``all`` for one exclude.yml entry (module docstring)."""
    text = f"{key} {entry}".lower()
    tokens = set(re.split(r"[^a-z0-9]+", text))
    if "dwi" in text or tokens & set(_DWI_WORDS):
        return "dwi"
    if "t2w" in text or tokens & set(_ANAT_WORDS) or "csa" in text:
        return "anat"
    return "all"


def read_exclusions(path: str | Path) -> Exclusions:
    """Read an exclude file (``analyze --exclude``); a malformed one is one line naming it."""
    from core import yamlio
    from core.qc_decisions import export_origin
    from data_modules.bids import read_exclude

    path = Path(path)
    text = yamlio.read_text(path, "exclude file", InputError)
    entries = read_exclude(path)
    data = yamlio.loads(text, path) or {}
    for key in entries:
        bad = [x for x in data.get(key) or [] if isinstance(x, (dict, list))]
        if bad:
            raise InputError(f"key {key!r}: entries must be subject ids or file names, got {bad[0]!r}", path)
    return Exclusions(path.name, entries, yamlio.item_comments(text), export_origin(text))


def apply_exclusions(jobs: Iterable[Any], excl: Exclusions) -> None:
    """Mark the parts of each job (``SubjectJob``) that ``excl`` removes, with the reason."""
    jobs = list(jobs)
    for key, items in excl.entries.items():
        for entry in items:
            m = _SUB.search(str(entry))
            hit = [j for j in jobs if m and j.subject == m.group(0)]
            if not hit:
                excl.unmatched.append(f"{key}: {entry}")
            note = excl.notes.get(str(entry))
            why = f"{excl.source}: {key}: {entry}" + (f" — {note}" if note else "")
            for job in hit:
                scope = exclusion_scope(key, entry)
                for part in ("anat", "dwi") if scope == "all" else (scope,):
                    job.excluded[part] = why


def report_section(excl: Exclusions | None) -> str:
    """The study report's paragraph on the ``--exclude`` file (empty without one)."""
    from core import html

    if excl is None:
        return ""
    n = sum(len(v) for v in excl.entries.values())
    text = f"<p>Exclusions from <code>{html.escape(excl.source)}</code> ({n} entr{'y' if n == 1 else 'ies'}"
    if excl.origin:
        text += f", exported from the QC report {html.escape(excl.origin)}"
    text += "); excluded subjects are listed below with the reason."
    if excl.unmatched:
        text += " Entries naming no subject of the data set: " + html.escape("; ".join(excl.unmatched))
    return text + "</p>"
