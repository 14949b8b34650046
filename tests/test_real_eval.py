"""``cordbench test --real``: real checkpoints on the real set, scores checked against independent Dice.

Checkpoints come from real tiny fits the suite trains anyway: a trial of the leaderboard's sweep
(``real_sweep``: task sc on the phantom) and ``gm_perone_run`` (task gm on the real t2s fixture).
The real set is ``sct_testing_data`` (fails under CI=true when missing, see conftest.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from cordbench.cli import main
from data_modules.real import read_real_set
from runs.real_eval import cached_result, reference_kind, reference_mask


def _arr(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(str(path)).dataobj)


def monai_dice(pred: np.ndarray, target: np.ndarray) -> float:
    """MONAI's DiceMetric on two boolean masks (an independent implementation)."""
    from monai.metrics import DiceMetric

    metric = DiceMetric(include_background=True, reduction="mean")
    as_tensor = lambda a: torch.from_numpy(a[None, None].astype(np.float32))  # noqa: E731  (batch, channel)
    metric(as_tensor(pred), as_tensor(target))
    return float(metric.aggregate())


def test_references_and_native_scores_without_a_model(sct_data: Path):
    """Which class is scored against what (no model needed): wm = cord minus GM, automatic when the cord is."""
    from evaluation.scoring import class_metrics

    images = {im.id: im for im in read_real_set(sct_data).images}
    t2s, unc = images["t2s"], images["t2s_uncropped"]
    assert [reference_kind(c, t2s) for c in ("sc", "gm", "wm")] == ["automatic", "manual", "automatic"]
    assert [reference_kind(c, unc) for c in ("sc", "gm", "wm")] == [None, "manual", None]
    assert reference_kind("canal", t2s) is None and reference_kind("sc", images["t2"]) == "manual"
    masks = {k: _arr(lf.path) > 0 for k, lf in t2s.labels.items()}
    wm = reference_mask("wm", masks)
    assert not (wm & masks["GM"]).any() and not (wm & ~masks["SC"]).any()
    assert wm.sum() == masks["SC"].sum() - (masks["SC"] & masks["GM"]).sum() > 0
    # scored on the native grid as MONAI scores it (GM as a "prediction" of the cord)
    affine = nib.load(str(t2s.path)).affine
    got = class_metrics(masks["GM"], masks["SC"], affine, "x")
    assert got["x/dice"] == pytest.approx(monai_dice(masks["GM"], masks["SC"]), abs=1e-6) and 0 < got["x/dice"] < 1
    assert class_metrics(wm, reference_mask("wm", masks), affine, "wm")["wm/dice"] == 1.0


class _GMOracle:
    """A GM-task 'model' (labels 1 = WM, 2 = GM) that predicts a fixed label map on the native grid."""

    def __init__(self, labels: np.ndarray):
        self.labels = labels
        self.hparams = {
            "spacing": None,
            "network": "oracle",
            "preset": None,
            "task": "gm",
            "num_classes": 3,
            "classes": {"sc": [1, 2], "wm": [1], "gm": [2]},
            "spatial_dims": 2,
        }

    def predict_volume(self, x: torch.Tensor) -> torch.Tensor:
        assert tuple(x.shape[2:]) == self.labels.shape  # RAS input, no spacing: the preprocessed grid is native
        return torch.from_numpy(np.eye(3, dtype=np.float32)[self.labels].transpose(3, 0, 1, 2))[None]


def test_gm_model_scores_each_class_by_its_own_labels(tmp_path: Path):
    """A GM-task model's classes are scored on their own label values (gm = 2, wm = 1, sc = 1 or 2),
    never on every non-zero label; each Dice is recomputed here from the masks."""
    from runs.real_eval import evaluate_real

    shape, aff = (24, 24, 5), np.diag([0.5, 0.5, 2.0, 1.0])
    cord = np.zeros(shape, bool)
    cord[6:18, 5:19, :] = True
    gm = np.zeros(shape, bool)
    gm[9:15, 9:15, :] = True
    real = tmp_path / "real"
    real.mkdir()
    rng = np.random.default_rng(0)
    nib.save(nib.Nifti1Image(rng.normal(100, 10, shape).astype(np.float32), aff), real / "t2s.nii.gz")
    nib.save(nib.Nifti1Image(cord.astype(np.uint8), aff), real / "t2s_seg-manual.nii.gz")
    nib.save(nib.Nifti1Image(gm.astype(np.uint8), aff), real / "t2s_gmseg_manual.nii.gz")
    labels = np.zeros(shape, np.int64)
    labels[7:19, 5:19, :] = 1  # the cord, one row off
    labels[9:15, 10:16, :] = 2  # the GM, one column off
    ckpt = tmp_path / "oracle.ckpt"
    ckpt.write_bytes(b"weights")
    result = evaluate_real(_GMOracle(labels), read_real_set(real), tmp_path / "out", ckpt)
    (row,) = result.records
    pred_gm, pred_wm = labels == 2, labels == 1

    def dice(p, t):
        return 2 * (p & t).sum() / (p.sum() + t.sum())

    assert row["gm/dice"] == pytest.approx(dice(pred_gm, gm), abs=1e-12)
    assert row["wm/dice"] == pytest.approx(dice(pred_wm, cord & ~gm), abs=1e-12)
    assert row["sc/dice"] == pytest.approx(dice(labels > 0, cord), abs=1e-12)
    assert row["gm/dice"] < row["sc/dice"] < 1  # the values differ, so a swapped class would show
    np.testing.assert_array_equal(_arr(tmp_path / "out" / "real_predictions" / "t2s_pred.nii.gz"), labels)


@pytest.fixture
def sc_run(real_sweep, tmp_path: Path) -> Path:
    """A copy of one trained sweep trial's run folder (task sc, trained on the phantom)."""
    dst = tmp_path / "run"
    shutil.copytree(real_sweep / "trials" / "t000", dst)
    return dst


@pytest.mark.slow  # trained checkpoint
def test_test_real_scores_on_the_native_grid_as_monai_does(sc_run: Path, sct_data: Path, capsys):
    before = (sc_run / "test_metrics.csv").read_bytes(), (sc_run / "test_summary.json").read_bytes()
    ckpt = sc_run / "checkpoints" / "best.ckpt"
    assert main(["test", "--ckpt", str(ckpt), "--real", str(sct_data)]) == 0
    out = capsys.readouterr().out
    # the phantom test records are untouched; the real ones sit beside them
    assert ((sc_run / "test_metrics.csv").read_bytes(), (sc_run / "test_summary.json").read_bytes()) == before
    rows = pd.read_csv(sc_run / "real_metrics.csv", dtype={"subject": str}).set_index("subject")
    summary = json.loads((sc_run / "real_summary.json").read_text())
    # every image of the folder with a cord mask is scored, in the set's order (a scan added is picked up)
    real = read_real_set(sct_data)
    images = {im.id: im for im in real.images}
    scored = [im.id for im in real.images if reference_kind("sc", im)]
    assert list(rows.index) == scored and "t2" in scored
    for sid in scored:
        ref = images[sid].labels["SC"]
        assert rows.loc[sid, "sc/reference"] == ref.reference and rows.loc[sid, "contrast"] == images[sid].contrast
        pred_file = sc_run / "real_predictions" / f"{sid}_pred.nii.gz"
        image = nib.load(str(sct_data / rows.loc[sid, "image"]))
        pimg = nib.load(str(pred_file))
        assert pimg.shape == image.shape and np.allclose(pimg.affine, image.affine)  # the native grid
        pred, target = _arr(pred_file) == 1, _arr(ref.path) > 0
        hand = 2 * (pred & target).sum() / (pred.sum() + target.sum())
        assert rows.loc[sid, "sc/dice"] == pytest.approx(hand, abs=1e-12)
        assert rows.loc[sid, "sc/dice"] == pytest.approx(monai_dice(pred, target), abs=1e-6)
    # headline = manual references only; the automatic ones apart
    by_ref = {r: [s for s in scored if images[s].labels["SC"].reference == r] for r in ("manual", "automatic")}
    assert by_ref["manual"] and by_ref["automatic"]  # sct_testing_data has both kinds of cord reference
    for key, ref in (("metrics", "manual"), ("metrics_automatic", "automatic")):
        assert summary[key]["sc/dice"]["n"] == len(by_ref[ref])
        assert summary[key]["sc/dice"]["mean"] == pytest.approx(rows.loc[by_ref[ref], "sc/dice"].mean())
    assert summary["scoring"] == "native" and summary["task"] == "sc" and summary["layout"] == "flat"
    skipped = {s["image"]: s["reason"] for s in summary["skipped"]}
    for im in real.images:
        if im.id not in scored:
            assert "sc needs a cord (SC) mask" in skipped[real.rel(im.path)] and f"skipped {real.rel(im.path)}" in out
    assert f"{rows.loc['t2', 'sc/dice']:.4f}" in out
    # the same mask `cordbench predict` writes for that image (train = test = predict)
    assert (
        main(
            [
                "predict",
                "--ckpt",
                str(ckpt),
                "-i",
                str(sct_data / "t2" / "t2.nii.gz"),
                "-o",
                str(sc_run.parent / "t2_pred.nii.gz"),
            ]
        )
        == 0
    )
    assert np.array_equal(_arr(sc_run.parent / "t2_pred.nii.gz"), _arr(sc_run / "real_predictions" / "t2_pred.nii.gz"))
    # cache key: same checkpoint and set -> cached; another checkpoint -> not
    assert cached_result(sc_run, ckpt, real) is not None
    other = sc_run.parent / "other.ckpt"
    other.write_bytes(ckpt.read_bytes() + b"\0")
    assert cached_result(sc_run, other, real) is None
    # another set replaces the earlier set's outputs (no stale mask or cache is left)
    t2_only = sc_run.parent / "t2-only"
    shutil.copytree(sct_data / "t2", t2_only)
    assert main(["test", "--ckpt", str(ckpt), "--real", str(t2_only)]) == 0
    assert sorted(p.name for p in (sc_run / "real_predictions").iterdir()) == ["t2_pred.nii.gz"]
    assert cached_result(sc_run, ckpt, real) is None and cached_result(sc_run, ckpt, read_real_set(t2_only))


@pytest.mark.slow  # trained checkpoint
def test_gm_checkpoint_scores_gm_against_manual_and_cord_apart(gm_perone_run: Path, sct_data: Path, tmp_path: Path):
    out = tmp_path / "gm-real"
    assert (
        main(
            [
                "test",
                "--ckpt",
                str(gm_perone_run / "checkpoints" / "best.ckpt"),
                "--real",
                str(sct_data),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    rows = pd.read_csv(out / "real_metrics.csv", dtype={"subject": str}).set_index("subject")
    summary = json.loads((out / "real_summary.json").read_text())
    # every image of the folder with a reference for one of the classes is scored (a scan added is picked up)
    real = read_real_set(sct_data)
    images = {im.id: im for im in real.images}
    classes = {"sc": [1, 2], "wm": [1], "gm": [2]}  # task gm: label 1 = WM, 2 = GM
    scored = [im.id for im in real.images if any(reference_kind(c, im) for c in classes)]
    assert list(rows.index) == scored
    count = {(c, r): 0 for c in classes for r in ("manual", "automatic")}
    for sid in scored:
        masks = {k: _arr(lf.path) > 0 for k, lf in images[sid].labels.items()}
        labels = _arr(out / "real_predictions" / f"{sid}_pred.nii.gz")
        for c, values in classes.items():
            ref = reference_kind(c, images[sid])
            if ref is None:  # e.g. no GM mask for t2: its gm (and wm) class is not scored
                assert pd.isna(rows.loc[sid, f"{c}/reference"]) and pd.isna(rows.loc[sid, f"{c}/dice"]), (sid, c)
                continue
            count[c, ref] += 1
            assert rows.loc[sid, f"{c}/reference"] == ref
            # wm = cord minus GM: prediction label 1 against the cord mask minus the manual GM
            want = monai_dice(np.isin(labels, values), reference_mask(c, masks))
            assert rows.loc[sid, f"{c}/dice"] == pytest.approx(want, abs=1e-6), (sid, c)
    assert count["gm", "manual"] >= 2 and count["sc", "manual"] >= 1 and count["wm", "automatic"] >= 1
    for key, ref in (("metrics", "manual"), ("metrics_automatic", "automatic")):
        for c in classes:
            n = summary[key].get(f"{c}/dice", {}).get("n", 0)
            assert n == count[c, ref], (key, c)


@pytest.mark.slow  # trained checkpoint
def test_test_real_errors(sc_run: Path, sct_data: Path, tmp_path: Path, capsys):
    ckpt = str(sc_run / "checkpoints" / "best.ckpt")
    assert main(["test", "--ckpt", ckpt, "--real", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'nothing'}: real data folder not found"
    real = tmp_path / "real"
    shutil.copytree(sct_data / "t2", real)
    assert main(["test", "--ckpt", ckpt, "--real", str(real), "-o", str(real / "out")]) == 2
    assert "inside the --real folder" in capsys.readouterr().err
    assert not (real / "out").exists() and not (sc_run / "real_metrics.csv").exists()
