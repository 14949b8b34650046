"""Real-data columns of the leaderboard (``cordbench leaderboard SWEEP --real DIR``).

Every ranked trial's best checkpoint (``checkpoints/best.ckpt``) is scored on the real set by
:func:`runs.real_eval.evaluate_real` — exactly what ``cordbench test --real DIR`` writes into that
run folder (``real_metrics.csv``, ``real_summary.json``, ``real_predictions/``). Those files are the
cache: they are reused while ``real_summary.json`` names the same checkpoint SHA-256 and the same
real-set fingerprint (:func:`runs.real_eval.cached_result`), so re-running the leaderboard infers
again only for a changed checkpoint or a changed set.

Per entry, pooled as the phantom columns pool subjects (:mod:`leaderboard.stats`): a real
image's value is the mean of the leaderboard's ``<class>/<metric>`` over the entry's trials, then
mean and percentile-bootstrap 95% CI (:func:`~leaderboard.stats.bootstrap_ci`, the same
resamples and seed) over the images whose reference is **manual** (the ground truth); the agreement
with automatic references is a separate mean. Columns added to the table (never renamed):
``real_mean``, ``real_ci_low``, ``real_ci_high``, ``real_n_images``, ``real_auto_mean``,
``real_auto_n_images``, ``real_note``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from core.errors import CordbenchError
from data_modules.real import AUTOMATIC, MANUAL

COLUMNS = [
    "entry",
    "real_mean",
    "real_ci_low",
    "real_ci_high",
    "real_n_images",
    "real_auto_mean",
    "real_auto_n_images",
    "real_note",
]
#: below this many images with a manual reference the CI is flagged as descriptive only
SMALL_N = 10


@dataclass
class RealSummary:
    """What the reports show about the real set."""

    root: Path
    column: str  # "<class>/<metric>" scored
    columns: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per entry (merged into the table)
    per_image: pd.DataFrame = field(default_factory=pd.DataFrame)  # entry, subject, contrast, reference, value
    trials: dict[str, str] = field(default_factory=dict)  # trial -> "scored" | "cached" | reason
    skipped: list[dict[str, str]] = field(default_factory=list)  # images of the set no trial could score


def _trial_scores(run_dir: Path, real: Any, tid: str, log: Callable[[str], None] | None) -> tuple[Any, str]:
    """``(RealResult, "scored"|"cached")`` of one trial, or ``(None, reason)``."""
    from runs.checkpoints import load_module
    from runs.real_eval import cached_result, evaluate_real
    from runs.run_folder import RunFolder
    from runs.run_guard import RunLock

    ckpt = RunFolder(run_dir).best_ckpt
    if not ckpt.is_file():
        return None, f"no checkpoint ({ckpt.name} missing)"
    cached = cached_result(run_dir, ckpt, real)
    if cached is not None:
        return cached, "cached"
    if log is not None:
        log(f"real data of trial {tid}: {len(real.images)} image(s)")
    try:
        module = load_module(ckpt)
        with RunLock(run_dir, "leaderboard --real"):
            return evaluate_real(module, real, run_dir, ckpt, log=log), "scored"
    except CordbenchError as exc:
        return None, str(exc)


def _values(records: list[dict[str, Any]], column: str) -> list[dict[str, Any]]:
    cls = column.split("/")[0]
    out = []
    for r in records:
        ref = r.get(f"{cls}/reference")
        if ref in (MANUAL, AUTOMATIC) and column in r:
            v = float(r[column])
            out.append(
                {
                    "subject": str(r["subject"]),
                    "contrast": r.get("contrast"),
                    "reference": ref,
                    "value": v if math.isfinite(v) else math.nan,
                }
            )
    return out


def entry_real(
    sweep: Any,
    trials: pd.DataFrame,
    real_dir: str | Path,
    column: str,
    n_boot: int = 10000,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> RealSummary:
    """Real columns of each entry of ``trials`` (rows of results.csv with an ``entry`` column)."""
    from data_modules.real import read_real_set
    from leaderboard.stats import bootstrap_ci

    real = read_real_set(real_dir)  # a bad set is one line before any trial is scored
    out = RealSummary(real.root, column)
    rows = []
    for _, row in trials.iterrows():
        tid = str(row["trial_id"])
        result, status = _trial_scores(sweep.trial_dir(row), real, tid, log)
        out.trials[tid] = status
        if result is not None:
            rows += [{"entry": row["entry"], "trial_id": tid, **v} for v in _values(result.records, column)]
            out.skipped = list(result.summary.get("skipped") or out.skipped)
    long = pd.DataFrame(rows, columns=["entry", "trial_id", "subject", "contrast", "reference", "value"])
    cols = []
    for entry in trials["entry"].drop_duplicates():
        sub = long[long["entry"] == entry]
        col: dict[str, Any] = {"entry": entry}
        for ref, prefix in ((MANUAL, "real"), (AUTOMATIC, "real_auto")):
            vals = sub[sub["reference"] == ref].groupby("subject")["value"].mean().dropna().to_numpy(float)
            col[f"{prefix}_mean"] = float(vals.mean()) if vals.size else math.nan
            col[f"{prefix}_n_images"] = int(vals.size)
            if ref == MANUAL:
                col["real_ci_low"], col["real_ci_high"] = bootstrap_ci(vals, n_boot=n_boot, seed=seed)
        reasons = sorted(
            {out.trials[str(t)] for t in trials.loc[trials["entry"] == entry, "trial_id"]} - {"scored", "cached"}
        )
        col["real_note"] = (
            "; ".join(reasons)
            if reasons
            else ("" if col["real_n_images"] else f"no image with a manual {column.split('/')[0]} reference")
        )
        cols.append(col)
    out.columns = pd.DataFrame(cols, columns=COLUMNS)
    out.per_image = (
        long.groupby(["entry", "subject", "contrast", "reference"], sort=False, dropna=False)["value"]
        .mean()
        .reset_index()
        if len(long)
        else long.drop(columns="trial_id")
    )
    return out


# --------------------------------------------------------------------------------------- display
def _fmt(v: Any, digits: int = 4) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


HEADS = ("real {col} [95% CI]", "real n", "real {col} vs automatic")


def heads(rs: RealSummary) -> list[str]:
    """Main-table headers of the real columns."""
    return [h.format(col=rs.column) for h in HEADS]


def cells(r: pd.Series) -> tuple[list[str], list[Any]]:
    """Formatted cells and raw sort values of one entry's real columns."""
    m, n = r.get("real_mean", math.nan), r.get("real_n_images", 0)
    n = 0 if n is None or (isinstance(n, float) and math.isnan(n)) else int(n)
    note = r.get("real_note", "")
    note = "" if not isinstance(note, str) else note
    if n == 0:
        main = f"n/a: {note}" if note else "n/a"
    elif n == 1:
        main = f"{_fmt(m)} (1 image: no CI)"
    else:
        main = f"{_fmt(m)} [{_fmt(r.get('real_ci_low'))}, {_fmt(r.get('real_ci_high'))}]"
    auto_n = r.get("real_auto_n_images", 0)
    auto_n = 0 if auto_n is None or (isinstance(auto_n, float) and math.isnan(auto_n)) else int(auto_n)
    auto = f"{_fmt(r.get('real_auto_mean'))} (n = {auto_n})" if auto_n else "–"
    return [main, str(n), auto], [m, n, r.get("real_auto_mean", math.nan)]


def detail_table(rs: RealSummary, entries: list[str]) -> tuple[str, list[str], list[list[str]]]:
    """(title, headers, rows): each entry's value per real image (mean over its trials)."""
    pi = rs.per_image
    images = list(dict.fromkeys(zip(pi["subject"], pi["contrast"], pi["reference"]))) if len(pi) else []
    by = {(str(r["entry"]), r["subject"], r["reference"]): r["value"] for _, r in pi.iterrows()}
    heads_ = ["entry", *[f"{s} ({c}, {ref})" for s, c, ref in images]]
    rows = [[e, *[_fmt(by.get((e, s, ref), math.nan)) for s, _, ref in images]] for e in entries]
    return f"Real data: {rs.column} per image (mean over each entry's trials), {rs.root}", heads_, rows


def notes(rs: RealSummary, n_boot: int) -> list[str]:
    """Method notes of the real columns (what is ground truth; small-n warning; trial and image problems)."""
    n = int(rs.columns["real_n_images"].max()) if len(rs.columns) else 0
    out = [
        f"Real data ({rs.root}): each trial's best checkpoint segments every real image through its own "
        f"preprocessing and is scored on the image's native grid (cordbench test --real; cached per trial in "
        f"real_metrics.csv/real_summary.json, reused while the checkpoint and the set are unchanged). "
        f"'real {rs.column}' = mean over the images with a manual reference (ground truth) of each image's "
        f"value averaged over the entry's trials, 95% CI: percentile bootstrap over images ({n_boot} "
        f"resamples); 'vs automatic' = agreement with automatic masks (e.g. sct_deepseg_sc), not accuracy."
    ]
    if n < SMALL_N:
        out.append(
            f"Real data: n = {n} image(s) with a manual reference — far too few for inference: a CI over "
            f"{n} value(s) {'has zero width and ' if n <= 1 else ''}says nothing about other scans; read the "
            f"real columns as a case report (images of one subject or acquisition are not independent)."
        )
    out += [
        f"Real data, trial {t}: not scored ({why})" for t, why in rs.trials.items() if why not in ("scored", "cached")
    ]
    out += [f"Real data: {s['image']} not scored ({s['reason']})" for s in rs.skipped]
    return out
