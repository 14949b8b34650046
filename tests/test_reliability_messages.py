"""Reliability, messages that said the wrong thing (or nothing): a mask of -1 called "empty", a file
called "not found", an error on stdout, Ctrl-C in ``test``/``validate`` ending with status 1 and no line,
a dotted real image name ignored, and ``test --real`` that scored nothing ending with status 0.

In-process through ``cordbench.cli.main`` on the tiny BIDS tree and the untrained tiny U-Net checkpoint
(``tiny_ckpt``); Ctrl-C is also sent for real to a ``cordbench test`` subprocess, as for ``fit``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cordbench.cli import main
from tests.support.reliability import cli_error, cord_mask, fit_args, make_bids, save

REPO = Path(__file__).resolve().parents[1]


def eval_args(stage: str, root: Path, out: Path, ckpt: Path, *extra: str) -> list[str]:
    """``cordbench test``/``validate`` of ``ckpt`` on the tiny tree with the tiny fit's settings."""
    return [stage, *fit_args(root, out, *extra)[1:], "--ckpt", str(ckpt)]


@pytest.fixture(scope="module")
def bids(tmp_path_factory) -> Path:
    return make_bids(tmp_path_factory.mktemp("messages") / "bids")


# --------------------------------------------------------------------------- what a mask holds
def test_int8_mask_of_minus_one_says_what_it_holds(tmp_path, capsys):
    seg = save(tmp_path / "seg.nii.gz", cord_mask().astype(np.int8) * np.int8(-1))  # 255 written into int8
    err = cli_error(capsys, ["morphometrics", "--seg", str(seg), "-o", str(tmp_path / "m.csv")])
    assert err == (
        f"error: {seg}: segmentation holds negative values (-1) in 960 voxel(s), stored as int8; 255 written "
        "into int8 reads as -1: store masks as uint8; a mask holds 0 = background and > 0 = foreground"
    )
    assert not (tmp_path / "m.csv").exists()


# ------------------------------------------------------------------ a file where a folder is expected
def test_file_given_as_a_folder_is_said_to_be_a_file(bids, tmp_path, capsys):
    f = tmp_path / "results.csv"
    f.write_text("trial_id,model\n")
    assert cli_error(capsys, ["leaderboard", str(f)]) == f"error: {f}: sweep folder is a file, not a folder"
    root = bids / "participants.tsv"
    err = cli_error(capsys, fit_args(root, tmp_path / "run"))
    assert err == f"error: {root}: data set folder is a file, not a folder"
    missing = tmp_path / "nowhere"
    assert cli_error(capsys, ["leaderboard", str(missing)]) == f"error: {missing}: sweep folder not found"


def test_gmchallenge_error_goes_to_stderr(tmp_path, capsys):
    empty = tmp_path / "gm"
    empty.mkdir()
    err = cli_error(capsys, ["gmchallenge", str(empty)])
    assert err == (
        f"error: {empty}: no GM challenge file found (expected site*-sc*-image.nii.gz or a BIDS tree): get the "
        f"data as `cordbench download gmchallenge {empty}` explains, then run `cordbench gmchallenge {empty}`"
    )
    main(["gmchallenge", str(empty)])
    assert capsys.readouterr().out == ""


# ---------------------------------------------------------------------------------------- Ctrl-C
@pytest.mark.parametrize("stage,step", [("validate", "validation_step"), ("test", "test_step")])
def test_ctrl_c_during_evaluation_exits_130_with_one_line(bids, tiny_ckpt, tmp_path, capsys, monkeypatch, stage, step):
    """The interrupt arrives inside Lightning's loop (as a real SIGINT would): Lightning shuts down and
    raises SystemExit(1); the command says "interrupted" and exits 130, as ``fit`` does."""
    from lightning_modules.module import SegmentationModule

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(SegmentationModule, step, interrupted)
    out = tmp_path / "run"
    handler = signal.getsignal(signal.SIGINT)
    capsys.readouterr()
    try:
        code = main(eval_args(stage, bids, out, tiny_ckpt))
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores SIGINT while it shuts down
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and "KeyboardInterrupt" not in ln]
    assert code == 130, (code, err)
    assert err == [
        f"error: {out}: {stage} interrupted (Ctrl-C / SIGINT): its metrics were not written (earlier ones are "
        "kept); run the same command again"
    ]
    assert not (out / "test_metrics.csv").exists() and not (out / ".cordbench.lock").exists()


@pytest.mark.subprocess
@pytest.mark.slow
def test_ctrl_c_sent_to_test_exits_130_with_one_line(tiny_ckpt, tmp_path):
    """A real SIGINT to ``cordbench test`` while it scores the held-out subjects (10 of them)."""
    root = make_bids(tmp_path / "bids", n=16)
    out = tmp_path / "run"
    argv = eval_args("test", root, out, tiny_ckpt, "--data.split.test_fraction=0.625")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cordbench", *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 240
        while not list((out / "predictions").glob("*_pred.nii.gz")):  # the first subject scored
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    # Lightning's own notices (its interrupt notice, a SLURM hint on machines with srun) are not ours
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error") or "Traceback" in ln]
    assert proc.returncode == 130, stderr
    assert lines == [
        f"error: {out}: test interrupted (Ctrl-C / SIGINT): its metrics were not written (earlier ones are "
        "kept); run the same command again"
    ], stderr
    assert len(list((out / "predictions").glob("*_pred.nii.gz"))) < 10  # stopped before the last subject
    assert not (out / "test_metrics.csv").exists()


# ------------------------------------------------------------------------------ test --real
def _flat_set(folder: Path, stem: str, seg_suffix: str = "_seg-manual", constant: bool = False) -> Path:
    rng = np.random.default_rng(0)
    cord = cord_mask()
    img = np.full(cord.shape, 7.0, np.float32) if constant else (100 + 300 * cord + rng.normal(0, 20, cord.shape))
    save(folder / f"{stem}.nii.gz", img.astype(np.float32))
    save(folder / f"{stem}{seg_suffix}.nii.gz", cord.astype(np.uint8))
    return folder


def test_real_image_with_a_dot_in_its_name_is_scored(tiny_ckpt, tmp_path, capsys):
    real = _flat_set(tmp_path / "real", "t2.v2")
    out = tmp_path / "run"
    assert main(["test", "--real", str(real), "--ckpt", str(tiny_ckpt), "-o", str(out)]) == 0
    rows = pd.read_csv(out / "real_metrics.csv")
    assert rows["subject"].tolist() == ["t2.v2"] and rows["image"].tolist() == ["t2.v2.nii.gz"]
    assert rows["contrast"].tolist() == ["T2w"] and (out / "real_predictions" / "t2.v2_pred.nii.gz").is_file()


def test_real_set_the_checkpoint_cannot_score_is_refused(tiny_ckpt, tmp_path, capsys):
    """A cord model on a set with GM masks only: nothing to score, refused before anything is written."""
    real = _flat_set(tmp_path / "real", "t2s", seg_suffix="_gmseg-manual")
    out = tmp_path / "run"
    err = cli_error(capsys, ["test", "--real", str(real), "--ckpt", str(tiny_ckpt), "-o", str(out)])
    assert err == (
        f"error: {real}: none of the 1 image(s) can be scored by this checkpoint: no reference for the model's "
        "class(es) sc (sc needs a cord (SC) mask); it has a GM mask (e.g. t2s.nii.gz)"
    )
    assert not (out / "real_summary.json").exists() and not (out / "real_metrics.csv").exists()


def test_real_set_where_every_image_fails_exits_non_zero(tiny_ckpt, tmp_path, capsys):
    real = _flat_set(tmp_path / "real", "t2", constant=True)
    out = tmp_path / "run"
    err = cli_error(capsys, ["test", "--real", str(real), "--ckpt", str(tiny_ckpt), "-o", str(out)])
    assert err == (
        f"error: {real}: no image could be scored: all 1 skipped, e.g. t2.nii.gz: {real / 't2.nii.gz'}: "
        "image is constant (all voxels = 7)"
    )
    assert not (out / "real_summary.json").exists()
