"""Ensembles, test-time augmentation, soft maps and uncertainty (``evaluation/ensemble.py``).

``predict --ckpt A --ckpt A`` must write A's own mask voxel for voxel; the flip TTA must make the
prediction mirror-equivariant (the flipped pass is flipped back); soft maps are probabilities; bad
member lists are refused before anything is written; the QC report shows and sorts by the uncertainty;
``test --ckpt A --ckpt B`` scores exactly what ``predict --ckpt A --ckpt B`` writes; the leaderboard's
ensemble row is ranked with the paired statistics.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from cordbench.cli import main
from tests.support.cdp import chromium
from tests.support.reliability import AFFINE, cord_mask, save


def _ckpt(path: Path, seed: int, **hp) -> Path:
    from lightning_modules.module import SegmentationModule

    torch.manual_seed(seed)
    kw = dict(network="unet", preset="tiny", num_classes=2, classes={"sc": [1]}, patch_size=[32, 32])
    m = SegmentationModule(**{**kw, "log_images": False, "task": "sc", **hp})
    torch.save({"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams)}, path)
    return path


def _members(*paths: Path):
    from runs.ensemble_eval import load_members

    return load_members(list(paths))


def _read(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(str(path)).dataobj)


def test_self_ensemble_is_the_single_checkpoint(tiny_ckpt: Path, image: Path, tmp_path: Path):
    from evaluation.ensemble import predict_image

    assert main(["predict", "--ckpt", str(tiny_ckpt), "-i", str(image), "-o", str(tmp_path / "one.nii.gz")]) == 0
    two = tmp_path / "two.nii.gz"
    args = ["predict", "--ckpt", str(tiny_ckpt), "--ckpt", str(tiny_ckpt), "-i", str(image), "-o", str(two)]
    assert main([*args, "--soft", "--uncertainty"]) == 0
    single = _read(tmp_path / "one.nii.gz")
    assert 0 < single.sum() < single.size, "the comparison needs a mask with both labels"
    np.testing.assert_array_equal(_read(two), single)
    assert (
        main(
            [
                "predict",
                "--ckpt",
                str(tiny_ckpt),
                "--tta",
                "none",
                "--soft",
                "-i",
                str(image),
                "-o",
                str(tmp_path / "n.nii.gz"),
            ]
        )
        == 0
    )
    np.testing.assert_array_equal(_read(tmp_path / "n.nii.gz"), single)  # --tta none = no TTA

    data, aff = _read(image).astype(np.float32), nib.load(str(image)).affine
    one, pair = predict_image(_members(tiny_ckpt), data, aff), predict_image(_members(tiny_ckpt, tiny_ckpt), data, aff)
    np.testing.assert_allclose(pair.probs, one.probs, atol=1e-6)
    np.testing.assert_array_equal(pair.labels, single)
    # soft maps: float32 probabilities on the input grid (header kept), summing to 1 with the background
    soft = nib.load(str(tmp_path / "two_prob-sc.nii.gz"))
    p = np.asanyarray(soft.dataobj)
    assert soft.get_data_dtype() == np.float32 and p.shape == single.shape
    np.testing.assert_allclose(soft.affine, aff, atol=1e-6)
    assert p.min() >= 0 and p.max() <= 1 and 0.01 < p.mean() < 0.99
    np.testing.assert_allclose(pair.probs.sum(0), 1.0, atol=1e-5)
    np.testing.assert_allclose(p, pair.probs[1], atol=1e-6)
    entropy = _read(tmp_path / "two_entropy.nii.gz")
    assert 0 <= entropy.min() and entropy.max() <= 1
    assert np.abs(_read(tmp_path / "two_variance.nii.gz")).max() < 1e-6  # a member with itself: no spread
    side = json.loads((tmp_path / "two.json").read_text())
    sha = [g["CheckpointSHA256"] for g in side["GeneratedBy"]]
    assert len(sha) == 2 and sha[0] == sha[1] == __import__("core.io", fromlist=["x"]).sha256(tiny_ckpt)
    assert side["Ensemble"]["combination"].startswith("mean of class probabilities")
    assert side["Ensemble"]["tta"]["rule"] == "none" and side["Uncertainty"]["mean_entropy"] >= 0


def test_flip_tta_is_mirror_equivariant_and_averages_two_passes(tiny_ckpt: Path, image: Path):
    """The flipped pass is flipped back: TTA(mirror(x)) = mirror(TTA(x)); without TTA that fails."""
    from evaluation.ensemble import predict_image

    data, aff = _read(image).astype(np.float32), nib.load(str(image)).affine
    members = _members(tiny_ckpt)
    tta, tta_m = predict_image(members, data, aff, "flips"), predict_image(members, data[::-1].copy(), aff, "flips")
    np.testing.assert_allclose(tta_m.probs, tta.probs[:, ::-1], atol=1e-5)
    plain, plain_m = predict_image(members, data, aff), predict_image(members, data[::-1].copy(), aff)
    assert np.abs(plain_m.probs - plain.probs[:, ::-1]).max() > 1e-3  # the network itself is not symmetric
    np.testing.assert_allclose(tta.probs, (plain.probs + plain_m.probs[:, ::-1]) / 2, atol=1e-5)
    assert tta.passes == 2 and tta.variance is not None and tta.variance.max() > 0


def test_members_of_different_contracts_average_on_the_native_grid(tiny_ckpt: Path, image: Path, tmp_path: Path):
    from evaluation.ensemble import predict_image

    other = _ckpt(tmp_path / "resampled.ckpt", 1, spacing=[1.2, 1.2, 2.0])
    data, aff = _read(image).astype(np.float32), nib.load(str(image)).affine
    a, b = predict_image(_members(tiny_ckpt), data, aff), predict_image(_members(other), data, aff)
    ab = predict_image(_members(tiny_ckpt, other), data, aff)
    np.testing.assert_allclose(ab.probs, (a.probs + b.probs) / 2, atol=1e-5)
    np.testing.assert_array_equal(ab.labels, ab.probs.argmax(0))  # post-processing none: the argmax
    # the variance across the two passes, ((a - b) / 2)^2 per label value. The squared probabilities are
    # resampled linearly as the means are: interpolating p^2 is >= squaring interpolated p (convexity), by
    # little on average
    spread = (((a.probs - b.probs) / 2) ** 2).mean(0)
    assert spread.max() > 0.05
    assert (ab.variance >= spread - 1e-5).all() and np.abs(ab.variance - spread).mean() < 0.01 * spread.max()


def test_bad_member_lists_are_refused_before_anything_is_written(tiny_ckpt: Path, image: Path, tmp_path: Path, capsys):
    gm = _ckpt(tmp_path / "gm.ckpt", 0, num_classes=3, classes={"wm": [1], "gm": [2]}, task="gm")
    cmap = _ckpt(tmp_path / "canal.ckpt", 0, classes={"canal": [1]})
    out = tmp_path / "out" / "mask.nii.gz"
    for other, what in ((gm, "task"), (cmap, "class map")):
        assert main(["predict", "--ckpt", str(tiny_ckpt), "--ckpt", str(other), "-i", str(image), "-o", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"different {what}" in err
        assert str(tiny_ckpt) in err and str(other) in err
    missing = tmp_path / "nope.ckpt"
    assert main(["predict", "--ckpt", str(tiny_ckpt), "--ckpt", str(missing), "-i", str(image), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err and "not found" in err
    assert not out.parent.exists() or not any(out.parent.iterdir())


def _dom(exe: str, tmp: Path, url: str) -> str:
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    cmd += ["--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
    cmd += [f"--user-data-dir={tmp / 'chromium-profile'}", "--dump-dom", url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout


@pytest.mark.services
def test_qc_report_shows_and_sorts_by_uncertainty(tiny_ckpt: Path, tmp_path: Path):
    exe = chromium()
    rng = np.random.default_rng(0)
    images = []
    for i, (contrast, noise) in enumerate(((300, 5), (60, 60), (150, 25))):  # clear, faint, in between
        vol = 100 + contrast * cord_mask() + rng.normal(0, noise, (40, 40, 12))
        images.append(save(tmp_path / "in" / f"sub-{i}_T2w.nii.gz", vol.astype(np.float32), AFFINE))
    other = _ckpt(tmp_path / "b.ckpt", 1)
    qc = tmp_path / "qc"
    args = ["predict", "--ckpt", str(tiny_ckpt), "--ckpt", str(other), "--uncertainty", "--qc", str(qc)]
    assert main([*args, "-i", *map(str, images), "-o", str(tmp_path / "out")]) == 0
    entropy = {}
    for img in images:
        stem = img.name[: -len(".nii.gz")]
        side = json.loads((tmp_path / "out" / f"{stem}_label-sc_seg.json").read_text())
        entropy[f"sub-{stem[4]}_T2w"] = side["Uncertainty"]["mean_entropy"]
    assert len(set(entropy.values())) == 3
    by_desc = sorted(entropy, key=lambda s: -entropy[s])
    html = (qc / "index.html").read_text()
    assert "mean_entropy" in html and "uncertain_volume_mm3" in html and "mean_variance" in html
    assert re.findall(r'<tr><td class="s">(sub-\d_T2w)</td>', html) == by_desc  # most uncertain first
    for spec, want in (("mean_entropy:asc", by_desc[::-1]), ("mean_entropy:desc", by_desc)):
        dom = _dom(exe, tmp_path, (qc / "index.html").as_uri() + f"#sort={spec}")
        assert re.findall(r'<tr><td class="s">(sub-\d_T2w)</td>', dom) == want, spec


@pytest.mark.slow
def test_ensemble_test_scores_what_predict_writes_and_the_leaderboard_ranks_it(real_sweep: Path, tmp_path: Path):
    from leaderboard.table import build_leaderboard

    trials = [real_sweep / "trials" / t for t in ("t000", "t001")]
    ckpts = [str(t / "checkpoints" / "best.ckpt") for t in trials]
    out = tmp_path / "ens"
    cli = ["test", "-c", str(trials[0] / "config.yaml"), "--ckpt", ckpts[0], "--ckpt", ckpts[1], "-o", str(out)]
    assert main(cli[:-2]) == 2  # without -o: the config's run folder is t000's own, never overwritten
    assert main(cli) == 0
    summary = json.loads((out / "test_summary.json").read_text())
    assert [m["Checkpoint"] for m in summary["ensemble"]["members"]] == ckpts
    per_subject = pd.read_csv(out / "test_metrics.csv")
    assert list(per_subject["subject"]) == json.loads((trials[0] / "split.json").read_text())["test"]
    row = per_subject.iloc[0]
    image = next(Path(json.loads((trials[0] / "data.json").read_text())["root"]).rglob(f"{row['subject']}_T2w.nii.gz"))
    mask = tmp_path / "p.nii.gz"
    assert main(["predict", "--ckpt", ckpts[0], "--ckpt", ckpts[1], "-i", str(image), "-o", str(mask)]) == 0
    written = _read(mask)
    np.testing.assert_array_equal(written, _read(out / "predictions" / f"{row['subject']}_pred.nii.gz"))
    truth = next((image.parents[2] / "derivatives").rglob(f"{row['subject']}_T2w_label-SC_seg.nii.gz"))
    t = _read(truth) > 0
    dice = 2 * (t & (written > 0)).sum() / max(1, t.sum() + (written > 0).sum())
    assert dice == pytest.approx(row["sc/dice"], abs=1e-6)

    lb = build_leaderboard(real_sweep, n_boot=200, cost=False, morphometrics=False, ensembles=True)
    ens = lb.table.set_index("entry").loc["unet (ensemble)"]
    assert ens["n_trials"] == 2 and ens["n_subjects"] == len(per_subject)
    assert np.isfinite(ens["p_wilcoxon"]) or bool(ens["best"])
    assert ens["mean"] == pytest.approx(per_subject["sc/dice"].mean(), abs=1e-9)
    assert "sattisunet (ensemble)" in set(lb.table["entry"]) and lb.meta["ensembles"]["notes"] == []


def test_soft_csa_columns_pool_the_soft_frames_and_keep_partial_volume_at_the_border():
    from leaderboard.ensembles import morpho_columns, soft_map, soft_table

    probs = np.zeros((2, 9, 9, 3), np.float32)
    probs[1, 3:6, 3:6] = 0.9  # the predicted mask
    probs[1, 2, 4] = 0.3  # partial volume beside it
    probs[1, 0, 0] = 1e-3  # far field: not cord
    probs[0] = 1 - probs[1]
    labels = (probs.argmax(0) > 0).astype(np.uint8)
    m = soft_map(probs, labels, [1])
    assert m.dtype == np.float32 and m[2, 4, 1] == pytest.approx(0.3) and m[0, 0, 1] == 0 and m[4, 4, 1] == 0.9

    def frame(subject: str, errors: list[float]) -> pd.DataFrame:
        from leaderboard.morphometrics import CACHE_COLUMNS

        f = pd.DataFrame({"subject": subject, "VertLevel": range(1, len(errors) + 1), "csa_error_pct": errors})
        return f.assign(CSA_manual=50.0, CSA_model=50.0 * (1 + f["csa_error_pct"] / 100)).reindex(columns=CACHE_COLUMNS)

    # two trials of one entry: a subject's value is the mean over trials of the mean |error| over its levels
    frames = {"unet": [pd.concat([frame("a", [10, -20]), frame("b", [4, 4])]), frame("a", [-30, 30])]}
    cols = morpho_columns(frames, n_boot=50, seed=0, prefix="csa_soft")[0].set_index("entry")
    assert cols.loc["unet", "csa_soft_mae_pct"] == pytest.approx(((15 + 30) / 2 + 4) / 2)
    assert cols.loc["unet", "csa_soft_bias_pct"] == pytest.approx(((-5 + 0) / 2 + 4) / 2)
    table = pd.DataFrame([{"entry": "unet", "csa_mae_pct": 1.0, **cols.loc["unet"].to_dict()}])
    title, heads, rows = soft_table(table)
    assert rows[0][0] == "unet" and rows[0][2].startswith("13.25") and rows[0][1].startswith("1.00")
