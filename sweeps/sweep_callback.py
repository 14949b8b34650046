"""The driver side of a sweep's bookkeeping: ``results.csv`` refreshed on every trial event, the
searcher's state saved after every finished trial (``<sweep>/searcher/searcher.pkl``, local or URI),
loaded back by ``cordbench sweep --resume`` (:func:`restore_searcher`), and every pickle Ray or
cordbench writes into the sweep folder signed (:mod:`sweeps.signing`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ray.tune import Callback

from sweeps import results as results_mod
from sweeps import signing
from sweeps.config import Sweep, is_uri
from sweeps.records import SEARCHER_DIR, SEARCHER_FILE


def inner_searcher(search_alg: Any) -> Any:
    """The innermost Searcher (under SearchGenerator / ConcurrencyLimiter wrappers)."""
    s = search_alg
    while hasattr(s, "searcher") and s.searcher is not None and s.searcher is not s:
        s = s.searcher
    return s


class SweepCallback(Callback):
    """Refresh ``results.csv`` on every trial event; save the searcher after every finished trial;
    sign Ray's snapshot of the experiment whenever Ray writes one."""

    def __init__(self, sweep: Sweep, searcher: Any = None, signer: signing.Signer | None = None):
        self.sweep_dir = sweep.sweep_dir
        self.dims = list(sweep.dims)
        self.run_config = sweep.run_config
        self.searcher = searcher
        self.signer = signer or signing.Signer(sweep.sweep_dir)
        self._staging: str | None = None
        self._params: dict[str, int] = {}
        self.writes = 0

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        # Ray's driver staging folder (where it writes its snapshot before syncing it to the sweep folder)
        if trials and self._staging is None:
            self._staging = trials[0].storage.experiment_driver_staging_path

    def get_state(self) -> dict | None:
        """Sign the state files of Ray's snapshot: Tune calls this right after writing the experiment
        and searcher state into its staging folder and before syncing that folder to the sweep
        folder. The callback itself keeps no state (None: Ray writes no callback pickle)."""
        if self._staging is not None:
            self.signer.sign_folder(self._staging)
        return None

    def _refresh(self, trials: list[Any], override: dict[str, str] | None = None) -> None:
        infos = results_mod.infos_from_trials(trials)
        for info in infos:
            if override and info.trial_id in override:
                info.status = override[info.trial_id]
        frame = results_mod.build_table(infos, self.dims, self.run_config, self.sweep_dir, self._params)
        results_mod.write_table(frame, self.sweep_dir)
        self.writes += 1

    def save_searcher(self) -> None:
        """Pickle the searcher's state to ``<sweep>/searcher/searcher.pkl`` (atomic rename; an
        object store gets it write-then-rename)."""
        if self.searcher is None:
            return
        if is_uri(self.sweep_dir):
            import tempfile

            from sweeps import storage

            with tempfile.TemporaryDirectory(prefix="cordbench-searcher-") as tmp:
                inner_searcher(self.searcher).save(str(Path(tmp, SEARCHER_FILE)))
                self.signer.sign(f"{SEARCHER_DIR}/{SEARCHER_FILE}", Path(tmp, SEARCHER_FILE).read_bytes())
                storage.upload_file(Path(tmp, SEARCHER_FILE), storage.join(self.sweep_dir, SEARCHER_DIR, SEARCHER_FILE))
            return
        folder = Path(self.sweep_dir, SEARCHER_DIR)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{SEARCHER_FILE}.part"
        inner_searcher(self.searcher).save(str(tmp))
        self.signer.sign(f"{SEARCHER_DIR}/{SEARCHER_FILE}", tmp.read_bytes())  # signed before it has its name
        os.replace(tmp, folder / SEARCHER_FILE)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self._refresh(trials)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self._refresh(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self.save_searcher()
        self._refresh(trials, {trial.trial_id: "TERMINATED"})

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self.save_searcher()
        self._refresh(trials, {trial.trial_id: "ERROR"})

    def on_experiment_end(self, trials: list, **info) -> None:
        self.save_searcher()
        self._refresh(trials)


def restore_searcher(searcher: Any, sweep_dir: str) -> None:
    """Load ``<sweep>/searcher/searcher.pkl`` (local or URI) into ``searcher``, if saved."""
    if not is_uri(sweep_dir):
        saved = Path(sweep_dir, SEARCHER_DIR, SEARCHER_FILE)
        if saved.exists():
            searcher.restore(str(saved))
        return
    import tempfile

    from sweeps import storage

    data = None
    try:
        data = storage.read_bytes(storage.join(sweep_dir, SEARCHER_DIR, SEARCHER_FILE))
    except FileNotFoundError:
        return
    with tempfile.TemporaryDirectory(prefix="cordbench-searcher-") as tmp:
        Path(tmp, SEARCHER_FILE).write_bytes(data)
        searcher.restore(str(Path(tmp, SEARCHER_FILE)))
