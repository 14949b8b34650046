"""Which images a run reads: the ``data.contrast`` selection and the contrast names it may use.

``data.contrast`` is one of:

* ``null`` — the task's own contrast (``core.tasks``: T2w for sc/canal/levels, T2star for gm);
* one string — the images whose BIDS contrast chain (``data_modules.bids.ImageRecord.contrast``:
  ``T2w``, ``flip-1_mt-on_MTS``, ``rec-average_dwi`` …) is exactly it: a **single-contrast** run,
  read as it always was;
* a list of names — a **multi-contrast** run: each subject contributes one image per listed contrast
  it has (with the task's labels). A name is a BIDS chain or one of the :data:`ALIASES`, which match
  spine-generic's names since 2024 and before it (``MTon`` is ``flip-1_mt-on_MTS`` or
  ``acq-MTon_MTS``);
* ``all`` — a multi-contrast run on every contrast that has the task's labels.

A multi-contrast run keys each image as ``<subject>_<contrast chain>`` (as sessions key theirs
``<subject>_<session>``); splits keep a subject's images together (:mod:`data_modules.splits`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.errors import ConfigError

#: Short names of the contrasts of spine-generic (and the phantom) -> their BIDS chains, new naming first.
ALIASES: dict[str, tuple[str, ...]] = {
    "T1w": ("T1w",),
    "T2w": ("T2w",),
    "T2star": ("T2star",),
    "MTon": ("flip-1_mt-on_MTS", "acq-MTon_MTS"),
    "MToff": ("flip-2_mt-off_MTS", "acq-MToff_MTS"),
    "T1wMTS": ("flip-1_mt-off_MTS", "acq-T1w_MTS"),
    "dwi": ("rec-average_dwi",),
}
ALL = "all"


def selection(value: Any) -> tuple[str, ...] | None:
    """The names of a multi-contrast ``data.contrast`` (``("all",)`` for ``all``); None for a single one."""
    if value is None or (isinstance(value, str) and value != ALL):
        return None
    if value == ALL:
        return (ALL,)
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(
            f"key 'data.contrast' must be a contrast name, a non-empty list of names or 'all'; got {value!r}"
        )
    if ALL in value and len(value) > 1:
        raise ConfigError(f"key 'data.contrast': 'all' stands alone, got {list(value)!r}")
    dup = sorted({v for v in value if list(value).count(v) > 1})
    if dup:
        raise ConfigError(f"key 'data.contrast' lists {dup} twice")
    return tuple(value)


def matches(names: Sequence[str], chain: str) -> bool:
    """Whether the BIDS contrast ``chain`` is one of ``names`` (an alias matches only its chains, so ``dwi``
    is the mean DWI image, never the 4D series; ``all`` matches every chain)."""
    return any(n == ALL or (chain in ALIASES[n] if n in ALIASES else n == chain) for n in names)


def requested(value: str | None, hparams: Any) -> tuple[str, ...]:
    """The contrasts ``predict --bids`` segments: ``value`` (one name, ``A,B`` or ``all``) or, when None,
    the model's own (a multi-contrast model's list, else its contrast, else T2w). Any contrast may be
    asked of any model: the preprocessing is the same for every contrast."""
    if value:
        return tuple(v.strip() for v in str(value).split(",") if v.strip())
    own = (hparams.get("preprocessing") or {}).get("contrasts")
    return tuple(own) if own else (str(hparams.get("contrast") or "T2w"),)


def measured(value: Any) -> str:
    """The contrast whose images the morphometric columns measure: a single-contrast run's own, T2w for a
    multi-contrast run (the manual reference masks and levels of spine-generic's morphometrics are T2w's)."""
    return "T2w" if value is None or selection(value) is not None else str(value)


def label(value: Any, default: str) -> str:
    """The contrast a run records: the single one, or the list joined with ``+`` (``all`` as is)."""
    names = selection(value)
    if names is None:
        return str(value or default)
    return "+".join(names)


__all__ = ["ALIASES", "ALL", "label", "matches", "measured", "requested", "selection"]
