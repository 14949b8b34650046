"""``cordbench leaderboard SWEEP --real DIR``: real-data columns beside the phantom ones.

The sweep is a copy of ``real_sweep`` (real tiny fits, tests/support/tiny_sweep.py); the real set
is ``sct_testing_data`` (one T2w image with a manual cord mask, one T2* with an automatic one), and a
3-image flat set built from its t2 for the CI. Every figure is recomputed here from the prediction
files (hand Dice) and the entry names from each trial's own config.yaml.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import ndimage

from cordbench.cli import main
from tests.support.tiny_sweep import exact_bootstrap_cdf

pytestmark = pytest.mark.slow  # trained sweep
TRIALS = ("t000", "t001", "t002", "t003")


@pytest.fixture
def sweep(real_sweep, tmp_path: Path) -> Path:
    dst = tmp_path / "sweep"
    shutil.copytree(real_sweep, dst, ignore=shutil.ignore_patterns("leaderboard", "wandb"))
    return dst


def entry_of(trial: Path) -> str:
    """The ``--by config`` entry of a trial, from its own config.yaml."""
    cfg = yaml.safe_load((trial / "config.yaml").read_text())
    return " ".join(
        [f"{cfg['model']['name']}/{cfg['model']['preset']}"]
        + [f"{k}={v}" for k, v in sorted(cfg["model"]["options"].items())]
    )


def hand_dice(pred_file: Path, label: Path) -> float:
    p = np.asanyarray(nib.load(str(pred_file)).dataobj) == 1
    t = np.asanyarray(nib.load(str(label)).dataobj) > 0
    return float(2 * (p & t).sum() / (p.sum() + t.sum()))


def leaderboard(sweep: Path, real: Path, out: Path) -> pd.DataFrame:
    assert (
        main(
            [
                "leaderboard",
                str(sweep),
                "--real",
                str(real),
                "--by",
                "config",
                "--no-wandb",
                "--no-cost",
                "--no-morphometrics",
                "--n-boot",
                "4000",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    return pd.read_csv(out / "leaderboard.csv")


def test_real_columns_beside_the_phantom_ones(sweep: Path, sct_data: Path, tmp_path: Path):
    table = leaderboard(sweep, sct_data, tmp_path / "lb")
    for col in ("mean", "ci_low", "ci_high", "n_subjects", "p_wilcoxon", "label"):  # phantom columns kept
        assert col in table.columns
    trials = {t: sweep / "trials" / t for t in TRIALS}
    assert all((d / "real_metrics.csv").is_file() and (d / "test_metrics.csv").is_file() for d in trials.values())
    assert not (sweep / "trials" / "t004" / "real_metrics.csv").exists()  # the failed trial is not scored
    manual, auto = {}, {}
    for d in trials.values():
        manual.setdefault(entry_of(d), []).append(
            hand_dice(d / "real_predictions" / "t2_pred.nii.gz", sct_data / "t2" / "t2_seg-manual.nii.gz")
        )
        auto.setdefault(entry_of(d), []).append(
            hand_dice(d / "real_predictions" / "t2s_pred.nii.gz", sct_data / "t2s" / "t2s_seg-deepseg.nii.gz")
        )
    assert sorted(table["entry"]) == sorted(manual)
    for _, row in table.iterrows():
        assert row["real_mean"] == pytest.approx(np.mean(manual[row["entry"]]), abs=1e-9)
        assert row["real_n_images"] == 1 and row["real_ci_low"] == row["real_ci_high"] == pytest.approx(
            row["real_mean"]
        )
        assert row["real_auto_mean"] == pytest.approx(np.mean(auto[row["entry"]]), abs=1e-9)
        assert row["real_auto_n_images"] == 1
    md = (tmp_path / "lb" / "leaderboard.md").read_text()
    html = (tmp_path / "lb" / "leaderboard.html").read_text()
    for text in (md, html):
        assert "real sc/dice [95% CI]" in text and "1 image: no CI" in text and "far too few for inference" in text
        assert "t2 (T2w, manual)" in text and "t2s (T2star, automatic)" in text
    assert "t2s/t2s_uncropped.nii.gz not scored" in md

    # re-run: every trial's scores come from its cache (no inference); a changed checkpoint is re-scored
    stamps = {t: (d / "real_summary.json").stat().st_mtime_ns for t, d in trials.items()}
    again = leaderboard(sweep, sct_data, tmp_path / "lb2")
    assert {t: (d / "real_summary.json").stat().st_mtime_ns for t, d in trials.items()} == stamps
    pd.testing.assert_frame_equal(again[["entry", "real_mean"]], table[["entry", "real_mean"]])
    shutil.copyfile(trials["t001"] / "checkpoints" / "best.ckpt", trials["t000"] / "checkpoints" / "best.ckpt")
    leaderboard(sweep, sct_data, tmp_path / "lb3")
    assert (trials["t000"] / "real_summary.json").stat().st_mtime_ns != stamps["t000"]
    assert all((trials[t] / "real_summary.json").stat().st_mtime_ns == stamps[t] for t in TRIALS[1:])
    with (
        open(trials["t000"] / "real_metrics.csv", newline="") as a,
        open(trials["t001"] / "real_metrics.csv", newline="") as b,
    ):
        assert [r["sc/dice"] for r in csv.DictReader(a)] == [r["sc/dice"] for r in csv.DictReader(b)]


def test_real_ci_is_the_bootstrap_over_images(sweep: Path, sct_data: Path, tmp_path: Path):
    """Three images with a manual mask (t2 with its mask, eroded, dilated): the CI is the percentile
    bootstrap over the three per-image values (checked against the exact bootstrap distribution)."""
    real = tmp_path / "real3"
    real.mkdir()
    img = nib.load(str(sct_data / "t2" / "t2_seg-manual.nii.gz"))
    mask = np.asanyarray(img.dataobj) > 0
    for name, m in (("a", mask), ("b", ndimage.binary_erosion(mask)), ("c", ndimage.binary_dilation(mask))):
        shutil.copyfile(sct_data / "t2" / "t2.nii.gz", real / f"{name}_T2w.nii.gz")
        nib.save(
            nib.Nifti1Image(m.astype(np.uint8), img.affine, img.header), str(real / f"{name}_T2w_seg-manual.nii.gz")
        )
    table = leaderboard(sweep, real, tmp_path / "lb")
    for _, row in table.iterrows():
        trials = [d for d in sorted((sweep / "trials").glob("t00[0-3]")) if entry_of(d) == row["entry"]]
        values = [
            float(
                np.mean(
                    [
                        hand_dice(d / "real_predictions" / f"{n}_T2w_pred.nii.gz", real / f"{n}_T2w_seg-manual.nii.gz")
                        for d in trials
                    ]
                )
            )
            for n in "abc"
        ]
        assert row["real_n_images"] == 3 and row["real_mean"] == pytest.approx(np.mean(values), abs=1e-9)
        cdf, tol = exact_bootstrap_cdf(values), 0.01
        assert cdf(row["real_ci_low"] - 1e-12) <= 0.025 + tol and cdf(row["real_ci_low"]) >= 0.025 - tol
        assert cdf(row["real_ci_high"] - 1e-12) <= 0.975 + tol and cdf(row["real_ci_high"]) >= 0.975 - tol
    assert "n = 3 image(s) with a manual reference" in (tmp_path / "lb" / "leaderboard.md").read_text()


def test_bad_real_folder_is_one_line(sweep: Path, tmp_path: Path, capsys):
    assert (
        main(
            [
                "leaderboard",
                str(sweep),
                "--real",
                str(tmp_path / "none"),
                "--no-wandb",
                "--no-cost",
                "--no-morphometrics",
                "--n-boot",
                "100",
                "-o",
                str(tmp_path / "lb"),
            ]
        )
        == 2
    )
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'none'}: real data folder not found"
