"""Provenance of runs and sweeps, the leaderboard's code-difference lines and the model card.

The git state is checked on a temporary repository made clean, then dirty (modified, then untracked
file); a real fit (``gm_perone_run``) must record the commit and dirty flag of this work tree as git
reports them, and the installed torch in its ``pip_freeze.txt``; ``cordbench test`` must (re)write a
model card naming data, split, metrics with CIs, contract and limitations; a leaderboard over trials of
two commits must print the difference line.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout.strip()


def test_git_state_of_a_clean_then_dirty_work_tree(tmp_path: Path):
    from runs.provenance import collect, git_state

    repo = tmp_path / "code"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "model.py").write_text("x = 1\n")
    _git(repo, "add", "model.py")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    commit = _git(repo, "rev-parse", "HEAD")

    clean = collect(root=repo)["git"]
    assert clean["commit"] == commit and clean["dirty"] is False and clean["diff_sha256"] is None

    (repo / "model.py").write_text("x = 2\n")
    dirty = git_state(repo)
    assert dirty["commit"] == commit and dirty["dirty"] is True and len(dirty["diff_sha256"]) == 64
    (repo / "model.py").write_text("x = 3\n")
    assert git_state(repo)["diff_sha256"] != dirty["diff_sha256"]  # another change, another hash

    (repo / "model.py").write_text("x = 1\n")
    (repo / "notes.txt").write_text("untracked\n")
    untracked = git_state(repo)
    assert untracked["dirty"] is True and untracked["diff_sha256"] not in (None, dirty["diff_sha256"])

    outside = git_state(tmp_path / "elsewhere")
    assert outside == {"commit": None, "dirty": None, "diff_sha256": None, "toplevel": None}


def test_freeze_lists_the_installed_torch():
    import torch

    from runs.provenance import freeze, package_versions

    assert f"torch=={torch.__version__}" in freeze()
    assert package_versions()["torch"] == torch.__version__


def test_data_identity_of_a_bids_root(tmp_path: Path):
    import hashlib

    from runs.provenance import data_identity

    root = tmp_path / "bids"
    (root / "sub-01" / "anat").mkdir(parents=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "cords", "BIDSVersion": "1.9.0", "DatasetVersion": "2.1", "License": "CC0"})
    )
    files = [root / "sub-01" / "anat" / "b.nii.gz", root / "sub-01" / "anat" / "a.nii.gz"]
    ident = data_identity(root, files)
    assert (ident["name"], ident["bids_version"], ident["dataset_version"], ident["licence"]) == (
        "cords",
        "1.9.0",
        "2.1",
        "CC0",
    )
    expected = hashlib.sha256(b"sub-01/anat/a.nii.gz\nsub-01/anat/b.nii.gz").hexdigest()
    assert ident["files_sha256"] == expected and ident["n_files"] == 2
    assert ident["git_commit"] is None and ident["phantom"] is None


@pytest.mark.slow
def test_fit_records_provenance_and_model_card(gm_perone_run: Path):
    import torch

    record = json.loads((gm_perone_run / "provenance.json").read_text())
    assert record["git"]["commit"] == _git(REPO, "rev-parse", "HEAD")
    assert record["git"]["dirty"] is bool(_git(REPO, "status", "--porcelain"))
    assert record["packages"]["torch"] == torch.__version__
    assert record["packages"]["pytorch-lightning"] and record["packages"]["monai"]
    assert record["command"] and record["started"] and record["ended"] >= record["started"]
    assert record["hardware"]["cpu_count"] >= 1 and record["hardware"]["gpu_count"] == torch.cuda.device_count()
    assert record["data"]["n_files"] > 0 and len(record["data"]["files_sha256"]) == 64
    assert f"torch=={torch.__version__}\n" in (gm_perone_run / "pip_freeze.txt").read_text()
    assert "## Test metrics" in (gm_perone_run / "MODEL_CARD.md").read_text()


@pytest.mark.slow
def test_cordbench_test_writes_the_model_card(gm_fixture, gm_perone_run: Path, tmp_path: Path):
    """``cordbench test`` in a copy of a run folder rewrites MODEL_CARD.md and appends its own provenance."""
    from cordbench.cli import main
    from tests.support.gmchallenge import GM_FIT_ARGS

    run = tmp_path / "run"
    shutil.copytree(gm_perone_run, run)
    (run / "MODEL_CARD.md").unlink()
    args = [a for a in GM_FIT_ARGS if a not in ("--max-epochs", "1")]
    ckpt = run / "checkpoints" / "best.ckpt"
    assert main(["test", *args, "--root", str(gm_fixture[0]), "-o", str(run), "--ckpt", str(ckpt)]) in (0, None)
    card = (run / "MODEL_CARD.md").read_text()
    split = json.loads((run / "split.json").read_text())
    assert "`gmchallenge`" in card and f"{len(split['train'])} train" in card
    assert all(s in card for s in split["test"])
    assert "| gm/dice |" in card and "95 % CI" in card
    assert '"normalisation": "zscore-after-crop"' in card and "Post-processing:" in card
    assert "Contrasts never seen in training: T1w, T2w, dwi" in card
    assert "Licence of the training data:" in card and "GFLOPs" in card
    record = json.loads((run / "provenance.json").read_text())
    assert record["evaluations"][-1]["command"] and record["evaluations"][-1]["ended"]


@pytest.mark.slow
def test_leaderboard_names_two_commits(real_sweep: Path, tmp_path: Path):
    from leaderboard import render_leaderboard

    sweep = tmp_path / "sweep"
    shutil.copytree(real_sweep, sweep)
    trials = sorted(p for p in (sweep / "trials").iterdir() if (p / "test_metrics.csv").exists())
    assert len(trials) >= 2
    record = json.loads((trials[0] / "provenance.json").read_text())
    first = record["git"]["commit"]
    record["git"]["commit"] = "0123456789abcdef" * 2 + "01234567"
    (trials[0] / "provenance.json").write_text(json.dumps(record))
    for t in trials:
        (t / "MODEL_CARD.md").unlink(missing_ok=True)

    files = render_leaderboard(
        sweep, by="config", out=tmp_path / "lb", n_boot=100, wandb=False, cost=False, morphometrics=False
    )
    md = files.markdown
    line = next(x for x in md.splitlines() if "Trials made by different commit:" in x)
    assert "0123456789ab (1 trial: " in line and f"{first[:12]} (" in line
    assert "Code: commits " in md and "0123456789ab" in md
    assert any((t / "MODEL_CARD.md").exists() for t in trials)  # each entry's best trial gets its card


@pytest.mark.slow
def test_wandb_run_carries_the_provenance(real_sweep: Path):
    from tests.support.tiny_sweep import TRIALS, wandb_run_info

    trial = real_sweep / "trials" / TRIALS[0][0]
    record = json.loads((trial / "provenance.json").read_text())
    info = wandb_run_info(next((trial / "wandb").glob("offline-run-*")))
    logged = info["run"]["config"]["update"]["provenance"]
    assert logged["git"] == record["git"] and logged["packages"] == record["packages"]
    assert logged["data"]["files_sha256"] == record["data"]["files_sha256"]
    phantom = record["data"]["phantom"]  # the trials' data: a generated cohort, named by its generator
    assert phantom["generator"] == "cordbench phantom" and phantom["version"] and "snr" in phantom["options"]
    assert info["summary"]["provenance/commit"] == record["git"]["commit"]
    assert info["summary"]["provenance/torch"] == record["packages"]["torch"]


def test_sweep_folder_provenance(tmp_path: Path):
    from types import SimpleNamespace

    from sweeps.runner import _write_provenance

    sweep = SimpleNamespace(sweep_dir=str(tmp_path / "sweep"))
    (tmp_path / "sweep").mkdir()
    _write_provenance(sweep, ended=False)
    record = json.loads((tmp_path / "sweep" / "provenance.json").read_text())
    assert record["started"] and record["ended"] is None and record["git"]["commit"] == _git(REPO, "rev-parse", "HEAD")
    assert "torch==" in (tmp_path / "sweep" / "pip_freeze.txt").read_text()
    _write_provenance(sweep, ended=True)
    ended = json.loads((tmp_path / "sweep" / "provenance.json").read_text())
    assert ended["started"] == record["started"] and ended["ended"] >= record["started"]
