"""Reliability catalogue, data sets: bad images, labels and participants.tsv rejected by ``cordbench fit``.

Every case goes through the CLI (``cordbench.cli.main``), must exit 2 with exactly one stderr line
``error: <file>: <problem>`` and must leave an earlier run in the same output folder untouched: the
data module validates every subject before anything is written. The tiny BIDS tree (4 subjects,
40×40×12 voxels, spine-generic naming) is built by ``tests/support/reliability.py``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tests.support.reliability import (
    SHAPE,
    assert_intact,
    cli_error,
    cord_mask,
    fit_args,
    make_bids,
    previous_run,
    save,
)


@pytest.fixture(scope="module")
def tiny_bids(tmp_path_factory) -> Path:
    return make_bids(tmp_path_factory.mktemp("tiny") / "bids")


# --------------------------------------------------------------------------- image and label cases
IMG = "sub-02/anat/sub-02_T2w.nii.gz"
LBL = "derivatives/labels/sub-02/anat/sub-02_T2w_label-SC_seg.nii.gz"


def _edit(root: Path, rel: str, fn) -> None:
    img = nib.load(str(root / rel))
    data, affine = fn(np.asanyarray(img.dataobj).copy(), img.affine.copy())
    save(root / rel, data, affine)


def _set(value, dtype=np.float32):
    def fn(d, a):
        d = d.astype(dtype)
        d[20, 20, 5] = value
        return d, a

    return fn


def _shift(d, a):
    a[0, 3] += 0.5  # half a millimetre: far beyond the 1e-3 mm tolerance
    return d, a


CASES = {
    # case: (file edited, edit, words expected in the message)
    "nan_voxel": (IMG, _set(np.nan), ["sub-02_T2w.nii.gz", "NaN/Inf"]),
    "inf_voxel": (IMG, _set(np.inf), ["sub-02_T2w.nii.gz", "NaN/Inf"]),
    "constant_image": (IMG, lambda d, a: (np.full_like(d, 7.0), a), ["sub-02_T2w.nii.gz", "constant"]),
    "4d_image": (IMG, lambda d, a: (np.stack([d, d], -1), a), ["sub-02_T2w.nii.gz", "4D", "expected 3D"]),
    "empty_mask": (LBL, lambda d, a: (np.zeros_like(d), a), ["sub-02_T2w_label-SC_seg.nii.gz", "empty"]),
    "label_value_outside_set": (LBL, _set(2, np.uint8), ["label-SC_seg.nii.gz", "values [2]", "[0, 1]"]),
    "non_integer_label": (LBL, _set(0.5), ["label-SC_seg.nii.gz", "non-integer"]),
    "label_affine_beyond_tolerance": (LBL, _shift, ["label-SC_seg.nii.gz", "affine differs", "0.5"]),
    "label_shape": (LBL, lambda d, a: (d[:-1], a), ["label-SC_seg.nii.gz", "shape (39, 40, 12) != image shape"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_image_or_label_rejected_by_fit(case, tiny_bids, tmp_path, capsys):
    rel, edit, words = CASES[case]
    root = shutil.copytree(tiny_bids, tmp_path / "bids")
    _edit(root, rel, edit)
    out = tmp_path / "run"
    before = previous_run(out)
    line = cli_error(capsys, fit_args(root, out))
    for w in words:
        assert w in line, (w, line)
    assert str(root / rel) in line
    assert_intact(out, before)


# ------------------------------------------------------------------------------ participants.tsv
def _tsv(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "participants.tsv", sep="\t", dtype=str)


def _write_tsv(root: Path, df: pd.DataFrame) -> None:
    df.to_csv(root / "participants.tsv", sep="\t", index=False)


@pytest.mark.parametrize(
    "case",
    [
        "no_participant_id",
        "site_split_without_institution_id",
        "empty_institution_id",
        "row_without_images",
        "images_without_row",
    ],
)
def test_participants_tsv_rejected_by_fit(case, tiny_bids, tmp_path, capsys):
    root = shutil.copytree(tiny_bids, tmp_path / "bids")
    df = _tsv(root)
    extra: list[str] = []
    if case == "no_participant_id":
        df = df.rename(columns={"participant_id": "subject"})
        words = ["no participant_id column"]
    elif case == "site_split_without_institution_id":
        df = df.drop(columns="institution_id")
        extra = ["--data.split.method=site"]
        words = ["no institution_id column", "data.split.method=site"]
    elif case == "empty_institution_id":
        df.loc[df["participant_id"] == "sub-03", "institution_id"] = "n/a"
        extra = ["--data.split.method=site"]
        words = ["empty institution_id for sub-03"]
    elif case == "row_without_images":
        df = pd.concat([df, pd.DataFrame([{"participant_id": "sub-99", "sex": "F"}])])
        words = ["lists subjects without images: sub-99"]
    else:
        df = df[df["participant_id"] != "sub-04"]
        words = ["subjects not listed in participants.tsv: sub-04"]
    _write_tsv(root, df)
    out = tmp_path / "run"
    before = previous_run(out)
    line = cli_error(capsys, fit_args(root, out, *extra))
    assert line.startswith(f"error: {root / 'participants.tsv'}: "), line
    for w in words:
        assert w in line, (w, line)
    assert_intact(out, before)


# ---------------------------------------------------------------------------------- GM challenge
def make_gmchallenge(root: Path, bad_value: int | None = None) -> Path:
    """Three labelled challenge subjects (GM = 1 inside WM = 2), four raters each, original naming."""
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    aff = np.diag([0.5, 0.5, 5.0, 1.0])
    shape = (40, 40, 4)
    for site, n in (("site1", 1), ("site1", 2), ("site2", 1)):
        sid = f"{site}-sc{n:02d}"
        sc = cord_mask(shape, 9.0)
        gm = cord_mask(shape, 4.0)
        img = (100 + 200 * sc + 100 * gm + rng.normal(0, 10, shape)).astype(np.float32)
        save(root / f"{sid}-image.nii.gz", img, aff)
        for r in range(1, 5):
            m = np.where(gm, 1, np.where(sc, 2, 0)).astype(np.uint8)
            if bad_value is not None and sid == "site1-sc02" and r == 3:
                m[20, 20, 1] = bad_value
            save(root / f"{sid}-mask-r{r}.nii.gz", m, aff)
    return root


def test_gm_challenge_mask_value_outside_set(tmp_path, capsys):
    root = make_gmchallenge(tmp_path / "gm", bad_value=3)
    out = tmp_path / "run"
    before = previous_run(out)
    line = cli_error(capsys, fit_args(root, out, "--task", "gm", data="gmchallenge"))
    bad = root / "site1-sc02-mask-r3.nii.gz"
    assert line.startswith(f"error: {bad}: ") and "values [3] outside the expected set [0, 1, 2]" in line, line
    assert_intact(out, before)


def test_levels_task_with_discs_that_miss_the_cord(tiny_bids, tmp_path, capsys):
    """``--task levels`` builds levels from SC + disc labels: discs bounding no cord slice are named."""
    root = shutil.copytree(tiny_bids, tmp_path / "bids")
    for i in range(1, 5):
        sub = f"sub-{i:02d}"
        discs = np.zeros(SHAPE, np.uint8)
        points = {3: 10, 4: 5, 5: 1} if sub != "sub-02" else {3: 10}  # sub-02: one disc, no level anywhere
        for value, z in points.items():
            discs[20, 20, z] = value
        save(root / "derivatives" / "labels" / sub / "anat" / f"{sub}_T2w_label-discs_dlabel.nii.gz", discs)
    out = tmp_path / "run"
    before = previous_run(out)
    line = cli_error(capsys, fit_args(root, out, "--task", "levels"))
    bad = root / "derivatives/labels/sub-02/anat/sub-02_T2w_label-discs_dlabel.nii.gz"
    assert line.startswith(f"error: {bad}: no vertebral level C1-C7 where the cord is segmented"), line
    assert_intact(out, before)
