"""``cordbench slurm submit`` without a cluster: the storage rule, a missing ``sbatch``, the filled batch
script (``--dry-run``), the allocation checks; and ``cordbench fit`` on a machine with SLURM's
``srun``: no third-party SLURM warning, Lightning's SLURM handling off. The real cluster: ``test_slurm.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cordbench.cli import main
from core.errors import ConfigError
from core.paths import REPO_ROOT
from sweeps import slurm

#: The variables of a SLURM job step of 2 tasks, seen from its rank 0.
SLURM_STEP = {
    "SLURM_JOB_ID": "42",
    "SLURM_JOB_NAME": "cordbench-sweep",
    "SLURM_NTASKS": "2",
    "SLURM_NTASKS_PER_NODE": "2",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
}


def _one_line_error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    return err


# ------------------------------------------------------------------------------------- storage rule
@pytest.mark.parametrize(
    "path, reason",
    [
        ("/tmp/sweeps", "under /tmp"),
        ("/var/tmp/x/sweeps", "under /var/tmp"),
        ("/dev/shm/sweeps", "under /dev/shm"),
        ("/run/user/0/sweeps", "under /run"),
        ("/scratch/job42/sweeps", "under $SLURM_TMPDIR (/scratch/job42)"),
        ("/home/me/sweeps", None),
        ("s3://bucket/sweeps", None),
        ("gs://bucket/sweeps", None),
    ],
)
def test_node_local_paths(path, reason):
    assert slurm.node_local_reason(path, env={"SLURM_TMPDIR": "/scratch/job42"}) == reason


def test_node_local_storage_is_one_line(capsys, monkeypatch, tmp_path):
    err = _one_line_error(capsys, ["slurm", "submit", "ci", "--storage", "/dev/shm/sweeps"])
    assert "--storage /dev/shm/sweeps: node-local path (under /dev/shm)" in err and "s3://" in err
    monkeypatch.setenv("TMPDIR", "/localscratch/job7")  # need not exist
    err = _one_line_error(capsys, ["slurm", "submit", "ci", "--storage", "/localscratch/job7/sweeps"])
    assert "node-local path (under $TMPDIR (/localscratch/job7))" in err


def test_missing_sbatch_is_one_line(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch there
    err = _one_line_error(capsys, ["slurm", "submit", "ci", "--storage", str(tmp_path / "shared"), "--node-local-ok"])
    assert "sbatch not found on PATH" in err


# ------------------------------------------------------------------------------------ batch script
def test_dry_run_fills_the_template(capsys, tmp_path):
    jobs = tmp_path / "jobs"
    argv = ["slurm", "submit", "ci", "--storage", str(tmp_path / "shared"), "--node-local-ok", "--dry-run"]
    argv += ["--nodes", "3", "--gpus-per-node", "2", "--cpus-per-node", "16", "--time", "1-00:00:00"]
    argv += ["--partition", "gpu", "--signal-before", "600", "--job-dir", str(jobs)]
    argv += ["--override", "resources.gpu=1", "--override", "search.num_samples=2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "sweep ci: 4 trial(s)" in out and "submitted" not in out
    (script,) = jobs.glob("ci-*.sbatch")
    text = script.read_text()
    for line in (
        "#SBATCH --job-name=cordbench-ci",
        "#SBATCH --nodes=3",
        "#SBATCH --gpus-per-node=2",
        "#SBATCH --cpus-per-task=16",
        "#SBATCH --time=1-00:00:00",
        "#SBATCH --signal=B:USR1@600",
        "#SBATCH --requeue",
        f"#SBATCH --output={jobs}/ci-%j.out",
        "#SBATCH --partition=gpu",
        "##SBATCH --account=myproject",  # not given: stays disabled
        f"CORDBENCH_BIN={Path(sys.executable).parent}",
        f"CORDBENCH_WORKDIR={Path.cwd()}",
        f"SWEEP_CONFIG={REPO_ROOT / 'configs' / 'sweeps' / 'ci.yaml'}",
        f"SWEEP_STORAGE={tmp_path / 'shared'}",
        "SWEEP_ARGS=(--override resources.gpu=1 --override search.num_samples=2)",
        "GPUS_PER_NODE=2",
        "STOP_GRACE=300",
    ):
        assert line in text.splitlines(), line
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0  # valid bash after the fill


def test_template_lines_that_cannot_be_filled(tmp_path):
    settings = slurm.JobSettings(config="c.yaml", storage="/s", job_name="j", output="o", partition="p")
    text = slurm.TEMPLATE.read_text()
    with pytest.raises(ConfigError, match="no '#SBATCH --partition=' line"):
        slurm.fill_template(text.replace("##SBATCH --partition=gpu\n", ""), settings)
    with pytest.raises(ConfigError, match="no 'RAY_PORT=' line"):
        slurm.fill_template(text.replace("RAY_PORT=6379\n", ""), settings)
    filled = slurm.fill_template(text, slurm.JobSettings(config="c d.yaml", storage="/s", job_name="j", output="o"))
    assert "SWEEP_CONFIG='c d.yaml'" in filled and "##SBATCH --gpus-per-node=1" in filled  # quoted; 0 GPUs: off


@pytest.mark.parametrize(
    "value, seconds",
    [("30", 1800), ("30:15", 1815), ("12:00:00", 43200), ("2-00", 172800), ("1-02:03", 93780), ("1-0:0:5", 86405)],
)
def test_slurm_time_formats(value, seconds):
    assert slurm.time_limit_seconds(value) == seconds


def test_allocation_checks_are_one_line(capsys, tmp_path):
    base = ["slurm", "submit", "ci", "--storage", str(tmp_path / "s"), "--node-local-ok", "--dry-run"]
    err = _one_line_error(capsys, base + ["--time", "4:00"])
    assert "--signal-before 300 s: must be shorter than the time limit 4:00" in err
    err = _one_line_error(capsys, base + ["--time", "an hour"])
    assert "--time 'an hour': not a SLURM time" in err
    err = _one_line_error(capsys, base + ["--cpus-per-node", "1", "--override", "resources.cpu=2"])
    assert "key 'resources.cpu': a trial asks 2 CPU(s) but each node of the job has 1" in err
    err = _one_line_error(capsys, base + ["--override", "resources.gpu=1"])
    assert "key 'resources.gpu': a trial asks 1 GPU(s) but each node of the job has 0" in err


# ------------------------------------------------------------------------------- Lightning and SLURM
def test_lightning_slurm_detection_is_off(monkeypatch, tmp_path):
    """Inside a SLURM job step of 2 tasks (a sweep trial inherits such variables from its Ray node), a
    one-device run is still one process of its own: Lightning does not take ranks from SLURM."""
    from lightning_fabric.plugins.environments import LightningEnvironment

    from runs.config import load_config
    from runs.runner import build_trainer

    for k, v in SLURM_STEP.items():
        monkeypatch.setenv(k, v)
    cfg = load_config(["configs/debug.yaml"], [], {"trainer": {"max_epochs": 1}})
    trainer = build_trainer(cfg, tmp_path, checkpoint=False)
    assert type(trainer._accelerator_connector.cluster_environment) is LightningEnvironment
    assert trainer.world_size == 1 and trainer.global_rank == 0


@pytest.mark.subprocess
def test_fit_with_srun_on_path_prints_no_slurm_warning(tmp_path, sweep_phantom):
    """A machine with SLURM installed (``srun`` on the PATH, outside a job): stderr of ``cordbench fit``
    carries nothing from Lightning's SLURM support (its "`srun` command is available" warning)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text("#!/bin/sh\nexit 0\n")
    srun.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "cordbench", "fit", "--config", "configs/debug.yaml", "--root", str(sweep_phantom)]
        + ["--data.phantom.subjects=5", "--trainer.max_epochs=1", "--trainer.limit_train_batches=1"]
        + ["--logger.wandb.enabled=false", "--no-test", "-o", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "srun" not in proc.stderr and "SLURM" not in proc.stderr, proc.stderr
    assert (out / "checkpoints" / "best.ckpt").exists()
