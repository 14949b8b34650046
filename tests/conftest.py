"""Shared pytest fixtures.

Real data come from ``core.paths.shared_data_dir()`` (default ``../shared/data``).
Under ``CI=true`` a test that needs them fails when they are missing; elsewhere it skips.

Expensive artefacts used by several modules (phantom cohorts, the GM fixture and its tiny run,
the tiny sweep) are session fixtures here, built once per session from the builders of
``tests/support/``; a test that writes into one works on a copy in its ``tmp_path``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from core.paths import shared_data_dir
from tests.support.data import require as _require


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


#: One compute thread per process: CI has 2 cores, which `make test` fills with two pytest workers.
#: A second torch thread per process only oversubscribes them (a tiny 3D U-Net forward pass took 6x
#: longer with 2 threads than with 1 on a busy 2-core machine). Child processes (the CLI run as a
#: subprocess, DDP ranks, Ray workers) inherit the setting unless the caller sets its own.
os.environ.setdefault("OMP_NUM_THREADS", "1")
TORCH_THREADS = 1


@pytest.fixture(autouse=True)
def _torch_threads():
    """Keep tests on one thread (see ``TORCH_THREADS``) and deterministic."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(TORCH_THREADS)
    yield
    torch.set_num_threads(n)


#: Session fixtures that train models: the modules using them run on one pytest-xdist worker.
TRAINED = ("real_sweep", "gm_perone_run")


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: unknown to pytest without it
def pytest_xdist_make_scheduler(config, log):
    """``make test`` runs two pytest-xdist workers with ``--dist loadscope``: each module's tests stay on
    one worker, so its module fixtures are built once, and the modules that use a trained session
    fixture (``TRAINED``) share one worker, so those models are trained once."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    tests = Path(__file__).parent
    trained = {
        f"tests/{p.name}"
        for p in tests.glob("test_*.py")
        if any(re.search(rf"\b{name}\b", p.read_text()) for name in TRAINED)
    }

    seconds = module_seconds(tests)

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "trained-session-fixtures" if module in trained else module

        def schedule(self) -> None:
            """Longest first (``tests/durations.json``): the scopes whose tests start Ray, DDP ranks, services or
            subprocesses are handed out before the many quick modules, so no long module starts last and runs
            alone at the end."""
            if self.collection is None and self.collection_is_completed:
                self.config.option.loadscopereorder = False
                cost: dict[str, float] = {}
                for nodeid in next(iter(self.registered_collections.values())):
                    module = nodeid.split("::", 1)[0]
                    scope = self._split_scope(nodeid)
                    cost[scope] = cost.get(scope, 0.0) + (QUICK_TEST_S if module not in seconds else 0.0)
                for module, s in seconds.items():
                    if self._split_scope(module) in cost:
                        cost[self._split_scope(module)] += s
                for node, ids in self.registered_collections.items():
                    self.registered_collections[node] = sorted(ids, key=lambda n: -cost[self._split_scope(n)])
            super().schedule()

    return ModuleScheduling(config, log)


#: Markers of tests that take seconds to minutes (Ray clusters, DDP ranks, services, child processes).
HEAVY_MARK = re.compile(r"pytest\.mark\.(?:ray|ddp|services|subprocess|slow)\b")
#: Scheduling estimate of one test of a module missing from ``tests/durations.json``.
QUICK_TEST_S = 0.2
HEAVY_MODULE_S = 20.0


def module_seconds(tests: Path) -> dict[str, float]:
    """Serial seconds per test module, for scheduling only: ``tests/durations.json`` (measured with
    ``pytest --durations=0``), else an estimate for a module with heavy marks (the rest count per test)."""
    import json

    path = tests / "durations.json"
    measured = json.loads(path.read_text()) if path.is_file() else {}
    out = {}
    for p in tests.glob("test_*.py"):
        name = f"tests/{p.name}"
        if name in measured:
            out[name] = float(measured[name])
        elif HEAVY_MARK.search(p.read_text()):
            out[name] = HEAVY_MODULE_S
    return out


@pytest.fixture(scope="session")
def sweep_phantom(tmp_path_factory) -> Path:
    """A 5-subject phantom cohort shared by the sweep tests of this session.

    Test cohorts are generated in one process (``workers=1``): the two pytest workers already fill
    the two cores, and a pool of spawned generator processes only adds their start-up (the subjects
    are the same whatever ``workers``, see ``tests/test_phantom.py``)."""
    from data_modules.phantom import generate_cohort

    root = tmp_path_factory.getbasetemp() / "sweeps-phantom-n5"
    generate_cohort(root, n_subjects=5, seed=0, snr=30.0, dwi=False, workers=1)
    return root


@pytest.fixture(scope="session")
def gm_fixture(tmp_path_factory, sct_data: Path) -> tuple[Path, dict]:
    """The challenge-named GM fixture (sites 1–2, 2 labelled subjects each) from the real t2s."""
    from tests.support.gmchallenge import make_fixture

    root = tmp_path_factory.getbasetemp() / "gm-fixture"
    info = make_fixture(root, sct_data / "t2s", sites=(1, 2), per_site=2, test_subjects=0)
    return root, info


@pytest.fixture(scope="session")
def gm_perone_run(tmp_path_factory, gm_fixture) -> Path:
    """Run folder of ``cordbench fit`` with Perone's preset on ``gm_fixture``."""
    from cordbench.cli import main
    from tests.support.gmchallenge import GM_FIT_ARGS

    out = tmp_path_factory.getbasetemp() / "gm-perone-run"
    assert main(["fit", *GM_FIT_ARGS, "--root", str(gm_fixture[0]), "-o", str(out)]) in (0, None)
    return out


@pytest.fixture(autouse=True)
def _commands_leave_their_inputs_intact(monkeypatch):
    """Every in-process ``cordbench`` command of every test must leave its inputs byte-identical
    (see ``tests/input_guard.py``)."""
    from cordbench.cli import _command_modules
    from tests.input_guard import guarded

    for name, mod in _command_modules().items():
        monkeypatch.setattr(mod, "run", guarded(name, mod.run))
    yield


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (moto) on 127.0.0.1 with the bucket ``cordbench`` (see tests/s3_server.py)."""
    from tests.s3_server import MotoServer

    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def real_sweep(tmp_path_factory) -> Path:
    """A finished 4-trial sweep folder (plus one failed trial) from real tiny training runs
    (``tests/support/tiny_sweep.py``). Read-only: a test that writes into it copies it first."""
    from tests.support.tiny_sweep import build_sweep

    return build_sweep(tmp_path_factory.mktemp("lb") / "sweep")


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A real cordbench checkpoint (untrained tiny U-Net): what ``predict`` reads before writing."""
    import torch

    from lightning_modules.module import SegmentationModule

    torch.manual_seed(0)
    m = SegmentationModule(
        network="unet",
        preset="tiny",
        num_classes=2,
        classes={"sc": [1]},
        patch_size=[32, 32],
        log_images=False,
        task="sc",
    )
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    torch.save({"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams)}, path)
    return path


@pytest.fixture(scope="session")
def image(tmp_path_factory) -> Path:
    """A 40×40×12 T2w-like image of the reliability catalogue's straight cord."""
    import numpy as np

    from tests.support.reliability import cord_mask, save

    rng = np.random.default_rng(0)
    return save(
        tmp_path_factory.mktemp("img") / "T2w.nii.gz",
        (100 + 300 * cord_mask() + rng.normal(0, 20, (40, 40, 12))).astype(np.float32),
    )
