"""CSA at a distance from the pontomedullary junction (SCT's -pmj) against the phantom's analytic truth."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from analysis.morphometrics import sct_columns
from cordbench.cli import main
from data_modules.phantom import PhantomOptions, generate_subject
from data_modules.phantom.pmj import PMJ_VALUE, window_truth
from tests.support.reliability import cli_error


@pytest.fixture(scope="module")
def pmj_subject(tmp_path_factory) -> dict:
    """One noise-free tilted phantom subject with a PMJ label (no DWI): files and truth."""
    root = tmp_path_factory.mktemp("pmj")
    res = generate_subject(root, index=1, seed=5, pmj=True, dwi=False, snr=0, tilt_min=12, tilt_max=15, t2w_fov=32)
    la = root / "derivatives" / "labels" / "sub-002" / "anat"
    return {
        "root": root,
        "seg": la / "sub-002_T2w_label-SC_seg.nii.gz",
        "pmj": la / "sub-002_T2w_label-PMJ_dlabel.nii.gz",
        "truth": res["truth"],
    }


def _run(tmp_path: Path, s: dict, *extra: str) -> pd.DataFrame:
    out = tmp_path / "pmj.csv"
    assert main(["morphometrics", "--seg", str(s["seg"]), "--pmj", str(s["pmj"]), *extra, "-o", str(out)]) == 0
    return pd.read_csv(out, dtype={"VertLevel": str, "Slice (I->S)": str}, keep_default_na=False)


def test_pmj_csa_at_64mm_within_2_percent_of_truth(pmj_subject, tmp_path):
    t = _run(tmp_path, pmj_subject, "--pmj-distance", "64", "--pmj-extent", "30")
    assert list(t.columns) == sct_columns(with_canal=False)  # SCT's columns and order, then mask_type
    assert len(t) == 1 and float(t["DistancePMJ"][0]) == 64.0 and t["VertLevel"][0] == ""
    lo, hi = (int(x) for x in t["Slice (I->S)"][0].split(":"))
    assert (hi - lo + 1) * 0.8 == pytest.approx(30, abs=0.8)  # round(extent / thickness) slices
    truth = pmj_subject["truth"]["pmj"]
    csa = float(t["MEAN(area)"][0])
    assert csa == pytest.approx(window_truth(truth, 64, 30), rel=0.02)  # the analytic mean over 49-79 mm
    # a 4 mm window (5 slices) measures the analytic CSA at 64 mm itself
    t4 = _run(tmp_path, pmj_subject, "--pmj-distance", "64", "--pmj-extent", "4")
    assert float(t4["MEAN(area)"][0]) == pytest.approx(window_truth(truth, 64), rel=0.02)


def test_pmj_distance_is_arc_length_along_the_centerline(pmj_subject, tmp_path):
    """Per slice: DistancePMJ = arc length from the PMJ's foot point to the slice's cord centroid."""
    t = _run(tmp_path, pmj_subject, "--perslice")
    img = nib.load(pmj_subject["seg"])
    seg = np.asanyarray(img.dataobj) > 0
    truth = pmj_subject["truth"]
    ctl = truth["centerline"]
    s_fine = np.arange(ctl["s_mm"][0], ctl["s_mm"][-1], 0.02)
    pts = np.stack([np.interp(s_fine, ctl["s_mm"], np.asarray(ctl["world_mm"])[:, c]) for c in range(3)], axis=1)
    ax = int(np.argmax(np.abs(img.affine[2, :3])))  # the S-I voxel axis (LAS: 2)
    assert ax == 2
    errs = []
    for _, r in t.iterrows():
        if r["DistancePMJ"] == "":
            continue
        k = int(r["Slice (I->S)"])
        ij = np.argwhere(seg[:, :, k]).mean(axis=0)
        world = img.affine @ np.array([ij[0], ij[1], k, 1.0])
        s = s_fine[np.argmin(np.linalg.norm(pts - world[:3], axis=1))]
        if not s_fine[0] + 1 < s < s_fine[-1] - 1:  # the truth's samples cover C1-6 mm .. C7/T1+6 mm
            continue
        errs.append(float(r["DistancePMJ"]) - (s - truth["pmj"]["s_mm"]))
    errs = np.abs(errs)
    assert len(errs) > 100 and errs.max() < 0.6 and errs.mean() < 0.25, (errs.max(), errs.mean())
    above = t[t["DistancePMJ"] == ""]
    assert len(above) and (above["Slice (I->S)"].astype(int) >= truth["pmj"]["t2w_voxel"][2]).all()


def test_pmj_refusals_are_one_line_naming_the_file(pmj_subject, tmp_path, capsys):
    s = pmj_subject
    base = ["morphometrics", "--seg", str(s["seg"]), "-o", str(tmp_path / "x.csv")]
    err = cli_error(capsys, [*base, "--pmj", str(s["pmj"]), "--pmj-distance", "400"])
    assert "beyond the cord" in err and s["pmj"].name in err
    assert "--pmj" in cli_error(capsys, [*base, "--pmj-distance", "64"])
    assert "--pmj-distance" in cli_error(capsys, [*base, "--pmj", str(s["pmj"])])
    assert "--levels" in cli_error(capsys, [*base, "--pmj", str(s["pmj"]), "--pmj-distance", "9", "--levels", "x"])
    # a PMJ below the cord
    img = nib.load(s["pmj"])
    low = np.zeros(img.shape, np.uint8)
    low[img.shape[0] // 2, img.shape[1] // 2, 0] = PMJ_VALUE
    nib.save(nib.Nifti1Image(low, img.affine), tmp_path / "low.nii.gz")
    err = cli_error(capsys, [*base, "--pmj", str(tmp_path / "low.nii.gz"), "--pmj-distance", "10"])
    assert "not above the segmented cord" in err and "low.nii.gz" in err
    assert not (tmp_path / "x.csv").exists()


def test_phantom_pmj_label_and_default_unchanged(pmj_subject):
    lab = np.asanyarray(nib.load(pmj_subject["pmj"]).dataobj)
    assert np.count_nonzero(lab) == 1 and lab.max() == PMJ_VALUE
    assert list(np.argwhere(lab)[0]) == pmj_subject["truth"]["pmj"]["t2w_voxel"]
    assert json.loads(json.dumps(pmj_subject["truth"]["pmj"]))["offset_from_centerline_mm"] < 0.8
    assert "pmj" not in PhantomOptions().to_dict() and PhantomOptions(pmj=True).to_dict()["pmj"] is True


def test_analyze_reports_pmj_csa(pmj_subject, tmp_path):
    """``cordbench analyze`` measures the CSA at 64 mm from a T2w PMJ label: pmj_csa.csv and the report."""
    out = tmp_path / "study"
    assert main(["analyze", str(pmj_subject["root"]), "-o", str(out), "--workers", "0", "--no-progress"]) == 0
    t = pd.read_csv(out / "pmj_csa.csv")
    assert t["participant_id"].tolist() == ["sub-002"] and t["DistancePMJ"].tolist() == [64.0]
    truth = pmj_subject["truth"]["pmj"]
    assert float(t["MEAN(area)"][0]) == pytest.approx(window_truth(truth, 64, 30), rel=0.02)
    assert (out / "subjects" / "sub-002" / "sub-002_T2w_morphometrics_pmj.csv").is_file()
    assert "CSA at a distance from the PMJ" in (out / "report.html").read_text()
