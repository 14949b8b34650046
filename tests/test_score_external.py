"""``cordbench score`` + ``leaderboard --external``: another tool's masks ranked beside a sweep's models.

The "tool" is the phantom's truth cord mask dilated by one voxel in-plane, for two of the three
held-out subjects of ``real_sweep`` (tests/support/tiny_sweep.py): its Dice, its Bland–Altman bias and
its place in the ranking are recomputed here from the files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from cordbench.cli import main
from data_modules.phantom.labels import si_axis
from data_modules.phantom.layout import subject_paths

pytestmark = pytest.mark.slow  # trained sweep
SUBJECTS = ("sub-003", "sub-004")  # of the held-out sub-003, sub-004, sub-006: one left out on purpose


def dilate_inplane(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """One-voxel dilation within each axial slice (4-connected), none across slices."""
    st = np.zeros((3, 3, 3), bool)
    idx: list = [slice(None)] * 3
    idx[si_axis(affine)] = 1
    st[tuple(idx)] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_dilation(mask, st)


@pytest.fixture(scope="module")
def scored(real_sweep, tmp_path_factory) -> tuple[Path, Path, Path]:
    """(sweep copy, phantom, score folder) of the dilated truth masks (T2w and T2*)."""
    base = tmp_path_factory.mktemp("external")
    sweep = shutil.copytree(real_sweep, base / "sweep", ignore=shutil.ignore_patterns("leaderboard", "wandb"))
    results = pd.read_csv(sweep / "results.csv")  # one trial per model: two models, half the predictions
    results[results["trial_id"].isin(["t000", "t002", "t004"])].to_csv(sweep / "results.csv", index=False)
    phantom = real_sweep.parent / "phantom"
    pred = base / "pred" / "derivatives" / "dil"
    for sub in SUBJECTS:
        p = subject_paths(phantom, sub)
        for c in ("T2w", "T2star"):
            img = nib.load(p[f"{c}_SC"])
            mask = dilate_inplane(np.asanyarray(img.dataobj) > 0, img.affine)
            out = pred / sub / "anat" / f"{sub}_{c}_label-SC_seg.nii.gz"
            out.parent.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(mask.astype(np.uint8), img.affine), out)
    out = base / "scored"
    assert main(["score", str(base / "pred"), "--ref", str(phantom), "-o", str(out)]) == 0
    return sweep, phantom, out


def test_dice_and_bias_of_the_dilated_truth_equal_a_hand_computation(scored):
    _, phantom, out = scored
    metrics = pd.read_csv(out / "test_metrics.csv").set_index("subject")
    assert sorted(metrics.index) == list(SUBJECTS)
    for sub in SUBJECTS:
        p = subject_paths(phantom, sub)
        t = np.asanyarray(nib.load(p["T2w_SC"]).dataobj) > 0
        d = np.asanyarray(nib.load(out.parent / "pred/derivatives/dil" / sub / "anat" / p["T2w_SC"].name).dataobj) > 0
        assert metrics.loc[sub, "sc/dice"] == pytest.approx(2 * (t & d).sum() / (t.sum() + d.sum()), abs=1e-6)
    prec = pd.read_csv(out / "precision.csv")
    assert len(prec) == 4 and set(prec["contrast"]) == {"T2w", "T2star"}
    bias = (prec["C2-C5"] - prec["ref_C2-C5"]).mean()
    assert bias > 0  # a dilated mask measures a larger cord
    assert (out / "test_summary.json").read_text().count('"as given"') == 1


def test_external_is_ranked_beside_the_sweep_with_paired_statistics(scored, tmp_path):
    sweep, _, out = scored
    lb = tmp_path / "lb"
    args = ["leaderboard", str(sweep), "--external", f"dil={out}", "--no-wandb", "--no-cost", "--no-morphometrics"]
    assert main([*args, "--n-boot", "200", "--out", str(lb)]) == 0
    table = pd.read_csv(lb / "leaderboard.csv").set_index("entry")
    assert {"dil", "unet", "sattisunet"} <= set(table.index)
    assert table.loc["dil", "n_subjects"] == 2  # the sweep's held-out subjects it has masks for
    assert table["best"].sum() == 1 and table.loc["dil", "rank"] == 1  # near-truth masks beat one-epoch models
    others = table.drop(index="dil")
    assert (others["n_pairs"] == 2).all() and others["p_wilcoxon"].notna().all()  # paired on the intersection
    assert set(others["label"]) <= {"tied", "worse", "undetermined — n too small"}
    prec = pd.read_csv(out / "precision.csv")
    assert table.loc["dil", "ba_bias"] == pytest.approx((prec["C2-C5"] - prec["ref_C2-C5"]).mean(), abs=1e-9)
    assert table.loc["dil", "ba_bias"] > 0 and "cov_contrast_vs_best" in table.columns
    md = (lb / "leaderboard.md").read_text()
    assert "external dil: 1 held-out subject(s) without a mask (sub-006)" in md
    assert "Precision" in md and (lb / "precision.png").is_file()
    assert 'alt="Precision"' in (lb / "leaderboard.html").read_text()


def test_bad_prediction_folders_are_one_line_naming_the_file(scored, tmp_path, capsys):
    _, phantom, _ = scored
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["score", str(empty), "--ref", str(phantom), "-o", str(tmp_path / "o1")]) == 2
    assert "no NIfTI mask" in capsys.readouterr().err
    p = subject_paths(phantom, "sub-001")
    bad = tmp_path / "bad"
    bad.mkdir()
    img = nib.load(p["T2w_SC"])
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), img.affine), bad / p["T2w_SC"].name)
    assert main(["score", str(bad), "--ref", str(phantom), "-o", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert p["T2w_SC"].name in err and "shape" in err and len(err.strip().splitlines()) == 1
    (bad / p["T2w_SC"].name).rename(bad / "sub-999_T2w_label-SC_seg.nii.gz")
    assert main(["score", str(bad), "--ref", str(phantom), "-o", str(tmp_path / "o3")]) == 2
    assert "sub-999_T2w_label-SC_seg.nii.gz" in capsys.readouterr().err
