"""Sweep records: the one place that names the sweep folder's files and a trial's sweep-only records.

Sweep folder (``<storage>/<name>/``)::

    sweep.yaml               the resolved sweep config
    results.csv              one row per trial (:data:`BASE_COLUMNS`, knobs, :data:`TAIL_COLUMNS`)
    signatures.json          HMACs of the pickles below and of Ray's (:mod:`sweeps.signing`)
    searcher/searcher.pkl    the searcher's state, saved after every finished trial
    tuner.pkl, experiment_state-*.json, …   Ray Tune's own state (pickles)
    trials/<trial_id>/       a run folder (:mod:`runs.run_folder`) plus:
        trial.json           the trial finished: metrics last reported, seconds over all attempts, timing
        .attempts            how many times the trial was started (text integer)
        .elapsed.json        wall seconds per attempt (summed into ``trial.json``'s ``seconds``)
        .metrics.previous.csv  per-epoch rows of earlier attempts while a restored attempt runs
        .resume/             Tune's checkpoint of the trial, copied in while the trial restarts from it

A Tune checkpoint directory holds :data:`TUNE_CHECKPOINT` and :data:`TUNE_META` (``{"epoch": n}``).

The "main metric of a task" (``test_dice`` in results.csv) is :func:`main_dice`: the mean over
held-out subjects of the Dice of the task's own class (:func:`main_class`), or of the mean over
all classes' Dice for a task without one (``levels``). It is defined here only: the trial's last
report (:func:`sweeps.trainable.final_report`, DDP trials too) and results.csv
(:func:`sweeps.results.trial_row`) call it. This module is imported by :mod:`sweeps.trainable`,
:mod:`sweeps.results`, :mod:`sweeps.runner` and :mod:`leaderboard`; cheap to import
(no torch, no Ray).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SWEEP_FILE = "sweep.yaml"
RESULTS_FILE = "results.csv"
SIGNATURES_FILE = "signatures.json"
SEARCHER_DIR = "searcher"
SEARCHER_FILE = "searcher.pkl"
TUNER_FILE = "tuner.pkl"  # Ray Tune's pickled Tuner
TRIALS_DIR = "trials"
TRIAL_RECORD = "trial.json"
ATTEMPTS = ".attempts"
ELAPSED = ".elapsed.json"
PREVIOUS_METRICS = ".metrics.previous.csv"
RESUME_DIR = ".resume"
TUNE_CHECKPOINT = "checkpoint.ckpt"
TUNE_META = "meta.json"

#: results.csv: columns before the knob columns, and after them.
BASE_COLUMNS = ["trial_id", "status", "error", "model", "preset", "seed", "data", "task"]
TAIL_COLUMNS = ["val_dice", "test_dice", "run_dir", "epochs", "seconds", "params", "attempts", "early_stopped"]


def columns(knobs: Iterable[str]) -> list[str]:
    """results.csv columns for these knob columns."""
    return BASE_COLUMNS + [k for k in knobs if k not in BASE_COLUMNS + TAIL_COLUMNS] + TAIL_COLUMNS


def trial_rel(trial_id: str) -> str:
    """A trial's run folder relative to the sweep folder (results.csv's ``run_dir``)."""
    return f"{TRIALS_DIR}/{trial_id}"


# ------------------------------------------------------------------------------- main metric
def main_class(task: str) -> str | None:
    """The class whose Dice is a task's main metric: the task's own class when it scores one
    of that name (``sc``, ``gm``, ``canal``), else None (mean over all classes)."""
    from core.tasks import TASKS

    spec = TASKS.get(task)
    return task if spec is not None and task in spec.classes else None


def main_dice(frame: Any, task: str) -> float | None:
    """Mean over subjects of the main class's Dice (each subject's mean over classes for other
    tasks); ``frame``: per-subject test metrics (a DataFrame or a list of records). None: no Dice."""
    import pandas as pd

    df = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(list(frame))
    if df.empty:
        return None
    main = main_class(task)
    if main and f"{main}/dice" in df.columns:
        return float(df[f"{main}/dice"].astype(float).mean())
    cols = [c for c in df.columns if c.endswith("/dice")]
    if not cols:
        return None
    return float(df[cols].astype(float).mean(axis=1).mean())


def main_dice_or_nan(frame: Any, task: str) -> float:
    """:func:`main_dice`, NaN when there is none (results.csv's ``test_dice``)."""
    v = main_dice(frame, task)
    return math.nan if v is None else v


# ------------------------------------------------------------------------------- trial records
def parse_trial_record(text: str | None) -> dict[str, Any] | None:
    """``trial.json`` text → record; None when absent or unreadable (an interrupted write)."""
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def read_trial_record(run_dir: Path) -> dict[str, Any] | None:
    """The ``trial.json`` of a finished run folder, else None."""
    p = Path(run_dir) / TRIAL_RECORD
    return parse_trial_record(p.read_text()) if p.exists() else None


def write_trial_record(run_dir: Path, record: Mapping[str, Any]) -> Path:
    """Write ``trial.json`` atomically (marks the trial finished)."""
    from core import io

    return io.write_json(Path(run_dir) / TRIAL_RECORD, dict(record))


def parse_attempts(text: str | None) -> int | None:
    """``.attempts`` text → count (None when absent or not an integer)."""
    return int(text) if text and text.strip().isdigit() else None


def next_attempt(run_dir: Path) -> int:
    """Count one more start of the trial in ``.attempts`` and return the new count."""
    path = Path(run_dir) / ATTEMPTS
    attempts = (parse_attempts(path.read_text()) or 0) + 1 if path.exists() else 1
    path.write_text(str(attempts))
    return attempts


class Elapsed:
    """Wall time of a trial summed over its attempts (``.elapsed.json``: seconds per attempt)."""

    def __init__(self, run_dir: Path, attempt: int):
        self.path, self.attempt, self.t0 = Path(run_dir) / ELAPSED, str(attempt), time.perf_counter()
        self.done = json.loads(self.path.read_text()) if self.path.exists() else {}

    def update(self) -> float:
        """Record this attempt's seconds so far; returns the total over all attempts."""
        from core import io

        self.done[self.attempt] = round(time.perf_counter() - self.t0, 3)
        io.write_json(self.path, self.done)
        return float(sum(self.done.values()))


def read_results_csv(source: Any):
    """``results.csv`` (a path or a text buffer) as a DataFrame, ``trial_id`` kept as text.

    Ray's searcher trial ids are 8 hex digits: read with type inference, an id like ``12345678`` or
    ``5e123456`` would become a number (or inf) and no longer name its trial folder.
    """
    import pandas as pd

    return pd.read_csv(source, dtype={"trial_id": str})
