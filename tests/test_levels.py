"""Disc labels → per-slice vertebral levels: hand cases, orientation invariance, real t2 grid."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from core.errors import InputError
from data_modules.levels import level_map, level_map_from_files, level_slices, si_axis, slice_levels


def _ras_case():
    discs = np.zeros((5, 6, 20), np.int16)
    discs[2, 3, 15] = 3
    discs[2, 3, 10] = 4
    discs[2, 4, 5] = 5
    discs[0, 0, 19] = 50  # PMJ label: ignored
    mask = np.zeros_like(discs)
    mask[1:4, 2:5, :] = 1
    return discs, mask, np.eye(4)


def test_hand_computed_ras():
    discs, mask, aff = _ras_case()
    expected = np.zeros(20, np.int16)
    expected[11:16] = 3  # between disc 4 (z=10, excluded) and disc 3 (z=15, included)
    expected[6:11] = 4
    assert si_axis(aff) == (2, 1)
    assert slice_levels(discs, aff).tolist() == expected.tolist()
    lm = level_map(mask, discs, aff)
    assert lm[2, 3, 12] == 3 and lm[2, 3, 8] == 4 and lm[2, 3, 3] == 0 and lm[0, 0, 12] == 0
    assert set(np.unique(lm)) == {0, 3, 4}
    assert {k: v.tolist() for k, v in level_slices(expected).items()} == {3: [11, 12, 13, 14, 15], 4: [6, 7, 8, 9, 10]}


def test_missing_disc_leaves_gap_and_bad_order_raises():
    discs, _, aff = _ras_case()
    discs[discs == 4] = 0  # now discs 3 and 5 only: C3/C4 boundary unknown
    assert not slice_levels(discs, aff).any()
    bad = np.zeros((3, 3, 10), np.int16)
    bad[1, 1, 2], bad[1, 1, 7] = 3, 4  # disc 4 above disc 3
    with pytest.raises(InputError, match="not below"):
        slice_levels(bad, np.eye(4), path="x.nii.gz")


@pytest.mark.parametrize("codes", [("P", "S", "R"), ("L", "P", "I"), ("S", "A", "L")])
def test_orientation_invariance(codes):
    """The same anatomy stored in another orientation gets the same levels voxel for voxel."""
    discs, mask, aff = _ras_case()
    ras = nib.orientations.axcodes2ornt(("R", "A", "S"))
    ornt = nib.orientations.ornt_transform(ras, nib.orientations.axcodes2ornt(codes))
    d2 = nib.Nifti1Image(discs, aff).as_reoriented(ornt)
    m2 = nib.Nifti1Image(mask, aff).as_reoriented(ornt)
    assert nib.aff2axcodes(d2.affine) == codes
    lm2 = level_map(np.asanyarray(m2.dataobj), np.asanyarray(d2.dataobj), d2.affine)
    back = nib.Nifti1Image(lm2, d2.affine).as_reoriented(
        nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(codes), ras)
    )
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), level_map(mask, discs, aff))


def test_real_t2_grid_against_world_coordinates(sct_data: Path, tmp_path: Path):
    """PSR t2 cord mask with discs planted along it: level of each voxel from world z (independent)."""
    seg_path = sct_data / "t2" / "t2_seg-manual.nii.gz"
    seg_img = nib.load(seg_path)
    seg = np.asanyarray(seg_img.dataobj) > 0
    aff = seg_img.affine
    cord = np.argwhere(seg)
    discs = np.zeros(seg.shape, np.int16)
    # plant discs on cord voxels at S-indices 50, 38, 25, 12 (axis 1 is S in PSR)
    for value, s in zip((2, 3, 4, 5), (50, 38, 25, 12)):
        p, _, r = cord[cord[:, 1] == s][0]
        discs[p, s, r] = value
    dpath = tmp_path / "discs.nii.gz"
    nib.save(nib.Nifti1Image(discs, aff, seg_img.header), dpath)
    _, lm = level_map_from_files(seg_path, dpath)
    # reference: world z of every voxel vs world z of each disc
    world = nib.affines.apply_affine(aff, np.argwhere(np.ones(seg.shape, bool))).reshape(*seg.shape, 3)
    zd = {v: world[tuple(np.argwhere(discs == v)[0])][2] for v in (2, 3, 4, 5)}
    ref = np.zeros(seg.shape, np.int16)
    for k in (2, 3, 4):
        ref[seg & (world[..., 2] > zd[k + 1] + 1e-6) & (world[..., 2] <= zd[k] + 1e-6)] = k
    np.testing.assert_array_equal(lm, ref)
    assert set(np.unique(lm)) == {0, 2, 3, 4}


def test_levels_target_drops_levels_beyond_c7(tmp_path: Path):
    from data_modules.levels import levels_target

    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    mask = np.zeros((4, 4, 30), np.uint8)
    mask[1:3, 1:3, :] = 1
    discs = np.zeros_like(mask, dtype=np.int16)
    for value, z in zip((6, 7, 8, 9), (25, 18, 11, 4)):  # C5/C6 .. T1/T2
        discs[1, 1, z] = value
    img = nib.Nifti1Image(np.ones(mask.shape, np.float32), aff)
    nib.save(nib.Nifti1Image(mask, aff), tmp_path / "sc.nii.gz")
    nib.save(nib.Nifti1Image(discs, aff), tmp_path / "discs.nii.gz")
    t = levels_target(tmp_path / "sc.nii.gz", tmp_path / "discs.nii.gz", img, "img.nii.gz")
    per_slice = t[1, 1, :]
    assert per_slice[19:26].tolist() == [6] * 7 and per_slice[12:19].tolist() == [7] * 7
    assert not per_slice[:12].any() and not per_slice[26:].any()  # T1 (level 8) and unknown → 0
    other = nib.Nifti1Image(np.ones((4, 4, 29), np.float32), aff)
    with pytest.raises(InputError):
        levels_target(tmp_path / "sc.nii.gz", tmp_path / "discs.nii.gz", other, "other.nii.gz")
