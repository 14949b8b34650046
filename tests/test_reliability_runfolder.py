"""Reliability beyond the catalogue, run folders: no silent overwrite, explicit resume, one run at a
time, a Ctrl-C recorded and resumable.

In-process on the tiny BIDS tree of ``test_reliability_data.py`` (a tiny U-Net fit is a few
seconds); the Ctrl-C case runs ``cordbench fit`` as a real subprocess and sends it SIGINT.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from cordbench.cli import main
from runs.run_guard import LOCK, RunLock
from tests.support.reliability import cli_error, copy_run, fit_args, make_bids, tree

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny tree and one finished 1-epoch run (copied by each test that changes it)."""
    base = tmp_path_factory.mktemp("runfolder")
    root = make_bids(base / "bids")
    assert main(fit_args(root, base / "run")) == 0
    return root, base / "run"


# ------------------------------------------------------------------------------ B: no overwrite
def test_fit_into_an_earlier_run_is_refused_without_a_flag(trained, tmp_path, capsys):
    root, run = trained
    out = copy_run(run, tmp_path)
    before = tree(out)
    err = cli_error(capsys, fit_args(root, out))
    assert err.startswith(
        f"error: {out}: run folder holds an earlier run (config.yaml, split.json, data.json, metrics.csv, checkpoints"
    ), err
    assert err.endswith("continue it with --resume, replace it with --overwrite, or choose another -o")
    assert tree(out) == before
    err = cli_error(capsys, fit_args(root, out, "--resume", "--overwrite"))
    assert err == "error: --resume and --overwrite exclude each other"


def test_overwrite_with_a_bad_input_keeps_the_earlier_run(trained, tmp_path, capsys):
    root, run = trained
    out = copy_run(run, tmp_path)
    bad = tmp_path / "bids"
    shutil.copytree(root, bad)
    (bad / "sub-02" / "anat" / "sub-02_T2w.nii.gz").write_bytes(b"not a nifti")
    before = tree(out)
    err = cli_error(capsys, fit_args(bad, out, "--overwrite"))
    assert "sub-02_T2w.nii.gz" in err, err
    assert tree(out) == before  # cleared only once the new inputs are valid


def test_resume_needs_the_same_config_and_continues_the_run(trained, tmp_path, capsys):
    root, run = trained
    out = copy_run(run, tmp_path)
    before = tree(out)
    err = cli_error(capsys, fit_args(root, out, "--resume", "--model.lr=0.01"))
    assert err == (
        f"error: {out}: --resume with another config than the run's config.yaml (model.lr: 0.001 -> 0.01): "
        "resume with the same config, or --overwrite"
    )
    assert tree(out) == before
    old = pd.read_csv(out / "metrics.csv")
    assert main(fit_args(root, out, "--resume", "--trainer.max_epochs=2")) == 0
    new = pd.read_csv(out / "metrics.csv")
    assert sorted(new["epoch"].dropna().unique()) == [0, 1, 2]  # epoch 0 kept, epoch 1 trained, test row
    kept = new[new["epoch"] == 0].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept[old.columns], old[old["epoch"] == 0].reset_index(drop=True), check_dtype=False)
    import torch

    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
    assert "max_epochs: 2" in (out / "config.yaml").read_text()


def test_resume_without_a_checkpoint_and_overwrite_replaces(trained, tmp_path, capsys):
    root, run = trained
    empty = tmp_path / "empty"
    err = cli_error(capsys, fit_args(root, empty, "--resume"))
    assert err == (
        f"error: {empty}: nothing to resume: no checkpoints/last.ckpt (found: an empty folder); start it "
        "without --resume"
    )
    assert not empty.exists()
    out = copy_run(run, tmp_path)
    (out / "notes.txt").write_text("mine")  # not a run record: never touched
    (out / "failure.json").write_text("{}")
    assert main(fit_args(root, out, "--overwrite", "--seed", "5")) == 0
    assert "seed_everything: 5" in (out / "config.yaml").read_text()
    assert not (out / "failure.json").exists() and (out / "notes.txt").read_text() == "mine"
    assert not (out / LOCK).exists()


def test_validate_or_test_into_a_training_run_keep_its_records(trained, tmp_path, capsys):
    root, run = trained
    out = copy_run(run, tmp_path)
    ckpt = out / "checkpoints" / "best.ckpt"
    kept = {n: (out / n).read_bytes() for n in ("metrics.csv", "config.yaml", "split.json", "data.json")}
    assert main(["validate"] + fit_args(root, out)[1:] + ["--ckpt", str(ckpt)]) == 0
    assert main(["test"] + fit_args(root, out)[1:] + ["--ckpt", str(ckpt)]) == 0
    assert {n: (out / n).read_bytes() for n in kept} == kept  # validate replaced metrics.csv before
    err = cli_error(capsys, ["test"] + fit_args(root, out, "--data.split.seed=7")[1:] + ["--ckpt", str(ckpt)])
    assert err == (
        f"error: {out}: run folder holds a run of another config (data.split.seed: 0 -> 7): its records "
        "are kept; give -o a new folder"
    )


def test_test_on_other_subjects_than_the_runs_split_refused(trained, tmp_path, capsys):
    """The data changed since the fit (a subject added): scoring would silently use another split."""
    root, run = trained
    out = copy_run(run, tmp_path)
    data = tmp_path / "bids"
    make_bids(data, n=5)
    split = json.loads((out / "split.json").read_text())
    (out / "config.yaml").write_text((out / "config.yaml").read_text().replace(str(root), str(data)))
    kept = tree(out)
    err = cli_error(capsys, ["test"] + fit_args(data, out)[1:] + ["--ckpt", str(out / "checkpoints" / "best.ckpt")])
    assert err.startswith(f"error: {out / 'split.json'}: this run's subjects differ from the split recorded"), err
    assert tree(out) == kept and json.loads((out / "split.json").read_text()) == split


# ------------------------------------------------------------------------------------ B: one at a time
def test_second_command_on_a_locked_run_folder_refused(trained, tmp_path, capsys):
    root, _ = trained
    out = tmp_path / "run"
    with RunLock(out, "fit"):
        holder = (out / LOCK).read_text().strip()
        assert holder.startswith(f"cordbench fit (pid {os.getpid()}, since ")
        err = cli_error(capsys, fit_args(root, out))
        assert err == (f"error: {out}: run folder is in use by {holder}: wait for it to finish or choose another -o")
        assert sorted(p.name for p in out.iterdir()) == [LOCK]
    assert not out.exists()  # the lock created the folder, nothing was written: removed again


# ------------------------------------------------------------------------------------------ G: Ctrl-C
@pytest.mark.subprocess
@pytest.mark.slow
def test_ctrl_c_during_fit_is_recorded_refuses_a_second_fit_and_resumes(trained, tmp_path, capsys):
    """Lightning catches the interrupt and exits 1; the CLI says so, records it and --resume continues."""
    root, _ = trained
    out = tmp_path / "run"
    # far more epochs than the interrupt needs: the run must still be training when SIGINT arrives,
    # however fast the machine (40 epochs of the tiny U-Net can end before the signal)
    argv = fit_args(root, out, "--trainer.max_epochs=100000")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cordbench", *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        for line in proc.stdout:  # wait for the first finished epoch
            if line.startswith("epoch 1/100000"):
                break
        time.sleep(0.5)
        err = cli_error(capsys, fit_args(root, out))  # a second fit into the same folder, meanwhile
        assert err.startswith(f"error: {out}: run folder is in use by cordbench fit (pid {proc.pid}, since "), err
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = [
        ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith(("Detected KeyboardInterrupt", "[rank"))
    ]
    assert proc.returncode == 130, stderr
    assert len(lines) == 1 and lines[0].startswith(f"error: {out}: interrupted at epoch "), stderr
    assert lines[0].endswith("(recorded in failure.json); continue it with the same command and --resume")
    rec = json.loads((out / "failure.json").read_text())
    assert rec["status"] == "interrupted" and rec["error"] == "KeyboardInterrupt" and rec["global_step"] >= 2
    assert not (out / "test_metrics.csv").exists() and not (out / LOCK).exists()
    stopped = rec["global_step"]
    assert main(fit_args(root, out, "--resume", "--trainer.max_epochs=" + str(rec["epoch"] + 2))) == 0
    assert not (out / "failure.json").exists() and (out / "test_metrics.csv").exists()
    metrics = pd.read_csv(out / "metrics.csv")
    assert 0 in set(metrics["epoch"]) and metrics["val/dice"].notna().sum() >= 2  # epoch 0 kept, then trained on
    assert (metrics["step"] < stopped).any() and metrics["step"].max() >= stopped
    assert not (out / "checkpoints" / "interrupted.ckpt").exists()
