"""What the leaderboard may pool into one entry, and how a failed subject counts.

**Scoring protocol.** A trial's numbers depend on how it was scored, not only on its model: the
scoring grid (``data.scoring``), the post-processing applied to its masks (``model.postprocess``,
as recorded in ``test_summary.json``) and the preprocessing (``data.spacing``, ``data.crop``,
``data.preset``, from its ``config.yaml``). Trials of one entry whose protocols differ are **split**
into one entry per protocol, named ``<entry> [<field>=<value>, …]``, and the Method section says so
(:func:`split_by_protocol`). A field that is a swept knob of the sweep is not split on: with
``--by config`` it is part of the entry already, with ``--by model`` pooling over knobs is what was
asked for. A trial whose records do not say (a hand-made sweep without ``config.yaml`` or
``test_summary.json``) is not split on that field.

**Failures.** A per-subject value that is infinite in the *worse* direction (+inf for a distance or
error, −inf for a higher-is-better metric: e.g. the distance of an empty prediction in an older or
foreign record) is a failed subject, as the segmentation challenges count it: it enters the
statistics as the **worst finite value of that metric in the leaderboard** (over every entry's
subjects, a lower bound on the penalty) instead of being dropped, and the entry's ``n_failed`` column
counts such values (trial × subject) beside the mean (:func:`failures_as_worst`). NaN, and an
infinity in the better direction (``psnr`` = +inf of a perfect mask), stay missing for that subject.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

#: Protocol fields: dotted config key -> the ``test_summary.json`` key that records what was used (or None).
PROTOCOL_FIELDS: dict[str, str | None] = {
    "data.scoring": "scoring",
    "model.postprocess": "postprocess",
    "data.spacing": None,
    "data.crop": None,
    "data.preset": None,
}


def _text(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return str(v)


def trial_protocol(run: Any) -> dict[str, str | None]:
    """The protocol fields of one trial's run folder (None where its records do not say)."""
    try:
        cfg = run.read_config() or {}
    except Exception:  # a trial without a readable config.yaml: unknown, not split on
        cfg = {}
    try:
        summary = run.read_test_summary() or {}
    except Exception:
        summary = {}
    out: dict[str, str | None] = {}
    for key, summary_key in PROTOCOL_FIELDS.items():
        section, name = key.split(".", 1)
        value = summary.get(summary_key) if summary_key else None
        if value is None:
            value = (cfg.get(section) or {}).get(name) if isinstance(cfg, dict) else None
        out[key] = _text(value)
    return out


def split_by_protocol(sweep: Any, res: pd.DataFrame, ok: pd.Series, knobs: list[str]) -> list[str]:
    """Rename the ``entry`` of the successful trials of ``res`` whose entry mixes protocols; the notes."""
    protocols = {row["trial_id"]: trial_protocol(sweep.run_folder(row)) for _, row in res[ok].iterrows()}
    notes = []
    for entry, group in res[ok].groupby("entry", sort=True):
        fields = [
            f
            for f in PROTOCOL_FIELDS
            if f not in knobs and len({protocols[t][f] for t in group["trial_id"] if protocols[t][f] is not None}) > 1
        ]
        if not fields:
            continue
        for idx, row in group.iterrows():
            p = protocols[row["trial_id"]]
            res.at[idx, "entry"] = f"{entry} [{', '.join(f'{f}={p[f]}' for f in fields)}]"
        differ = "; ".join(
            f"{f}: {' / '.join(sorted({protocols[t][f] or 'unrecorded' for t in group['trial_id']}))}" for f in fields
        )
        notes.append(
            f"Entry {entry} split by scoring protocol: its trials differ in {differ}; numbers made so are not pooled."
        )
    return notes


def failures_as_worst(long: pd.DataFrame, higher_is_better: bool) -> tuple[pd.DataFrame, str | None]:
    """``long`` with worse-direction infinities replaced by the worst finite value and ``failed`` flagged;
    the Method note (None when nothing failed)."""
    values = long["value"].astype(float)
    failed = values == (-np.inf if higher_is_better else np.inf)
    long = long.assign(failed=failed)
    if not failed.any():
        return long, None
    finite = values[np.isfinite(values)]
    if finite.empty:
        return long, (
            f"{int(failed.sum())} subject result(s) failed (infinite value) and no finite value exists to score "
            "them as the worst: they count as missing."
        )
    worst = float(finite.min() if higher_is_better else finite.max())
    long.loc[failed, "value"] = worst
    return long, (
        f"Failures: {int(failed.sum())} subject result(s) (trial × subject) with an infinite "
        f"{'−inf' if higher_is_better else '+inf'} value (e.g. an empty prediction's distance) are scored as the "
        f"worst value of the leaderboard, {worst:.4g}, not dropped; n_failed and '(k failed)' beside the mean count them per entry."
    )


__all__ = ["PROTOCOL_FIELDS", "failures_as_worst", "split_by_protocol", "trial_protocol"]
