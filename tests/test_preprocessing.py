"""The preprocessing contract: plain data, stable key, legacy checkpoints, crop rules, scoring grids."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torchio as tio

from data_modules.preprocessing import Preprocessing, build_transform


def _cfg(*overrides: str) -> dict:
    from runs.config import load_config

    return load_config([], list(overrides))["data"]


def test_description_round_trips_and_keys():
    from core.tasks import TASKS

    pre = Preprocessing.from_config(_cfg("data.name=gmchallenge", "data.task=gm", "data.preset=perone"), TASKS["gm"])
    assert pre.spacing == (0.25, 0.25, None) and pre.crop == (200, 200) and pre.normalisation == "zscore-after-crop"
    assert pre.class_map == {"sc": [1, 2], "wm": [1], "gm": [2]} and pre.min_shape == (64, 64, 1)
    back = Preprocessing.from_dict(json.loads(json.dumps(pre.to_dict())))
    assert back == pre and back.key() == pre.key() and hash(back) == hash(pre)
    other = Preprocessing.from_config(_cfg("data.task=sc", "data.crop=[40,48]"), TASKS["sc"])
    assert other.key() != pre.key() and other.train_crop == "label" and other.spacing is None
    with pytest.raises(Exception, match="unknown keys"):
        Preprocessing.from_dict({**pre.to_dict(), "colour": 1})


def test_legacy_hparams_map_to_the_old_predict_chain():
    pre = Preprocessing.from_hparams(
        {"spacing": [0.8, 0.8, 0.8], "task": "sc", "classes": {"sc": [1]}, "num_classes": 2, "spatial_dims": 2}
    )
    assert pre.spacing == (0.8, 0.8, 0.8) and pre.crop is None and pre.min_shape == () and pre.preset is None


def _subject(label_at: tuple[slice, slice]) -> tio.Subject:
    img = np.random.default_rng(0).normal(0, 1, (60, 50, 3)).astype(np.float32)
    lab = np.zeros(img.shape, np.int16)
    lab[label_at[0], label_at[1], :] = 1
    return tio.Subject(
        image=tio.ScalarImage(tensor=torch.from_numpy(img[None]), affine=np.eye(4)),
        label=tio.LabelMap(tensor=torch.from_numpy(lab[None]), affine=np.eye(4)),
    )


def test_train_crop_follows_the_label_eval_crop_the_fov():
    pre = Preprocessing(crop=(20, 20))
    s = _subject((slice(2, 8), slice(3, 9)))  # label in a corner
    train = build_transform(pre, "train")(s)
    evald = build_transform(pre, "eval")(s)
    assert train["label"].data.sum() == 6 * 6 * 3  # the whole label lies inside the label-centred crop
    assert evald["label"].data.sum() == 0  # the FOV-centred crop (rows 20:40, cols 15:35) misses it
    np.testing.assert_allclose(evald["image"].affine[:3, 3], [20, 15, 0])
    no_label = build_transform(pre, "eval")(tio.Subject(image=s["image"]))
    np.testing.assert_array_equal(no_label["image"].data, evald["image"].data)  # predict = test, no label needed


def test_normalisation_order_of_the_two_modes():
    """``zscore``: statistics of the whole volume, then the crop; ``zscore-after-crop``: of the crop only.

    A bright band outside the FOV-centred crop (rows 20:40, cols 15:35) shifts the whole volume's mean
    and SD far from the crop's, so the two orders give very different values; each is compared with
    numpy's z-score (torchio's uses the unbiased SD, ``ddof=1``).
    """
    img = np.random.default_rng(3).normal(100, 5, (60, 50, 3)).astype(np.float32)
    img[:10] += 400  # outside the crop
    s = tio.Subject(image=tio.ScalarImage(tensor=torch.from_numpy(img[None]), affine=np.eye(4)))
    inside = img[20:40, 15:35, :].astype(np.float64)
    whole = build_transform(Preprocessing(crop=(20, 20), normalisation="zscore"), "eval")(s)["image"].data[0].numpy()
    after = (
        build_transform(Preprocessing(crop=(20, 20), normalisation="zscore-after-crop"), "eval")(s)["image"]
        .data[0]
        .numpy()
    )
    np.testing.assert_allclose(
        whole, (inside - img.mean(dtype=np.float64)) / img.std(dtype=np.float64, ddof=1), rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(after, (inside - inside.mean()) / inside.std(ddof=1), rtol=1e-4, atol=1e-4)
    assert abs(after.mean()) < 1e-4 and whole.mean() < -0.3  # the crop is darker than the whole volume


def test_old_checkpoint_still_predicts(tmp_path: Path):
    """A checkpoint without the ``preprocessing`` hyper-parameter predicts with the chain it used to."""
    from evaluation.inference import predict_file
    from evaluation.native import to_native
    from lightning_modules.module import SegmentationModule
    from runs.checkpoints import load_module

    torch.manual_seed(0)
    m = SegmentationModule(network="unet", preset="tiny", classes={"sc": [1]}, spacing=[1.0, 1.0, 2.0])
    hp = dict(m.hparams)
    hp.pop("preprocessing")
    ckpt = tmp_path / "old.ckpt"
    torch.save({"state_dict": m.state_dict(), "hyper_parameters": hp}, ckpt)
    module = load_module(ckpt)
    aff = np.array([[0, 0, -0.8, 10], [-0.8, 0, 0, 5], [0, 1.5, 0, -3], [0, 0, 0, 1.0]])  # PSR-like
    data = np.random.default_rng(1).normal(100, 10, (12, 30, 28)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, aff), tmp_path / "img.nii.gz")
    out = predict_file(module, tmp_path / "img.nii.gz", tmp_path / "mask.nii.gz")
    aff = nib.load(tmp_path / "img.nii.gz").affine  # as stored (float32 header)
    # the pre-contract predict chain, written out independently: RAS, resample, z-score, argmax, back
    s = tio.Subject(image=tio.ScalarImage(tensor=torch.from_numpy(data[None]), affine=aff))
    s = tio.ZNormalization()(tio.Resample((1.0, 1.0, 2.0))(tio.ToCanonical()(s)))
    with torch.no_grad():
        labels = module.predict_volume(s["image"].data[None].float())[0].argmax(0).numpy()
    want = to_native(labels, s["image"].affine, data.shape, aff)
    np.testing.assert_array_equal(np.asanyarray(nib.load(out).dataobj), want)


class _NativeDM:
    """Native targets of a subject whose 'preprocessing' is a 2x in-plane up-sampling."""

    def __init__(self, img: nib.Nifti1Image, target: np.ndarray):
        self.img, self.target = img, target

    def native_targets(self, subject: str):
        return self.img, {"": self.target, "rater1": self.target}


def test_native_scoring_differs_from_preprocessed_and_names_raters():
    from evaluation.metrics import compute_metrics
    from evaluation.scoring import score_subject

    native_aff = np.diag([0.5, 0.5, 2.0, 1.0])
    truth = np.zeros((20, 20, 2), np.int16)
    truth[5:12, 6:13, :] = 1
    pre_aff = np.diag([0.25, 0.25, 2.0, 1.0])
    up = np.repeat(np.repeat(truth, 2, 0), 2, 1)  # exact 2x up-sampled label on the preprocessed grid
    pred = up.copy()
    pred[10:24:3, 12:26, :] = 0  # thin stripes removed: visible on the fine grid only in part
    dm = _NativeDM(nib.Nifti1Image(truth, native_aff), truth)
    rec_n, native = score_subject(pred, pre_aff, up, "s", {"sc": [1]}, dm, "native")
    rec_p, _ = score_subject(pred, pre_aff, up, "s", {"sc": [1]}, dm, "preprocessed")
    back = native.labels
    assert back.shape == truth.shape
    assert rec_n["sc/dice"] == pytest.approx(compute_metrics(back, truth, (0.5, 0.5, 2.0), {"sc": [1]})["sc/dice"])
    assert rec_p["sc/dice"] == pytest.approx(compute_metrics(pred, up, (0.25, 0.25, 2.0), {"sc": [1]})["sc/dice"])
    assert rec_n["sc/dice"] != pytest.approx(rec_p["sc/dice"])
    assert rec_n["rater1/sc/dice"] == rec_n["sc/dice"] and "rater1/sc/dice" not in rec_p
