"""Leaderboards of sweeps kept on URI storage (``s3://bucket/sweeps/NAME``, ``gs://…``).

The leaderboard reads a sweep folder with the same readers as for a local one: the bucket's
``results.csv``, ``sweep.yaml`` and the run folders of the *complete* trials (those whose
``trial.json`` completion marker is in the bucket; see :mod:`sweeps.staging`) are copied into
a temporary local folder first, without wandb runs and last checkpoints. A trial whose
folder is incomplete in the bucket is not copied, so the leaderboard lists it as failed
(missing per-subject metrics) instead of ranking half an upload.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from core.errors import InputError
from runs import run_folder as rf
from sweeps.records import RESULTS_FILE, RESUME_DIR, SWEEP_FILE, TRIAL_RECORD, TRIALS_DIR

#: Not needed by the leaderboard (cost: config.yaml; morphometrics: best.ckpt, data.json, split.json).
SKIPPED = (
    f"{rf.WANDB}/",
    f"{rf.CHECKPOINTS}/{rf.LAST_CKPT}",
    f"{RESUME_DIR}/",
    f"{rf.PREDICTIONS}/",
    f"{rf.QC}/",
    f"{rf.REAL_PREDICTIONS}/",
)


def default_out(uri: str) -> Path:
    """Report folder of a URI sweep when ``--out`` is not given: ``outputs/leaderboards/<name>``."""
    from core.paths import output_dir

    return output_dir() / "leaderboards" / uri.rstrip("/").rsplit("/", 1)[-1]


def fetch_sweep(uri: str, local: str | Path) -> list[str]:
    """Copy what the leaderboard reads of the sweep at ``uri`` into ``local``; returns the trial ids copied."""
    from sweeps import storage

    uri = uri.rstrip("/")
    local = Path(local)
    results = storage.read_text_or_none(storage.join(uri, RESULTS_FILE))
    if results is None:
        raise InputError(f"no {RESULTS_FILE}: not a finished sweep folder (run `cordbench sweep` first)", uri)
    local.mkdir(parents=True, exist_ok=True)
    (local / RESULTS_FILE).write_text(results)
    sweep_yaml = storage.read_text_or_none(storage.join(uri, SWEEP_FILE))
    if sweep_yaml is not None:
        (local / SWEEP_FILE).write_text(sweep_yaml)
    files = storage.list_files(storage.join(uri, TRIALS_DIR))
    complete = sorted({f.split("/", 1)[0] for f in files if f.count("/") == 1 and f.endswith(f"/{TRIAL_RECORD}")})

    def keep(rel: str) -> bool:
        tid, _, inner = rel.partition("/")
        return tid in complete and not inner.startswith(SKIPPED)

    storage.download_dir(storage.join(uri, TRIALS_DIR), local / TRIALS_DIR, keep=keep)
    return complete


@contextlib.contextmanager
def fetched(uri: str) -> Iterator[Path]:
    """A temporary local copy of the sweep at ``uri`` (see :func:`fetch_sweep`), deleted afterwards."""
    with tempfile.TemporaryDirectory(prefix="cordbench-leaderboard-") as tmp:
        local = Path(tmp, uri.rstrip("/").rsplit("/", 1)[-1])
        fetch_sweep(uri, local)
        yield local


def publish(out_dir: str | Path, uri: str) -> list[str]:
    """Upload the report folder to ``<sweep uri>/leaderboard/``; returns the uploaded file names."""
    from sweeps import storage

    return storage.upload_dir(out_dir, storage.join(uri.rstrip("/"), "leaderboard"))
