"""The phantom's further contrasts (``contrasts``: T1w, MT-on, MT-off) and randomisation templates
(``templates``: T1w-, MT-, EPI- and DWI-like, ``blend_prob``): without them the cohort is byte-identical to
the generator before they existed; with them every image keeps the anatomy's exact truth and its labels
measure it, and the contrasts look like theirs (T1w: CSF darker than the cord)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from cordbench.cli import main
from core.errors import ConfigError
from data_modules.phantom import PhantomOptions, generate_cohort, generate_subject
from data_modules.phantom.layout import subject_paths
from data_modules.phantom.randomise_options import RandomiseOptions
from tests.support.phantom_digest import cohort_digest

#: Digests of two small cohorts (a plain and a randomised one) written by main at 38109ee, before the options
#: existed, with the embedded site table.
PINNED = {
    "plain": "f9c6a8bcd7028f10728dce004ca0e2244c6da865150a1bada95eaf7fdc5b7d79",
    "rand": "3e303ea08c3e53f3082d68f9a80ccc77673272df48506fac09b5f4e10bcb5664",
}
SMALL_RAND = RandomiseOptions(max_voxels=100_000, thickness_min=2.0, fov_max=40.0)
#: every template and a blend on fine grids (the partial-volume floor of the level volumes stays small)
EPI = {"thickness_max": 2.0, "inplane_max": 0.9, "max_voxels": 1_500_000, "contrast_mix": 1.0}
NEW = ("T1w", "MTon", "MToff")


def test_without_the_new_options_the_cohorts_are_byte_identical(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CORDBENCH_DATA", str(tmp_path / "no-shared-data"))  # the embedded site table
    generate_cohort(tmp_path / "plain", n_subjects=1, seed=4, workers=1, dwi=False, t2w_fov=32.0)
    generate_cohort(tmp_path / "rand", n_subjects=1, seed=4, workers=1, dwi=False, randomise=SMALL_RAND)
    assert cohort_digest(tmp_path / "plain") == PINNED["plain"]
    assert cohort_digest(tmp_path / "rand") == PINNED["rand"]
    assert PhantomOptions.from_kwargs({"contrasts": ["T2star", "T2w"]}) == PhantomOptions()
    assert "contrasts" not in PhantomOptions().to_dict()
    assert set(RandomiseOptions().to_dict()).isdisjoint({"templates", "blend_prob"})


def _check_volumes(paths: dict[str, Path], contrast: str, levels: dict) -> None:
    """The labels measure the truth: per level, labelled cord volume / (truth CSA × arc length) within the
    partial-volume floor of the grid's coarsest voxel size ``h`` (as for every phantom grid), in all within 2 %;
    the level map is the cord label's."""
    img = nib.load(str(paths[f"{contrast}_levels"]))
    lv, vox = np.asanyarray(img.dataobj), abs(float(np.linalg.det(img.affine[:3, :3])))
    sc = np.asanyarray(nib.load(str(paths[f"{contrast}_SC"])).dataobj) > 0
    assert sc.shape == lv.shape and np.array_equal(lv > 0, sc & (lv > 0)), contrast
    h = float(max(img.header.get_zooms()[:3]))
    total = total_true = 0.0
    for name, t in levels.items():
        vol = np.count_nonzero(lv == t["level"]) * vox
        assert abs(vol / t["length_mm"] / t["csa_mm2"] - 1) < 0.03 + 1.5 * h / t["length_mm"], (contrast, name)
        total, total_true = total + vol, total_true + t["csa_mm2"] * t["length_mm"]
    assert abs(total / total_true - 1) < 0.02, contrast


def test_new_contrasts_keep_the_exact_truth_and_look_like_theirs(tmp_path: Path):
    plain = generate_subject(tmp_path / "plain", index=0, seed=21, dwi=False, truth_only=True)["truth"]
    truth = generate_subject(tmp_path / "new", index=0, seed=21, dwi=False, snr=0, contrasts=NEW)["truth"]
    assert truth["levels"] == plain["levels"]  # one anatomy, its truth bit for bit
    paths = subject_paths(tmp_path / "new", truth["participant_id"])
    assert not paths["T2w"].exists() and sorted(truth["images"]) == sorted(NEW)
    for c in NEW:
        _check_volumes(paths, c, truth["levels"])
    # T1w: CSF (canal ring around the cord) darker than the cord; MT-on: cord darker than CSF
    for c, csf_darker in (("T1w", True), ("MTon", False)):
        img = np.asanyarray(nib.load(str(paths[c])).dataobj).astype(float)
        sc = np.asanyarray(nib.load(str(paths[f"{c}_SC"])).dataobj) > 0
        from scipy.ndimage import binary_dilation

        ring = binary_dilation(sc, iterations=2) & ~binary_dilation(sc, iterations=1)
        assert (img[ring].mean() < img[sc].mean()) == csf_darker, c


def test_randomised_templates_keep_the_exact_truth(tmp_path: Path):
    ro = RandomiseOptions(**EPI, templates=["EPI", "DWI", "T1w"], blend_prob=0.5)
    plain = generate_subject(tmp_path / "plain", index=1, seed=21, dwi=False, truth_only=True)["truth"]
    truth = generate_subject(tmp_path / "r", index=1, seed=21, dwi=False, randomise=ro, contrasts=("T2w", "T1w"))[
        "truth"
    ]
    assert truth["levels"] == plain["levels"]
    paths = subject_paths(tmp_path / "r", truth["participant_id"])
    records = {c: truth["images"][c]["randomise"] for c in ("T2w", "T1w")}
    assert {r["template"] for r in records.values()} <= {"EPI", "DWI", "T1w"}
    assert any("epi" in r for r in records.values()), records  # an echo-planar image among them
    for c in records:
        _check_volumes(paths, c, truth["levels"])
    again = generate_subject(tmp_path / "again", index=1, seed=21, dwi=False, randomise=ro, contrasts=("T2w", "T1w"))
    assert again["truth"] == truth  # deterministic


def test_epi_distortion_moves_image_and_labels_together(tmp_path: Path):
    """An EPI image's per-slice shift along the phase axis: the label follows the image (the bright-cord DWI
    template: the cord's mean value is above its surroundings' on the shifted label)."""
    ro = RandomiseOptions(**EPI, templates=["DWI"], intensity_jitter=0.0, free_contrast=0.0, snr_min=200, snr_max=200)
    truth = generate_subject(tmp_path, index=0, seed=5, dwi=False, randomise=ro, contrasts=("T2w",))["truth"]
    rec = truth["images"]["T2w"]["randomise"]
    assert rec["template"] == "DWI" and rec["epi"]["shift_mm"] >= 1.0
    paths = subject_paths(tmp_path, truth["participant_id"])
    img = np.asanyarray(nib.load(str(paths["T2w"])).dataobj).astype(float)
    sc = np.asanyarray(nib.load(str(paths["T2w_SC"])).dataobj) > 0
    from scipy.ndimage import binary_dilation

    ring = binary_dilation(sc, iterations=3) & ~sc
    assert img[sc].mean() > 1.3 * img[ring].mean()


def test_cli_contrasts_and_bad_options(tmp_path: Path, capsys):
    out = tmp_path / "ph"
    assert main(["phantom", "-o", str(out), "-n", "1", "--truth-only", "--contrasts", "T1w,MTS,dwi"]) == 0
    opts = json.loads((out / "derivatives/phantom-truth/cohort.json").read_text())["options"]
    assert opts["contrasts"] == ["T1w", "MTon", "MToff"] and opts["dwi"] is True
    assert main(["phantom", "-o", str(tmp_path / "x"), "--contrasts", "T1w,PD"]) == 2
    assert "PD" in capsys.readouterr().err
    assert main(["phantom", "-o", str(tmp_path / "y"), "--contrasts", "T1w,dwi", "--no-dwi"]) == 2
    with pytest.raises(ConfigError, match="templates"):
        RandomiseOptions(templates=["FLAIR"])
