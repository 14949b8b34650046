"""Parity with the real ``sct_process_segmentation`` (SCT 7.4.dev0) on its own test data.

The reference CSVs in ``../shared/data/sct_reference/`` (README there) were written by SCT for the
t2 and t2s cord masks, the t2s grey matter, and a t2 mask resampled into a grid tilted by 20° and
10° (nearest neighbour: binary; linear: soft), with and without angle correction. cordbench
measures the same files; tolerances are the issue's: MEAN(area) within 1 % (per level and over
all slices), MEAN(diameter_AP_ellipse) within 2 %, MEAN(diameter_AP) (rotated profile) within 5 %.
The remaining differences (SCT's per-slice warping and 0.1 mm resampling) are in docs/analysis.md.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.morphometrics import aggregate, morphometrics_from_files, sct_columns
from tests.support.data import require

#: case → (segmentation, level map) relative to the shared data root
CASES = {
    "t2": ("sct_testing_data/t2/t2_seg-manual.nii.gz", "sct_testing_data/t2/t2_seg-manual_labeled.nii.gz"),
    "t2s": ("sct_testing_data/t2s/t2s_seg-deepseg.nii.gz", None),
    "t2sgm": ("sct_testing_data/t2s/t2s_gmseg_manual.nii.gz", None),
    "t2tilt": ("sct_reference/t2tilt_seg.nii.gz", "sct_reference/t2tilt_levels.nii.gz"),
    "t2tiltsoft": ("sct_reference/t2tilt_softseg.nii.gz", "sct_reference/t2tilt_levels.nii.gz"),
}
CORD = ["t2", "t2s", "t2tilt", "t2tiltsoft"]  # t2sgm is grey matter: area only (see docs/analysis.md)
RUNS = [
    (c, ac, mode)
    for c in CASES
    for ac in (0, 1)
    for mode in ("all", "perlevel")
    if mode == "all" or CASES[c][1] is not None
]


@pytest.fixture(scope="module")
def ref_root(shared_data: Path) -> Path:
    return require(shared_data / "sct_reference")


@cache
def _perslice(root: str, case: str, ac: int, soft: bool | None = None) -> pd.DataFrame:
    seg, lv = CASES[case]
    return morphometrics_from_files(
        Path(root) / seg, Path(root) / lv if lv else None, angle_correction=bool(ac), soft=soft
    )


def ours_and_ref(shared: Path, case: str, ac: int, mode: str, soft: bool | None = None):
    """(ours, SCT's) rows, aligned (per level: sorted by level)."""
    ref = pd.read_csv(shared / "sct_reference" / f"{case}_{mode}_ac{ac}.csv")
    ps = _perslice(str(shared), case, ac, soft)
    if mode == "all":
        ours = aggregate(ps, Path(CASES[case][0]).name, perlevel=False)
    else:
        ours = aggregate(ps, Path(CASES[case][0]).name, vert=[2, 3, 4, 5], perlevel=True)
        ref = ref.sort_values("VertLevel").reset_index(drop=True)
        ours = ours.assign(_lv=ours["VertLevel"].astype(int)).sort_values("_lv").reset_index(drop=True)
        assert list(ours["_lv"]) == list(ref["VertLevel"].astype(int))
    return ours, ref


def _rel(ours: pd.DataFrame, ref: pd.DataFrame, col: str) -> np.ndarray:
    return np.abs(ours[col].to_numpy(float) / ref[col].to_numpy(float) - 1.0)


@pytest.mark.parametrize("case,ac,mode", RUNS)
def test_area_within_1pct_of_sct(shared_data, ref_root, case, ac, mode):
    ours, ref = ours_and_ref(shared_data, case, ac, mode)
    rel = _rel(ours, ref, "MEAN(area)")
    assert rel.max() < 0.01, (case, ac, mode, rel)
    assert (ours["mask_type"] == ("soft" if case == "t2tiltsoft" else "binary")).all()


@pytest.mark.parametrize("case,ac,mode", [r for r in RUNS if r[0] in CORD])
def test_diameters_within_tolerance_of_sct(shared_data, ref_root, case, ac, mode):
    ours, ref = ours_and_ref(shared_data, case, ac, mode)
    assert _rel(ours, ref, "MEAN(diameter_AP_ellipse)").max() < 0.02
    assert _rel(ours, ref, "MEAN(diameter_AP)").max() < 0.05
    # the rotated profile is a different quantity from the ellipse axis: SCT's own gap is 1.5–5 %
    assert (ref["MEAN(diameter_AP)"] < ref["MEAN(diameter_AP_ellipse)"]).all()
    assert (ours["MEAN(diameter_AP)"] < ours["MEAN(diameter_AP_ellipse)"]).all()
    # RL: not at level C5 of the tilted mask, where the cord's first slices hold isolated voxels that
    # SCT's warping and 0.1 mm resampling erase (10 % at that level; docs/analysis.md)
    keep = ~((ours["_lv"] == 5) & case.startswith("t2tilt")) if mode == "perlevel" else np.ones(len(ours), bool)
    assert _rel(ours, ref, "MEAN(diameter_RL)")[keep].max() < 0.03
    for side in ("MEAN(length_anterior)", "MEAN(length_posterior)"):
        assert _rel(ours, ref, side).max() < 0.03
    parts = ours["MEAN(length_anterior)"] + ours["MEAN(length_posterior)"]
    assert np.allclose(parts, ours["MEAN(diameter_AP)"], rtol=1e-9)
    assert np.abs(ours["MEAN(angle_AP)"] - ref["MEAN(angle_AP)"]).max() < 0.1
    assert np.abs(ours["MEAN(angle_RL)"] - ref["MEAN(angle_RL)"]).max() < 0.1


@pytest.mark.parametrize("case,ac,mode", RUNS)
def test_orientation_is_signed_as_sct(shared_data, ref_root, case, ac, mode):
    """Same sign wherever SCT's orientation is clearly non-zero (|·| > 1°) and its axis-aligned
    angle correction agrees with ours (no correction, or a grid not tilted in two planes)."""
    ours, ref = ours_and_ref(shared_data, case, ac, mode)
    o, r = ours["MEAN(orientation)"].to_numpy(float), ref["MEAN(orientation)"].to_numpy(float)
    assert (r < 0).any() or (o < 0).any() or case.startswith("t2tilt")  # signed, not folded to 0–90°
    if ac == 1 and case.startswith("t2tilt"):
        assert np.abs(o - r).max() < 5.0  # SCT scales RL/AP separately; ours compresses along the tilt
        return
    clear = np.abs(r) > 1.0
    assert clear.any()
    assert (np.sign(o[clear]) == np.sign(r[clear])).all(), (o, r)
    assert np.abs(o - r).max() < 1.0


@pytest.mark.parametrize("case", list(CASES))
def test_columns_are_scts_in_its_order(shared_data, ref_root, case):
    ours, ref = ours_and_ref(shared_data, case, 1, "all")
    n = len(ref.columns)
    assert list(ours.columns[:n]) == list(ref.columns)
    assert list(ours.columns) == sct_columns(with_canal=False)
    assert list(ours.columns[n:]) == ["mask_type"]


def test_soft_mask_as_partial_volume_not_thresholded(shared_data, ref_root):
    """Thresholding the soft mask at 0.5 (cordbench's earlier behaviour) misses SCT by more."""
    ours, ref = ours_and_ref(shared_data, "t2tiltsoft", 1, "perlevel")
    thr, _ = ours_and_ref(shared_data, "t2tiltsoft", 1, "perlevel", soft=False)
    assert (thr["mask_type"] == "binary").all()
    err_pv, err_thr = _rel(ours, ref, "MEAN(area)"), _rel(thr, ref, "MEAN(area)")
    assert err_thr.max() > 0.01 > err_pv.max()
    # per slice (no angle correction), partial volume is SCT's Σ values × pixel area, except in the
    # last slice, whose values peak at 0.41: SCT rescales each slice to a maximum of 1 (docs/analysis.md)
    ps = _perslice(str(shared_data), "t2tiltsoft", 0)
    sct = pd.read_csv(ref_root / "t2tiltsoft_perslice_ac0.csv").dropna(subset=["MEAN(area)"])
    both = ps.merge(sct, on="Slice (I->S)")
    assert len(both) == len(ps) == len(sct)
    assert np.allclose(both["area"].iloc[:-1], both["MEAN(area)"].iloc[:-1], rtol=1e-6)
    assert both["MEAN(area)"].iloc[-1] / both["area"].iloc[-1] == pytest.approx(1 / 0.41, rel=0.02)
