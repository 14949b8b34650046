"""Phantom domain randomisation (data_modules/phantom/randomise*.py, surroundings.py): off by default
and then byte-identical to the generator before it; on, the truth JSON is the anatomy's exact truth
(identical to the unrandomised subject's) and the labels written on each random grid measure it."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from core.errors import ConfigError
from data_modules.phantom import PhantomOptions, generate_cohort, generate_subject
from data_modules.phantom.layout import subject_paths
from data_modules.phantom.randomise_options import RandomiseOptions
from data_modules.phantom_dm import default_phantom_root
from runs.config import load_config
from tests.support.phantom_digest import cohort_digest

#: Digests of two small cohorts written by the generator *before* randomisation existed (782783a^), with the
#: embedded site table. Any change to a file of a cohort without ``randomise`` changes them. Recomputed on
#: 2026-12-02: the last bits of the truth tables' floats depend on the CPU (numpy's AVX-512 and AVX2 paths
#: differ by an ulp: the pins made on another machine failed here although 782783a^ and today's generator
#: write byte-identical cohorts on this one), so :func:`cohort_digest` rounds those to 9 significant digits.
PINNED = {
    "a": "bf03fb7da0bc522e0353173d48be30cfe2f778da31f7a840bde0f912a16a270e",
    "b": "0122eb549abba15667c082342c82d4e523858eab2bca2489f2886b2ef8a8bcff",
}
#: Narrow resolution ranges so a level's volume / length is not dominated by voxel-layer quantisation.
FINE = RandomiseOptions(thickness_max=2.0, inplane_max=0.9, max_voxels=1_500_000)


@pytest.fixture
def embedded_sites(monkeypatch, tmp_path):
    """Site table from the embedded copy (what the pinned cohorts used), wherever the shared data is."""
    monkeypatch.setenv("CORDBENCH_DATA", str(tmp_path / "no-shared-data"))


def test_without_randomise_the_cohort_is_byte_identical_to_before(tmp_path: Path, embedded_sites):
    generate_cohort(tmp_path / "a", n_subjects=2, seed=5, workers=1)
    generate_cohort(
        tmp_path / "b",
        n_subjects=1,
        seed=9,
        workers=1,
        orientation="PSR",
        oblique=12,
        snr=0,
        dwi=False,
        dtype="float32",
        tilt_min=5,
        tilt_max=15,
    )
    assert cohort_digest(tmp_path / "a") == PINNED["a"]
    assert cohort_digest(tmp_path / "b") == PINNED["b"]
    # randomise off, spelled every way, is the same options object and the same cohort.json record
    for off in (None, False, {"enabled": False}):
        assert PhantomOptions.from_kwargs({"randomise": off}) == PhantomOptions()
    assert "randomise" not in PhantomOptions().to_dict()


def _levels(path: Path) -> tuple[np.ndarray, float]:
    img = nib.load(str(path))
    return np.asanyarray(img.dataobj), abs(float(np.linalg.det(img.affine[:3, :3])))


@pytest.mark.parametrize("index", [0, 1, 2])
def test_randomised_truth_is_exact_and_the_labels_measure_it(tmp_path: Path, index: int):
    plain = generate_subject(tmp_path / "plain", index=index, seed=21, dwi=False, truth_only=True)["truth"]
    truth = generate_subject(tmp_path / "rand", index=index, seed=21, dwi=False, randomise=FINE)["truth"]
    assert truth["levels"] == plain["levels"]  # the anatomy's truth is untouched, bit for bit
    assert truth["disc_labels"].keys() == plain["disc_labels"].keys()
    paths = subject_paths(tmp_path / "rand", truth["participant_id"])
    for contrast in ("T2w", "T2star"):
        rec = truth["images"][contrast]["randomise"]
        assert rec["acquisition"] in ("axial", "sagittal") and len(rec["tissue_values"]) == 9
        img = nib.load(str(paths[contrast]))
        assert np.allclose(img.affine, truth["images"][contrast]["affine"], atol=1e-6)
        lv, vox = _levels(paths[f"{contrast}_levels"])
        sc, _ = _levels(paths[f"{contrast}_SC"])
        assert sc.shape == img.shape and np.array_equal(lv > 0, (sc > 0) & (lv > 0))
        h = max(rec["spacing_rl_ap_si_mm"])
        total = total_true = 0.0
        for name, level in truth["levels"].items():
            vol = np.count_nonzero(lv == level["level"]) * vox
            assert abs(vol / level["length_mm"] / level["csa_mm2"] - 1) < 0.03 + 1.5 * h / level["length_mm"], (
                contrast,
                name,
            )
            total += vol
            total_true += level["csa_mm2"] * level["length_mm"]
        assert abs(total / total_true - 1) < 0.02, contrast
    gm, _ = _levels(paths["T2star_GM"])
    sc, _ = _levels(paths["T2star_SC"])
    assert gm.any() and not np.any(gm & ~sc)  # nested: GM inside the cord


def test_recorded_spacing_is_the_written_one_after_the_voxel_count_rescale(tmp_path: Path):
    """A fine drawn grid over ``max_voxels`` is coarsened (every voxel size times one factor): the truth
    JSON records the voxel sizes of the image written, read back here from its header along R-L, A-P, S-I."""
    ro = RandomiseOptions(inplane_min=0.4, inplane_max=0.5, thickness_min=0.5, thickness_max=1.0, max_voxels=100_000)
    truth = generate_subject(tmp_path, index=0, seed=3, dwi=False, randomise=ro)["truth"]
    paths = subject_paths(tmp_path, truth["participant_id"])
    for contrast in ("T2w", "T2star"):
        rec = truth["images"][contrast]["randomise"]
        img = nib.load(str(paths[contrast]))
        written = [0.0, 0.0, 0.0]
        for code, zoom in zip(nib.aff2axcodes(img.affine), img.header.get_zooms()[:3]):  # oblique < 45 deg
            written["LRPAIS".index(code) // 2] = float(zoom)
        assert min(written) > ro.thickness_max  # coarser than any drawn size: the rescale happened
        np.testing.assert_allclose(rec["spacing_rl_ap_si_mm"], written, rtol=1e-4, err_msg=contrast)


def test_randomised_subjects_are_deterministic_and_differ(tmp_path: Path):
    a = generate_subject(tmp_path / "a", index=1, seed=4, dwi=False, randomise=True)["truth"]
    b = generate_subject(tmp_path / "b", index=1, seed=4, dwi=False, randomise=True)["truth"]
    c = generate_subject(tmp_path / "c", index=2, seed=4, dwi=False, randomise=True)["truth"]
    assert a == b
    pa, pb = subject_paths(tmp_path / "a", "sub-002"), subject_paths(tmp_path / "b", "sub-002")
    for key in ("T2w", "T2star", "T2w_SC", "T2star_GM"):
        assert np.array_equal(
            np.asanyarray(nib.load(str(pa[key])).dataobj), np.asanyarray(nib.load(str(pb[key])).dataobj)
        ), key
    assert a["images"]["T2w"]["randomise"] != c["images"]["T2w"]["randomise"]
    assert a["images"]["T2w"]["randomise"] != a["images"]["T2star"]["randomise"]  # per contrast
    assert "surroundings" in a


def test_cohort_records_randomisation_and_gets_its_own_cache_folder(tmp_path: Path):
    import json

    root = generate_cohort(
        tmp_path / "r", n_subjects=1, seed=0, workers=1, dwi=False, truth_only=True, randomise={"fov_min": 30}
    )
    opts = json.loads((root / "derivatives/phantom-truth/cohort.json").read_text())["options"]
    assert opts["randomise"]["fov_min"] == 30
    plain = default_phantom_root(20, 0, 30.0, False)
    assert default_phantom_root(20, 0, 30.0, False, RandomiseOptions()) != plain
    assert default_phantom_root(20, 0, 30.0, False, None) == plain


def test_bad_randomise_options_are_one_line_naming_the_key():
    with pytest.raises(ConfigError, match="data.phantom.randomise.fov_min"):
        load_config(overrides=["data.phantom.randomise.fov_min=5"])
    with pytest.raises(ConfigError, match="snr_min"):
        load_config(overrides=["data.phantom.randomise.enabled=true", "data.phantom.randomise.snr_min=70"])
    with pytest.raises(ConfigError, match="data.phantom.randomise.colour"):
        load_config(overrides=["data.phantom.randomise.colour=1"])
    with pytest.raises(ConfigError, match="unknown key"):
        PhantomOptions.from_kwargs({"randomise": {"colour": 1}})
    cfg = load_config(overrides=["data.phantom.randomise.enabled=true"])
    assert cfg["data"]["phantom"]["randomise"]["fov_max"] == RandomiseOptions().fov_max


def test_shifted_canal_still_contains_the_cord_everywhere():
    """The randomised cord-in-canal offset (canal_shift) never lets the cord leave the canal."""
    from data_modules.phantom.anatomy import build_anatomy
    from data_modules.phantom.population import draw_subject, load_sites
    from data_modules.phantom.subject import STREAM_ANATOMY, STREAM_DEMOGRAPHICS, subject_rng

    sites, _ = load_sites()
    theta = np.linspace(0, 2 * np.pi, 721)
    for index in range(6):
        draw = draw_subject(
            subject_rng(0, index, STREAM_DEMOGRAPHICS),
            subject_rng(0, index, STREAM_ANATOMY),
            index,
            sites,
            PhantomOptions(),
        )
        anat = build_anatomy(draw.anatomy)
        a, b, A, B = anat.a_tab[:, None], anat.b_tab[:, None], anat.A_tab[:, None], anat.B_tab[:, None]
        for shift in (-RandomiseOptions().canal_shift_max, RandomiseOptions().canal_shift_max):
            d = shift * (B - b)
            r = (a * np.cos(theta) / A) ** 2 + ((b * np.sin(theta) - d) / B) ** 2
            assert r.max() < 1.0


def test_whole_neck_fields_cover_the_drawn_field_with_the_cord_off_centre(tmp_path: Path):
    """``wide_fov_prob`` 1: every image's field is a whole-neck one (sagittal A-P in [200, 400] mm, axial in
    [100, 200] mm), the written grid covers it, and its centre lies up to ``wide_offset_max`` of it from the cord."""
    ro = RandomiseOptions(wide_fov_prob=1.0, max_voxels=300_000, gibbs_prob=0, ghosting_prob=0, motion_prob=0)
    for index in (0, 1):
        truth = generate_subject(tmp_path, index=index, seed=5, dwi=False, randomise=ro)["truth"]
        paths = subject_paths(tmp_path, truth["participant_id"])
        for contrast in ("T2w", "T2star"):
            rec = truth["images"][contrast]["randomise"]
            rl, ap = rec["fov_mm"]
            assert rec["wide_fov"] is True
            if rec["acquisition"] == "sagittal":
                assert 200 <= ap <= 400 and ro.fov_min <= rl <= ro.fov_max
            else:
                assert 100 <= rl <= 200 and 0.85 * rl <= ap <= 1.15 * rl
            assert all(abs(o) <= ro.wide_offset_max * f + 1e-6 for o, f in zip(rec["fov_offset_mm"], (rl, ap)))
            img = nib.load(str(paths[contrast]))
            extent = [0.0, 0.0, 0.0]
            for code, n, zoom in zip(nib.aff2axcodes(img.affine), img.shape, img.header.get_zooms()):
                extent["LRPAIS".index(code) // 2] = n * float(zoom)
            assert extent[1] >= 0.9 * ap, (contrast, extent, ap)  # oblique grids only grow the box
    assert RandomiseOptions().to_dict().keys().isdisjoint({"wide_fov_prob", "fov_sagittal_max"})
