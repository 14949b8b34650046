"""End to end through the CLI: fit, determinism, predict on the input grid, bad inputs named.

Uses a small BIDS tree made in tmp from the real ``sct_testing_data/t2`` (PSR, sagittal) so the
whole chain — indexer, torchio preprocessing, training, testing, write-back — sees real files.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from cordbench.cli import main

FAST = [
    "--config",
    "configs/debug.yaml",
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--logger.wandb.enabled=false",
]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mini_bids(tmp_path_factory, sct_data) -> Path:
    """4 subjects (copies of the real t2 with different flips/noise) in spine-generic naming."""
    root = tmp_path_factory.mktemp("bids")
    src = nib.load(str(sct_data / "t2" / "t2.nii.gz"))
    seg = nib.load(str(sct_data / "t2" / "t2_seg-manual.nii.gz"))
    rng = np.random.default_rng(0)
    rows = []
    for i in range(1, 5):
        sub = f"sub-{i:02d}"
        (root / sub / "anat").mkdir(parents=True)
        lab = root / "derivatives" / "labels" / sub / "anat"
        lab.mkdir(parents=True)
        data = np.asanyarray(src.dataobj).astype(np.float32) * (1 + 0.1 * i)
        data += rng.normal(0, 5, data.shape).astype(np.float32)
        nib.save(nib.Nifti1Image(data, src.affine, src.header), str(root / sub / "anat" / f"{sub}_T2w.nii.gz"))
        nib.save(
            nib.Nifti1Image(np.asanyarray(seg.dataobj), seg.affine, seg.header),
            str(lab / f"{sub}_T2w_label-SC_seg.nii.gz"),
        )
        rows.append(
            {"participant_id": sub, "sex": "MF"[i % 2], "institution_id": f"site{i % 2}", "manufacturer": "Siemens"}
        )
    pd.DataFrame(rows).to_csv(root / "participants.tsv", sep="\t", index=False)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "mini", "BIDSVersion": "1.8.0"}))
    return root


def _fit(root: Path, out: Path, *extra: str) -> dict:
    code = main(["fit", *FAST, "--data", "spine_generic", "--root", str(root), "-o", str(out), *extra])
    assert code == 0
    return json.loads((out / "test_summary.json").read_text())


def test_fit_outputs_and_determinism(mini_bids, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    a = _fit(mini_bids, tmp_path / "a")
    b = _fit(mini_bids, tmp_path / "b")
    for name in ("config.yaml", "split.json", "metrics.csv", "test_metrics.csv", "checkpoints/best.ckpt"):
        assert (tmp_path / "a" / name).exists(), name
    va = pd.read_csv(tmp_path / "a" / "metrics.csv")
    vb = pd.read_csv(tmp_path / "b" / "metrics.csv")
    col = "val/dice"
    assert va[col].notna().any()
    pd.testing.assert_series_equal(va[col].dropna().reset_index(drop=True), vb[col].dropna().reset_index(drop=True))
    assert a["metrics"]["sc/dice"]["mean"] == b["metrics"]["sc/dice"]["mean"]
    per_subject = pd.read_csv(tmp_path / "a" / "test_metrics.csv")
    split = json.loads((tmp_path / "a" / "split.json").read_text())
    assert sorted(per_subject["subject"]) == split["test"]
    assert {"sc/dice", "sc/hd95", "sc/msd", "sc/skel_md"} <= set(per_subject.columns)
    # a different seed gives a different split or different weights: the test can fail
    c = _fit(mini_bids, tmp_path / "c", "--seed", "1", "--data.split.seed=1")
    vc = pd.read_csv(tmp_path / "c" / "metrics.csv")[col].dropna().reset_index(drop=True)
    assert not vc.equals(va[col].dropna().reset_index(drop=True)) or c != a


def test_predict_keeps_input_grid(mini_bids, tmp_path, sct_data, monkeypatch):
    monkeypatch.chdir(REPO)
    _fit(mini_bids, tmp_path / "run")
    src = sct_data / "t2" / "t2.nii.gz"
    out = tmp_path / "pred" / "t2_seg.nii.gz"
    assert (
        main(["predict", "--ckpt", str(tmp_path / "run" / "checkpoints" / "best.ckpt"), "-i", str(src), "-o", str(out)])
        == 0
    )
    a, b = nib.load(str(src)), nib.load(str(out))
    assert nib.aff2axcodes(a.affine) == ("P", "S", "R")
    assert b.shape == a.shape
    assert np.array_equal(b.affine, a.affine)
    assert b.get_data_dtype() == np.uint8
    side = json.loads(out.with_name("t2_seg.json").read_text())
    assert side["GeneratedBy"][0]["Model"] == "unet" and len(side["GeneratedBy"][0]["CheckpointSHA256"]) == 64


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cordbench", *args], capture_output=True, text=True, cwd=REPO)


def _one_line(capsys, *args: str) -> str:
    """``cordbench ARGS`` in this process: a non-zero exit and one stderr line without a traceback."""
    capsys.readouterr()
    code = main(list(args))
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.subprocess
def test_bad_inputs_one_clear_line(mini_bids, tmp_path, capsys):
    """The bad NIfTI case runs as a real process (everything it prints on the way, imports included,
    counts); the others in this process, with the same checks."""
    from core.errors import CordbenchError

    # missing file
    err = _one_line(capsys, "predict", "--ckpt", str(tmp_path / "none.ckpt"), "-i", "x.nii.gz")
    assert "none.ckpt" in err
    # not a NIfTI
    bad = tmp_path / "bad.nii.gz"
    bad.write_text("not an image")
    root = tmp_path / "bids"
    shutil.copytree(mini_bids, root)
    img = root / "sub-01" / "anat" / "sub-01_T2w.nii.gz"
    img.write_text("not an image")
    r = _cli("fit", *FAST, "--data", "spine_generic", "--root", str(root), "-o", str(tmp_path / "o1"))
    assert r.returncode != 0 and "sub-01_T2w.nii.gz" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    # label shape != image shape
    shutil.rmtree(root)
    shutil.copytree(mini_bids, root)
    lbl = root / "derivatives" / "labels" / "sub-02" / "anat" / "sub-02_T2w_label-SC_seg.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((10, 10, 10), np.uint8), np.eye(4)), str(lbl))
    err = _one_line(capsys, "fit", *FAST, "--data", "spine_generic", "--root", str(root), "-o", str(tmp_path / "o2"))
    assert "sub-02_T2w_label-SC_seg.nii.gz" in err and "shape" in err
    # --debug lets the exception (and so its traceback) through
    with pytest.raises(CordbenchError, match="sub-02_T2w_label-SC_seg.nii.gz"):
        main(["--debug", "fit", *FAST, "--data", "spine_generic", "--root", str(root), "-o", str(tmp_path / "o3")])
