"""Reliability, round 3, class 1: ``cordbench sweep --resume DIR`` never runs code from the sweep folder.

Ray Tune resumes by unpickling files of the sweep folder; :mod:`sweeps.signing` lets it read only
files this user's installation signed. Each test plants a pickle whose ``__reduce__`` would write a
marker file, runs the CLI, and checks the one-line refusal names the file and the marker was never
written. The refusal comes before Ray starts, so no cluster is needed; that a real sweep signs what
Ray writes and resumes is checked by ``tests/test_sweeps_fault.py::test_driver_kill_then_resume``.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

from tests.support.reliability import cli_error

SWEEP_YAML = """name: planted
config:
  model: {name: unet, preset: tiny}
space:
  model.lr: {loguniform: [1.0e-4, 1.0e-1]}
search: {algorithm: optuna, num_samples: 2, seed: 0}
"""


class Payload:
    """Unpickling it writes ``marker`` (what a hostile sweep folder would do, harmlessly)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "code from the sweep folder ran"))


@pytest.fixture
def key_home(tmp_path, monkeypatch) -> Path:
    """A private per-user config folder for the signing key."""
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


def _folder(tmp_path: Path) -> tuple[Path, Path]:
    """A sweep folder as Ray leaves it (sweep.yaml, tuner.pkl, experiment state), and the marker path."""
    folder = tmp_path / "sweeps" / "planted"
    folder.mkdir(parents=True)
    (folder / "sweep.yaml").write_text(SWEEP_YAML)
    (folder / "tuner.pkl").write_bytes(pickle.dumps({"_tuner_kwargs": {}}))
    (folder / "experiment_state-2026-12-01_10-00-00.json").write_text(json.dumps({"trial_data": []}))
    return folder, tmp_path / "marker.txt"


def _sign_all(folder: Path) -> None:
    from sweeps.signing import Signer

    signer = Signer(str(folder))
    for p in folder.iterdir():
        if p.is_file() and p.name != "signatures.json":
            signer.sign(p.name, p.read_bytes())


def test_a_planted_tuner_pkl_is_refused_and_never_runs(key_home, tmp_path, capsys):
    folder, marker = _folder(tmp_path)
    (folder / "tuner.pkl").write_bytes(pickle.dumps(Payload(marker)))
    err = cli_error(capsys, ["sweep", "--resume", str(folder)])
    assert err == (
        f"error: {folder}/tuner.pkl: not written by cordbench for this user ({key_home}/cordbench/sweep-signing.key "
        "signs none of it; a sweep folder from elsewhere or of an older cordbench): Ray would unpickle it on resume "
        "and a pickle can run any code, so it is not read; start the sweep again (--overwrite) or resume it where "
        "it was written"
    )
    assert not marker.exists()


def test_a_cloudpickle_in_the_experiment_state_is_refused_though_the_rest_is_signed(key_home, tmp_path, capsys):
    """The folder's other files are signed by this user; the experiment state was replaced afterwards."""
    from ray import cloudpickle

    folder, marker = _folder(tmp_path)
    _sign_all(folder)
    state = folder / "experiment_state-2026-12-01_10-00-00.json"
    blob = {"_type": "CLOUDPICKLE_FALLBACK", "value": cloudpickle.dumps(Payload(marker)).hex()}
    state.write_text(json.dumps({"trial_data": [], "runner_data": blob}))
    err = cli_error(capsys, ["sweep", "--resume", str(folder)])
    assert err.startswith(f"error: {state}: changed since cordbench wrote it (damaged or replaced): Ray would unpickle")
    assert not marker.exists()


@pytest.mark.parametrize("rel", ["searcher/searcher.pkl", "tune_abc123/error.pkl", "searcher-state-x.pkl"])
def test_every_pickle_ray_or_cordbench_reads_is_checked(rel, key_home, tmp_path, capsys):
    folder, marker = _folder(tmp_path)
    _sign_all(folder)
    (folder / rel).parent.mkdir(exist_ok=True)
    (folder / rel).write_bytes(pickle.dumps(Payload(marker)))
    err = cli_error(capsys, ["sweep", "--resume", str(folder)])
    assert err.startswith(f"error: {folder / rel}: not written by cordbench for this user (")
    assert not marker.exists()


def test_signatures_copied_with_the_folder_sign_nothing_for_another_key(key_home, tmp_path, capsys, monkeypatch):
    """A colleague's folder carries a valid signatures.json for *their* key: it proves nothing here."""
    folder, marker = _folder(tmp_path)
    (folder / "tuner.pkl").write_bytes(pickle.dumps(Payload(marker)))
    _sign_all(folder)  # signed under the colleague's key
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "my-config"))  # this user: another key
    err = cli_error(capsys, ["sweep", "--resume", str(folder)])
    assert err.startswith(f"error: {folder}/tuner.pkl: not written by cordbench for this user (")
    assert not marker.exists()


def test_a_damaged_experiment_state_is_refused_in_one_line(key_home, tmp_path, capsys):
    """Cut short after it was written: refused before Ray reads it, results.csv untouched."""
    folder, _ = _folder(tmp_path)
    (folder / "results.csv").write_text("trial_id,status\na1,TERMINATED\nb2,TERMINATED\n")
    _sign_all(folder)
    state = folder / "experiment_state-2026-12-01_10-00-00.json"
    state.write_bytes(state.read_bytes()[:7])
    err = cli_error(capsys, ["sweep", "--resume", str(folder)])
    assert err.startswith(f"error: {state}: changed since cordbench wrote it (damaged or replaced)")
    assert (folder / "results.csv").read_text() == "trial_id,status\na1,TERMINATED\nb2,TERMINATED\n"


def test_the_key_is_private_and_a_shared_key_is_refused(key_home, tmp_path, capsys):
    from sweeps.signing import key_path, load_key

    assert len(load_key(create=True)) == 32
    path = key_path()
    assert path == key_home / "cordbench" / "sweep-signing.key"
    assert oct(path.stat().st_mode & 0o777) == "0o600" and oct(path.parent.stat().st_mode & 0o777) == "0o700"
    folder, _ = _folder(tmp_path)
    _sign_all(folder)
    os.chmod(path, 0o644)
    err = cli_error(capsys, ["sweep", "--resume", str(folder)])
    assert err == (
        f"error: {path}: the sweep signing key is open to other users (mode 0644): anyone who can read it can make "
        "a sweep folder run code on resume; make it private (chmod 600) or delete it (a new one is made)"
    )


def test_a_signed_folder_verifies_and_a_signed_path_with_other_content_does_not(key_home, tmp_path):
    """The check is on content: the folder as signed passes; the same path with other bytes does not."""
    from core.errors import ConfigError
    from sweeps import signing

    folder, _ = _folder(tmp_path)
    _sign_all(folder)
    signing.verify(str(folder))
    (folder / "tuner.pkl").write_bytes(pickle.dumps({"_tuner_kwargs": {"other": 1}}))
    with pytest.raises(ConfigError, match="tuner.pkl: changed since cordbench wrote it"):
        signing.verify(str(folder))
