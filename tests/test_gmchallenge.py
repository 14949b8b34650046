"""GM challenge: indexing both layouts, rater fusion, levels files, the data module on a fixture.

The fixture is built in tmp_path in the challenge's naming from the real T2* of sct_testing_data
(LAS, oblique, 0.5×0.5×7.5 mm) by ``tests/support/gmchallenge.py``: four "raters" differ by small
in-plane morphological changes of the real cord (deepseg) and GM (manual) masks.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from core.errors import ConfigError, InputError
from data_modules.gmchallenge import fuse_raters, index_gmchallenge, load_rater_mask, read_levels_txt, to_task_target
from tests.support.gmchallenge import make_fixture, rater_masks


@pytest.fixture(scope="module")
def challenge(tmp_path_factory, sct_data: Path):
    root = tmp_path_factory.mktemp("gmchallenge")
    info = make_fixture(root, sct_data / "t2s")
    return root, info


# ------------------------------------------------------------------------------------ indexing
def test_index_original(challenge):
    root, _ = challenge
    subs = index_gmchallenge(root)
    assert len(subs) == 9
    labelled = [s for s in subs if s.labelled]
    assert [s.subject for s in labelled] == [
        "site1-sc01",
        "site1-sc02",
        "site2-sc01",
        "site2-sc02",
        "site3-sc01",
        "site3-sc02",
    ]
    assert all(sorted(s.raters) == [1, 2, 3, 4] and s.levels is not None for s in labelled)
    assert {s.subject for s in subs if not s.labelled} == {"site1-sc03", "site2-sc03", "site3-sc03"}
    assert {s.site for s in subs} == {"site1", "site2", "site3"}


def test_index_bids_variant_and_missing_underscore(tmp_path: Path):
    for sub in ("sub-ucl001", "sub-epm002"):
        (tmp_path / sub / "anat").mkdir(parents=True)
        (tmp_path / sub / "anat" / f"{sub}_T2star.nii.gz").write_bytes(b"")
        d = tmp_path / "derivatives" / "labels" / sub / "anat"
        d.mkdir(parents=True)
        sep = "_" if sub == "sub-ucl001" else ""  # the published curation script omits it
        for r in (1, 2, 3, 4):
            for lab in ("SC", "GM", "WM"):
                (d / f"{sub}{sep}T2star_label-{lab}_desc-manual_mask{r}.nii.gz").write_bytes(b"")
    (tmp_path / "sub-vdb011" / "anat").mkdir(parents=True)
    (tmp_path / "sub-vdb011" / "anat" / "sub-vdb011_T2star.nii.gz").write_bytes(b"")
    subs = {s.subject: s for s in index_gmchallenge(tmp_path)}
    assert set(subs) == {"sub-ucl001", "sub-epm002", "sub-vdb011"}
    assert subs["sub-ucl001"].site == "site1" and subs["sub-epm002"].site == "site2"
    for sid in ("sub-ucl001", "sub-epm002"):
        assert sorted(subs[sid].raters) == [1, 2, 3, 4]
        assert set(subs[sid].raters[3]) == {"SC", "GM", "WM"}
    assert not subs["sub-vdb011"].labelled


def test_bids_rater_masks_compose_like_original(tmp_path: Path, sct_data: Path):
    img = nib.load(sct_data / "t2s" / "t2s.nii.gz")
    sc = np.asanyarray(nib.load(sct_data / "t2s" / "t2s_seg-deepseg.nii.gz").dataobj) > 0
    gm = np.asanyarray(nib.load(sct_data / "t2s" / "t2s_gmseg_manual.nii.gz").dataobj) > 0
    m = rater_masks(sc, gm)[0]
    files = {}
    for name, arr in (("SC", m > 0), ("GM", m == 1), ("WM", m == 2)):
        files[name] = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(arr.astype(np.uint8), img.affine), files[name])
    np.testing.assert_array_equal(load_rater_mask(files, img, "t2s"), m)


@pytest.mark.parametrize("case", ["grid", "values", "no_image", "duplicate"])
def test_bad_inputs_named(tmp_path: Path, sct_data: Path, case: str):
    make_fixture(tmp_path, sct_data / "t2s", sites=(1,), per_site=1, test_subjects=0)
    bad = tmp_path / "site1-sc01-mask-r2.nii.gz"
    img = nib.load(tmp_path / "site1-sc01-image.nii.gz")
    m = np.asanyarray(nib.load(bad).dataobj).copy()
    if case == "grid":
        nib.save(nib.Nifti1Image(m[:-1], img.affine), bad)
    elif case == "values":
        m[m == 2] = 3
        nib.save(nib.Nifti1Image(m, img.affine), bad)
    elif case == "no_image":
        (tmp_path / "site1-sc01-image.nii.gz").unlink()
        with pytest.raises(InputError, match="no image") as err:
            index_gmchallenge(tmp_path)
        assert "site1-sc01" in str(err.value)
        return
    elif case == "duplicate":
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "site1-sc01-mask-r2.nii").write_bytes(b"")
        with pytest.raises(InputError, match="twice"):
            index_gmchallenge(tmp_path)
        return
    s = index_gmchallenge(tmp_path)[0]
    with pytest.raises(InputError) as err:
        load_rater_mask(s.raters[2], img, s.image)
    assert str(bad) in str(err.value)


# ------------------------------------------------------------------------------------ fusion
def _majority_reference(masks: list[np.ndarray]) -> np.ndarray:
    """Voxel-by-voxel vote count with explicit tie rule (foreground first, then lowest value)."""
    out = np.zeros(masks[0].shape, np.int64)
    for idx in np.ndindex(masks[0].shape):
        votes: dict[int, int] = {}
        for m in masks:
            votes[int(m[idx])] = votes.get(int(m[idx]), 0) + 1
        best = max(votes.values())
        cands = sorted(v for v, c in votes.items() if c == best)
        fg = [v for v in cands if v != 0]
        out[idx] = fg[0] if fg else 0
    return out


@pytest.mark.parametrize("n_raters", [3, 4])
def test_majority_vote_against_explicit_count(n_raters: int):
    rng = np.random.default_rng(n_raters)
    masks = [rng.integers(0, 3, (6, 5, 4)) for _ in range(n_raters)]
    np.testing.assert_array_equal(fuse_raters(masks, "majority"), _majority_reference(masks))
    # hand case: 2 GM vs 2 background -> GM; 2 WM, 1 GM, 1 bg -> WM
    a = [np.array([1, 2]), np.array([1, 2]), np.array([0, 1]), np.array([0, 0])]
    assert fuse_raters(a, "majority").tolist() == [1, 2]


def test_staple_recovers_consensus_against_outlier_rater(challenge):
    _, info = challenge
    good = info["masks"][0]
    rng = np.random.default_rng(1)
    outlier = np.where(rng.random(good.shape) < 0.3, rng.integers(0, 3, good.shape), good).astype(np.uint8)
    fused = fuse_raters([good, good, good, outlier], "staple")
    np.testing.assert_array_equal(fused, good)
    # binary STAPLE on the cord
    sc = [(m > 0).astype(np.uint8) for m in info["masks"]]
    f = fuse_raters(sc, "staple")
    assert set(np.unique(f)) == {0, 1}
    # every voxel all raters agree on is kept; the fused cord lies within the union
    np.testing.assert_array_equal(f[np.all(np.stack(sc) == 1, axis=0)], 1)
    assert not (f.astype(bool) & ~np.any(np.stack(sc), axis=0)).any()


def test_random_rater_is_one_of_them_and_seeded(challenge):
    _, info = challenge
    masks = info["masks"]
    picks = []
    for seed in range(12):
        out = fuse_raters(masks, "random", np.random.default_rng(seed))
        i = [k for k, m in enumerate(masks) if np.array_equal(m, out)]
        assert i
        picks.append(i[0])
        assert np.array_equal(out, fuse_raters(masks, "random", np.random.default_rng(seed)))
    assert len(set(picks)) >= 3
    with pytest.raises(ConfigError):
        fuse_raters(masks, "mean")


def test_task_targets():
    m = np.array([0, 1, 2])
    assert to_task_target(m, "gm").tolist() == [0, 2, 1]  # base task gm: WM 1, GM 2
    assert to_task_target(m, "sc").tolist() == [0, 1, 1]


# ------------------------------------------------------------------------------------ levels.txt
@pytest.mark.parametrize(
    "text,expected",
    [
        ("0,C3\n1,C3\n2,C4\n", [3, 3, 4]),
        ("C2 0\nC3 1\nC3\t2\n", [2, 3, 3]),
        ("C3: 0-1\nC4: 2-3\n", [3, 3, 4, 4]),
        ("C5\nC5\nT1\n", [5, 5, 8]),
        ("0 3\n1 4\n", [3, 4]),
    ],
)
def test_levels_txt_formats(tmp_path: Path, text: str, expected: list[int]):
    p = tmp_path / "site1-sc01-levels.txt"
    p.write_text(text)
    assert read_levels_txt(p).tolist() == expected
    assert read_levels_txt(p, n_slices=len(expected) + 1).tolist() == expected + [0]


def test_levels_txt_rejects_garbage(tmp_path: Path):
    p = tmp_path / "x-levels.txt"
    p.write_text("slice three is C3 or C4 9 10 11\n")
    with pytest.raises(InputError, match=str(p)):
        read_levels_txt(p)
    p.write_text("0,C3\n12,C4\n")
    with pytest.raises(InputError, match="outside"):
        read_levels_txt(p, n_slices=9)


# ------------------------------------------------------------------------------------ data module
def _cfg(root: Path, tmp: Path, mode: str, split: str = "kfold", extra: tuple = ()) -> dict:
    from runs.config import load_config

    return load_config(
        [],
        [
            "data.name=gmchallenge",
            f"data.root={root}",
            "data.task=gm",
            f"data.raters={mode}",
            "data.patch_size=[48,48]",
            "data.batch_size=4",
            "data.samples_per_volume=4",
            "data.queue_length=16",
            f"data.split.method={split}",
            "data.split.folds=3",
            "data.split.val_fraction=0.25",
            "data.augment.strength=0",
            *extra,
        ],
    )


def _canonical(arr: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return np.asanyarray(nib.as_closest_canonical(nib.Nifti1Image(arr.astype(np.int16), affine)).dataobj)


@pytest.mark.parametrize("mode", ["majority", "staple"])
def test_datamodule_fused_label_matches_fusion(challenge, tmp_path: Path, mode: str):
    from data_modules.registry import build_datamodule

    root, info = challenge
    dm = build_datamodule(_cfg(root, tmp_path, mode)["data"])
    dm.setup("fit")
    assert sorted(dm.split["train"] + dm.split["val"] + dm.split["test"]) == sorted(
        s.subject for s in index_gmchallenge(root) if s.labelled
    )
    want = _canonical(to_task_target(fuse_raters(info["masks"], mode), "gm"), info["affine"])
    for s in dm.subjects["train"] + dm.subjects["test"]:
        np.testing.assert_array_equal(s["label"].data[0].numpy(), want)
        assert not [n for n in s.get_images_names() if n.startswith("rater")]


def test_datamodule_random_rater_per_sample(challenge, tmp_path: Path):
    import torch

    from data_modules.registry import build_datamodule

    root, info = challenge
    dm = build_datamodule(_cfg(root, tmp_path, "random", "site")["data"])
    dm.setup("fit")
    assert dm.split["held_out_site"] == ["site1"]
    assert all(i.startswith("site1") for i in dm.split["test"])
    raters = [_canonical(to_task_target(m, "gm"), info["affine"]) for m in info["masks"]]
    torch.manual_seed(0)
    subject = dm.subjects["train"][0]
    seen = set()
    for _ in range(24):
        lbl = dm.augment()(subject)["label"].data[0].numpy()
        hits = [k for k, r in enumerate(raters) if np.array_equal(lbl, r)]
        assert hits, "training label must be one rater's map"
        seen.add(hits[0])
    assert len(seen) >= 3
    # evaluation uses the majority vote, and raters do not ride along outside training
    val = dm.subjects["val"][0]
    np.testing.assert_array_equal(
        val["label"].data[0].numpy(), _canonical(to_task_target(fuse_raters(info["masks"]), "gm"), info["affine"])
    )
    assert [n for n in val.get_images_names() if n.startswith("rater")] == []


@pytest.mark.parametrize("mode,split", [("majority", "kfold"), ("staple", "site"), ("random", "site")])
def test_cordbench_fit_on_fixture(challenge, tmp_path: Path, mode: str, split: str):
    """``cordbench fit`` end to end on the fixture (tiny U-Net, one short epoch)."""
    import json

    from cordbench.cli import main

    root, _ = challenge
    out = tmp_path / "run"
    rc = main(
        [
            "fit",
            "--data",
            "gmchallenge",
            "--root",
            str(root),
            "--task",
            "gm",
            "--model",
            "unet",
            "--preset",
            "tiny",
            "--max-epochs",
            "1",
            "-o",
            str(out),
            f"--data.raters={mode}",
            f"--data.split.method={split}",
            "--data.split.folds=3",
            "--data.split.val_fraction=0.25",
            "--data.patch_size=[48,48]",
            "--data.batch_size=4",
            "--data.samples_per_volume=4",
            "--data.queue_length=16",
            "--trainer.limit_train_batches=2",
            "--trainer.accelerator=cpu",
            "--trainer.devices=1",
            "--trainer.enable_progress_bar=false",
            "--logger.wandb.enabled=false",
        ]
    )
    assert rc in (0, None)
    split_rec = json.loads((out / "split.json").read_text())
    assert split_rec["test"] and split_rec["train"]
    if split == "site":
        assert len({s.split("-")[0] for s in split_rec["test"]}) == 1
    assert json.loads((out / "data.json").read_text())["raters"] == mode
    assert (out / "test_metrics.csv").exists()


def test_perone_preset_geometry(sct_data: Path):
    """0.25 mm in-plane, slice spacing kept, 200×200 slices, z-scored, label volume preserved."""
    import torch
    import torchio as tio

    from data_modules.gmchallenge import perone_preprocess

    img = nib.load(sct_data / "t2s" / "t2s.nii.gz")
    gm = nib.load(sct_data / "t2s" / "t2s_gmseg_manual.nii.gz")
    data = np.asanyarray(img.dataobj).astype(np.float32)
    lab = (np.asanyarray(gm.dataobj) > 0).astype(np.int16)
    s = tio.Subject(
        image=tio.ScalarImage(tensor=torch.from_numpy(data[None]), affine=img.affine),
        label=tio.LabelMap(tensor=torch.from_numpy(lab[None]), affine=img.affine),
    )
    out = perone_preprocess()(s)
    zooms = img.header.get_zooms()
    assert out.spatial_shape == (200, 200, data.shape[2])
    np.testing.assert_allclose(out["image"].spacing, (0.25, 0.25, zooms[2]), rtol=1e-4)
    assert nib.aff2axcodes(out["image"].affine) == ("R", "A", "S")
    x = out["image"].data.numpy()
    assert abs(x.mean()) < 1e-3 and abs(x.std() - 1) < 1e-2
    # label: agrees with nibabel's own nearest-neighbour resampling onto the output grid
    from nibabel.processing import resample_from_to

    ref = np.asanyarray(
        resample_from_to(nib.Nifti1Image(lab, img.affine), (out.spatial_shape, out["label"].affine), order=0).dataobj
    )
    np.testing.assert_array_equal(out["label"].data[0].numpy(), ref)
    assert ref.sum() > 1000
