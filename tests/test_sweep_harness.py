"""The fault harness of the slow sweep tests (``tests/sweep_harness.py``) is their only copy, and its
driver kill leaves nothing running; fast (no Ray: a stand-in driver process)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from tests import sweep_harness

TESTS = Path(__file__).resolve().parent

# a stand-in sweep driver: a child in the driver's session, another in a session of its own (as Ray's
# processes may be), then a "finished trial" marker, then it waits to be killed
DRIVER = """
import os, subprocess, sys, time
out = sys.argv[1]
stay = [sys.executable, "-c", "import time; time.sleep(120)"]
a = subprocess.Popen(stay)
b = subprocess.Popen(stay, start_new_session=True)
open(out + ".pids", "w").write(f"{os.getpid()} {a.pid} {b.pid}")
print("trial t0 done", flush=True)
open(out, "w").write("t0")
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_killed_driver_leaves_no_process_behind(tmp_path: Path):
    marker = tmp_path / "finished"

    def finished() -> set[str]:
        return set(marker.read_text().split()) if marker.exists() else set()

    t0 = time.time()
    done = sweep_harness.kill_driver_after_a_trial(
        [sys.executable, "-c", DRIVER, str(marker)], tmp_path / "log", finished, poll=0.05, timeout=60
    )
    assert done == {"t0"} and time.time() - t0 < 30
    pids = [int(p) for p in (tmp_path / "finished.pids").read_text().split()]
    deadline = time.time() + 10  # SIGKILL is delivered asynchronously
    while [p for p in pids if _alive(p)] and time.time() < deadline:
        time.sleep(0.05)
    assert len(pids) == 3 and not [p for p in pids if _alive(p)]
    assert "trial t0 done" in (tmp_path / "log").read_text()


def test_a_driver_that_ends_first_fails_with_its_log(tmp_path: Path):
    with pytest.raises(AssertionError, match="no sweep here"):
        sweep_harness.kill_driver_after_a_trial(
            [sys.executable, "-c", "print('no sweep here')"], tmp_path / "log", set, poll=0.05, timeout=60
        )


def test_no_other_test_module_starts_a_cluster_or_kills_a_driver():
    """Node loss and driver kill have one harness: no other test module carries a copy."""
    owner = Path(sweep_harness.__file__).resolve()
    copies = [
        p.name
        for p in TESTS.rglob("*.py")
        if p.resolve() not in (owner, Path(__file__).resolve())
        and any(s in p.read_text() for s in ("ray.cluster_utils", "remove_node(", "os.killpg("))
    ]
    assert not copies, f"use tests/sweep_harness.py instead of a copy in {copies}"
    assert os.path.basename(owner) == "sweep_harness.py"
