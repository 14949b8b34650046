"""Round trip on real data: manual labels → full preprocessing → write-back = the input label.

t2 (PSR, sagittal, 1 mm) and t2s (LAS, oblique, 0.5×0.5×7.5 mm) go through the data modules'
own preprocessing (canonical reorientation, resampling, Perone's crop/pad) and come back on
their grid voxel for voxel.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from evaluation.native import one_hot, prediction_path, to_native

CASES = [  # (image, label, data module, spacing, preset)
    ("t2/t2.nii.gz", "t2/t2_seg-manual.nii.gz", "spine_generic", None, None),
    ("t2/t2.nii.gz", "t2/t2_seg-manual.nii.gz", "spine_generic", [0.8, 0.8, 0.8], None),
    ("t2/t2.nii.gz", "t2/t2_seg-manual.nii.gz", "spine_generic", [0.5, 0.5, 0.5], None),
    ("t2s/t2s.nii.gz", "t2s/t2s_gmseg_manual.nii.gz", "gmchallenge", None, "perone"),
    ("t2s/t2s.nii.gz", "t2s/t2s_gmseg_manual.nii.gz", "spine_generic", [0.3, 0.3, 2.0], None),
]


def _dm(name: str, spacing, preset):
    from data_modules.registry import build_datamodule
    from runs.config import load_config

    ov = [f"data.name={name}", "data.root=/nonexistent", "data.task=sc"]
    if spacing:
        ov.append(f"data.spacing={spacing}")
    if preset:
        ov.append(f"data.preset={preset}")
    return build_datamodule(load_config([], ov)["data"])


def _preprocessed(sct_data: Path, img_rel: str, lab_rel: str, dm):
    import torch
    import torchio as tio

    im, lb = nib.load(sct_data / img_rel), nib.load(sct_data / lab_rel)
    lab = np.asanyarray(lb.dataobj).astype(np.int16)
    s = tio.Subject(
        image=tio.ScalarImage(
            tensor=torch.from_numpy(np.asanyarray(im.dataobj)[None].astype(np.float32)), affine=im.affine
        ),
        label=tio.LabelMap(tensor=torch.from_numpy(lab[None]), affine=lb.affine),
    )
    return im, lb, lab, dm.preprocess()(s)


@pytest.mark.parametrize("img_rel,lab_rel,name,spacing,preset", CASES)
def test_roundtrip_nearest_is_voxel_identical(sct_data: Path, tmp_path: Path, img_rel, lab_rel, name, spacing, preset):
    from core import io

    im, lb, lab, pre = _preprocessed(sct_data, img_rel, lab_rel, _dm(name, spacing, preset))
    if spacing:
        np.testing.assert_allclose(pre["label"].spacing, spacing, rtol=1e-3)
    assert nib.aff2axcodes(pre["label"].affine) == ("R", "A", "S")
    back = to_native(pre["label"].data[0].numpy(), pre["label"].affine, lab.shape, lb.affine, "nearest")
    out = tmp_path / "back.nii.gz"
    io.save_nifti(back, lb.affine, out, header=lb.header)
    written = nib.load(out)
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), lab)
    np.testing.assert_allclose(written.affine, lb.affine, atol=1e-6)
    assert nib.aff2axcodes(written.affine) == nib.aff2axcodes(im.affine)


@pytest.mark.parametrize("case", [0, 2, 3, 4])
def test_roundtrip_argmax_exact_for_integer_factors(sct_data: Path, case: int):
    img_rel, lab_rel, name, spacing, preset = CASES[case]
    _, lb, lab, pre = _preprocessed(sct_data, img_rel, lab_rel, _dm(name, spacing, preset))
    probs = one_hot(pre["label"].data[0].numpy(), 2)
    back = to_native(probs, pre["label"].affine, lab.shape, lb.affine, "argmax")
    np.testing.assert_array_equal(back, lab)


def test_argmax_close_for_non_integer_factor(sct_data: Path):
    """0.8 mm from 1 mm: argmax of linear probabilities may move boundary voxels (documented)."""
    _, lb, lab, pre = _preprocessed(sct_data, *CASES[1][:2], _dm(*CASES[1][2:]))
    back = to_native(one_hot(pre["label"].data[0].numpy(), 2), pre["label"].affine, lab.shape, lb.affine, "argmax")
    dice = 2 * ((back > 0) & (lab > 0)).sum() / ((back > 0).sum() + (lab > 0).sum())
    assert 0.99 < dice


class _Oracle:
    """A 'model' returning the one-hot of the preprocessed manual label (checks the predict path)."""

    def __init__(self, pre_label: np.ndarray, preprocessing: dict):
        self.pre_label = pre_label
        self.hparams = {"preprocessing": preprocessing, "network": "oracle", "task": "sc"}

    def predict_volume(self, x):
        import torch

        assert tuple(x.shape[2:]) == self.pre_label.shape, (x.shape, self.pre_label.shape)
        return torch.from_numpy(one_hot(self.pre_label, 2))[None]


@pytest.mark.parametrize("case", [0, 2, 3])
def test_cordbench_predict_path_writes_back_exactly(sct_data: Path, case: int):
    """evaluation.inference.predict_array (used by ``cordbench predict``): PSR t2, and t2s with Perone's preset.

    The 'model' is handed the chain built from the data module's own preprocessing contract.
    """
    from evaluation.inference import predict_array

    img_rel, lab_rel, name, spacing, preset = CASES[case]
    dm = _dm(name, spacing, preset)
    im, lb, lab, pre = _preprocessed(sct_data, img_rel, lab_rel, dm)
    out = predict_array(
        _Oracle(pre["label"].data[0].numpy(), dm.preprocessing.to_dict()),
        np.asanyarray(im.dataobj).astype(np.float32),
        im.affine,
    )
    np.testing.assert_array_equal(out, lab)


def test_prediction_path():
    rec = SimpleNamespace(subject="sub-amu01", session=None, datatype="dwi", stem="sub-amu01_rec-average_dwi")
    assert prediction_path("/d", rec, "SC") == Path(
        "/d/derivatives/cordbench/sub-amu01/dwi/sub-amu01_rec-average_dwi_label-SC_seg.nii.gz"
    )


class _Threshold:
    """A 'model' that labels voxels brighter than 0 after z-scoring."""

    hparams = {"spacing": None, "network": "threshold", "preset": None, "task": "SC", "classes": {"sc": [1]}}

    def predict_volume(self, x):
        import torch

        fg = (x[0, 0] > 0).float()
        return torch.stack([1 - fg, fg])[None]


def test_predict_bids_writes_derivatives(tmp_path: Path):
    import json

    from evaluation.inference import predict_bids

    aff = np.array([[0, 0, -0.8, 10], [-0.8, 0, 0, 5], [0, 0.8, 0, -3], [0, 0, 0, 1.0]])  # non-canonical
    truth = {}
    for k, sid in enumerate(("sub-aa01", "sub-bb02")):
        img = np.random.default_rng(k).normal(0, 1, (10, 12, 8)).astype(np.float32)
        (tmp_path / sid / "anat").mkdir(parents=True)
        nib.save(nib.Nifti1Image(img, aff), tmp_path / sid / "anat" / f"{sid}_T2w.nii.gz")
        truth[sid] = (img - img.mean()) / img.std() > 0
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"weights")
    outs = predict_bids(_Threshold(), tmp_path, "T2w", "SC", ckpt=ckpt)
    assert [p.relative_to(tmp_path).as_posix() for p in outs] == [
        f"derivatives/cordbench/{s}/anat/{s}_T2w_label-SC_seg.nii.gz" for s in ("sub-aa01", "sub-bb02")
    ]
    for p, sid in zip(outs, ("sub-aa01", "sub-bb02")):
        m = nib.load(p)
        np.testing.assert_allclose(m.affine, aff)
        np.testing.assert_array_equal(np.asanyarray(m.dataobj) > 0, truth[sid])
        side = json.loads(p.with_name(p.name.replace(".nii.gz", ".json")).read_text())
        assert side["GeneratedBy"][0]["Name"] == "cordbench" and len(side["GeneratedBy"][0]["CheckpointSHA256"]) == 64


def _affine(columns: list[list[float]], rot_deg: float = 0.0) -> np.ndarray:
    """Voxel axes (world directions × voxel size, as columns), rotated by ``rot_deg`` about (1, 2, 2)/3."""
    from scipy.spatial.transform import Rotation

    aff = np.eye(4)
    aff[:3, :3] = (
        Rotation.from_rotvec(np.deg2rad(rot_deg) * np.array([1, 2, 2]) / 3).as_matrix() @ np.array(columns, float).T
    )
    aff[:3, 3] = (-12.0, 4.0, 30.0)
    return aff


#: anisotropic native grids (0.5 × 0.7 × 3 mm voxels) in several voxel-axis orders
ANISOTROPIC = {
    "RAS": _affine([[0.5, 0, 0], [0, 0.7, 0], [0, 0, 3.0]]),
    "PSR": _affine([[0, -0.7, 0], [0, 0, 3.0], [0.5, 0, 0]]),
    "LAS-oblique": _affine([[-0.5, 0, 0], [0, 0.7, 0], [0, 0, 3.0]], rot_deg=20),
    "SPL": _affine([[0, 0, 3.0], [0, -0.5, 0], [-0.7, 0, 0]]),
}


@pytest.mark.parametrize("grid", list(ANISOTROPIC))
def test_native_scores_use_each_axis_own_spacing(grid: str):
    """Scores on an anisotropic native grid (IRP reorientation, :func:`evaluation.scoring.to_irp`) match
    distances measured in world millimetres: each reoriented axis carries its own voxel size."""
    from scipy import ndimage
    from scipy.spatial import cKDTree

    from evaluation.scoring import class_metrics, to_irp

    aff = ANISOTROPIC[grid]
    shape = (14, 16, 9)
    # to_irp's spacing = the world step between neighbours along each output axis, read off the voxels
    ids = np.arange(np.prod(shape)).reshape(shape)
    (irp,), spacing = to_irp([ids], aff)
    for k in range(3):
        step = tuple(int(k == j) for j in range(3))
        a, b = (np.array(np.unravel_index(int(irp[v]), shape)) for v in ((0, 0, 0), step))
        assert spacing[k] == pytest.approx(np.linalg.norm(aff[:3, :3] @ (b - a)), rel=1e-9), (grid, k)
    # surface distances: surface voxels in world mm, nearest neighbours by a k-d tree
    target = np.zeros(shape, bool)
    target[3:9, 4:11, 2:6] = True
    pred = np.zeros(shape, bool)
    pred[4:11, 4:12, 2:7] = True  # shifted / grown along every axis

    def world_surface(m: np.ndarray) -> np.ndarray:
        return np.argwhere(m ^ ndimage.binary_erosion(m, border_value=0)) @ aff[:3, :3].T

    sp, st = world_surface(pred), world_surface(target)
    d_pt, d_tp = cKDTree(st).query(sp)[0], cKDTree(sp).query(st)[0]
    got = class_metrics(pred, target, aff, "sc")
    assert got["sc/hd"] == pytest.approx(max(d_pt.max(), d_tp.max()), rel=1e-9)
    assert got["sc/hd95"] == pytest.approx(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)), rel=1e-9)
    assert got["sc/msd"] == pytest.approx(np.concatenate([d_pt, d_tp]).mean(), rel=1e-9)
    assert got["sc/dice"] == pytest.approx(2 * (pred & target).sum() / (pred.sum() + target.sum()))
