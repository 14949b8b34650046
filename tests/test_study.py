"""``cordbench analyze`` on a small hand-built BIDS set (tubes with known CSA/SAC, simulated DWI with
known FA): per-level values, participants merge, exclude.yml, failing and crashing subjects, Ray."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.study import StudyOptions, analyze, exclusion_scope, find_jobs, run_subjects
from tests.support.study import make_bids


def _check_truth(metrics, truth, subjects):
    for sub in subjects:
        csa, sac, ratio, fa = truth[sub]
        m = metrics[metrics["participant_id"] == sub]
        assert list(m["VertLevel"]) == [2, 3, 4]
        # absolute, against the tube's true perpendicular areas, at every level (tilt 20°: an
        # uncorrected CSA or SAC would be 6% off)
        assert (m["CSA"] / csa - 1).abs().max() < 0.02, m["CSA"].tolist()
        assert (m["SAC"] / sac - 1).abs().max() < 0.02, m["SAC"].tolist()
        assert (m["SAC_CSA"] / ratio - 1).abs().max() < 0.02, m["SAC_CSA"].tolist()
        assert abs(m["FA"] - fa).max() < 0.02


def _fail_subject(monkeypatch, subject: str) -> None:
    """Every part (anatomy, DWI) of ``subject`` raises an InputError (an injected failure)."""
    from analysis import study
    from core.errors import InputError

    for name in ("_anat", "_dwi"):
        original = getattr(study, name)

        def failing(job, opts, sub_dir, *rest, original=original, part=name[1:]):
            if job.subject == subject:
                raise InputError(f"injected failure in {part}", job.subject)
            return original(job, opts, sub_dir, *rest)

        monkeypatch.setattr(study, name, failing)


def _crash_subject(monkeypatch, subject: str) -> None:
    """The Ray worker processing ``subject`` dies (as on a segfault or an OOM kill)."""
    from analysis import study

    original = study.process_subject

    def crashing(job, opts):  # a local function: Ray ships it to the workers by value
        if job.subject == subject:
            import os

            os._exit(3)
        return original(job, opts)

    monkeypatch.setattr(study, "process_subject", crashing)


def test_analyze_in_process_values_merge_exclusion_and_failures(tmp_path, monkeypatch):
    root = tmp_path / "bids"
    truth = make_bids(root, n=5)
    (root / "exclude.yml").write_text("dti_fa:\n  - sub-02_dwi.nii.gz\n")
    # sub-04: corrupt cord mask (not gzip) -> its anatomy fails with a named file, DWI still measured
    (root / "derivatives/labels/sub-04/anat/sub-04_T2w_label-SC_seg.nii.gz").write_bytes(b"not a nifti")
    out = tmp_path / "out"
    _fail_subject(monkeypatch, "sub-05")
    s = analyze(root, out, workers=0, by=("sex", "manufacturer"), progress=False)
    metrics = pd.read_csv(out / "metrics.csv")
    subjects = pd.read_csv(out / "subjects.csv").set_index("participant_id")
    _check_truth(metrics, truth, ["sub-01", "sub-03"])
    assert {"sex", "manufacturer", "institution_id"} <= set(metrics.columns)
    assert metrics.loc[metrics["participant_id"] == "sub-01", "sex"].iloc[0] == "M"
    # exclusion: DTI of sub-02 is not computed, its anatomy is
    m2 = metrics[metrics["participant_id"] == "sub-02"]
    assert m2["FA"].isna().all() and m2["CSA"].notna().all()
    assert subjects.loc["sub-02", "status"] == "partial" and "exclude.yml" in subjects.loc["sub-02", "reasons"]
    assert subjects.loc["sub-04", "status"] == "partial"
    assert "sub-04_T2w_label-SC_seg.nii.gz" in subjects.loc["sub-04", "reasons"]
    assert subjects.loc["sub-05", "status"] == "failed" and "injected" in subjects.loc["sub-05", "reasons"]
    html = (out / "report.html").read_text()
    for sub in ("sub-02", "sub-04", "sub-05"):
        assert sub in html
    assert "metrics_by_level.png" in html and (out / "plots" / "metrics_by_level.png").is_file()
    assert (out / "subjects" / "sub-01" / "sub-01_T2w_morphometrics.csv").is_file()
    assert (out / "subjects" / "sub-01" / "dti_maps" / "sub-01_dwi_FA.nii.gz").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == {"ok": 2, "partial": 2, "failed": 1} == s.status
    # levels on the DWI grid were given (label-SC_desc-levels_dseg); none where the DWI was not measured
    assert subjects.loc["sub-01", "dwi_levels_method"] == "given"
    assert subjects.loc[["sub-02", "sub-05"], "dwi_levels_method"].isna().all()


def test_exclusion_scope():
    assert exclusion_scope("dti_fa", "sub-01_dwi.nii.gz") == "dwi"
    assert exclusion_scope("csa_t2", "sub-01_T2w.nii.gz") == "anat"
    assert exclusion_scope("T2w", "sub-01") == "anat"
    assert exclusion_scope("all", "sub-01") == "all"


def test_seg_source_predictions_and_missing(tmp_path):
    root = tmp_path / "bids"
    truth = make_bids(root, n=2, with_dwi=False)
    pred = root / "derivatives" / "cordbench" / "sub-01" / "anat"
    pred.mkdir(parents=True)
    import shutil

    shutil.copy(
        root / "derivatives/labels/sub-01/anat/sub-01_T2w_label-SC_seg.nii.gz", pred / "sub-01_T2w_label-SC_seg.nii.gz"
    )
    jobs, _, _ = find_jobs(root, "derivatives/cordbench")
    j = {x.subject: x for x in jobs}
    assert j["sub-01"].seg == pred / "sub-01_T2w_label-SC_seg.nii.gz"
    assert j["sub-01"].canal.name == "sub-01_T2w_label-canal_seg.nii.gz"  # falls back to the manual canal
    assert "anat" in j["sub-02"].missing and "dwi" in j["sub-02"].missing
    res = {
        r.subject: r for r in run_subjects(jobs, StudyOptions(out_dir=str(tmp_path / "o")), workers=0, progress=False)
    }
    assert res["sub-01"].status == "partial" and res["sub-02"].status == "failed"
    assert "no T2w cord segmentation" in res["sub-02"].reasons["anat"]
    lv3 = [r for r in res["sub-01"].rows if r["VertLevel"] == 3][0]
    assert abs(lv3["CSA"] / truth["sub-01"][0] - 1) < 0.02


@pytest.mark.ray
@pytest.mark.slow
def test_analyze_with_ray_survives_a_crashing_worker(tmp_path, monkeypatch):
    root = tmp_path / "bids"
    truth = make_bids(root, n=3)
    out = tmp_path / "out"
    _crash_subject(monkeypatch, "sub-02")
    s = analyze(root, out, workers=2, by=("sex",), progress=False)
    subjects = pd.read_csv(out / "subjects.csv").set_index("participant_id")
    assert subjects.loc["sub-02", "status"] == "failed"
    assert "worker died" in subjects.loc["sub-02", "reasons"]
    assert (subjects.loc[["sub-01", "sub-03"], "status"] == "ok").all()
    _check_truth(pd.read_csv(out / "metrics.csv"), truth, ["sub-01", "sub-03"])
    assert "sub-02" in (out / "report.html").read_text() and s.status["failed"] == 1


def test_cli_analyze(tmp_path):
    from cordbench.cli import main

    root = tmp_path / "bids"
    make_bids(root, n=4)
    rc = main(["analyze", str(root), "-o", str(tmp_path / "out"), "--workers", "0", "--by", "sex", "--no-progress"])
    assert rc == 0
    corr = pd.read_csv(tmp_path / "out" / "stats" / "correlations.csv")
    assert set(corr["level"].astype(str)) == {"2", "3", "4"}
    assert main(["analyze", str(tmp_path / "nope"), "-o", str(tmp_path / "o2"), "--workers", "0"]) == 2


# ------------------------------------------------------------------------------ phantom acceptance
PHANTOM_COHORTS = {
    # tilt 0–25°, sagittal PSR grid (as sct t2) rotated 15°: anatomy and DWI at SNR 30
    "psr_oblique": dict(n=2, seed=3, tilt_min=0.0, tilt_max=25.0, orientation="PSR", oblique=15.0),
    # strongly tilted, flipped axes (nibabel RPI) and the opposite obliquity
    "rpi_oblique": dict(n=1, seed=4, tilt_min=20.0, tilt_max=25.0, orientation="RPI", oblique=-20.0),
}


@pytest.fixture(scope="module", params=sorted(PHANTOM_COHORTS))
def phantom_study(request, tmp_path_factory):
    from data_modules.phantom import generate_cohort

    spec = dict(PHANTOM_COHORTS[request.param])
    root = tmp_path_factory.mktemp(request.param) / "bids"
    generate_cohort(root, spec.pop("n"), spec.pop("seed"), workers=1, **spec)
    out = root.parent / "out"
    analyze(root, out, workers=0, by=("sex",), progress=False)
    truth = pd.read_csv(root / "derivatives" / "phantom-truth" / "truth_levels.tsv", sep="\t")
    metrics = pd.read_csv(out / "metrics.csv")
    return root, out, metrics.merge(truth, on=["participant_id", "VertLevel"], suffixes=("", "_truth"))


@pytest.mark.slow
def test_phantom_csa_sac_fa_against_truth(phantom_study):
    """Default (SCT axial-slice) method: CSA within 2% everywhere, white-matter FA within 0.02 of the WM
    truth (the phantom's DWI-grid WM mask, SNR 30), SAC within 3% except at a stenosis, where a tilted
    axial cut mixes in the wider neighbouring canal (see the volume test)."""
    _, out, j = phantom_study
    assert (pd.read_csv(out / "subjects.csv")["status"] == "ok").all()
    assert len(j) == 7 * j["participant_id"].nunique()  # C1..C7 of every subject
    csa_err = (j["CSA"] / j["csa_mm2"] - 1).abs()
    assert csa_err.max() < 0.02, j.loc[csa_err.idxmax()].to_dict()
    smooth = j["stenosis_level"].isna()  # subjects without a stenosis
    sac_err = (j["SAC"] / j["sac_mm2"] - 1).abs()[smooth]
    assert sac_err.max() < 0.03, j.loc[sac_err.idxmax()].to_dict()
    assert (j["SAC_CSA"] / j["sac_csa_ratio"] - 1).abs()[smooth].max() < 0.03
    assert (j["dti_region"] == "WM").all()
    assert (j["FA"] - j["fa_wm"]).abs().max() < 0.02
    # the cord average (GM included) would be clearly lower: WM FA cannot be mistaken for it
    assert (j["fa_wm"] - j["fa_cord"]).min() > 0.02
    assert j["angle_to_si_deg"].max() > 15  # the grid really is tilted against the cord


@pytest.mark.slow
def test_phantom_volume_method_csa_sac_everywhere(phantom_study):
    """Volume / arc length: CSA within 2% and SAC within 3% at every level, stenoses included."""
    from analysis.morphometrics import volume_per_level_from_files

    root, _, j = phantom_study
    for sub in j["participant_id"].unique():
        d = root / "derivatives" / "labels" / sub / "anat"
        v = volume_per_level_from_files(
            d / f"{sub}_T2w_label-SC_seg.nii.gz",
            d / f"{sub}_T2w_label-SC_desc-levels_dseg.nii.gz",
            d / f"{sub}_T2w_label-canal_seg.nii.gz",
        )
        t = j[j["participant_id"] == sub].set_index("VertLevel")
        v = v.set_index("VertLevel")
        assert list(v.index) == list(range(1, 8))
        assert ((v["CSA"] / t["csa_mm2"] - 1).abs() < 0.02).all()
        assert ((v["SAC"] / t["sac_mm2"] - 1).abs() < 0.03).all(), (v["SAC"] / t["sac_mm2"] - 1).to_dict()
        truth = json.loads((root / "derivatives/phantom-truth" / sub / f"{sub}_truth.json").read_text())
        length = pd.Series({lv["level"]: lv["length_mm"] for lv in truth["levels"].values()})
        assert ((v["length_mm"] - length).abs() < 0.2).all()


@pytest.mark.slow
def test_phantom_dti_maps_equal_dipy(phantom_study):
    import nibabel as nib
    from dipy.core.gradients import gradient_table
    from dipy.io.gradients import read_bvals_bvecs
    from dipy.reconst.dti import TensorModel

    root, out, _ = phantom_study
    sub = "sub-001"
    dwi = nib.load(str(root / sub / "dwi" / f"{sub}_dwi.nii.gz"))
    mask = (
        np.asarray(
            nib.load(
                str(root / "derivatives/labels" / sub / "dwi" / f"{sub}_rec-average_dwi_label-SC_seg.nii.gz")
            ).dataobj
        )
        > 0
    )
    bvals, bvecs = read_bvals_bvecs(
        str(root / sub / "dwi" / f"{sub}_dwi.bval"), str(root / sub / "dwi" / f"{sub}_dwi.bvec")
    )
    fit = TensorModel(gradient_table(bvals, bvecs=bvecs), fit_method="WLS").fit(np.asarray(dwi.dataobj), mask=mask)
    for name, ref in (("FA", fit.fa), ("MD", fit.md), ("RD", fit.rd), ("AD", fit.ad)):
        ours = np.asarray(nib.load(str(out / "subjects" / sub / "dti_maps" / f"{sub}_dwi_{name}.nii.gz")).dataobj)
        assert np.abs(ours[mask] - ref[mask]).max() < 1e-6, name


def test_planted_phantom_cohort_correlations(tmp_path):
    """120 truth-only phantom subjects, r(FA, SAC/CSA) planted 0.6 (M) and 0.1 (F)."""
    import json

    from analysis.stats import comparison_table, correlation_table
    from data_modules.phantom import generate_cohort

    root = generate_cohort(tmp_path / "ph", 120, seed=7, truth_only=True, corr="M=0.6,F=0.1")
    parts = pd.read_csv(root / "participants.tsv", sep="\t")
    rows = []
    for sub in parts["participant_id"]:
        t = json.loads((root / "derivatives/phantom-truth" / sub / f"{sub}_truth.json").read_text())
        for lv in t["levels"].values():
            rows.append(
                {"participant_id": sub, "VertLevel": lv["level"], "FA": lv["fa_cord"], "SAC_CSA": lv["sac_csa_ratio"]}
            )
    df = pd.DataFrame(rows).merge(parts, on="participant_id")
    # per level: 7 levels × 2 sexes of ~60 subjects
    corr = correlation_table(df, "FA", "SAC_CSA", ["sex"], "VertLevel")
    comp = comparison_table(df, "FA", "SAC_CSA", ["sex"], "VertLevel")
    sexes = corr[corr["by"] == "sex"]
    planted = sexes["group"].map({"M": 0.6, "F": 0.1})
    held = ((sexes["ci_low"] <= planted) & (planted <= sexes["ci_high"])).sum()
    assert held >= 12  # of 14 CIs (expected 13.3 at 95% coverage)
    assert (comp["p"] < 0.05).sum() >= 5  # of 7 levels (power ≈ 0.9 per level at n ≈ 60)
    assert (comp["z"] * np.sign(comp["r_a"] - comp["r_b"]) > 0).all()
    # pooled over levels after standardising within level: n ≈ 420 per sex
    z = df.copy()
    for c in ("FA", "SAC_CSA"):
        z[c] = df.groupby("VertLevel")[c].transform(lambda v: (v - v.mean()) / v.std())
    pooled = correlation_table(z, "FA", "SAC_CSA", ["sex"], None).set_index("group")
    for sex, r in (("M", 0.6), ("F", 0.1)):
        assert pooled.loc[sex, "ci_low"] <= r <= pooled.loc[sex, "ci_high"]
    pc = comparison_table(z, "FA", "SAC_CSA", ["sex"], None)
    assert pc["p"].iloc[0] < 1e-6
