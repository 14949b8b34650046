"""The sweep's ``results.csv``: one row per trial, exactly once, rebuilt from the trial folders.

Columns: ``trial_id, status, error, model, preset, seed, data, task``, one column per swept
knob (``skip_connections``, ``depths``, …; list values as JSON), ``val_dice`` (best epoch),
``test_dice`` (mean over held-out subjects of the task's main class), ``run_dir`` (relative
to the sweep folder), ``epochs``, ``seconds``, ``params``, then ``attempts`` (how many times
the trial was started: > 1 after a node loss or a resume) and ``early_stopped`` (stopped by
the scheduler before its last epoch: no test metrics).

The file is written atomically (:func:`core.io.write_csv`) every time a trial starts,
finishes or fails, so a killed driver leaves a consistent partial file.
"""

from __future__ import annotations

import io as _io
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import yamlio
from runs import run_folder
from runs.run_folder import RunFolder
from sweeps import records
from sweeps.config import FIXED_COLUMNS, Dim, decode_params, network_check
from sweeps.records import (
    ATTEMPTS,
    BASE_COLUMNS,
    RESULTS_FILE,
    TAIL_COLUMNS,
    TRIAL_RECORD,
    columns,
    parse_attempts,
    parse_trial_record,
    trial_rel,
)

__all__ = [
    "BASE_COLUMNS",
    "TAIL_COLUMNS",
    "TrialInfo",
    "build_table",
    "columns",
    "error_summary",
    "trial_row",
    "write_table",
]


@dataclass
class TrialInfo:
    """What the driver knows about a trial (from Ray Tune's Trial object or experiment state)."""

    trial_id: str
    status: str
    params: dict[str, Any]
    last_result: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def error_summary(text: str, limit: int = 300) -> str:
    """The last meaningful line of a traceback (``ValueError: …``), shortened."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    line = lines[-1]
    for ln in reversed(lines):
        if ("Error" in ln or "Exception" in ln) and ":" in ln and not ln.startswith("File "):
            line = ln
            break
    return line[:limit]


def _frame(csv_text: str):
    import pandas as pd

    return pd.read_csv(_io.StringIO(csv_text))


def _epochs_and_best(metrics_csv: str) -> tuple[int | None, float | None]:
    df = _frame(metrics_csv)
    if "val/dice" not in df.columns:
        return None, None
    val = df[df["val/dice"].notna()]
    if val.empty:
        return None, None
    epochs = int(val["epoch"].max()) + 1 if "epoch" in val.columns else len(val)
    return epochs, float(val["val/dice"].max())


def _knob_value(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, (list, tuple, dict)) else v


def trial_row(
    info: TrialInfo,
    dims: list[Dim],
    run_config: Mapping[str, Any],
    read: Callable[[str], str | None],
    params_cache: dict[str, int] | None = None,
) -> dict[str, Any]:
    """One results.csv row from a trial's folder (``read(relative path)`` → text or None)."""
    from sweeps.config import apply_params

    values = decode_params(info.params, dims)
    rel = trial_rel(info.trial_id)
    run = RunFolder(rel, reader=read)
    cfg_text = run.text(run_folder.CONFIG)
    if cfg_text:
        cfg = yamlio.loads(cfg_text, run.config)
    else:
        cfg = apply_params(run_config, values, "results")
    m, d = cfg["model"], cfg["data"]
    row: dict[str, Any] = {
        "trial_id": info.trial_id,
        "status": info.status,
        "error": info.error,
        "model": m["name"],
        "preset": m["preset"],
        "seed": cfg["seed_everything"],
        "data": d["name"],
        "task": d["task"],
    }
    for dim in dims:
        if dim.key not in FIXED_COLUMNS:
            row[dim.column] = _knob_value(values.get(dim.key))
    lr = info.last_result or {}
    epochs, best = None, None
    metrics_text = run.text(run_folder.METRICS)
    if metrics_text:
        epochs, best = _epochs_and_best(metrics_text)
    if best is None and "val_dice" in lr:
        best = float(lr["val_dice"])
    if epochs is None and "epoch" in lr:
        epochs = int(lr["epoch"])
    test_text = run.text(run_folder.TEST_METRICS)
    done_text = run.text(TRIAL_RECORD)
    done = parse_trial_record(done_text) or {}
    attempts = parse_attempts(run.text(ATTEMPTS))
    try:
        params = network_check(cfg, params_cache)
    except Exception:  # a config that cannot build a network (the trial errored for that reason)
        params = None
    row.update(
        {
            "val_dice": best,
            "test_dice": records.main_dice_or_nan(_frame(test_text), d["task"]) if test_text else None,
            "run_dir": rel if (cfg_text or done_text) else None,
            "epochs": epochs,
            "seconds": round(float(done["seconds"]), 2)
            if done.get("seconds") is not None
            else (round(float(lr["time_total_s"]), 2) if "time_total_s" in lr else None),
            "params": params,
            "attempts": attempts,
            "early_stopped": bool(
                info.status == "TERMINATED"
                and not done
                and epochs is not None
                and epochs < int(cfg["trainer"]["max_epochs"])
            ),
        }
    )
    return row


def local_reader(sweep_dir: str | Path) -> Callable[[str], str | None]:
    """``read(relative path)`` for a local sweep folder."""
    root = Path(sweep_dir)

    def read(rel: str) -> str | None:
        p = root / rel
        try:
            return p.read_text() if p.is_file() else None
        except OSError:
            return None

    return read


def storage_reader(sweep_dir: str) -> Callable[[str], str | None]:
    """``read(relative path)`` for a local folder or a URI."""
    from sweeps.config import is_uri

    if not is_uri(sweep_dir):
        return local_reader(sweep_dir)
    from sweeps import storage

    def read(rel: str) -> str | None:
        return storage.read_text_or_none(storage.join(sweep_dir, rel))

    return read


def build_table(
    infos: Iterable[TrialInfo],
    dims: list[Dim],
    run_config: Mapping[str, Any],
    sweep_dir: str,
    params_cache: dict[str, int] | None = None,
):
    """results.csv as a DataFrame: one row per trial id (the last info wins), sorted by trial id."""
    import pandas as pd

    read = storage_reader(sweep_dir)
    by_id: dict[str, TrialInfo] = {}
    for info in infos:
        by_id[info.trial_id] = info
    rows = [trial_row(by_id[t], dims, run_config, read, params_cache) for t in sorted(by_id)]
    knobs = [d.column for d in dims if d.key not in FIXED_COLUMNS]
    return pd.DataFrame(rows, columns=columns(knobs))


def write_table(frame, sweep_dir: str) -> str:
    """Write ``<sweep>/results.csv`` atomically (or upload it for URI storage); returns its path."""
    from sweeps.config import is_uri

    if is_uri(sweep_dir):
        from sweeps import storage

        path = storage.join(sweep_dir, RESULTS_FILE)
        storage.write_text(path, frame.to_csv(index=False))
        return path
    from core import io

    path = Path(sweep_dir) / RESULTS_FILE
    io.write_csv(path, frame)
    return str(path)


def infos_from_trials(trials: Iterable[Any]) -> list[TrialInfo]:
    """TrialInfo for Ray Tune ``Trial`` objects (driver side)."""
    out = []
    for t in trials:
        err = ""
        if t.status == "ERROR":
            err = _read_error(t)
        params = {k: v for k, v in (t.config or {}).items()}
        out.append(TrialInfo(t.trial_id, t.status, params, dict(t.last_result or {}), err))
    return out


def _read_error(trial: Any) -> str:
    for attr in ("error_file",):
        try:
            path = getattr(trial, attr)
        except Exception:
            path = None
        if path:
            try:
                from sweeps import storage

                if storage.exists(str(path)):
                    return error_summary(storage.read_text(str(path)))
            except Exception:
                pass
    msg = getattr(trial, "error_msg", None)
    return error_summary(str(msg)) if msg else "trial failed (no error file)"
