"""Reliability catalogue, sweeps: bad sweep configs rejected by ``cordbench sweep`` before any trial,
and a trial whose loss turns NaN fails with its reason while the sweep goes on.

The per-key validation itself is unit-tested in ``tests/test_sweeps_config.py``; here each case
goes through the CLI (exit 2, one stderr line naming the sweep file and the key, nothing created).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.support.reliability import cli_error, make_bids

SWEEP = """
name: rel
config:
  model: {{name: sattisunet, preset: tiny}}
  data: {{name: spine_generic, root: {root}, patch_size: [32, 32], batch_size: 4, samples_per_volume: 4,
         queue_length: 16, split: {{val_fraction: 0.25, test_fraction: 0.25}}}}
  trainer: {{max_epochs: 1, limit_train_batches: 2, accelerator: cpu, devices: 1, enable_progress_bar: false}}
  logger: {{wandb: {{enabled: false}}}}
space:
  seed_everything: {{grid: [0]}}
search: {{algorithm: basic, num_samples: 1, metric: val_dice, mode: max, max_concurrent_trials: 2}}
resources: {{cpu: 1, gpu: 0}}
failure: {{max_failures: 0}}
ray: {{num_cpus: 2}}
storage: {storage}
"""


@pytest.fixture(scope="module")
def bids(tmp_path_factory) -> Path:
    return make_bids(tmp_path_factory.mktemp("sweepdata") / "bids", n=4)


def _sweep(tmp_path: Path, bids: Path) -> Path:
    p = tmp_path / "rel.yaml"
    p.write_text(SWEEP.format(root=bids, storage=tmp_path / "sweeps"))
    return p


@pytest.mark.parametrize(
    "override, words",
    [
        ("search.nosuch=1", ["unknown key 'search.nosuch'"]),
        ("config.trainer.max_epoch=1", ["trainer.max_epoch"]),
        ("space.model.name.grid=[sattisunet,nosuchnet]", ["unknown model", "nosuchnet"]),
        ("config.trainer.max_epochs=many", ["trainer.max_epochs", "number"]),
        ("search.num_samples=[2]", ["search.num_samples"]),
        ("space.model.options.num_heads.grid=[[1,2,2],[3,2,2]]", ["num_heads", "divide"]),
        ("space.model.options.skip_connections.grid=[0,7]", ["skip_connections=7"]),
        ("resources.gpu=2.5", ["resources.gpu", "whole number"]),
    ],
)
def test_bad_sweep_config_rejected_through_the_cli(override, words, bids, tmp_path, capsys):
    path = _sweep(tmp_path, bids)
    line = cli_error(capsys, ["sweep", str(path), "--check", "--override", override])
    assert str(path) in line, line
    for w in words:
        assert w in line, (w, line)
    assert not (tmp_path / "sweeps").exists()


@pytest.mark.subprocess
@pytest.mark.ray
@pytest.mark.slow
def test_resources_the_cluster_can_never_give(bids, tmp_path):
    """A trial asking more CPUs than any node of the local Ray has is refused before it waits forever
    (before ``sweeps/runner.check_feasible`` it stayed PENDING: > 150 s measured). A real subprocess,
    so a regression fails at the timeout instead of hanging the suite."""
    import subprocess
    import sys

    path = _sweep(tmp_path, bids)
    r = subprocess.run(
        [sys.executable, "-m", "cordbench", "sweep", str(path), "--override", "resources.cpu=64"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=Path(__file__).resolve().parents[1],
    )
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: key 'resources.cpu'"), r.stderr
    assert "64 CPU(s)" in lines[0] and "wait forever" in lines[0], lines[0]
    assert not (tmp_path / "sweeps" / "rel" / "trials").exists()


@pytest.mark.ray
@pytest.mark.slow
def test_nan_loss_fails_its_trial_with_the_reason_and_the_sweep_goes_on(bids, tmp_path, capsys):
    """Two U-Net trials, lr 1e-3 and 1e30 (NaN at the second step): one finishes, one fails, both listed."""
    from cordbench.cli import main

    path = _sweep(tmp_path, bids)
    raw = yaml.safe_load(path.read_text())
    raw["config"]["model"] = {"name": "unet", "preset": "tiny"}
    raw["space"] = {"model.lr": {"grid": [1.0e-3, 1.0e30]}}
    path.write_text(yaml.safe_dump(raw))
    code = main(["sweep", str(path)])
    assert code == 1  # a failed trial makes the sweep's exit non-zero; the other trial still finished
    folder = tmp_path / "sweeps" / "rel"
    res = pd.read_csv(folder / "results.csv")
    assert len(res) == 2
    lr = res.set_index("model.lr") if "model.lr" in res else res.set_index("lr")
    ok, bad = lr.loc[1e-3], lr.loc[1e30]
    assert ok["status"] == "TERMINATED" and 0 <= ok["val_dice"] <= 1 and pd.notna(ok["test_dice"])
    assert bad["status"] == "ERROR" and "TrainingDivergedError" in bad["error"] and "loss is nan" in bad["error"]
    rec = json.loads((folder / "trials" / bad["trial_id"] / "failure.json").read_text())
    assert rec["error"] == "TrainingDivergedError" and rec["reason"].startswith("loss is nan")
