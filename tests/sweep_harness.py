"""The fault harness of the slow sweep tests: a Ray cluster that loses a node mid-sweep, and a sweep
driver killed after its first trial. One copy, used by ``tests/test_sweeps_fault.py`` (local storage)
and ``tests/test_sweeps_s3.py`` (an S3 bucket); each test says when to act (the files it watches differ)
and checks the outcome. ``tests/test_sweep_harness.py`` checks the harness itself, fast.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.paths import REPO_ROOT

CORDBENCH = str(Path(sys.executable).with_name("cordbench"))
FAST = ["config.logger.wandb.enabled=false", "ray.verbose=0"]

#: A 3-trial Optuna sweep of tiny runs, one trial at a time (``{root}``: the phantom, ``{storage}``).
KILL_SWEEP = """
name: killme
base: [configs/debug.yaml]
config:
  model: {{name: unet, preset: tiny}}
  data: {{root: {root}, phantom: {{subjects: 5}}, patch_size: [32, 32], batch_size: 4, samples_per_volume: 4,
          queue_length: 16}}
  trainer: {{max_epochs: 2, limit_train_batches: 2}}
  logger: {{wandb: {{enabled: false}}}}
space:
  model.lr: {{loguniform: [1.0e-4, 1.0e-1]}}
search: {{algorithm: optuna, num_samples: 3, seed: 0, n_startup_trials: 2, max_concurrent_trials: 1}}
resources: {{cpu: 1, gpu: 0}}
ray: {{verbose: 0}}
storage: {storage}
"""


# ------------------------------------------------------------------------------------- processes
def descendants(pid: int) -> set[int]:
    """All processes below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def kill(pids: set[int]) -> None:
    """SIGKILL each of ``pids`` that still runs."""
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ------------------------------------------------------------------------------------- node loss
def sweep_losing_a_node(
    sweep: Any, both_mid_run: Callable[[], bool], poll: float, start_timeout: float = 240, finish_timeout: float = 300
) -> Any:
    """``sweeps.runner.run_sweep(sweep)`` on a local Ray cluster (a head with 0 CPUs and two one-CPU
    worker nodes); one worker is removed without notice as soon as ``both_mid_run()`` (asked every
    ``poll`` s) says both trials are mid-run. Returns the sweep's outcome; fails when the node was
    not removed in time or the sweep raised. Ray and the cluster are shut down in every case."""
    import ray
    from ray.cluster_utils import Cluster

    from sweeps.runner import run_sweep

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    out: dict = {}
    try:
        cluster.add_node(num_cpus=1)
        victim = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)

        def drive() -> None:
            try:
                out["outcome"] = run_sweep(sweep)
            except BaseException as exc:  # surfaced below
                out["error"] = exc

        thread = threading.Thread(target=drive, daemon=True)
        thread.start()
        removed = False
        deadline = time.time() + start_timeout
        while thread.is_alive() and time.time() < deadline:
            if both_mid_run():
                cluster.remove_node(victim, allow_graceful=False)
                removed = True
                break
            time.sleep(poll)
        thread.join(timeout=finish_timeout)
        assert removed, "the node was not removed while both trials were running"
        assert not thread.is_alive() and "error" not in out, out.get("error")
    finally:
        ray.shutdown()
        cluster.shutdown()
    return out["outcome"]


# ------------------------------------------------------------------------------------ driver kill
def kill_driver_after_a_trial(
    cmd: list[str], log: Path, finished: Callable[[], set[str]], poll: float, timeout: float = 240
) -> set[str]:
    """Start the sweep driver ``cmd`` in its own session (output to ``log``), wait until ``finished()``
    (asked every ``poll`` s) names a finished trial, then SIGKILL the driver's session and, 2 s later,
    whatever is left of its process tree (Ray fate-shares with the driver; make sure). Returns the
    trials finished before the kill; fails when the driver ended first (the log's tail in the message)."""
    done: set[str] = set()
    tree: set[int] = set()
    with open(log, "w") as out:
        driver = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT, start_new_session=True)
        try:
            deadline = time.time() + timeout
            while driver.poll() is None and time.time() < deadline:
                done = finished()
                if done:
                    break
                time.sleep(poll)
            assert driver.poll() is None, log.read_text()[-3000:]
            tree = descendants(driver.pid)
            os.killpg(driver.pid, signal.SIGKILL)  # the driver's own session: the CLI process and its Ray
            driver.wait(timeout=30)
        finally:
            if driver.poll() is None:
                kill(descendants(driver.pid) | {driver.pid})
    time.sleep(2)
    kill({p for p in tree if Path(f"/proc/{p}").exists()})
    return done
