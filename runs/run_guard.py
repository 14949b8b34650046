"""Protection of a run folder used by ``cordbench fit|validate|test``: one run at a time, no silent
overwrite of an earlier run, an explicit ``--resume``.

* :class:`RunLock` — an exclusive ``flock`` on ``<run>/.cordbench.lock`` held while the command
  runs; a second command on the same folder is refused in one line naming the holder (pid,
  command, start time). The lock file is removed on exit; a killed holder's lock is released by
  the kernel. DDP worker processes (rank > 0, which re-run the command line) do not lock.
* :func:`plan_fit` — ``fit`` into a folder holding an earlier run's records is refused unless
  ``--resume`` (continue from its last checkpoint, with the same config) or ``--overwrite``
  (its records are removed). Flags are checked before any work; the refusal and the removal
  happen once the new run's inputs have passed validation (:meth:`FitPlan.before_write`), so a
  bad input is reported as such and always leaves the earlier run intact.
* :func:`check_evaluate` — ``validate``/``test`` may write into a training run's folder (its
  ``test_metrics.csv``/``test_summary.json`` are their outputs) only with the run's own config;
  the fit's records (``config.yaml``, ``split.json``, ``data.json``, ``metrics.csv``, checkpoints)
  are never modified (see :func:`runs.runner.evaluate`).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from core import yamlio
from core.errors import ConfigError, OutputError, RunInterrupted
from runs import run_folder as rf

LOCK = ".cordbench.lock"
#: An interrupted fit's mid-epoch checkpoint (``checkpoints/interrupted.ckpt``), newest wins on --resume.
INTERRUPTED_CKPT = "interrupted.ckpt"
#: Files and folders a run writes: their presence makes a folder an earlier run.
RECORDS = (
    rf.CONFIG,
    rf.SPLIT,
    rf.DATA,
    rf.METRICS,
    rf.CHECKPOINTS,
    rf.TEST_METRICS,
    rf.TEST_SUMMARY,
    rf.FAILURE,
    "hparams.yaml",
    rf.WANDB,
    rf.PREDICTIONS,
    rf.QC,
    rf.PROVENANCE,
    rf.PIP_FREEZE,
    rf.MODEL_CARD,
)
#: Keys a resumed run may change (more epochs, display, logging, where the folder is) without mixing two runs.
#: Keys ``validate``/``test`` may set differently from the run they score (devices, strategy, logging: the
#: sweep's DDP trials test their best checkpoint on one device).
# the label-free inference rule is the checkpoint's own at validate/test (runs.runner.evaluate)
EVALUATE_CHANGES = (
    "trainer.",
    "logger.",
    "output_dir",
    "name",
    "data.inference",
    "data.inference_overlap",
    "data.inference_blend",
)
RESUMABLE_CHANGES = ("trainer.max_epochs", "trainer.enable_progress_bar", "logger.", "output_dir", "name")


def is_worker_rank() -> bool:
    """A DDP worker (global rank > 0, :mod:`core.distributed`): its rank-0 process guards the folder."""
    from core.distributed import is_global_zero

    return not is_global_zero()


class RunLock:
    """An exclusive lock of a run folder for this process (a context manager)."""

    def __init__(self, out: str | Path, command: str = "cordbench"):
        self.out, self.command = Path(out), command
        self.path = self.out / LOCK
        self._fd: int | None = None
        self._created = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock or raise one line naming the holder."""
        import fcntl

        self._created = not self.out.exists()
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the run folder ({exc.strerror or exc})", self.out) from None
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 500).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise OutputError(
                    f"run folder is in use by {holder}: wait for it to finish or choose another -o", self.out
                ) from None
            try:  # the holder may have removed the file between our open and flock: lock the current one
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        since = datetime.datetime.now().isoformat(timespec="seconds")
        os.write(fd, f"cordbench {self.command} (pid {os.getpid()}, since {since})\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file and unlock; remove the run folder too if this lock created it and it is empty."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
        if self._created:
            try:
                self.out.rmdir()  # only succeeds when nothing was written
            except OSError:
                pass


def existing_records(out: str | Path) -> list[str]:
    """Names of a run's records present in ``out`` (empty: a new or empty folder)."""
    out = Path(out)
    return [n for n in RECORDS if (out / n).exists()] if out.is_dir() else []


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            flat.update(_flat(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def config_changes(out: Path, cfg: Mapping[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """``key: old -> new`` for every key where ``cfg`` differs from ``out/config.yaml``."""
    path = out / rf.CONFIG
    try:
        old = yamlio.loads(path.read_text(), path) or {}
    except (OSError, ConfigError) as exc:
        raise OutputError(f"unreadable run config ({exc})", path) from None
    a, b = _flat(old), _flat(dict(cfg))
    keys = sorted(set(a) | set(b))
    return [
        f"{k}: {a.get(k)!r} -> {b.get(k)!r}"
        for k in keys
        if a.get(k) != b.get(k) and not any(k == i or (i.endswith(".") and k.startswith(i)) for i in ignore)
    ]


@dataclass
class FitPlan:
    """What ``fit`` does with its run folder (decided before any work, applied before the first write)."""

    out: Path
    ckpt_path: str | None = None  # the checkpoint to start from (the run's own with --resume)
    overwrite: bool = False  # replace an earlier run: its records are removed once the inputs are valid
    resume: bool = False  # continue the run in ``out`` (its metrics.csv rows are kept)

    def before_write(self, out: Path) -> None:
        """Called by the runner after validating the inputs, before writing the first record.

        An earlier run without ``--resume``/``--overwrite`` is refused here, so a bad input is
        reported first (and the earlier run stays intact either way).
        """
        records = existing_records(out)
        if not records or self.resume:
            return
        if not self.overwrite:
            raise OutputError(
                f"run folder holds an earlier run ({', '.join(records)}): continue it with --resume, "
                "replace it with --overwrite, or choose another -o",
                out,
            )
        clear_records(out)


def latest_checkpoint(out: Path) -> Path | None:
    """The newest of ``checkpoints/last.ckpt`` and ``checkpoints/interrupted.ckpt``."""
    found = [p for p in (out / rf.CHECKPOINTS / rf.LAST_CKPT, out / rf.CHECKPOINTS / INTERRUPTED_CKPT) if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def plan_fit(
    cfg: Mapping[str, Any], out: Path, *, resume: bool = False, overwrite: bool = False, ckpt_path: str | None = None
) -> FitPlan:
    """Decide (before any work) how ``fit`` treats ``out``; refuse an earlier run without a flag."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    if resume and ckpt_path:
        raise ConfigError("--resume continues from the run's own last checkpoint: drop --ckpt-path")
    if resume:
        last = latest_checkpoint(out)
        if last is None:
            found = ", ".join(existing_records(out)) or "an empty folder"
            raise OutputError(
                f"nothing to resume: no {rf.CHECKPOINTS}/{rf.LAST_CKPT} (found: {found}); start it without --resume",
                out,
            )
        if not (out / rf.CONFIG).is_file():
            raise OutputError(
                f"--resume needs the run's {rf.CONFIG}, which is gone: without it the resumed run cannot be "
                f"checked to be the same run; put it back, or start again with --overwrite",
                out,
            )
        changed = config_changes(out, cfg, RESUMABLE_CHANGES)
        if changed:
            raise ConfigError(
                f"--resume with another config than the run's {rf.CONFIG} ({'; '.join(changed[:3])}"
                f"{'; …' if len(changed) > 3 else ''}): resume with the same config, or --overwrite",
                out,
            )
        metrics_rows(out / rf.METRICS)  # a damaged history is refused before it could be rewritten
        _refuse_finished(out, last, int(cfg["trainer"]["max_epochs"]))
        return FitPlan(out, ckpt_path=str(last), resume=True)
    return FitPlan(out, ckpt_path=ckpt_path, overwrite=overwrite)


def _refuse_finished(out: Path, last: Path, max_epochs: int) -> None:
    """A run whose last checkpoint completed ``trainer.max_epochs`` epochs has nothing to resume:
    refused with nothing changed (Lightning would skip training and rewrite the records)."""
    from runs.checkpoints import read_checkpoint

    if last.name == INTERRUPTED_CKPT:
        return
    ckpt = read_checkpoint(last)
    try:
        done = int(ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):
        done = int(ckpt.get("epoch", -1)) + 1
    if done >= max_epochs:
        raise OutputError(
            f"the run already finished ({done} of trainer.max_epochs={max_epochs} epochs in "
            f"{rf.CHECKPOINTS}/{last.name}): nothing to resume, nothing changed; to train on, add "
            "--trainer.max_epochs=<more> to --resume",
            out,
        )


def metrics_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """``(columns, rows)`` of a run's ``metrics.csv`` (none when absent); a damaged file (a row of
    another length, a step that is not a number, bytes that are not text) is one line naming it."""
    import csv

    if not path.is_file():
        return [], []
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            keys = list(reader.fieldnames or [])
            rows = []
            for r in reader:
                bad = None in r or None in r.values() or "step" not in r
                if not bad and r["step"] != "":
                    try:
                        float(r["step"])
                    except ValueError:
                        bad = True
                if bad:
                    raise OutputError(
                        f"damaged at line {reader.line_num} (a row that does not match the header "
                        f"{','.join(keys[:4])}…): --resume keeps the per-epoch history in it; repair it or "
                        "move it aside",
                        path,
                    )
                rows.append(r)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise OutputError(
            f"damaged, not a readable CSV ({type(exc).__name__}); repair it or move it aside", path
        ) from None
    return keys, rows


def clear_records(out: Path) -> None:
    """Remove an earlier run's records (only the names a run writes; other files are left alone)."""
    for name in RECORDS:
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def check_evaluate(cfg: Mapping[str, Any], out: Path) -> None:
    """``validate``/``test`` into a folder holding a run of another config is refused (before the first write)."""
    if (out / rf.CONFIG).exists():
        changed = config_changes(out, cfg, EVALUATE_CHANGES)
        if changed:
            raise ConfigError(
                f"run folder holds a run of another config ({'; '.join(changed[:3])}"
                f"{'; …' if len(changed) > 3 else ''}): its records are kept; give -o a new folder",
                out,
            )


def check_same_split(out: Path, split: Mapping[str, Any]) -> None:
    """Refuse scoring on other subjects than the split recorded in ``out`` (the data changed since the fit)."""
    import json

    path = out / rf.SPLIT
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise OutputError(f"unreadable split record ({exc})", path) from None
    if old != json.loads(json.dumps(dict(split), default=str)):
        raise OutputError(
            "this run's subjects differ from the split recorded by the run in this folder (data "
            "changed since?): its records are kept; give -o a new folder",
            path,
        )


def command_name() -> str:
    """The cordbench sub-command of this process (for the lock's holder line)."""
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    return args[0] if args else "run"


# ------------------------------------------------------------------------- interrupt and resume
def is_interrupt(exc: BaseException, trainer: Any) -> bool:
    """Ctrl-C during a Trainer call: Lightning catches it, shuts down and raises ``SystemExit(1)``."""
    return isinstance(exc, KeyboardInterrupt) or (
        isinstance(exc, SystemExit) and bool(getattr(trainer, "interrupted", False))
    )


def interrupted_error(out: Path, trainer: Any) -> RunInterrupted:
    """The one line of an interrupted run (exit 130), after :func:`runs.runner.record_failure`."""
    return RunInterrupted(
        f"interrupted at epoch {int(trainer.current_epoch)}, step {int(trainer.global_step)} "
        f"(recorded in {rf.FAILURE}); continue it with the same command and --resume",
        out,
    )


def evaluation_interrupted(out: Path, stage: str) -> RunInterrupted:
    """The one line of a ``validate``/``test`` stopped by Ctrl-C (exit 130): nothing of it was written."""
    return RunInterrupted(
        f"{stage} interrupted (Ctrl-C / SIGINT): its metrics were not written (earlier ones are kept); "
        "run the same command again",
        out,
    )


@contextlib.contextmanager
def interrupts(trainer: Any, error: Callable[[BaseException], Exception]) -> Iterator[None]:
    """Around a Trainer call (fit, validate, test): Ctrl-C becomes ``error(exc)``, a one-line exit 130.

    Lightning catches the interrupt, shuts down and raises ``SystemExit(1)``, which would end the
    command with status 1 and no line; ``error`` may record the interruption before it returns the error.
    """
    try:
        yield
    except (KeyboardInterrupt, SystemExit) as exc:
        if not is_interrupt(exc, trainer):
            raise
        raise error(exc) from None


def fit_callbacks(out: Path, resumed_from: Mapping[str, Any] | None) -> list[Any]:
    """Callbacks of a guarded fit: a checkpoint on Ctrl-C; on resume, the earlier per-epoch metrics kept."""
    cbs: list[Any] = [InterruptCheckpoint(out / rf.CHECKPOINTS)]
    if resumed_from is not None:
        cbs.append(KeepMetricsOnResume(out / rf.METRICS, int(resumed_from.get("global_step", 0))))
    return cbs


class InterruptCheckpoint(pl.Callback):
    """On Ctrl-C only, save ``checkpoints/interrupted.ckpt`` (mid-epoch) for ``--resume``.

    Like Lightning's ``OnExceptionCheckpoint``, which saves on every exception (a diverged or
    crashed run has nothing worth resuming) and, being a ``Checkpoint``, would be taken for the
    run's best-checkpoint callback. A run that finishes removes the file.
    """

    def __init__(self, dirpath: Path):
        self.path = Path(dirpath) / INTERRUPTED_CKPT

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt) and trainer.global_step > 0:
            trainer.save_checkpoint(str(self.path))

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit" and not trainer.interrupted:
            self.path.unlink(missing_ok=True)


class KeepMetricsOnResume(pl.Callback):
    """Keep the rows of ``metrics.csv`` logged before the resumed checkpoint (step < its global step).

    Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when it starts; the rows of the
    interrupted run's later steps (not in the checkpoint) are dropped, as they are trained again.
    """

    def __init__(self, path: Path, global_step: int):
        self.path = path
        self.keys, rows = metrics_rows(path)
        self.rows = [r for r in rows if r["step"] != "" and int(float(r["step"])) < global_step]

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        import csv

        from pytorch_lightning.loggers import CSVLogger

        if not self.rows:
            return
        for lg in trainer.loggers:
            if isinstance(lg, CSVLogger):
                exp = lg.experiment  # created now (it removed the old file)
                with open(exp.metrics_file_path, "w", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=self.keys)
                    w.writeheader()
                    w.writerows(self.rows)
                exp.metrics_keys = sorted(set(exp.metrics_keys) | set(self.keys))
