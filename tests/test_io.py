"""Validated NIfTI reading and atomic writing (core.io)."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from core import io
from core.errors import InputError


def _img(path, data, affine=None, dtype=None):
    arr = np.asarray(data) if dtype is None else np.asarray(data, dtype=dtype)
    nib.save(nib.Nifti1Image(arr, np.eye(4) if affine is None else affine), str(path))
    return path


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found") as e:
        io.load_nifti(tmp_path / "nope.nii.gz")
    assert "nope.nii.gz" in str(e.value)


def test_not_gzip(tmp_path):
    p = tmp_path / "x.nii.gz"
    p.write_text("hello")
    with pytest.raises(InputError, match="not a gzip"):
        io.load_nifti(p)


def test_not_nifti(tmp_path):
    p = tmp_path / "x.nii"
    p.write_bytes(b"\0" * 400)
    with pytest.raises(InputError, match="NIfTI"):
        io.load_nifti(p)


def test_truncated(tmp_path):
    p = _img(tmp_path / "x.nii.gz", np.random.rand(20, 20, 20).astype(np.float32))
    raw = gzip.decompress(p.read_bytes())
    p.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(InputError, match="truncated|corrupt|readable"):
        io.load_nifti(p)


def test_4d_where_3d_expected_and_singleton_accepted(tmp_path):
    p = _img(tmp_path / "x.nii.gz", np.random.rand(4, 4, 4, 3).astype(np.float32))
    with pytest.raises(InputError, match="4D"):
        io.load_nifti(p, ndim=3)
    q = _img(tmp_path / "y.nii.gz", np.random.rand(4, 4, 4, 1).astype(np.float32))
    assert io.load_nifti(q, ndim=3).shape == (4, 4, 4)
    r = _img(tmp_path / "z.nii.gz", np.random.rand(4, 4, 4).astype(np.float32))
    with pytest.raises(InputError, match="expected 4D"):
        io.load_nifti(r, ndim=4, kind="DWI")


def test_nan_rejected(tmp_path):
    a = np.ones((4, 4, 4), np.float32)
    a[1, 1, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        io.load_nifti(_img(tmp_path / "x.nii.gz", a))


def test_label_checks(tmp_path):
    lbl = np.zeros((5, 5, 5), np.float64)
    lbl[2, 2, 2] = 1
    _, arr = io.load_label(_img(tmp_path / "ok.nii.gz", lbl), allowed=(0, 1))
    assert arr.sum() == 1 and arr.dtype == np.int16
    lbl[1, 1, 1] = 3
    with pytest.raises(InputError, match=r"values \[3\]"):
        io.load_label(_img(tmp_path / "bad.nii.gz", lbl), allowed=(0, 1))
    lbl[1, 1, 1] = 0.5
    with pytest.raises(InputError, match="non-integer"):
        io.load_label(_img(tmp_path / "frac.nii.gz", lbl))
    with pytest.raises(InputError, match="empty"):
        io.load_label(_img(tmp_path / "empty.nii.gz", np.zeros((3, 3, 3), np.uint8)), require_nonempty=True)


def test_grid_checks(tmp_path):
    a = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4))
    b = nib.Nifti1Image(np.zeros((4, 4, 5), np.uint8), np.eye(4))
    with pytest.raises(InputError, match="shape"):
        io.check_same_grid(a, b, "img.nii.gz", "lbl.nii.gz")
    aff = np.eye(4)
    aff[0, 3] = 0.5
    c = nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), aff)
    with pytest.raises(InputError, match="affine"):
        io.check_same_grid(a, c, "img.nii.gz", "lbl.nii.gz")
    io.check_same_grid(a, nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4) + 1e-6), "i", "l")


def test_constant_image(tmp_path):
    with pytest.raises(InputError, match="constant"):
        io.check_image_values(np.full((3, 3, 3), 7.0), tmp_path / "c.nii.gz")


def test_save_nifti_keeps_header_codes(tmp_path, sct_data):
    src = nib.load(str(sct_data / "t2s" / "t2s.nii.gz"))
    out = io.save_nifti(np.zeros(src.shape, np.uint8), src.affine, tmp_path / "m.nii.gz", header=src.header)
    back = nib.load(str(out))
    assert back.shape == src.shape
    np.testing.assert_allclose(back.affine, src.affine, atol=1e-6)
    assert int(back.header["qform_code"]) == int(src.header["qform_code"])
    assert int(back.header["sform_code"]) == int(src.header["sform_code"])
    assert back.get_data_dtype() == np.uint8


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "results.csv"
    target.write_text("old complete content\n")
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old complete content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]
