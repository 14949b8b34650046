"""Reliability of runs: determinism of fit/test metrics, bad checkpoints, a NaN loss, GPU determinism.

All through ``cordbench.cli.main`` on the tiny BIDS tree of ``tests/support/reliability.py`` (tiny
U-Net, one short CPU epoch: about 3 s a fit).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from cordbench.cli import main
from tests.support.reliability import assert_intact, cli_error, fit_args, make_bids, previous_run


@pytest.fixture(scope="module")
def two_fits(tmp_path_factory):
    """The same config and seed fitted twice (folders a and b)."""
    base = tmp_path_factory.mktemp("runs")
    root = make_bids(base / "bids")
    for name in ("a", "b"):
        assert main(fit_args(root, base / name, "--seed", "3")) == 0
    return root, base


def _test_args(root: Path, ckpt: Path, out: Path, *extra: str) -> list[str]:
    return ["test"] + fit_args(root, out, "--seed", "3", *extra)[1:] + ["--ckpt", str(ckpt)]


# ------------------------------------------------------------------------------------ determinism
def test_same_seed_and_config_identical_fit_and_test_metrics(two_fits, tmp_path):
    root, base = two_fits
    a, b = base / "a", base / "b"
    assert json.loads((a / "split.json").read_text()) == json.loads((b / "split.json").read_text())
    va, vb = pd.read_csv(a / "metrics.csv"), pd.read_csv(b / "metrics.csv")
    assert va["val/dice"].notna().any() and va["train/loss_epoch"].notna().any()
    pd.testing.assert_frame_equal(va, vb)  # every logged value, bit for bit
    ta, tb = pd.read_csv(a / "test_metrics.csv"), pd.read_csv(b / "test_metrics.csv")
    assert len(ta) == 1 and ta.shape[1] >= 14  # subject + every metric of the class (dice … psnr)
    pd.testing.assert_frame_equal(ta, tb)
    # cordbench test on the same checkpoint, twice: identical, and equal to the fit's own test
    for name in ("t1", "t2"):
        assert main(_test_args(root, a / "checkpoints" / "best.ckpt", tmp_path / name)) == 0
    t1, t2 = pd.read_csv(tmp_path / "t1" / "test_metrics.csv"), pd.read_csv(tmp_path / "t2" / "test_metrics.csv")
    pd.testing.assert_frame_equal(t1, t2)
    pd.testing.assert_frame_equal(t1, ta)
    # and the weights themselves
    wa = torch.load(a / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    wb = torch.load(b / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_checkpoints_written_atomically_by_the_runner(two_fits):
    """The Trainer saves through cordbench's CheckpointIO (temp name in the folder + rename)."""
    from runs.config import load_config
    from runs.runner import build_trainer

    _, base = two_fits
    ckpts = sorted(p.name for p in (base / "a" / "checkpoints").iterdir())
    assert ckpts == ["best.ckpt", "last.ckpt"]  # no temporary left behind
    cfg = load_config([], ["trainer.accelerator=cpu", "trainer.devices=1", "logger.wandb.enabled=false"])
    trainer = build_trainer(cfg, base / "x")
    assert type(trainer.strategy.checkpoint_io).__name__ == "AtomicCheckpointIO"


# ------------------------------------------------------------------------------------ checkpoints
def _edit_ckpt(src: Path, dst: Path, **hp) -> Path:
    ck = torch.load(src, weights_only=True)
    ck["hyper_parameters"].update(hp)
    torch.save(ck, dst)
    return dst


@pytest.mark.parametrize("case", ["truncated", "not_a_checkpoint", "other_model", "other_class_count"])
def test_bad_checkpoint_rejected_by_predict(case, two_fits, tmp_path, capsys):
    root, base = two_fits
    best = base / "a" / "checkpoints" / "best.ckpt"
    bad = tmp_path / "bad.ckpt"
    if case == "truncated":
        bad.write_bytes(best.read_bytes()[: best.stat().st_size // 2])
        words = "corrupted checkpoint, truncated or damaged"
    elif case == "not_a_checkpoint":
        torch.save({"weights": torch.zeros(3)}, bad)
        words = "not a cordbench checkpoint (no state_dict / hyper_parameters)"
    elif case == "other_model":  # the weights of a U-Net under another model's name
        _edit_ckpt(best, bad, network="dilated_cnn", options={})
        words = "checkpoint weights do not fit its model 'dilated_cnn' (preset 'tiny', 2 classes)"
    else:  # 2-class weights under 3-class hyper-parameters
        _edit_ckpt(best, bad, num_classes=3)
        words = "0 missing, 0 unexpected, 2 of another shape"
    out = tmp_path / "pred.nii.gz"
    out.write_bytes(b"previous prediction")
    line = cli_error(
        capsys, ["predict", "--ckpt", str(bad), "-i", str(root / "sub-01/anat/sub-01_T2w.nii.gz"), "-o", str(out)]
    )
    assert line.startswith(f"error: {bad}: ") and words in line, line
    assert out.read_bytes() == b"previous prediction"


def test_constant_image_rejected_by_predict(two_fits, tmp_path, capsys):
    """``predict -i`` and ``predict --bids``: a constant image is named, nothing is written for it,
    an earlier output stays, and the masks of the other subjects (``--bids``) are kept."""
    import nibabel as nib
    import numpy as np

    root, base = two_fits
    best = base / "a" / "checkpoints" / "best.ckpt"
    bids = shutil.copytree(root, tmp_path / "bids")
    src = nib.load(str(bids / "sub-02/anat/sub-02_T2w.nii.gz"))
    const = bids / "sub-02/anat/sub-02_T2w.nii.gz"
    nib.save(nib.Nifti1Image(np.full(src.shape, 7.0, np.float32), src.affine), str(const))
    out = tmp_path / "pred.nii.gz"
    out.write_bytes(b"previous prediction")
    line = cli_error(capsys, ["predict", "--ckpt", str(best), "-i", str(const), "-o", str(out)])
    assert line == f"error: {const}: image is constant (all voxels = 7)", line
    assert out.read_bytes() == b"previous prediction"
    line = cli_error(capsys, ["predict", "--ckpt", str(best), "--bids", str(bids)])
    assert line == f"error: {const}: image is constant (all voxels = 7)", line
    preds = bids / "derivatives" / "cordbench"
    assert (preds / "sub-01" / "anat" / "sub-01_T2w_label-sc_seg.nii.gz").is_file()
    assert not (preds / "sub-02").exists()


@pytest.mark.parametrize("case", ["class_count", "spatial_dims", "corrupted"])
def test_incompatible_checkpoint_rejected_by_test(case, two_fits, tmp_path, capsys):
    root, base = two_fits
    ckpt = base / "a" / "checkpoints" / "best.ckpt"
    if case == "class_count":
        extra, words = ["--task", "gm"], "checkpoint has num_classes=2 but this run needs 3"
    elif case == "spatial_dims":
        extra = ["--data.spatial_dims=3", "--data.patch_size=[32,32,8]"]
        words = "checkpoint has spatial_dims=2 but this run needs 3"
    else:
        ckpt = tmp_path / "cut.ckpt"
        ckpt.write_bytes((base / "a" / "checkpoints" / "best.ckpt").read_bytes()[:1000])
        extra, words = [], "corrupted checkpoint, truncated or damaged"
    out = tmp_path / "run"
    before = previous_run(out)
    line = cli_error(capsys, _test_args(root, ckpt, out, *extra))
    assert line.startswith(f"error: {ckpt}: ") and words in line, line
    assert_intact(out, before)


def test_fit_resume_from_corrupted_checkpoint(two_fits, tmp_path, capsys):
    root, base = two_fits
    bad = tmp_path / "last.ckpt"
    bad.write_bytes((base / "a" / "checkpoints" / "last.ckpt").read_bytes()[:5000])
    out = tmp_path / "run"
    before = previous_run(out)
    line = cli_error(capsys, fit_args(root, out, "--ckpt-path", str(bad)))
    assert line.startswith(f"error: {bad}: corrupted checkpoint, truncated or damaged"), line
    assert_intact(out, before)


# ------------------------------------------------------------------------------------- NaN loss
def test_nan_loss_stops_the_run_as_failed_with_the_reason(two_fits, tmp_path, capsys):
    """lr = 1e30: the first AdamW step blows the weights up, the second loss is NaN."""
    root, _ = two_fits
    out = tmp_path / "run"
    line = cli_error(capsys, fit_args(root, out, "--model.lr=1e30"))
    assert line.startswith(f"error: {out}: loss is nan at epoch 0, step 1"), line
    assert "failure.json" in line
    rec = json.loads((out / "failure.json").read_text())
    assert rec["status"] == "failed" and rec["error"] == "TrainingDivergedError"
    assert rec["reason"] == "loss is nan at epoch 0, step 1" and rec["global_step"] == 1
    assert not (out / "test_metrics.csv").exists() and not (out / "checkpoints" / "best.ckpt").exists()
    # the records written before the failure are whole
    assert "lr: 1.0e+30" in (out / "config.yaml").read_text()
    assert json.loads((out / "split.json").read_text())["train"]
    # a later successful run in the same folder (it holds a failed run: --overwrite) drops the stale record
    assert main(fit_args(root, out, "--overwrite")) == 0
    assert not (out / "failure.json").exists() and (out / "test_metrics.csv").exists()


# ------------------------------------------------------------------------------ GPU determinism
@pytest.mark.parametrize(
    "deterministic, accelerator, cuda, preset, want",
    [
        (True, "auto", True, None, ":4096:8"),
        (True, "gpu", True, ":16:8", ":4096:8"),  # what Lightning's deterministic=True writes as well
        ("warn", "cuda", True, None, ":4096:8"),
        (False, "gpu", True, None, None),
        (True, "cpu", True, None, None),
        (True, "auto", False, None, None),
    ],
)
def test_cublas_workspace_set_for_deterministic_cuda_runs(deterministic, accelerator, cuda, preset, want, monkeypatch):
    from runs.config import load_config
    from runs.runner import set_deterministic_env

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    if preset:
        monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", preset)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    cfg = load_config([], [f"trainer.deterministic={str(deterministic).lower()}", f"trainer.accelerator={accelerator}"])
    assert set_deterministic_env(cfg) == (want is not None)
    import os

    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == want
