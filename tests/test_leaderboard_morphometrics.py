"""Morphometric columns of the leaderboard (leaderboard/morphometrics.py).

A small phantom cohort with DWI (4 subjects) and a sweep folder laid out as ``cordbench sweep``
lays it out, whose "models" are stand-ins patched over the checkpoint loading and the prediction:
``exact`` returns the manual cord mask, ``eroded`` the manual mask eroded by one voxel in-plane.
Expected values are computed here independently: per-level CSA with nibabel's canonical
orientation and a cubic-polyfit centerline (as tests/test_morphometrics.py), FA with dipy through
``analysis.dti`` on one subject, correlations with scipy, bootstrap CIs against the exact bootstrap
distribution. One slow test runs the real trained sweep (``real_sweep``, ``tests/support/tiny_sweep.py``)
(real checkpoints, real predictions, a phantom without DWI → FA "n/a" with the reason).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import ndimage, stats

import leaderboard.morphometrics as M
from tests.references import independent_csa

N_BOOT = 2000
REAL = {"load_model": M.load_model, "predict_subject": M.predict_subject}  # before any patching
SUBJECTS = ["sub-001", "sub-002", "sub-003", "sub-004"]


# ------------------------------------------------------------------------------ the stand-ins
def manual_label_path(image: Path) -> Path:
    """The manual cord mask of a phantom T2w image."""
    sub = image.name.split("_")[0]
    return image.parents[2] / "derivatives" / "labels" / sub / "anat" / f"{sub}_T2w_label-SC_seg.nii.gz"


def erode_inplane(mask: np.ndarray) -> np.ndarray:
    """Erode by one voxel within each axial slice (voxel axis 2 is S-I in the phantom)."""
    cross = ndimage.generate_binary_structure(2, 1)[:, :, None]
    return ndimage.binary_erosion(mask, structure=cross)


def fake_predict(module: dict, image: Path) -> np.ndarray:
    module["calls"].append(image.name)
    mask = np.asanyarray(nib.load(str(manual_label_path(image))).dataobj) > 0
    if module["mode"] == "empty":
        return np.zeros_like(mask)
    return mask if module["mode"] == "exact" else erode_inplane(mask)


@pytest.fixture(scope="module")
def patched():
    """Patch the checkpoint loading (the file names the mode) and the prediction; records calls."""
    calls: list[str] = []

    def load(path: Path) -> dict:
        return {"mode": Path(path).read_text().strip(), "calls": calls}

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(M, "load_model", load)
        mp.setattr(M, "predict_subject", fake_predict)
        M.clear_caches()
        yield calls
    M.clear_caches()


@pytest.fixture
def stand_ins(patched):
    """The patched stand-ins with an empty call record."""
    patched.clear()
    return patched


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    from data_modules.phantom import generate_cohort

    # cords tilted 20-25° against the slice normal: a CSA without the cos correction is 6-10% off the truth
    root = generate_cohort(
        tmp_path_factory.mktemp("morpho") / "phantom",
        n_subjects=4,
        seed=5,
        dwi=True,
        tilt_min=20.0,
        tilt_max=25.0,
        workers=1,
    )
    img = nib.load(str(root / "sub-001" / "anat" / "sub-001_T2w.nii.gz"))
    assert nib.aff2axcodes(img.affine)[2] in "SI"  # erode_inplane relies on it
    return root


def phantom_truth(data: Path) -> pd.DataFrame:
    """The phantom's per-level truth (perpendicular CSA ``csa_mm2``, ``angle_to_si_deg``) by subject/VertLevel."""
    t = pd.read_csv(data / "derivatives" / "phantom-truth" / "truth_levels.tsv", sep="\t")
    return t.rename(columns={"participant_id": "subject"})


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def make_sweep(root: Path, data: Path, trials: list[tuple[str, str, str]], task: str = "sc") -> Path:
    """A sweep folder: results.csv + trials/<id>/{config.yaml, data.json, split.json, test_metrics.csv, ckpt}."""
    rows = []
    for tid, model, mode in trials:
        tdir = root / "trials" / tid
        (tdir / "checkpoints").mkdir(parents=True)
        cfg = {
            "name": tid,
            "model": {"name": model, "preset": "tiny", "options": {}},
            "data": {"name": "phantom", "root": str(data), "task": task, "contrast": "T2w"},
        }
        (tdir / "config.yaml").write_text(yaml.safe_dump(cfg))
        (tdir / "data.json").write_text(
            json.dumps({"data": "phantom", "root": str(data), "task": task, "contrast": "T2w"})
        )
        (tdir / "split.json").write_text(json.dumps({"train": [], "val": [], "test": SUBJECTS}))
        recs = []
        for sub in SUBJECTS:
            image = data / sub / "anat" / f"{sub}_T2w.nii.gz"
            if not manual_label_path(image).exists():
                recs.append({"subject": sub, f"{task}/dice": 0.5})
                continue
            manual = np.asanyarray(nib.load(str(manual_label_path(image))).dataobj) > 0
            pred = fake_predict({"mode": mode, "calls": []}, image)
            recs.append({"subject": sub, f"{task}/dice": dice(pred, manual) if pred.any() else 0.0})
        pd.DataFrame(recs).to_csv(tdir / "test_metrics.csv", index=False)
        (tdir / "checkpoints" / "best.ckpt").write_text(mode)
        rows.append(
            {
                "trial_id": tid,
                "status": "TERMINATED",
                "model": model,
                "preset": "tiny",
                "seed": 0,
                "data": "phantom",
                "task": task,
                "run_dir": f"trials/{tid}",
            }
        )
    pd.DataFrame(rows).to_csv(root / "results.csv", index=False)
    (root / "sweep.yaml").write_text("name: morpho-test\n")
    return root


TRIALS = [("t0", "exact", "exact"), ("t1", "eroded", "eroded")]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, phantom, patched):
    """The two-trial sweep and its leaderboard (files, csv table by entry), rendered once."""
    root = tmp_path_factory.mktemp("morpho-sweep")
    sweep = make_sweep(root / "sweep", phantom, TRIALS)
    files, table = render(sweep, root / "lb")
    return sweep, files, table


@pytest.fixture
def sweep(tmp_path, phantom, stand_ins) -> Path:
    """A fresh copy of the two-trial sweep (no cached morphometrics yet)."""
    return make_sweep(tmp_path / "sweep", phantom, TRIALS)


def render(sweep_dir: Path, out: Path, **kw):
    from leaderboard import render_leaderboard

    files = render_leaderboard(sweep_dir, out=out, n_boot=N_BOOT, seed=1, wandb=False, cost=False, **kw)
    return files, pd.read_csv(files.csv).set_index("entry")


# ------------------------------------------------------------------------- independent reference
def independent_errors(data: Path) -> pd.DataFrame:
    """subject, VertLevel, error % of the eroded mask vs the manual one, by the independent path."""
    rows = []
    for sub in SUBJECTS:
        la = data / "derivatives" / "labels" / sub / "anat"
        img = nib.load(str(la / f"{sub}_T2w_label-SC_seg.nii.gz"))
        manual = np.asanyarray(img.dataobj) > 0
        levels = np.asanyarray(nib.load(str(la / f"{sub}_T2w_label-SC_desc-levels_dseg.nii.gz")).dataobj)
        ref = independent_csa(manual, levels, img.affine)
        ero = independent_csa(erode_inplane(manual), levels, img.affine)
        rows += [{"subject": sub, "VertLevel": L, "err": 100 * (ero[L] - ref[L]) / ref[L]} for L in ref]
    return pd.DataFrame(rows)


def exact_bootstrap_cdf(values):
    means = np.sort([np.mean(c) for c in itertools.product(values, repeat=len(values))])
    return lambda x: np.searchsorted(means, x, side="right") / means.size


def assert_exact_bootstrap_ci(values, lo, hi, tol=0.02):
    cdf = exact_bootstrap_cdf(list(values))
    assert cdf(lo - 1e-9) <= 0.025 + tol and cdf(lo) >= 0.025 - tol
    assert cdf(hi - 1e-9) <= 0.975 + tol and cdf(hi) >= 0.975 - tol


# ------------------------------------------------------------------------------------- tests
def test_exact_masks_give_zero_csa_error_and_the_manual_correlation(rendered):
    sweep, files, table = rendered
    exact = table.loc["exact"]
    assert exact["csa_mae_pct"] == 0 and exact["csa_bias_pct"] == 0
    assert exact["csa_mae_ci_low"] == exact["csa_mae_ci_high"] == 0
    assert exact["csa_n_subjects"] == len(SUBJECTS)
    for L in range(1, 8):
        assert exact[f"csa_mae_C{L}"] == 0 and exact[f"csa_bias_C{L}"] == 0
    cache = pd.read_csv(sweep / "trials" / "t0" / M.CACHE_NAME)
    assert sorted(cache["subject"].unique()) == SUBJECTS and set(cache["VertLevel"]) == set(range(1, 8))
    assert (cache["CSA_model"] == cache["CSA_manual"]).all() and (cache["csa_error_pct"] == 0).all()
    assert exact["r_model"] == exact["r_manual"] and exact["n_model"] == exact["n_manual"] == 28


def test_manual_csa_is_the_phantom_truth(rendered, phantom):
    """Absolute CSA of the manual masks (the error's denominator) against the phantom's perpendicular
    areas: within 2% at every level of every subject, on cords tilted 20-25° (uncorrected: 6-10% off)."""
    sweep, _, _ = rendered
    cache = pd.read_csv(sweep / "trials" / "t0" / M.CACHE_NAME)
    both = cache.merge(phantom_truth(phantom), on=["subject", "VertLevel"], validate="one_to_one")
    assert len(both) == len(cache) == 4 * 7
    assert both["angle_to_si_deg"].min() > 10 and both["tilt_deg"].min() >= 20
    err = (both["CSA_manual"] / both["csa_mm2"] - 1).abs()
    assert err.max() < 0.02, both.loc[err.idxmax(), ["subject", "VertLevel", "CSA_manual", "csa_mm2"]].to_dict()
    assert (both["CSA_model"] == both["CSA_manual"]).all()  # the exact stand-in


def test_eroded_masks_error_equals_an_independent_per_level_computation(rendered, phantom):
    sweep, files, table = rendered
    cache = pd.read_csv(sweep / "trials" / "t1" / M.CACHE_NAME)
    ref = independent_errors(phantom)
    both = cache.merge(ref, on=["subject", "VertLevel"], validate="one_to_one")
    assert len(both) == len(ref) == len(cache) == 4 * 7
    # one eroded voxel ring of a ~80 mm² cord at 0.8 mm: roughly a quarter of the area
    assert (both["err"] < -15).all() and (both["err"] > -45).all()
    assert np.abs(both["csa_error_pct"] - both["err"]).max() < 0.5  # percentage points
    ero = table.loc["eroded"]
    per_subject = ref.groupby("subject")["err"].mean()
    assert ero["csa_bias_pct"] == pytest.approx(per_subject.mean(), abs=0.5)
    assert ero["csa_mae_pct"] == pytest.approx(-ero["csa_bias_pct"], abs=1e-9)  # every error is negative
    # the leaderboard's aggregation of the cached numbers, recomputed by hand
    mine = cache.assign(a=cache["csa_error_pct"].abs()).groupby("subject")["a"].mean()
    assert ero["csa_mae_pct"] == pytest.approx(mine.mean(), rel=1e-12)
    assert_exact_bootstrap_ci(mine.to_numpy(), ero["csa_mae_ci_low"], ero["csa_mae_ci_high"])
    for L in range(1, 8):
        lv = cache[cache["VertLevel"] == L]["csa_error_pct"]
        assert ero[f"csa_bias_C{L}"] == pytest.approx(lv.mean(), rel=1e-12) and ero[f"csa_bias_C{L}"] < 0
    levels = pd.read_csv(files.morphometrics)
    c3 = levels[(levels["entry"] == "eroded") & (levels["level"] == "C3")].iloc[0]
    vals = cache[cache["VertLevel"] == 3]["csa_error_pct"].abs().to_numpy()
    assert c3["mae_pct"] == pytest.approx(vals.mean()) and c3["n_subjects"] == 4
    assert_exact_bootstrap_ci(vals, c3["mae_ci_low"], c3["mae_ci_high"])


def test_fa_and_correlations_equal_dipy_and_scipy_on_the_same_numbers(rendered, phantom):
    from analysis.dti import run_dti

    sweep, files, table = rendered
    cache = pd.read_csv(sweep / "trials" / "t1" / M.CACHE_NAME)
    # FA per level = the dipy fit inside the manual DWI cord mask, per level
    sub = "sub-002"
    d, ld = phantom / sub / "dwi", phantom / "derivatives" / "labels" / sub / "dwi"
    res = run_dti(
        d / f"{sub}_dwi.nii.gz",
        d / f"{sub}_dwi.bval",
        d / f"{sub}_dwi.bvec",
        ld / f"{sub}_rec-average_dwi_label-SC_seg.nii.gz",
        ld / f"{sub}_rec-average_dwi_label-SC_desc-levels_dseg.nii.gz",
    )
    fa = {int(r["VertLevel"]): r["MEAN(FA)"] for _, r in res.table.iterrows()}
    got = cache[cache["subject"] == sub].set_index("VertLevel")["FA"]
    assert all(got[L] == pytest.approx(fa[L], abs=1e-12) for L in range(1, 8))
    assert 0.3 < got.mean() < 0.9
    # SAC/CSA of the manual masks: (canal − cord)/cord per slice, so SAC/CSA + 1 ≥ canal / max cord > 1
    assert (cache["SAC_CSA_manual"] > 0).all() and (cache["SAC_CSA_model"] > cache["SAC_CSA_manual"]).all()
    for entry, col in (("eroded", "SAC_CSA_model"), ("eroded", "SAC_CSA_manual"), ("exact", "SAC_CSA_manual")):
        pr = stats.pearsonr(cache["FA"], cache[col])
        src = "model" if col.endswith("model") else "manual"
        row = table.loc[entry]
        assert row[f"r_{src}"] == pytest.approx(pr.statistic, abs=1e-12)
        assert row[f"p_{src}"] == pytest.approx(pr.pvalue, rel=1e-9)
        z, h = np.arctanh(pr.statistic), stats.norm.ppf(0.975) / np.sqrt(len(cache) - 3)
        assert row[f"r_{src}_ci_low"] == pytest.approx(np.tanh(z - h), abs=1e-12)
        assert row[f"r_{src}_ci_high"] == pytest.approx(np.tanh(z + h), abs=1e-12)
        assert row[f"n_{src}"] == 28
    assert table.loc["eroded", "r_manual"] == table.loc["exact", "r_manual"]


def test_reports_hold_the_morphometric_columns(rendered):
    sweep, files, table = rendered
    md = files.markdown
    header = next(line for line in md.splitlines() if line.startswith("| rank |"))
    for head in (
        "CSA |err| % [95% CI]",
        "CSA bias % [95% CI]",
        "r FA–SAC/CSA model [95% CI]",
        "r FA–SAC/CSA manual [95% CI]",
    ):
        assert head.replace("|", "\\|") in header
    ero = table.loc["eroded"]
    row = next(line for line in md.splitlines() if line.startswith("| ") and "| eroded |" in line)
    assert f"{ero['csa_mae_pct']:.2f} [{ero['csa_mae_ci_low']:.2f}, {ero['csa_mae_ci_high']:.2f}]" in row
    assert f"{ero['r_model']:.3f} [" in row and f"{ero['r_manual']:.3f} [" in row
    assert "| exact |" in md and "0.00 [0.00, 0.00]" in md
    assert "## Morphometrics" in md and "### CSA absolute error per vertebral level" in md
    assert "| entry | subjects | C1 | C2 | C3 | C4 | C5 | C6 | C7 | overall |" in md
    assert "### FA vs SAC/CSA" in md and "Morphometrics: each trial's best checkpoint" in md
    html = files.html.read_text()
    assert "CSA bias % [95% CI]" in html and "FA vs SAC/CSA" in html
    assert {"csa_mae_pct", "csa_bias_pct", "r_model", "r_manual", "csa_mae_C4"} <= set(table.columns)


def test_cache_reused_then_recomputed_when_the_checkpoint_is_newer(sweep, tmp_path, stand_ins):
    render(sweep, tmp_path / "a")
    assert len(stand_ins) == 2 * len(SUBJECTS)
    csv = sweep / "trials" / "t1" / M.CACHE_NAME
    first = csv.read_text()
    stand_ins.clear()
    render(sweep, tmp_path / "b")
    assert stand_ins == []  # both trials read from their morphometrics.csv
    ckpt = sweep / "trials" / "t1" / "checkpoints" / "best.ckpt"
    later = csv.stat().st_mtime + 10
    os.utime(ckpt, (later, later))
    render(sweep, tmp_path / "c")
    assert len(stand_ins) == len(SUBJECTS)  # only t1 again
    assert csv.read_text() == first
    stand_ins.clear()
    render(sweep, tmp_path / "d", refresh_morphometrics=True)
    assert len(stand_ins) == 2 * len(SUBJECTS)


def _copy_without(src: Path, dst: Path, drop: list[str]) -> Path:
    shutil.copytree(src, dst)
    for pattern in drop:
        for p in list(dst.glob(pattern)):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    return dst


def test_without_dwi_the_correlation_is_na_with_the_reason(tmp_path, phantom, stand_ins):
    data = _copy_without(phantom, tmp_path / "nodwi", ["sub-*/dwi", "derivatives/labels/sub-*/dwi"])
    sw = make_sweep(tmp_path / "sweep", data, [("t0", "eroded", "eroded")])
    files, table = render(sw, tmp_path / "lb")
    row = table.loc["eroded"]
    assert row["csa_mae_pct"] > 15 and np.isnan(row["r_model"]) and np.isnan(row["r_manual"])
    assert row["fa_note"] == "no DWI"
    line = next(line for line in files.markdown.splitlines() if "| eroded |" in line)
    assert line.count("n/a: no DWI") == 2


def test_empty_masks_and_a_subject_without_labels(tmp_path, phantom, stand_ins):
    """An empty prediction is −100 % at every level; a subject without a manual mask is listed, not dropped."""
    data = _copy_without(phantom, tmp_path / "data", ["derivatives/labels/sub-004/anat/sub-004_T2w_label-SC_seg.*"])
    sw = make_sweep(tmp_path / "sweep", data, [("t0", "empty", "empty")])
    files, table = render(sw, tmp_path / "lb")
    row = table.loc["empty"]
    assert row["csa_mae_pct"] == 100 and row["csa_bias_pct"] == -100 and row["csa_n_subjects"] == 3
    cache = pd.read_csv(sw / "trials" / "t0" / M.CACHE_NAME)
    measured = cache[cache["VertLevel"].notna()]
    assert sorted(measured["subject"].unique()) == SUBJECTS[:3]
    assert (measured["CSA_model"] == 0).all() and (measured["n_slices_model"] == 0).all()
    assert measured["note"].str.contains("empty prediction").all()
    assert np.isnan(row["r_model"]) and np.isfinite(row["r_manual"])
    failed = cache[cache["VertLevel"].isna()]
    assert list(failed["subject"]) == ["sub-004"]
    assert failed["note"].iloc[0] == f"failed: {data}: subject sub-004: no T2w cord segmentation in derivatives/labels"
    assert f"- trial t0, sub-004: {failed['note'].iloc[0]}" in files.markdown


def test_auto_off_without_levels_and_required_flag_errors(tmp_path, phantom, stand_ins, capsys):
    from cordbench.cli import main

    data = _copy_without(
        phantom,
        tmp_path / "nolevels",
        ["derivatives/labels/sub-*/anat/*levels*", "derivatives/labels/sub-*/anat/*discs*"],
    )
    sw = make_sweep(tmp_path / "sweep", data, [("t0", "eroded", "eroded")])
    files, table = render(sw, tmp_path / "lb")
    assert "csa_mae_pct" not in table.columns and "CSA |err|" not in files.markdown
    assert (
        "Morphometric columns: off: no held-out subject with a manual cord mask and vertebral levels" in files.markdown
    )
    assert stand_ins == []
    code = main(
        [
            "leaderboard",
            str(sw),
            "--morphometrics",
            "--no-wandb",
            "--no-cost",
            "--n-boot",
            "100",
            "--out",
            str(tmp_path / "cli"),
        ]
    )
    assert code == 2
    assert "--morphometrics: no trial's data has the labels needed" in capsys.readouterr().err


def test_cli_flag_turns_the_columns_off(sweep, tmp_path, stand_ins, capsys):
    from cordbench.cli import main

    assert (
        main(
            [
                "leaderboard",
                str(sweep),
                "--no-morphometrics",
                "--no-wandb",
                "--no-cost",
                "--n-boot",
                "100",
                "--out",
                str(tmp_path / "off"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "CSA |err|" not in out and "Morphometric columns: disabled (--no-morphometrics)" in out
    assert stand_ins == [] and not (sweep / "trials" / "t0" / M.CACHE_NAME).exists()
    assert (
        main(["leaderboard", str(sweep), "--no-wandb", "--no-cost", "--n-boot", "100", "--out", str(tmp_path / "on")])
        == 0
    )
    out = capsys.readouterr().out
    assert "CSA bias % [95% CI]" in out and f"morphometry: {tmp_path / 'on' / 'morphometrics.csv'}" in out


def test_task_other_than_sc(tmp_path, phantom, stand_ins):
    from core.errors import ConfigError
    from leaderboard.table import build_leaderboard

    sw = make_sweep(tmp_path / "sweep", phantom, [("t0", "exact", "exact")], task="canal")
    lb = build_leaderboard(sw, n_boot=100, cost=False)
    assert not lb.morpho.enabled and "task canal" in lb.morpho.reason
    with pytest.raises(ConfigError, match="--morphometrics needs task sc"):
        build_leaderboard(sw, n_boot=100, cost=False, morphometrics=True)


# ------------------------------------------------------------------------- real trained sweep
@pytest.mark.slow
def test_real_checkpoints_predictions_and_no_dwi(real_sweep, tmp_path, monkeypatch):
    """Real best.ckpt → predict_array on the native grid; the cached CSA is that prediction's, at every
    level the model segments over >= 5 slices."""
    import torch

    from evaluation.inference import predict_array
    from runs.checkpoints import load_module

    for name, fn in REAL.items():  # undo the module's stand-ins for this test
        monkeypatch.setattr(M, name, fn)
    M.clear_caches()
    # the morphometric caches are written into the trial folders: measure a copy of the shared sweep
    sweep = shutil.copytree(real_sweep, tmp_path / "sweep", ignore=shutil.ignore_patterns("leaderboard", "wandb"))
    files, table = render(sweep, tmp_path / "lb", by="config")
    trials = sorted((sweep / "trials").glob("t00[0-3]"))
    assert all((t / M.CACHE_NAME).exists() for t in trials)
    assert not (sweep / "trials" / "t004" / M.CACHE_NAME).exists()  # the failed trial is not measured
    assert table["fa_note"].eq("no DWI").all()  # the sweep's phantom has no DWI
    assert files.markdown.count("n/a: no DWI") >= 2 * len(table)
    # one trial, one subject, recomputed here: real prediction, independent CSA
    t = trials[0]
    cache = pd.read_csv(t / M.CACHE_NAME)
    ok = cache[cache["VertLevel"].notna() & (cache["n_slices_model"] > 0)]
    if ok.empty:
        pytest.fail(f"the trained model found no cord in any test subject of {t.name}: {cache['note'].unique()}")
    # the subject with the most levels the model segments over >= 5 slices (fewer: a per-level mean
    # of 1-4 slices, too sensitive to the two centerline fits to compare)
    ok = ok[ok["n_slices_model"] >= 5]
    if ok.empty:
        pytest.fail(
            f"the trained model of {t.name} segments no level over 5 slices: {cache['n_slices_model'].tolist()}"
        )
    sub = ok["subject"].value_counts().index[0]
    root = Path(json.loads((t / "data.json").read_text())["root"])
    image = root / sub / "anat" / f"{sub}_T2w.nii.gz"
    img = nib.load(str(image))
    torch.set_num_threads(1)
    module = load_module(t / "checkpoints" / "best.ckpt")
    pred = predict_array(module, np.asanyarray(img.dataobj).astype(np.float32), img.affine) == 1
    la = root / "derivatives" / "labels" / sub / "anat"
    levels = np.asanyarray(nib.load(str(la / f"{sub}_T2w_label-SC_desc-levels_dseg.nii.gz")).dataobj)
    from analysis.centerline import to_rpi
    from analysis.morphometrics import compute_perslice, per_level_table

    seg_rpi, aff_rpi = to_rpi(pred.astype(np.uint8), img.affine)
    lv_rpi, _ = to_rpi(levels.astype(float), img.affine)
    measured = per_level_table(compute_perslice(seg_rpi > 0, aff_rpi, lv_rpi)).set_index("VertLevel")["CSA"]
    ref = independent_csa(pred, levels, img.affine)
    mine = ok[ok["subject"] == sub].set_index("VertLevel")["CSA_model"]
    mine.index = mine.index.astype(int)
    assert set(mine.index) <= set(ref) and set(mine.index) <= set(measured.index), (
        sorted(mine.index),
        sorted(ref),
        sorted(measured.index),
    )  # the same levels found every way
    # every such level: the cached CSA is this prediction's, measured here by analysis.morphometrics.
    # The independent reference only bounds it loosely: a one-epoch model predicts blobs of several
    # objects per slice, whose centerline (cubic polyfit vs b-spline) and so angle correction are
    # ill-defined (6% apart measured); the reference is checked tightly on cord-shaped masks above
    # (test_manual_csa_is_the_phantom_truth, test_eroded_masks_error_equals_...).
    for level, csa in mine.items():
        assert csa == pytest.approx(measured[level], rel=1e-9), level
        assert 0.8 < csa / ref[level] < 1.25, (level, csa, ref[level])
    # the entry's MAE is the mean over subjects of the mean |error| over levels, pooled over its trials
    entry = table.index[0]
    assert np.isfinite(table.loc[entry, "csa_mae_pct"])


@pytest.mark.parametrize("randomised", [False, True])
def test_data_root_of_a_run_without_a_recorded_root_is_its_phantom_cache(tmp_path, monkeypatch, randomised):
    """A run whose data.json names no root: the phantom cache folder of *its* options (randomised: its own)."""
    from data_modules.phantom.randomise_options import from_config
    from data_modules.phantom_dm import default_phantom_root
    from runs.config import DEFAULTS

    monkeypatch.setenv("CORDBENCH_OUTPUT", str(tmp_path / "out"))
    phantom = {
        **DEFAULTS["data"]["phantom"],
        "subjects": 3,
        "randomise": {**DEFAULTS["data"]["phantom"]["randomise"], "enabled": randomised},
    }
    trial = tmp_path / "trial"
    trial.mkdir()
    (trial / "config.yaml").write_text(yaml.safe_dump({"data": {"name": "phantom", "phantom": phantom}}))
    (trial / "data.json").write_text(json.dumps({"data": "phantom"}))
    want = default_phantom_root(3, 0, 30.0, False, from_config(phantom["randomise"]))
    assert ("-rand" in want.name) == randomised
    want.mkdir(parents=True)
    assert M.data_root(trial) == want
