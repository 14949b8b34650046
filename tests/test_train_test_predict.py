"""Train = test = predict: ``cordbench predict`` reproduces what ``cordbench test`` scored, voxel for voxel.

One tiny fit per preprocessing setting (Perone's preset on the challenge-named GM fixture; the
phantom with ``data.crop`` and with ``data.spacing``); then ``cordbench predict`` on a test
subject's image must write exactly the mask the test wrote to ``predictions/`` and scored, and
that mask's Dice against the native label (computed here, independently of the scoring code)
must be the subject's row of ``test_metrics.csv``.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from cordbench.cli import main
from tests.support.gmchallenge import TINY_FIT_ARGS

COMMON = TINY_FIT_ARGS


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    inter = np.logical_and(pred, truth).sum()
    den = pred.sum() + truth.sum()
    return 1.0 if den == 0 else float(2 * inter / den)


def _fit(out: Path, *args: str) -> tuple[pd.DataFrame, dict]:
    assert main(["fit", *args, *COMMON, "-o", str(out)]) in (0, None)
    return pd.read_csv(out / "test_metrics.csv"), json.loads((out / "test_summary.json").read_text())


def _predict(out: Path, image: Path, tmp: Path) -> np.ndarray:
    mask = tmp / "predicted.nii.gz"
    assert main(["predict", "--ckpt", str(out / "checkpoints" / "best.ckpt"), "-i", str(image), "-o", str(mask)]) in (
        0,
        None,
    )
    written = nib.load(mask)
    np.testing.assert_allclose(written.affine, nib.load(image).affine, atol=1e-6)
    return np.asanyarray(written.dataobj)


@pytest.mark.slow
def test_gm_perone_predict_equals_test(tmp_path: Path, gm_fixture, gm_perone_run: Path):
    from data_modules.gmchallenge import fuse_raters, to_task_target

    root, info = gm_fixture
    out = gm_perone_run
    per_subject = pd.read_csv(out / "test_metrics.csv")
    summary = json.loads((out / "test_summary.json").read_text())
    assert summary["scoring"] == "native" and summary["inference_rule"] == "centre"
    hp_pre = json.loads((out / "data.json").read_text())["preprocessing"]
    assert hp_pre["preset"] == "perone" and hp_pre["crop"] == [200, 200]
    row = per_subject.iloc[0]
    sid = row["subject"]
    scored = np.asanyarray(nib.load(out / "predictions" / f"{sid}_pred.nii.gz").dataobj)
    assert scored.shape == info["shape"]  # the native grid, not Perone's 200x200
    predicted = _predict(out, root / f"{sid}-image.nii.gz", tmp_path)
    np.testing.assert_array_equal(predicted, scored)
    fused = to_task_target(fuse_raters(info["masks"], "majority"), "gm")
    for cls, values in (("gm", [2]), ("wm", [1]), ("sc", [1, 2])):
        assert _dice(np.isin(predicted, values), np.isin(fused, values)) == pytest.approx(row[f"{cls}/dice"], abs=1e-6)
    for r, mask in enumerate(info["masks"], start=1):  # and against every rater
        rater = to_task_target(mask, "gm")
        assert _dice(np.isin(predicted, [1, 2]), rater > 0) == pytest.approx(row[f"rater{r}/sc/dice"], abs=1e-6)
    assert predicted.any(), "the model must predict something for the comparison to mean anything"


@pytest.mark.slow
def test_phantom_crop_and_spacing_predict_equals_test(tmp_path: Path, sweep_phantom: Path, capsys):
    """Trained on label-centred crops of a resampled grid; tested and predicted with the label-free rule it
    records (the default, localise)."""
    out = tmp_path / "run"
    per_subject, summary = _fit(
        out,
        "--data",
        "phantom",
        "--root",
        str(sweep_phantom),
        "--task",
        "sc",
        "--data.split.val_fraction=0.2",
        "--data.split.test_fraction=0.2",
        "--data.crop=[40,48]",
        "--data.spacing=[1.0,1.0,1.6]",
    )
    pre = json.loads((out / "data.json").read_text())["preprocessing"]
    assert pre["crop"] == [40, 48] and pre["spacing"] == [1.0, 1.0, 1.6] and pre["train_crop"] == "label"
    assert summary["scoring"] == "native" and summary["inference_rule"] == "localise"
    row = per_subject.iloc[0]
    sid = row["subject"]
    image = next(sweep_phantom.glob(f"{sid}/anat/{sid}_T2w.nii.gz"))
    truth_file = sweep_phantom / "derivatives" / "labels" / sid / "anat" / f"{sid}_T2w_label-SC_seg.nii.gz"
    scored = np.asanyarray(nib.load(out / "predictions" / f"{sid}_pred.nii.gz").dataobj)
    predicted = _predict(out, image, tmp_path)
    np.testing.assert_array_equal(predicted, scored)
    truth = np.asanyarray(nib.load(truth_file).dataobj) > 0
    assert predicted.shape == truth.shape == nib.load(image).shape
    assert _dice(predicted > 0, truth) == pytest.approx(row["sc/dice"], abs=1e-6)
    assert predicted.any()
    # the sc task's default post-processing (largest component), recorded and overridable at test time
    assert summary["postprocess"] == "largest_component"
    raw_out = tmp_path / "raw"
    test_args = [
        "test",
        "--ckpt",
        str(out / "checkpoints" / "best.ckpt"),
        "--data",
        "phantom",
        "--root",
        str(sweep_phantom),
        "--task",
        "sc",
        "--data.split.val_fraction=0.2",
        "--data.split.test_fraction=0.2",
        "--data.crop=[40,48]",
        "--data.spacing=[1.0,1.0,1.6]",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.enable_progress_bar=false",
        "--logger.wandb.enabled=false",
    ]
    # another preprocessing than the checkpoint's (default 64² patches pad to 64², not 48²): refused, nothing written
    capsys.readouterr()
    assert main([*test_args, "-o", str(tmp_path / "other")]) not in (0, None)
    err = capsys.readouterr().err
    assert "preprocessing min_shape=[48, 48, 1] but this config gives [64, 64, 1] (data.patch_size)" in err, err
    assert not (tmp_path / "other").exists()
    assert main([*test_args, "--data.patch_size=[48,48]", "--model.postprocess=none", "-o", str(raw_out)]) in (0, None)
    assert json.loads((raw_out / "test_summary.json").read_text())["postprocess"] == "none"
    raw = np.asanyarray(nib.load(raw_out / "predictions" / f"{sid}_pred.nii.gz").dataobj)
    assert raw.any() and not ((scored > 0) & (raw == 0)).any(), "post-processing only removes voxels"
    raw_row = pd.read_csv(raw_out / "test_metrics.csv").set_index("subject").loc[sid]
    assert _dice(raw > 0, truth) == pytest.approx(raw_row["sc/dice"], abs=1e-6)
