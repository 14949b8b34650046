"""Shared pytest fixtures.

Real data come from ``core.paths.shared_data_dir()`` (default ``../shared/data``).
Under ``CI=true`` a test that needs them fails when they are missing; elsewhere it skips.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.paths import shared_data_dir


def _require(path: Path) -> Path:
    if not path.exists():
        msg = f"real data missing: {path} (set CORDBENCH_DATA or put ../shared/data beside the repo)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real data (``sct_testing_data/``, ``spine-generic/``)."""
    return _require(shared_data_dir())


@pytest.fixture(scope="session")
def sct_data(shared_data: Path) -> Path:
    """``sct_testing_data/`` (t2, t2s, dmri)."""
    return _require(shared_data / "sct_testing_data")


@pytest.fixture(scope="session")
def spine_generic(shared_data: Path) -> Path:
    """``spine-generic/`` (participants.tsv, FILELIST.txt, one subject's sidecars)."""
    return _require(shared_data / "spine-generic")


@pytest.fixture(autouse=True)
def _torch_threads():
    """Keep tests on few threads (CI has 2 cores) and deterministic."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(min(n, 2))
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def sweep_phantom(tmp_path_factory) -> Path:
    """A 5-subject phantom cohort shared by the sweep tests of this session."""
    from data_modules.phantom import generate_cohort

    root = tmp_path_factory.getbasetemp() / "sweeps-phantom-n5"
    generate_cohort(root, n_subjects=5, seed=0, snr=30.0, dwi=False)
    return root


@pytest.fixture(scope="session")
def gm_fixture(tmp_path_factory, sct_data: Path) -> tuple[Path, dict]:
    """The challenge-named GM fixture (sites 1–2, 2 labelled subjects each) from the real t2s."""
    from tests.test_gmchallenge import make_fixture

    root = tmp_path_factory.getbasetemp() / "gm-fixture"
    info = make_fixture(root, sct_data / "t2s", sites=(1, 2), per_site=2, test_subjects=0)
    return root, info


#: one short tiny-U-Net fit on ``gm_fixture`` (used by the train = test = predict and QC tests)
GM_FIT_ARGS = ["--model", "unet", "--preset", "tiny", "--max-epochs", "1", "--data.patch_size=[48,48]",
               "--data.batch_size=4", "--data.samples_per_volume=4", "--data.queue_length=16",
               "--trainer.limit_train_batches=3", "--trainer.accelerator=cpu", "--trainer.devices=1",
               "--trainer.enable_progress_bar=false", "--logger.wandb.enabled=false", "--data.augment.strength=0",
               "--data", "gmchallenge", "--task", "gm", "--data.preset=perone", "--data.split.val_fraction=0.25",
               "--data.split.test_fraction=0.25"]


@pytest.fixture(scope="session")
def gm_perone_run(tmp_path_factory, gm_fixture) -> Path:
    """Run folder of ``cordbench fit`` with Perone's preset on ``gm_fixture``."""
    from cordbench.cli import main

    out = tmp_path_factory.getbasetemp() / "gm-perone-run"
    assert main(["fit", *GM_FIT_ARGS, "--root", str(gm_fixture[0]), "-o", str(out)]) in (0, None)
    return out


@pytest.fixture(autouse=True)
def _commands_leave_their_inputs_intact(monkeypatch):
    """Every in-process ``cordbench`` command of every test must leave its inputs byte-identical
    (issue 18, acceptance 3; see ``tests/input_guard.py``)."""
    from cordbench.cli import _command_modules
    from input_guard import guarded

    for name, mod in _command_modules().items():
        monkeypatch.setattr(mod, "run", guarded(name, mod.run))
    yield


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (moto) on 127.0.0.1 with the bucket ``cordbench`` (see tests/s3_server.py)."""
    from tests.s3_server import MotoServer

    with MotoServer() as server:
        yield server
