"""``cordbench phantom --sessions N``: new acquisitions of one anatomy, the truth the same in every one.

Without ``--sessions`` the cohort is byte-identical to before (the pinned digests of
``tests/test_phantom_randomise.py::test_without_randomise_the_cohort_is_byte_identical_to_before``,
which these options do not change); here: ``sessions=1`` is that same cohort, record included.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from analysis.image_areas import POOLED, file_areas
from data_modules.phantom import PhantomOptions, generate_cohort
from data_modules.phantom.layout import subject_paths

SMALL = {"n_subjects": 1, "seed": 3, "dwi": False, "t2w_fov": 32.0, "workers": 1}


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("sessions")
    return generate_cohort(base / "ses", sessions=2, **SMALL), generate_cohort(base / "plain", **SMALL)


def test_one_session_is_todays_cohort():
    assert PhantomOptions.from_kwargs({"sessions": 1}) == PhantomOptions()
    assert "sessions" not in PhantomOptions().to_dict()
    assert PhantomOptions(sessions=2).to_dict()["sessions"] == 2


def test_truth_identical_across_sessions_and_contrasts_images_differ(cohorts):
    ses, plain = cohorts
    sub = "sub-001"
    truth = json.loads(subject_paths(ses, sub)["truth"].read_text())
    assert truth["levels"] == json.loads(subject_paths(plain, sub)["truth"].read_text())["levels"]
    assert set(truth["sessions"]) == {"ses-01", "ses-02"} and "reposition" in truth["sessions"]["ses-02"]
    table = pd.read_csv(ses / "derivatives/phantom-truth/truth_levels.tsv", sep="\t")
    by_ses = [g.drop(columns="session").reset_index(drop=True) for _, g in table.groupby("session")]
    assert len(by_ses) == 2
    pd.testing.assert_frame_equal(by_ses[0], by_ses[1])
    # session 1 is the acquisition of the cohort without sessions, byte for byte
    p1, p0 = subject_paths(ses, sub, "ses-01"), subject_paths(plain, sub)
    for key in ("T2w", "T2star", "T2w_SC", "T2star_SC"):
        assert p1[key].read_bytes() == p0[key].read_bytes(), key
    # session 2 is a new acquisition: another grid, other voxels, for every contrast
    p2 = subject_paths(ses, sub, "ses-02")
    for key in ("T2w", "T2star"):
        a, b = nib.load(p1[key]), nib.load(p2[key])
        assert not np.allclose(a.affine, b.affine), key
        assert a.shape != b.shape or not np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
    # every session's and contrast's truth mask measures the same anatomy (partial-volume floor only)
    areas = [file_areas(p[f"{c}_SC"], p[f"{c}_levels"])[POOLED] for p in (p1, p2) for c in ("T2w", "T2star")]
    truth_c2c5 = np.mean([truth["levels"][f"C{k}"]["csa_mm2"] for k in (2, 3, 4, 5)])
    assert np.ptp(areas) / np.mean(areas) < 0.02, areas
    assert abs(np.mean(areas) / truth_c2c5 - 1) < 0.05, (areas, truth_c2c5)


def test_truth_masks_as_an_external_entry_have_only_the_partial_volume_floor(cohorts, tmp_path):
    """The phantom's own truth masks (a flat folder of image → mask pairs) scored as a tool: Bland–Altman bias
    exactly 0 (each image's reference is its truth mask), CoV across sessions and contrasts at the partial-volume
    floor documented in docs/leaderboard.md (< 0.5 %: grids differ, so voxelisation differs)."""
    import shutil

    from leaderboard.external import score_folder
    from leaderboard.precision import entry_columns, pooled_images, read_cache

    ses, _ = cohorts
    flat = tmp_path / "flat"
    flat.mkdir()
    for s in ("ses-01", "ses-02"):
        p = subject_paths(ses, "sub-001", s)
        for c in ("T2w", "T2star"):
            shutil.copy(p[f"{c}_SC"], flat / p[f"{c}_SC"].name)
    summary = score_folder(flat, ses, tmp_path / "out")
    assert summary["postprocess"] == "as given" and summary["n_subjects"] == 2
    assert (pd.read_csv(tmp_path / "out/test_metrics.csv")["sc/dice"] == 1.0).all()
    col, _ = entry_columns("truth", pooled_images([read_cache(tmp_path / "out/precision.csv")]), pd.Series(), 200, 0)
    assert col["ba_bias"] == 0.0 and col["ba_loa_low"] == 0.0 and col["ba_loa_high"] == 0.0
    assert 0 <= col["cov_session"] < 0.5 and 0 <= col["cov_contrast"] < 0.5, col


def test_slice_areas_are_compute_perslices_area_column(cohorts):
    """The precision columns' fast per-slice area is the morphometrics owner's ``area`` column, slice for slice."""
    from analysis.centerline import to_rpi
    from analysis.image_areas import slice_areas
    from analysis.morphometrics import compute_perslice
    from core.io import load_label

    p = subject_paths(cohorts[0], "sub-001", "ses-02")
    img, seg = load_label(p["T2star_SC"])
    lv = load_label(p["T2star_levels"])[1]
    seg, aff = to_rpi(seg > 0, img.affine)
    lv = to_rpi(lv, img.affine)[0]
    ref, fast = compute_perslice(seg, aff, lv), slice_areas(seg, aff, lv)
    np.testing.assert_allclose(fast["area"].to_numpy(), ref["area"].to_numpy(), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(fast["VertLevel"].to_numpy(), ref["VertLevel"].to_numpy())
