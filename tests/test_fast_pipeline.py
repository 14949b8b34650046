"""The fast 2D pipeline and the preprocessing cache: warped masks stay on their images, torchio's
label-aware sampling map, cache hit / invalidation / corrupt-entry rebuild, CPU determinism for
any worker count, and DDP ranks drawing different subjects."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from core.errors import ConfigError
from data_modules import cache as cache_mod
from data_modules.augment_gpu import BatchAugment, window_margin
from data_modules.fast2d import FastSliceDataset, SliceSource, build_sources, rank_subjects
from data_modules.registry import build_datamodule
from runs.config import DEFAULTS, load_config

AUG_OFF = {"strength": 1.0, "affine": 0.0, "elastic": 0.0, "bias_field": 0.0, "noise": 0.0, "gamma": 0.0}


def _cfg(root: Path, cache_dir: Path, **data) -> dict:
    cfg = copy.deepcopy(DEFAULTS["data"])
    cfg.update(
        root=str(root), cache_dir=str(cache_dir), samples_per_volume=4, batch_size=4, patch_size=[32, 32], crop=[48, 48]
    )
    cfg.update(data)
    return cfg


def _where(b: int, w: int, shape=(64, 64, 10)) -> dict[str, torch.Tensor]:
    return {
        "origin": torch.zeros(b, 2, dtype=torch.long),
        "z": torch.full((b,), 3),
        "shape": torch.tensor([shape] * b),
        "spacing": torch.full((b, 2), 0.8),
    }


def _disc_batch(b: int = 8, w: int = 64, seed: int = 0) -> torch.Tensor:
    """Binary ellipses of random centre/radii: (B, 1, W, W) int labels."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(w, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    c = w / 2 + (torch.rand(b, 2, generator=g) - 0.5) * 8
    r = 6 + torch.rand(b, 2, generator=g) * 8
    inside = ((yy - c[:, 0, None, None]) / r[:, 0, None, None]) ** 2 + (
        (xx - c[:, 1, None, None]) / r[:, 1, None, None]
    ) ** 2
    return (inside <= 1).long()[:, None]


def test_warped_mask_stays_aligned_with_its_image():
    """A mask warped with its image equals the image's own warped threshold (Dice 1), through affine + elastic."""
    aug = {**AUG_OFF, "affine": 1.0, "elastic": 1.0}
    patch = (40, 40)
    w = patch[0] + 2 * window_margin(patch, aug, 0.8)
    label = _disc_batch(w=w)
    torch.manual_seed(0)
    img_out, lab_out = BatchAugment(aug, patch, num_classes=2)(label.float(), label, _where(8, w))
    thr = (img_out > 0.5).long()
    inter = (thr * lab_out).sum()
    dice = float(2 * inter / (thr.sum() + lab_out.sum()))
    assert dice == 1.0
    # the warp did something: masks differ from the unwarped centre crop, yet keep their size roughly
    off = (w - patch[0]) // 2
    plain = label[..., off : off + patch[0], off : off + patch[1]]
    changed = (lab_out != plain).flatten(1).any(1)
    assert bool(changed.all())
    ratio = lab_out.flatten(1).sum(1).float() / plain.flatten(1).sum(1).float()
    assert bool(((ratio > 0.5) & (ratio < 2.0)).all())


def test_intensity_augmentation_leaves_mask_and_multiclass_values():
    aug = {**AUG_OFF, "bias_field": 1.0, "gamma": 1.0, "noise": 1.0}
    label = _disc_batch(w=32) + _disc_batch(w=32, seed=1)  # values 0, 1, 2
    torch.manual_seed(0)
    image = torch.randn(8, 1, 32, 32)
    img_out, lab_out = BatchAugment(aug, (32, 32), num_classes=3)(image, label, _where(8, 32))
    assert torch.equal(lab_out, label)
    assert not torch.allclose(img_out, image)
    # a geometric warp keeps the label values within the classes
    torch.manual_seed(1)
    _, lab_geo = BatchAugment({**AUG_OFF, "affine": 1.0}, (24, 24), num_classes=3)(image, label, _where(8, 32))
    assert set(lab_geo.unique().tolist()) <= {0, 1, 2} and set(lab_geo.unique().tolist()) >= {1, 2}


def test_label_aware_map_matches_torchio():
    """The slice-centre distribution is torchio's LabelSampler probability map, voxel for voxel."""
    import torchio as tio

    rng = np.random.default_rng(0)
    lab = np.zeros((30, 26, 5), np.int16)
    lab[10:18, 9:15, :] = 1
    lab[12:14, 10:12, 1:4] = 2
    probs = {0: 0.2, 1: 0.4, 2: 0.4}
    patch = (16, 12)
    src = SliceSource(rng.normal(size=lab.shape).astype(np.float32), [lab], (1.0, 1.0), patch, 0, probs)
    mine = np.zeros(lab.shape)
    region = np.diff(np.concatenate([[0.0], src.cdfs[0]])).reshape(src.region)
    mine[src.lo[0] : src.lo[0] + src.region[0], src.lo[1] : src.lo[1] + src.region[1], :] = region
    subject = tio.Subject(label=tio.LabelMap(tensor=torch.from_numpy(lab[None])))
    sampler = tio.LabelSampler((*patch, 1), label_name="label", label_probabilities=probs)
    ref = sampler.process_probability_map(sampler.get_probability_map(subject), subject)
    np.testing.assert_allclose(mine, ref, atol=1e-12)
    # and the draws follow it: ~80% foreground centres
    centres = src.draw(np.random.default_rng(1), 4000)
    assert (centres[:, 1:] >= 0).all() and (centres[:, 1] >= 8).all() and (centres[:, 1] <= 30 - 8).all()
    fg = lab[centres[:, 1], centres[:, 2], centres[:, 3]] > 0
    assert abs(fg.mean() - 0.8) < 0.03


@pytest.fixture(scope="module")
def cohort(sweep_phantom, tmp_path_factory) -> Path:
    """A private copy of the 5-subject session phantom (these tests modify files)."""
    root = tmp_path_factory.mktemp("fast") / "phantom"
    shutil.copytree(sweep_phantom, root)
    return root


def _count_builds(monkeypatch, cls) -> list[str]:
    built: list[str] = []
    orig = cls.load_subject

    def counting(self, spec, stage="eval"):
        built.append(spec.subject)
        return orig(self, spec, stage)

    monkeypatch.setattr(cls, "load_subject", counting)
    return built


def test_cache_hit_invalidation_and_corrupt_entry(cohort, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    dm = build_datamodule(_cfg(cohort, cache_dir))
    built = _count_builds(monkeypatch, type(dm))
    dm.setup("fit")
    n = len(dm.specs)
    assert len(built) == n
    fresh = {s["subject_id"]: s["image"].data.clone() for p in dm.subjects.values() for s in p}
    # hit: nothing rebuilt, same arrays and attributes
    dm2 = build_datamodule(_cfg(cohort, cache_dir))
    dm2.setup("fit")
    assert len(built) == n
    for part in ("train", "val", "test"):
        for a, b in zip(dm.subjects[part], dm2.subjects[part]):
            assert torch.equal(a["image"].data, b["image"].data) and torch.equal(a["label"].data, b["label"].data)
            np.testing.assert_array_equal(a["image"].affine, b["image"].affine)
            assert a["subject_id"] == b["subject_id"] and a.get("institution_id") == b.get("institution_id")
    # a changed setting: every subject rebuilt
    built.clear()
    build_datamodule(_cfg(cohort, cache_dir, crop=[40, 40])).setup("fit")
    assert len(built) == n
    # a changed file (same name): only that subject rebuilt, with the new content
    spec = dm.specs[0]
    img = nib.load(str(spec.image))
    data = np.asanyarray(img.dataobj).astype(np.float32)
    data[0, 0, 0] += 100.0
    nib.save(nib.Nifti1Image(data, img.affine, img.header), str(spec.image))
    built.clear()
    dm3 = build_datamodule(_cfg(cohort, cache_dir))
    dm3.setup("fit")
    assert built == [spec.subject]
    # a corrupt entry (bytes flipped in an array) is rebuilt, not trusted
    victim = dm3.specs[1]
    stage = "train" if victim.subject in dm3.split["train"] else "eval"
    key = cache_mod.subject_key(cache_mod.settings_of(dm3, stage), victim)
    npy = cache_mod.SubjectCache(cache_dir).entry(key) / "image.npy"
    raw = bytearray(npy.read_bytes())
    raw[-8:] = b"\x00\x01\x02\x03\x04\x05\x06\x07"
    npy.write_bytes(bytes(raw))
    (cache_mod.SubjectCache(cache_dir).entry(key) / "label.npy").write_bytes(b"not an array")
    built.clear()
    dm4 = build_datamodule(_cfg(cohort, cache_dir))
    dm4.setup("fit")
    assert built == [dm3.specs[1].subject]
    again = {s["subject_id"]: s["image"].data for p in dm4.subjects.values() for s in p}
    assert torch.equal(again[dm3.specs[1].subject], fresh[dm3.specs[1].subject])


def test_train_and_eval_entries_of_a_subject_are_apart(cohort, tmp_path):
    """A subject cropped around its label for training (``train_crop: label``) and the same subject
    scored later (FOV-centred crop; e.g. in another split, or another run sharing the cache) are two
    cache entries: each stage reads back exactly what its own chain builds, never the other's."""
    dm = build_datamodule(_cfg(cohort, tmp_path / "cache"))
    assert dm.preprocessing.crop and dm.preprocessing.train_crop == "label"
    spec = dm.specs[0]
    want = {stage: dm.load_subject(spec, stage) for stage in ("train", "eval")}
    # the two crops differ on this subject (else the test would prove nothing)
    assert not np.allclose(want["train"]["image"].affine, want["eval"]["image"].affine)
    # first round: train then eval, each built (or, were the key blind to the stage, eval read train's);
    # second round: both read back from their entries
    for _round in ("built", "read back"):
        got = {stage: cache_mod.load_subjects(dm, [spec], stage)[0] for stage in ("train", "eval")}
        for stage in ("train", "eval"):
            for name in ("image", "label"):
                np.testing.assert_array_equal(
                    got[stage][name].affine, want[stage][name].affine, err_msg=f"{_round} {stage}"
                )
                assert torch.equal(got[stage][name].data, want[stage][name].data), (_round, stage, name)


def _fast_dm(cohort: Path, cache_dir: Path, **data):
    dm = build_datamodule(_cfg(cohort, cache_dir, **data))
    dm.setup("fit")
    return dm


def _epoch_batches(dm, seed: int) -> list[dict]:
    torch.manual_seed(seed)
    loader = dm.train_dataloader()
    return [dm.on_after_batch_transfer(b, 0) for b in loader]


def test_cpu_determinism_any_worker_count(cohort, tmp_path):
    dm = _fast_dm(cohort, tmp_path / "c")
    assert dm.pipeline == "fast"
    a, b = _epoch_batches(dm, 3), _epoch_batches(dm, 3)
    assert len(a) == len(b) == len(dm.train_dataloader())
    for x, y in zip(a, b):
        assert torch.equal(x["image"]["data"], y["image"]["data"]) and torch.equal(
            x["label"]["data"], y["label"]["data"]
        )
    assert a[0]["image"]["data"].shape == (4, 1, 32, 32, 1)
    other = _epoch_batches(dm, 4)
    assert not torch.equal(a[0]["image"]["data"], other[0]["image"]["data"])
    # 2 loader workers: the same batches (the epoch plan does not depend on the workers)
    dm.cfg["num_workers"] = 2
    c = _epoch_batches(dm, 3)
    assert len(c) == len(a)
    for x, y in zip(a, c):
        assert torch.equal(x["image"]["data"], y["image"]["data"]) and torch.equal(
            x["label"]["data"], y["label"]["data"]
        )


def test_epochs_differ_and_ddp_ranks_draw_different_subjects(cohort, tmp_path):
    dm = _fast_dm(cohort, tmp_path / "c", augment=AUG_OFF)
    sources = build_sources(dm.subjects["train"], (32, 32), 0, dm.label_probabilities())
    n = len(sources)
    one = FastSliceDataset(sources, 4, 4, seed=0)
    assert not np.array_equal(np.concatenate(one.plan(0)), np.concatenate(one.plan(1)))
    for epoch in range(3):
        ranks = [FastSliceDataset(sources, 4, 4, seed=r + 10, rank=r, world=2) for r in range(2)]  # unlike seeds
        subjects = [set(np.concatenate(d.plan(epoch))[:, 0].tolist()) for d in ranks]
        assert subjects[0] | subjects[1] == set(range(n))
        if n % 2 == 0:
            assert not subjects[0] & subjects[1]
        assert len(ranks[0]) == len(ranks[1]) == len(ranks[0].plan(epoch)) == len(ranks[1].plan(epoch))
        assert rank_subjects(n, 0, epoch, 0, 2) != rank_subjects(n, 0, epoch, 1, 2)
    # the loader batches are windows of the cached arrays at the planned positions
    rows = one.plan(0)[0]
    batch = one.make_batch(rows)
    s, _, x, y, z = (int(v) for v in rows[0])
    want = dm.subjects["train"][s]["image"].data[0, x - 16 : x + 16, y - 16 : y + 16, z]
    assert torch.equal(batch["image"]["data"][0, 0], want)


def test_pipeline_key_is_validated(tmp_path):
    with pytest.raises(ConfigError, match="data.pipeline"):
        load_config(overrides=["data.pipeline=dali"])
    with pytest.raises(ConfigError, match="data.pipeline"):
        load_config(overrides=["data.pipeline=fast", "data.spatial_dims=3", "data.patch_size=[32,32,16]"])
    assert load_config(overrides=["data.pipeline=torchio"])["data"]["pipeline"] == "torchio"


def test_random_rater_variants_feed_their_own_map():
    """GM challenge ``raters: random``: every slice comes with the map of the rater it was drawn from."""
    lab_a = np.zeros((20, 20, 6), np.int16)
    lab_a[8:12, 8:12] = 1
    lab_b = lab_a.copy()
    lab_b[8:12, 12:14] = 2
    image = np.random.default_rng(0).normal(size=lab_a.shape).astype(np.float32)
    src = SliceSource(image, [lab_a, lab_b], (1.0, 1.0), (8, 8), 2, {0: 0.2, 1: 0.4, 2: 0.4})
    ds = FastSliceDataset([src], samples_per_volume=64, batch_size=64, seed=0)
    rows = ds.plan(0)[0]
    assert set(rows[:, 1].tolist()) == {0, 1}
    batch = ds.make_batch(rows)
    pad = ((2, 2), (2, 2), (0, 0))  # windows: the 8² patch plus a 2-voxel margin, zero-padded outside
    for n, (_, v, x, y, z) in enumerate(rows):
        want = np.pad((lab_a, lab_b)[int(v)], pad)[x - 4 : x + 8, y - 4 : y + 8, z]
        assert np.array_equal(batch["label"]["data"][n, 0].numpy(), want)
