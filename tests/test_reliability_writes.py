"""Reliability, round 3, class 7: write failures and foreign records outside the checked paths.

Each case goes through the CLI: one stderr line naming the path and the problem, before any work
(no Ray, no training). The run-folder cases (``fit --ckpt-path`` of another network or of weights
alone, ``--resume`` without ``config.yaml`` or with a damaged ``metrics.csv``) need a trained run and
are in ``tests/test_reliability_history.py``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.support.reliability import cli_error

SWEEP = """
name: writes
config:
  model: {{name: unet, preset: tiny}}
  data: {{name: phantom, root: {root}, phantom: {{subjects: 5}}, patch_size: [32, 32]}}
  trainer: {{max_epochs: 1, accelerator: cpu, devices: 1}}
  logger: {{wandb: {{enabled: false}}}}
space:
  seed_everything: {{grid: [0]}}
search: {{algorithm: basic, num_samples: 1}}
resources: {{cpu: 1, gpu: 0}}
storage: {storage}
"""
READ_ONLY = "/sys/kernel"  # a read-only file system also for root (sysfs), as in test_reliability_outputs


def _sweep(tmp_path: Path) -> Path:
    p = tmp_path / "writes.yaml"
    p.write_text(SWEEP.format(root=tmp_path / "phantom", storage=tmp_path / "sweeps"))
    return p


# ---------------------------------------------------------------------------------- sweep storage
def test_sweep_storage_that_is_a_file_or_read_only_is_refused_before_ray(tmp_path, capsys):
    cfg = _sweep(tmp_path)
    afile = tmp_path / "storage.txt"
    afile.write_text("notes")
    err = cli_error(capsys, ["sweep", str(cfg), "--storage", str(afile)])
    assert err == f"error: {afile}: sweep storage folder (storage: / --storage) exists and is not a folder"
    err = cli_error(capsys, ["sweep", str(cfg), "--storage", f"{READ_ONLY}/sweeps"])
    assert err == f"error: {READ_ONLY}/sweeps: cannot write here (Permission denied)"
    assert not (tmp_path / "phantom").exists()  # refused before the data were generated


# ---------------------------------------------------------------------------------- leaderboard
@pytest.fixture
def planted(tmp_path) -> Path:
    from tests.support.planted_sweep import make_sweep

    return make_sweep(tmp_path / "sweep", {"a": 0.0, "b": -0.05})


def test_leaderboard_default_out_that_cannot_be_written_is_refused_first(planted, capsys):
    """The default ``SWEEP_DIR/leaderboard`` is checked like ``--out``: here a read-only folder, then a file."""
    out = planted / "leaderboard"
    out.symlink_to(READ_ONLY)
    argv = ["leaderboard", str(planted), "--no-wandb", "--no-cost", "--n-boot", "100"]
    assert cli_error(capsys, argv) == f"error: {out}: cannot write here (Permission denied)"
    out.unlink()
    out.write_text("not a folder")
    assert cli_error(capsys, argv) == (
        f"error: {out}: leaderboard folder (default SWEEP_DIR/leaderboard; give --out elsewhere) exists and is not a folder"
    )


# ---------------------------------------------------------------------------------- gmchallenge
def test_gmchallenge_table_of_a_non_gm_sweep_or_without_every_metric_is_refused(tmp_path, capsys):
    from tests.support.sweep_trials import fake_trial

    sc, gm = tmp_path / "sc", tmp_path / "gm"
    fake_trial(sc, "t1", [0.8, 0.7], [0.8], task="sc")
    fake_trial(gm, "t1", [0.6, 0.5], [0.6], task="gm")  # scored with Dice and HD95 only
    err = cli_error(capsys, ["gmchallenge", "--table", str(sc)])
    assert err == (
        f"error: {sc}/trials/t1/test_metrics.csv: a run of task 'sc' scores no class 'gm' (it scores sc): the GM "
        "challenge table needs gm/<metric> columns (a GM-task protocol sweep, or another --class)"
    )
    err = cli_error(capsys, ["gmchallenge", "--table", str(gm)])
    assert err == (
        f"error: {gm}/trials/t1/test_metrics.csv: no gm/jaccard, gm/conformity, gm/tpr, gm/tnr, gm/precision, "
        "gm/hd, gm/msd, gm/skel_hd, gm/skel_md column(s): the GM challenge table needs every challenge metric "
        "(Dice, JI, CC, TPR, TNR, PPV, HD, MSD, SHD, SMD); score the run again with cordbench test"
    )
    assert not (sc / "gmchallenge_table.csv").exists() and not (gm / "gmchallenge_table.csv").exists()


# ---------------------------------------------------------------------------------- foreign .ckpt
def _safetensors(path: Path) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + np.zeros(2, np.float32).tobytes())


def _hdf5(path: Path) -> None:
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(504))


def _npz(path: Path) -> None:
    with open(path, "wb") as f:
        np.savez(f, w=np.zeros(3))


@pytest.mark.parametrize(
    "write, what",
    [
        (_safetensors, "a safetensors file (weights without the hyper-parameters cordbench needs)"),
        (_hdf5, "an HDF5 file (Keras/h5py weights?)"),
        (_npz, "a NumPy .npz archive"),
    ],
)
def test_a_foreign_file_named_ckpt_is_named_for_what_it_is(write, what, image, tmp_path, capsys):
    ckpt = tmp_path / "model.ckpt"
    write(ckpt)
    err = cli_error(capsys, ["predict", "--ckpt", str(ckpt), "-i", str(image), "-o", str(tmp_path / "m.nii.gz")])
    assert err == (
        f"error: {ckpt}: not a PyTorch checkpoint but {what}; cordbench reads the .ckpt files written by cordbench fit"
    )
    assert not (tmp_path / "m.nii.gz").exists()
