"""The data-module base on the phantom: every task, 2D and 3D sampling, crop, splits, a 3D fit."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from data_modules.phantom import generate_cohort
from data_modules.registry import build_datamodule
from runs.config import DEFAULTS, load_config


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    return generate_cohort(tmp_path_factory.mktemp("ph") / "phantom", n_subjects=5, seed=3, dwi=False, workers=1)


def _cfg(root: Path, **data) -> dict:
    cfg = copy.deepcopy(DEFAULTS["data"])
    cfg.update(root=str(root), samples_per_volume=4, queue_length=16, batch_size=4)
    cfg.update(data)
    return cfg


@pytest.mark.parametrize(
    "task, values, contrast",
    [
        ("sc", {0, 1}, "T2w"),
        ("canal", {0, 1}, "T2w"),
        ("gm", {0, 1, 2}, "T2star"),
        ("levels", set(range(8)), "T2w"),
    ],
)
def test_tasks_targets_and_batches(phantom, task, values, contrast):
    dm = build_datamodule(_cfg(phantom, task=task, patch_size=[32, 32]))
    dm.setup("fit")
    assert dm.contrast == contrast
    assert sorted(sum(dm.split.values(), [])) == sorted(s.subject for s in dm.specs)
    subj = dm.subjects["train"][0]
    found = set(np.unique(subj["label"].data.numpy()).tolist())
    assert found <= values and len(found) >= 2
    if task == "levels":
        assert len(found) >= 6  # C1..C7 mostly present
    # canonical orientation and z-scored intensities
    assert subj["image"].orientation == ("R", "A", "S")
    img = subj["image"].data.float()
    assert abs(float(img.mean())) < 1e-3 and abs(float(img.std()) - 1) < 1e-2
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)  # as Lightning (fast path: augments)
    assert tuple(batch["image"]["data"].shape) == (4, 1, 32, 32, 1)
    # label-aware sampling: most patches hold foreground
    fg = (batch["label"]["data"] > 0).flatten(1).any(1).float().mean()
    assert fg >= 0.5


def test_target_matches_label_file(phantom):
    """Every subject's sc target is its label file reoriented to RAS, voxel for voxel (no resampling;
    padding allowed), and its image the same window of the reoriented input image."""
    import nibabel as nib

    from tests.references import assert_subject_matches_files

    dm = build_datamodule(_cfg(phantom, task="sc"))
    dm.setup("fit")
    for subj in dm.subjects["train"] + dm.subjects["val"] + dm.subjects["test"]:
        sid = subj["subject_id"]
        lbl = nib.load(str(phantom / "derivatives" / "labels" / sid / "anat" / f"{sid}_T2w_label-SC_seg.nii.gz"))
        img = nib.load(str(phantom / sid / "anat" / f"{sid}_T2w.nii.gz"))
        want = (np.asanyarray(lbl.dataobj) > 0).astype(np.int16)
        assert_subject_matches_files(subj, want, lbl.affine, np.asanyarray(img.dataobj))


def test_crop_and_3d_patches(phantom):
    dm = build_datamodule(_cfg(phantom, task="sc", spatial_dims=3, patch_size=[24, 24, 16], crop=[40, 40]))
    dm.setup("fit")
    subj = dm.subjects["train"][0]
    assert subj.spatial_shape[:2] == (40, 40)
    assert subj["label"].data.sum() > 0
    batch = next(iter(dm.train_dataloader()))
    assert tuple(batch["image"]["data"].shape) == (4, 1, 24, 24, 16)


def test_3d_unet_fit(phantom, tmp_path):
    from runs.runner import fit

    cfg = load_config(
        overrides=[
            f"data.root={phantom}",
            "data.spatial_dims=3",
            "data.patch_size=[32, 32, 16]",
            "data.batch_size=2",
            "data.samples_per_volume=2",
            "data.queue_length=8",
            "model.preset=tiny",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "trainer.enable_progress_bar=false",
            "logger.wandb.enabled=false",
            f"output_dir={tmp_path / 'run3d'}",
        ]
    )
    result = fit(cfg)
    assert result.test_records and "sc/dice" in result.test_records[0]
    assert 0.0 <= result.test_records[0]["sc/dice"] <= 1.0
    assert (tmp_path / "run3d" / "checkpoints" / "best.ckpt").exists()


def test_resampling_changes_spacing(phantom):
    dm = build_datamodule(_cfg(phantom, task="sc", spacing=[1.0, 1.0, 1.6]))
    dm.setup("fit")
    sp = dm.subjects["train"][0]["image"].spacing
    np.testing.assert_allclose(sp, (1.0, 1.0, 1.6), atol=1e-6)


def test_augmentation_is_seeded(phantom):
    dm = build_datamodule(_cfg(phantom, task="sc", patch_size=[32, 32]))
    dm.setup("fit")

    def first_batch():
        torch.manual_seed(7)
        np.random.seed(7)
        return dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)["image"]["data"]

    assert torch.equal(first_batch(), first_batch())
