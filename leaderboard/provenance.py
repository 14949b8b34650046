"""The code and environment behind a leaderboard's entries, and model cards for its best trials.

Each ranked trial's ``provenance.json`` (:mod:`runs.provenance`) is read; the leaderboard's Method
section names the set of commits and says, one line per difference, when its trials were made by
different commits, with uncommitted changes, or with different versions of a recorded package (or
Python). A trial without a record counts as ``unrecorded``. Comparing entries made by different code is
sometimes intended (a fix between two sweeps' trials), never silent.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from typing import Any

import pandas as pd


def _short(commit: Any) -> str:
    return str(commit)[:12] if commit else "unrecorded"


def _records(sweep: Any, trials: pd.DataFrame) -> dict[str, dict[str, Any] | None]:
    return {str(row["trial_id"]): sweep.run_folder(row).read_provenance() for _, row in trials.iterrows()}


def _groups(values: dict[str, Any]) -> str:
    """``a (2 trials: t1, t2); b (1 trial: t3)`` of a trial → value mapping."""
    by: dict[str, list[str]] = defaultdict(list)
    for trial, value in values.items():
        by[str(value)].append(trial)
    return "; ".join(
        f"{v} ({len(ts)} trial{'s' * (len(ts) > 1)}: {', '.join(sorted(ts))})" for v, ts in sorted(by.items())
    )


def differences(records: dict[str, dict[str, Any] | None]) -> list[str]:
    """One line per field on which the trials differ: commit, uncommitted changes, Python, each package."""
    if not records:
        return []
    fields: dict[str, dict[str, Any]] = {
        "commit": {t: _short((r or {}).get("git", {}).get("commit")) for t, r in records.items()}
    }
    dirty = {t: (r or {}).get("git", {}).get("dirty") for t, r in records.items()}
    if any(dirty.values()):
        fields["uncommitted changes"] = {
            t: (f"dirty {str((r or {}).get('git', {}).get('diff_sha256'))[:12]}" if dirty[t] else "clean")
            for t, r in records.items()
        }
    fields["Python"] = {t: (r or {}).get("python") or "unrecorded" for t, r in records.items()}
    packages = sorted({p for r in records.values() for p in ((r or {}).get("packages") or {})})
    for p in packages:
        fields[p] = {t: ((r or {}).get("packages") or {}).get(p) or "unrecorded" for t, r in records.items()}
    return [
        f"Trials made by different {name}: {_groups(values)}."
        for name, values in fields.items()
        if len(set(values.values())) > 1
    ]


def trial_provenance(sweep: Any, trials: pd.DataFrame) -> dict[str, Any]:
    """``commits`` (sorted, short) and ``provenance_notes`` (the difference lines) of the ranked trials."""
    records = _records(sweep, trials)
    commits = sorted({_short((r or {}).get("git", {}).get("commit")) for r in records.values()})
    return {"commits": commits, "provenance_notes": differences(records)}


def notes(meta: dict[str, Any]) -> list[str]:
    """The Method section's provenance lines: the set of commits, then each difference."""
    if "commits" not in meta:
        return []
    head = (
        f"Code: commit{'s' * (len(meta['commits']) > 1)} {', '.join(meta['commits'])} (provenance.json of each trial)."
    )
    return [head, *meta.get("provenance_notes", [])]


def refresh_best_cards(lb: Any) -> list[Any]:
    """Rewrite ``MODEL_CARD.md`` of each entry's best trial (highest or lowest trial mean); never fatal."""
    from runs.model_card import refresh_model_card

    long = lb.long
    if long.empty:
        return []
    means = long.groupby(["entry", "trial_id"])["value"].mean().reset_index()
    higher = bool(lb.meta.get("higher_is_better", True))
    written = []
    for _entry, grp in means.groupby("entry"):
        best = grp.sort_values("value", ascending=not higher).iloc[0]["trial_id"]
        row = lb.sweep.results[lb.sweep.results["trial_id"] == best]
        if row.empty:
            continue
        try:
            card = refresh_model_card(lb.sweep.run_folder(row.iloc[0]))
        except Exception as exc:
            warnings.warn(f"trial {best}: no model card ({exc})", RuntimeWarning, stacklevel=2)
            card = None
        if card is not None:
            written.append(card)
    return written
