"""Sweeps on an object store for real: ``--storage s3://…`` against moto's S3 server on loopback.

* node loss: the CI sweep on a local multi-node Ray cluster (head with 0 CPUs + 2 one-CPU
  workers) with ``s3://cordbench/sweeps``; a worker is removed while both trials train; the lost
  trial restarts on the other node from its Tune checkpoint *in the bucket* (``trial.json``
  ``restored_from``) and the bucket's copy of its run folder; every run folder, results.csv and
  the sweep state end up in the bucket, nothing half-written, nothing left on local disk;
* leaderboard (same sweep): ``cordbench leaderboard s3://… -o DIR --morphometrics --upload``
  reads the bucket only and writes its reports locally and back to the bucket;
* driver kill: ``cordbench sweep --storage s3://…`` (Optuna) is SIGKILLed after its first trial,
  the local staging folders are deleted, ``cordbench sweep --resume s3://…`` finishes from the
  bucket alone (searcher state included);
* errors: an unreachable endpoint / unknown credentials stop ``cordbench sweep`` before Ray starts,
  in one line naming the URI.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from core.paths import REPO_ROOT
from sweeps import storage
from sweeps.records import read_results_csv
from sweeps.staging import staging_dir
from tests.s3_server import MotoServer, free_port
from tests.sweep_harness import CORDBENCH, FAST, KILL_SWEEP, kill_driver_after_a_trial, sweep_losing_a_node

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.subprocess, pytest.mark.services]
RUN_FILES = {
    "config.yaml",
    "data.json",
    "split.json",
    "metrics.csv",
    "test_metrics.csv",
    "test_summary.json",
    "trial.json",
    ".attempts",
    ".elapsed.json",
    "checkpoints/best.ckpt",
    "checkpoints/last.ckpt",
}


@pytest.fixture(scope="module")
def s3_env(s3_server):
    """The server's settings in this process's environment (Ray nodes started afterwards inherit it)."""
    from sweeps.runner import ENV_DEFAULTS

    with pytest.MonkeyPatch.context() as mp:
        for k, v in {**ENV_DEFAULTS, **s3_server.env}.items():
            mp.setenv(k, os.environ.get(k, v) if k in ENV_DEFAULTS else v)
        yield s3_server


def _files(uri: str) -> list[str]:
    """Every object below ``uri``, temporary ones included (read with the raw pyarrow filesystem)."""
    import pyarrow.fs

    fs, base = pyarrow.fs.FileSystem.from_uri(uri)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(base, recursive=True, allow_not_found=True))
    return sorted(i.path[len(base) + 1 :] for i in infos if i.type == pyarrow.fs.FileType.File)


def _csv(uri: str) -> pd.DataFrame:
    return read_results_csv(io.StringIO(storage.read_text(uri)))


def _assert_complete(sweep_uri: str, frame: pd.DataFrame) -> list[str]:
    """Every expected object of a finished sweep is in the bucket, whole; nothing temporary is left."""
    import torch

    files = _files(sweep_uri)
    assert not [f for f in files if storage.is_partial(f) or storage.PROBE in f], files
    assert {"sweep.yaml", "results.csv"} <= set(files)
    assert any(f.startswith("experiment_state-") for f in files) and "tuner.pkl" in files  # Ray's sweep state
    for tid in frame["trial_id"]:
        run = {f.split("/", 2)[2] for f in files if f.startswith(f"trials/{tid}/")}
        assert RUN_FILES <= run, RUN_FILES - run
        assert any(f.startswith(f"tune_{tid}/checkpoint_") for f in files)
        ckpt = torch.load(
            io.BytesIO(storage.read_bytes(storage.join(sweep_uri, "trials", tid, "checkpoints", "best.ckpt"))),
            weights_only=False,
        )
        assert ckpt["state_dict"]  # a whole Lightning checkpoint, not a prefix of one
        test = _csv(storage.join(sweep_uri, "trials", tid, "test_metrics.csv"))
        row = frame.set_index("trial_id").loc[tid]
        assert row["test_dice"] == pytest.approx(test["sc/dice"].mean())
        assert not staging_dir(sweep_uri, tid).exists()  # the local copy is gone: the bucket holds it
    return files


# ------------------------------------------------------------------------------ node loss (+ leaderboard)
@pytest.fixture(scope="module")
def node_loss_sweep(s3_env, sweep_phantom: Path):
    """The CI sweep (2 trials × 4 epochs) into the bucket; one worker node is lost mid-run."""
    from sweeps.config import load_sweep

    sweep = load_sweep(
        REPO_ROOT / "configs" / "sweeps" / "ci.yaml",
        storage=f"s3://{s3_env.bucket}/sweeps",
        overrides=FAST
        + ["name=ci_s3", "config.trainer.max_epochs=4", f"config.data.root={sweep_phantom}", "failure.max_failures=2"],
    )

    def both_mid_run() -> bool:
        files = _files(sweep.sweep_dir) if storage.exists(sweep.sweep_dir) else []
        # a trial's second checkpoint in the bucket: by then Tune has registered its first (a node lost
        # right after the first upload could restart the trial from scratch, restored_from null)
        ckpts = {f.split("/")[0] for f in files if f.startswith("tune_") and re.search(r"/checkpoint_0*[1-9]", f)}
        done = [f for f in files if f.endswith("/trial.json")]
        return len(ckpts) == 2 and not done  # both trials past their second checkpoint, none finished

    return sweep.sweep_dir, sweep_losing_a_node(sweep, both_mid_run, poll=0.2).frame


def test_node_loss_restores_from_the_bucket(node_loss_sweep):
    uri, frame = node_loss_sweep
    assert uri == "s3://cordbench/sweeps/ci_s3"
    on_bucket = _csv(storage.join(uri, "results.csv"))
    assert list(on_bucket["trial_id"]) == list(frame["trial_id"]) and frame["trial_id"].is_unique
    assert len(frame) == 2 and (frame["status"] == "TERMINATED").all() and (frame["epochs"] == 4).all()
    assert sorted(frame["attempts"]) == [1, 2]
    _assert_complete(uri, frame)
    for _, row in frame.iterrows():
        record = json.loads(storage.read_text(storage.join(uri, "trials", row["trial_id"], "trial.json")))
        metrics = _csv(storage.join(uri, "trials", row["trial_id"], "metrics.csv"))
        assert metrics.loc[metrics["val/dice"].notna(), "epoch"].tolist() == [0, 1, 2, 3]  # each epoch once
        if row["attempts"] == 1:
            assert record["restored_from"] is None
            continue
        # the restored attempt started from Ray's checkpoint in the bucket, not from a local folder
        # (Tune kept only the newest checkpoints since: the one restored from may be deleted by now)
        assert re.fullmatch(
            rf"s3://cordbench/sweeps/ci_s3/tune_{row['trial_id']}/checkpoint_00000[0-2]", record["restored_from"]
        ), record["restored_from"]


def test_leaderboard_from_the_bucket(node_loss_sweep, tmp_path: Path, capsys):
    from cordbench.cli import main

    uri, frame = node_loss_sweep
    out = tmp_path / "lb"
    code = main(
        [
            "leaderboard",
            uri,
            "-o",
            str(out),
            "--no-wandb",
            "--no-cost",
            "--n-boot",
            "200",
            "--morphometrics",
            "--upload",
        ]
    )
    assert code == 0, capsys.readouterr().err
    table = pd.read_csv(out / "leaderboard.csv")
    # one entry (unet/tiny, both seeds): the mean over test subjects of the seeds' mean, from the bucket's files
    per_subject = pd.concat([_csv(storage.join(uri, "trials", t, "test_metrics.csv")) for t in frame["trial_id"]])
    assert table["n_trials"].tolist() == [2]
    assert table["mean"].iloc[0] == pytest.approx(per_subject.groupby("subject")["sc/dice"].mean().mean())
    morpho = pd.read_csv(out / "morphometrics.csv")  # per-level CSA errors: needs the bucket's best.ckpt
    assert set(morpho["entry"]) == set(table["entry"]) and (morpho["n_subjects"] >= 1).all()
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.html", "leaderboard.png", "morphometrics.csv"):
        assert storage.read_bytes(storage.join(uri, "leaderboard", name)) == (out / name).read_bytes()
    assert not [f for f in _files(uri) if storage.is_partial(f)]


# ------------------------------------------------------------------------------------ driver kill
def test_driver_kill_then_resume_from_the_bucket(s3_env, sweep_phantom: Path, tmp_path: Path):
    from ray.tune.search.optuna import OptunaSearch

    cfg = tmp_path / "killme_s3.yaml"
    cfg.write_text(
        KILL_SWEEP.format(root=sweep_phantom, storage="outputs/unused")
        .replace("name: killme", "name: killme_s3")
        .replace("num_samples: 3", "num_samples: 2")
        .replace("max_epochs: 2", "max_epochs: 1")
    )
    uri = f"s3://{s3_env.bucket}/sweeps/killme_s3"

    def terminated() -> set[str]:
        text = storage.read_text_or_none(storage.join(uri, "results.csv"))
        if not text:
            return set()
        partial = read_results_csv(io.StringIO(text))
        return set(partial.loc[partial["status"] == "TERMINATED", "trial_id"])

    driver = [CORDBENCH, "sweep", str(cfg), "--storage", f"s3://{s3_env.bucket}/sweeps"]
    finished = kill_driver_after_a_trial(driver, tmp_path / "driver1.log", terminated, poll=0.3)
    marks = {t: storage.read_text(storage.join(uri, "trials", t, "trial.json")) for t in finished}
    shutil.rmtree(staging_dir(uri, "x").parent, ignore_errors=True)  # every local copy of the sweep's trials

    from cordbench.cli import main

    assert main(["sweep", "--resume", uri]) == 0  # in this process (saves a start-up); Ray is started afresh
    frame = _csv(storage.join(uri, "results.csv"))
    assert len(frame) == 2 and frame["trial_id"].is_unique
    assert (frame["status"] == "TERMINATED").all() and (frame["epochs"] == 1).all()
    for t in finished:  # finished before the kill: not trained again
        assert storage.read_text(storage.join(uri, "trials", t, "trial.json")) == marks[t]
    _assert_complete(uri, frame)
    assert frame["model.lr"].round(12).is_unique  # the searcher continued from its state in the bucket
    searcher = OptunaSearch()
    pkl = tmp_path / "searcher.pkl"
    pkl.write_bytes(storage.read_bytes(storage.join(uri, "searcher", "searcher.pkl")))
    searcher.restore(str(pkl))
    assert len([t for t in searcher._ot_study.trials if t.state.name == "COMPLETE"]) == 2


# ------------------------------------------------------------------------------------------ errors
def test_storage_errors_are_one_line(s3_env, tmp_path: Path, capsys, monkeypatch):
    """Unreachable endpoint (sweep) and unknown credentials (sweep --resume, leaderboard): one line
    naming the URI, before any Ray or training starts."""
    from cordbench.cli import main

    ci = str(REPO_ROOT / "configs" / "sweeps" / "ci.yaml")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    assert main(["sweep", ci, "--storage", "s3://cordbench/sweeps"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: s3://cordbench/sweeps: cannot list: cannot reach"), err
    with MotoServer(auth=True) as locked:
        monkeypatch.setenv("AWS_ENDPOINT_URL", locked.endpoint)
        for argv in (
            ["sweep", "--resume", "s3://cordbench/sweeps/ci"],
            ["leaderboard", "s3://cordbench/sweeps/ci", "-o", str(tmp_path / "lb"), "--no-wandb"],
        ):
            assert main(argv) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and "access denied" in err[0] and "s3://cordbench/sweeps/ci" in err[0], err
