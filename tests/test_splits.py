"""Subject-level splits: k-fold partitions, leave-site-out, fixed files, and the data-module path."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from core.errors import ConfigError, InputError
from data_modules.base import SubjectSpec
from data_modules.splits import file_split, kfold_split, make_split, site_split

IDS = [f"sub-{s}{i:02d}" for s in ("amu", "cmrra", "ucl") for i in range(1, 6)]


def _specs(ids=IDS, key="institution_id"):
    return [SubjectSpec(i, Path(f"{i}.nii.gz"), {}, {key: i[4:-2]}) for i in ids]


def _check_partition(split: dict, ids) -> None:
    parts = [set(split[p]) for p in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == len(ids)
    assert set().union(*parts) == set(ids)


@pytest.mark.parametrize("folds", [3, 5])
def test_kfold_test_sets_partition_subjects(folds: int):
    tests = []
    for fold in range(folds):
        s = kfold_split(IDS, folds, fold, 0.2, seed=7)
        _check_partition(s, IDS)
        assert s["val"], "val drawn from the non-test subjects"
        tests.append(set(s["test"]))
        assert kfold_split(IDS, folds, fold, 0.2, seed=7) == s  # deterministic
    assert set().union(*tests) == set(IDS)
    assert sum(len(t) for t in tests) == len(IDS)  # each subject tested exactly once
    sizes = sorted(len(t) for t in tests)
    assert sizes[-1] - sizes[0] <= 1
    assert [kfold_split(IDS, folds, f, 0.2, seed=8)["test"] for f in range(folds)] != [sorted(t) for t in tests]


def test_kfold_bad_config():
    with pytest.raises(ConfigError, match="folds"):
        kfold_split(IDS, 1, 0, 0.2, 0)
    with pytest.raises(ConfigError, match="fold"):
        kfold_split(IDS, 3, 3, 0.2, 0)


@pytest.mark.parametrize("key", ["institution_id", "site"])
def test_leave_site_out(key: str):
    specs = _specs(key=key)
    sites = sorted({s.meta[key] for s in specs})
    held = []
    for fold in range(len(sites)):
        s = site_split(specs, fold, 0.25, seed=0)
        _check_partition({p: s[p] for p in ("train", "val", "test")}, IDS)
        test_sites = {i[4:-2] for i in s["test"]}
        assert len(test_sites) == 1 and not test_sites & {i[4:-2] for i in s["train"] + s["val"]}
        assert s["test"] == sorted(i for i in IDS if i[4:-2] in test_sites)
        held += list(test_sites)
    assert sorted(held) == sites
    with pytest.raises(InputError, match="no site"):
        site_split([SubjectSpec("sub-x01", Path("x"), {}, {})] + specs, 0, 0.2, 0)


def test_fixed_split_file(tmp_path: Path):
    p = tmp_path / "split.json"
    p.write_text(json.dumps({"train": IDS[:10], "val": IDS[10:12], "test": IDS[12:]}))
    s = make_split(_specs(), {"method": "file", "file": str(p)})
    assert s == {"train": sorted(IDS[:10]), "val": sorted(IDS[10:12]), "test": sorted(IDS[12:])}
    y = tmp_path / "split.yaml"
    y.write_text(f"train: [{', '.join(IDS[:12])}]\ntest: [{', '.join(IDS[12:])}]\n")
    assert make_split(_specs(), {"method": "file", "file": str(y)})["val"] == []
    p.write_text(json.dumps({"train": IDS[:10] + ["sub-nobody01"], "test": IDS[10:]}))
    with pytest.raises(InputError, match="sub-nobody01") as err:
        file_split(p, IDS)
    assert str(p) in str(err.value)
    p.write_text(json.dumps({"train": IDS[:10], "test": IDS[9:]}))
    with pytest.raises(InputError, match="both"):
        file_split(p, IDS)


# ------------------------------------------------------------------ through a data module (BIDS tree)
def _tiny_bids(root: Path, ids) -> None:
    """Small spine-generic-style tree: a bright cylinder (cord) per subject, labels beside it."""
    shape = (24, 24, 6)
    yy, xx = np.mgrid[:24, :24]
    for k, sid in enumerate(ids):
        cord = ((xx - 12) ** 2 + (yy - 12 - k % 3) ** 2 <= 16)[..., None].repeat(shape[2], axis=2)
        img = np.random.default_rng(k).normal(100, 5, shape).astype(np.float32) + 200 * cord
        aff = np.diag([0.8, 0.8, 0.8, 1.0])
        (root / sid / "anat").mkdir(parents=True)
        nib.save(nib.Nifti1Image(img, aff), root / sid / "anat" / f"{sid}_T2w.nii.gz")
        d = root / "derivatives" / "labels" / sid / "anat"
        d.mkdir(parents=True)
        nib.save(nib.Nifti1Image(cord.astype(np.uint8), aff), d / f"{sid}_T2w_label-SC_seg.nii.gz")
    rows = "".join(f"{i}\tF\t30\t{i[4:-2]}\tSiemens\n" for i in ids)
    (root / "participants.tsv").write_text("participant_id\tsex\tage\tinstitution_id\tmanufacturer\n" + rows)


def _dm(root: Path, split: dict):
    from data_modules.registry import build_datamodule
    from runs.config import load_config

    cfg = load_config(
        [],
        ["data.name=spine_generic", f"data.root={root}", "data.task=sc", "data.patch_size=[16,16]"]
        + [f"data.split.{k}={v}" for k, v in split.items()],
    )
    return build_datamodule(cfg["data"])


def test_kfold_through_spine_generic_module(tmp_path: Path):
    ids = IDS[:3] + IDS[5:8] + IDS[10:13]
    _tiny_bids(tmp_path, ids)
    tested = []
    for fold in range(3):
        dm = _dm(tmp_path, {"method": "kfold", "folds": 3, "fold": fold, "val_fraction": 0.2})
        dm.setup("fit")
        _check_partition(dm.split, ids)
        assert {s["subject_id"] for s in dm.subjects["test"]} == set(dm.split["test"])
        tested += dm.split["test"]
    assert sorted(tested) == sorted(ids)


def test_leave_site_out_through_spine_generic_module(tmp_path: Path):
    ids = IDS[:3] + IDS[5:8] + IDS[10:13]
    _tiny_bids(tmp_path, ids)
    dm = _dm(tmp_path, {"method": "site", "fold": 1, "val_fraction": 0.2})
    dm.setup("fit")
    assert dm.split["test"] == sorted(i for i in ids if "cmrra" in i)
    assert dm.split["held_out_site"] == ["cmrra"]
    assert {s["subject_id"] for s in dm.subjects["test"]} == set(dm.split["test"])
