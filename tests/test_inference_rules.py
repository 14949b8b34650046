"""Label-free inference rules (data_modules/preprocessing.py, lightning_modules/volume.py): ``centre`` kept for old
checkpoints byte for byte; ``sliding`` and ``localise`` find the cord anywhere in the field of view; every
predicting path writes the same mask for every rule."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torchio as tio

from data_modules.preprocessing import Preprocessing, build_transform
from lightning_modules import volume
from tests.support.offcentre import SCANS, centred, place_cord

#: a contract as checkpoints recorded it before the rule existed (no ``inference`` keys)
OLD_CONTRACT = {
    "task": "sc",
    "classes": {"sc": [1]},
    "num_classes": 2,
    "spatial_dims": 2,
    "orientation": "RAS",
    "spacing": [1.0, 1.0, None],
    "crop": [24, 24],
    "train_crop": "label",
    "normalisation": "zscore",
    "min_shape": [16, 16, 1],
    "preset": None,
    "version": 1,
}


def _default_rule() -> str:
    """The rule a new run records when its config names none."""
    from core.tasks import TASKS
    from runs.config import load_config

    return Preprocessing.from_config(load_config([], ["data.crop=[48,48]"])["data"], TASKS["sc"]).inference


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(1, a.sum() + b.sum()))


# ------------------------------------------------------------------------------------ fast: the mechanics
def _hp(rule: str, crop=(16, 16), dims: int = 2) -> dict:
    return {
        "spatial_dims": dims,
        "patch_size": [16, 16] if dims == 2 else [16, 16, 4],
        "inference_batch": 8,
        "preprocessing": {"crop": list(crop), "inference": rule, "inference_overlap": 0.25},
    }


def _bright(x: torch.Tensor) -> torch.Tensor:
    """A pointwise 'network': foreground where the input is above 1 (logits ±5)."""
    fg = (x > 1).float() * 10 - 5
    return torch.cat([-fg, fg], dim=1)


def _blob(at: tuple[int, int], shape=(80, 60, 6)) -> torch.Tensor:
    v = torch.zeros(1, 1, *shape)
    v[0, 0, at[0] - 2 : at[0] + 3, at[1] - 2 : at[1] + 3, :] = 3.0
    return v


def test_old_contract_maps_to_centre_and_new_rules_are_recorded():
    assert Preprocessing.from_dict(OLD_CONTRACT).inference == "centre"
    assert Preprocessing.from_hparams({"spacing": [1, 1, 1]}).inference == "centre"  # pre-contract checkpoints
    assert volume.inference_rule({"preprocessing": OLD_CONTRACT}) == "centre" == volume.inference_rule({})
    from core.tasks import TASKS

    new = Preprocessing.from_config({"patch_size": [16, 16], "spatial_dims": 2, "inference": "sliding"}, TASKS["sc"])
    assert Preprocessing.from_dict(new.to_dict()).inference == "sliding"
    with pytest.raises(Exception, match="data.inference"):
        Preprocessing(inference="everywhere")
    perone = Preprocessing.from_config({"patch_size": [16, 16], "spatial_dims": 2, "preset": "perone"}, TASKS["sc"])
    assert perone.inference == "centre" and _default_rule() != "centre"  # Perone's protocol keeps its rule


def test_whole_image_rules_keep_the_whole_slice():
    img = np.random.default_rng(0).normal(0, 1, (70, 50, 3)).astype(np.float32)
    s = tio.Subject(image=tio.ScalarImage(tensor=torch.from_numpy(img[None]), affine=np.eye(4)))
    for rule, shape in (("centre", (24, 24, 3)), ("sliding", (70, 50, 3)), ("localise", (70, 50, 3))):
        out = build_transform(Preprocessing.from_dict({**OLD_CONTRACT, "spacing": None, "inference": rule}))(s)
        assert tuple(out["image"].shape[1:]) == shape, rule


def test_label_wide_training_crop_holds_background_around_the_cord():
    img = np.random.default_rng(0).normal(0, 1, (120, 100, 3)).astype(np.float32)
    lab = np.zeros(img.shape, np.int16)
    lab[20:26, 70:76] = 1
    s = tio.Subject(
        image=tio.ScalarImage(tensor=torch.from_numpy(img[None]), affine=np.eye(4)),
        label=tio.LabelMap(tensor=torch.from_numpy(lab[None]), affine=np.eye(4)),
    )
    from core.tasks import TASKS

    cfg = {"patch_size": [16, 16], "spatial_dims": 2, "crop": [24, 24], "train_crop": "label-wide"}
    pre = Preprocessing.from_config(cfg, TASKS["sc"])
    out = build_transform(pre, "train")(s)
    assert pre.train_crop == "label-wide" and tuple(out["image"].shape[1:3]) == (48, 48)
    assert out["label"].data.sum() == lab.sum()  # the cord inside, 36 x 36 background voxels around it
    np.testing.assert_allclose(out["image"].affine[:3, 3], [23 - 24, 73 - 24, 0])


def test_without_a_crop_every_rule_runs_the_whole_image_as_before():
    vol = _blob((70, 8))
    hp = {**_hp("localise"), "preprocessing": {"crop": None, "inference": "localise"}}
    torch.testing.assert_close(volume.volume_probabilities(_bright, vol, hp), volume._direct(_bright, vol, hp))


def test_sliding_and_localise_segment_a_cord_far_from_the_centre():
    vol = _blob((70, 8))  # 30 and 22 voxels from the centre of an 80 x 60 slice: outside a 16 x 16 centre crop
    truth = (vol[0, 0] > 1).numpy()
    for rule in ("sliding", "localise"):
        probs = volume.volume_probabilities(_bright, vol, _hp(rule))
        assert probs.shape == (1, 2, 80, 60, 6)
        torch.testing.assert_close(probs.sum(1), torch.ones(1, 80, 60, 6))
        np.testing.assert_array_equal(probs[0].argmax(0).numpy() > 0, truth, err_msg=rule)
    from monai.inferers import sliding_window_inference

    ref = sliding_window_inference(
        vol[0].permute(3, 0, 1, 2), (16, 16), 8, lambda x: torch.softmax(_bright(x), 1), 0.25, mode="gaussian"
    )
    torch.testing.assert_close(volume.volume_probabilities(_bright, vol, _hp("sliding"))[0], ref.permute(1, 2, 3, 0))


def test_localise_follows_the_track_and_falls_back_to_the_fov_centre():
    vol = torch.zeros(1, 1, 80, 60, 7)
    for z, x in enumerate((60, 62, 64, 66, 68, 70, 72)):  # an oblique cord, missing on slice 3
        if z != 3:
            vol[0, 0, x - 1 : x + 2, 40:43, z] = 3.0
    vol[0, 0, 0:6, :, :] = 3.0  # a larger band along the image's edge: not a cord's cross-section
    probs = volume.volume_probabilities(_bright, vol, _hp("localise"))
    assert bool((probs[0].argmax(0) > 0).any(dim=(0, 1))[[0, 1, 2, 4, 5, 6]].all())
    assert not bool((probs[0].argmax(0) > 0)[:6].any())  # the band is outside every cord window
    track = volume.cord_track(volume.volume_probabilities(_bright, vol, _hp("sliding")))
    assert abs(track[3, 0] - 66) < 1.5 and abs(track[3, 1] - 41) < 0.5  # interpolated over the gap
    assert volume.cord_track(torch.zeros(1, 2, 8, 8, 3).index_fill_(1, torch.tensor([0]), 1.0)) is None
    empty = volume.volume_probabilities(_bright, torch.zeros(1, 1, 40, 30, 2), _hp("localise"))
    assert not bool((empty[0].argmax(0) > 0).any())


def test_3d_sliding_matches_monai_and_is_accumulated_on_the_cpu():
    vol = _blob((50, 12), shape=(64, 40, 8))
    from monai.inferers import sliding_window_inference

    got = volume.volume_probabilities(_bright, vol, _hp("sliding", dims=3))
    ref = sliding_window_inference(vol, (16, 16, 4), 4, lambda x: torch.softmax(_bright(x), 1), 0.25, mode="gaussian")
    torch.testing.assert_close(got, ref)
    loc = volume.volume_probabilities(_bright, vol, _hp("localise", dims=3))
    np.testing.assert_array_equal(loc[0].argmax(0).numpy() > 0, (vol[0, 0] > 1).numpy())


def test_old_checkpoint_keeps_centre_and_its_masks_byte_for_byte(tmp_path: Path):
    """A checkpoint whose contract has no rule predicts with the FOV-centred crop, written out here independently
    of lightning_modules/volume.py: RAS, 1 mm in-plane, z-score, centred 24 x 24 crop, network on every slice."""
    from evaluation.inference import predict_file
    from evaluation.native import to_native
    from lightning_modules.module import SegmentationModule
    from runs.checkpoints import load_module

    torch.manual_seed(0)
    m = SegmentationModule(network="unet", preset="tiny", classes={"sc": [1]}, patch_size=[16, 16], task="sc")
    hp = {**dict(m.hparams), "preprocessing": OLD_CONTRACT}
    torch.save({"state_dict": m.state_dict(), "hyper_parameters": hp}, tmp_path / "old.ckpt")
    module = load_module(tmp_path / "old.ckpt")
    aff = np.array([[0, 0, -1.0, 10], [-1.0, 0, 0, 5], [0, 2.0, 0, -3], [0, 0, 0, 1.0]])  # PSR
    data = np.random.default_rng(1).normal(100, 10, (40, 5, 36)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, aff), tmp_path / "img.nii.gz")
    out = predict_file(module, tmp_path / "img.nii.gz", tmp_path / "mask.nii.gz")
    aff = nib.load(tmp_path / "img.nii.gz").affine
    s = tio.Subject(image=tio.ScalarImage(tensor=torch.from_numpy(data[None]), affine=aff))
    s = tio.ToCanonical()(s)
    s = tio.ZNormalization()(tio.Resample((1.0, 1.0, float(s.spacing[2])))(s))
    s = tio.CropOrPad((24, 24, s.spatial_shape[2]))(s)
    with torch.no_grad():
        logits = module(s["image"].data.permute(3, 0, 1, 2).float())  # (Z, 1, X, Y)
    labels = logits.argmax(1).permute(1, 2, 0).numpy()
    want = to_native(labels, s["image"].affine, data.shape, aff)
    np.testing.assert_array_equal(np.asanyarray(nib.load(out).dataobj), want)
    assert "InferenceRule" in (tmp_path / "mask.json").read_text()


# ------------------------------------------------------- slow: a network overfit on the real scans (~20 s)
@pytest.fixture(scope="module")
def fov_module(shared_data: Path):
    from tests.support.fov_model import train_module

    return train_module(shared_data, _default_rule())


def _cases(root: Path):
    """(scan, centred original, off-centre copy): t2 and t1 in a 384 mm A-P field 120 and 60 mm from its
    centre; the axial T2* scans with the cord 25 mm from the centre."""
    offsets = {"t2": ((None, -120.0), (None, 384)), "t1w": ((None, 60.0), (None, 384))}
    for name, (img, seg) in SCANS.items():
        off, shape = offsets.get(name, ((0.0, 25.0), (None, None)))
        yield name, centred(root / img, root / seg), place_cord(root / img, root / seg, off, shape)


def _predict(module, placed) -> np.ndarray:
    from evaluation.inference import predict_array

    return predict_array(module, np.ascontiguousarray(placed.image.dataobj, np.float32), placed.image.affine) > 0


@pytest.mark.slow
def test_default_rule_finds_the_cord_anywhere_in_real_scans(fov_module, shared_data: Path):
    from tests.support.fov_model import with_rule

    rule = _default_rule()
    assert rule != "centre"
    for name, orig, moved in _cases(shared_data):
        ref_o, ref_m = (np.asarray(p.mask.dataobj) > 0 for p in (orig, moved))
        on_orig = _dice(_predict(with_rule(fov_module, rule), orig), ref_o)
        on_moved = _dice(_predict(fov_module, moved), ref_m)
        cut = _dice(_predict(with_rule(fov_module, "centre"), moved), ref_m)
        assert on_orig > 0.4, (name, on_orig)  # the fixture segments the scan at all
        assert abs(on_moved - on_orig) <= 0.02, (name, rule, on_orig, on_moved)
        assert cut < on_orig - 0.2, (name, "centre", on_orig, cut)  # today's rule cuts or misses it


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["centre", "sliding", "localise"])
def test_test_real_and_predict_write_the_same_mask(fov_module, shared_data: Path, tmp_path: Path, rule: str):
    import json

    from data_modules.real import read_real_set
    from evaluation.inference import predict_file
    from runs.real_eval import evaluate_real
    from tests.support.fov_model import with_rule

    img, seg = SCANS["t1w"]
    placed = place_cord(shared_data / img, shared_data / seg, (None, 60.0), (None, 256))
    image, _ = placed.save(tmp_path / "real", "t1w")
    module = with_rule(fov_module, rule)
    ckpt = tmp_path / "fov.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, ckpt)
    result = evaluate_real(module, read_real_set(tmp_path / "real"), tmp_path / "run", ckpt)
    assert result.summary["inference_rule"] == rule
    written = predict_file(module, image, tmp_path / "pred.nii.gz", ckpt=ckpt)
    tested = nib.load(str(tmp_path / "run" / "real_predictions" / "t1w_pred.nii.gz"))
    predicted = nib.load(str(written))
    np.testing.assert_array_equal(np.asanyarray(tested.dataobj), np.asanyarray(predicted.dataobj))
    np.testing.assert_allclose(tested.affine, predicted.affine)
    assert json.loads((tmp_path / "pred.json").read_text())["InferenceRule"] == rule
