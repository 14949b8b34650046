"""Sweeps on SLURM: the batch script of ``configs/cluster/slurm.sbatch`` filled in and submitted,
and what the job's driver does first (wait for its Ray nodes, run the sweep or resume it).

* :func:`check_shared_storage` — the storage rule: every node of the job, and the job's next
  start after a requeue (possibly on other nodes), must reach the sweep folder. A URI
  (``s3://``, ``gs://``) is shared; a local path is refused when it is node-local (see
  :data:`NODE_LOCAL_ROOTS`).
* :func:`fill_template` / :func:`submit` — the template's ``#SBATCH`` lines and variables set,
  ``sbatch --parsable`` called; a missing ``sbatch`` or a rejected job is one line.
* :func:`sweep_started` / :func:`wait_for_nodes` — used by ``cordbench slurm run`` inside the job.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ConfigError
from core.paths import CLUSTER_CONFIGS
from sweeps.config import Sweep, is_uri

#: The batch script template that ``cordbench slurm submit`` fills in.
TEMPLATE = CLUSTER_CONFIGS / "slurm.sbatch"
#: Folders that are node-local on a cluster: memory file systems and per-node scratch.
NODE_LOCAL_ROOTS = ("/tmp", "/var/tmp", "/dev/shm", "/run")
#: Environment variables naming a node's (or a job's) private scratch folder.
NODE_LOCAL_ENV = ("TMPDIR", "SLURM_TMPDIR", "LOCAL_SCRATCH", "XDG_RUNTIME_DIR")
#: File-system types that live in one node's memory.
MEMORY_FS = ("tmpfs", "ramfs")
#: Marks the end of the template's settings block (variables are only set above it).
END_OF_SETTINGS = "# ---- end of settings"


# --------------------------------------------------------------------------------------- storage
def _mount_type(path: Path) -> str | None:
    """File-system type of the mount holding ``path`` (longest mount point in /proc/mounts)."""
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    best, fstype = "", None
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        if (str(path) == point or str(path).startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, fstype = point, parts[2]
    return fstype


def node_local_reason(storage: str, env: Mapping[str, str] | None = None) -> str | None:
    """Why ``storage`` is node-local (a short phrase), or None when it may be shared.

    Node-local: a path under /tmp, /var/tmp, /dev/shm or /run, under the folder named by
    ``$TMPDIR``, ``$SLURM_TMPDIR``, ``$LOCAL_SCRATCH`` or ``$XDG_RUNTIME_DIR``, or on a memory file
    system (tmpfs, ramfs). Anything else (home, project and scratch file systems, URIs) passes:
    whether a path is really mounted on every node cannot be seen from one node.
    """
    if is_uri(storage):
        return None
    env = os.environ if env is None else env
    path = Path(storage).expanduser().resolve()
    roots = [(r, r) for r in NODE_LOCAL_ROOTS]
    roots += [(f"${name} ({env[name]})", env[name]) for name in NODE_LOCAL_ENV if env.get(name)]
    for label, root in roots:
        base = Path(root).resolve()
        if path == base or base in path.parents:
            return f"under {label}"
    fstype = _mount_type(path)
    if fstype in MEMORY_FS:
        return f"on a {fstype} file system"
    return None


def check_shared_storage(storage: str, allow_node_local: bool = False) -> None:
    """Refuse node-local storage in one line (see :func:`node_local_reason`)."""
    reason = None if allow_node_local else node_local_reason(storage)
    if reason:
        raise ConfigError(
            f"--storage {storage}: node-local path ({reason}): the job's nodes and its next start after a "
            "requeue must all reach the sweep folder; use a shared file system path or s3://, gs:// "
            "(--node-local-ok if this folder is the same on every node)"
        )


# -------------------------------------------------------------------------------------- template
@dataclass
class JobSettings:
    """What ``cordbench slurm submit`` writes into the template."""

    config: str
    storage: str
    job_name: str
    output: str
    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_node: int | None = None
    time: str | None = None
    signal_before: int = 300
    partition: str | None = None
    account: str | None = None
    bin_dir: str = ""
    workdir: str = ""
    ray_port: int = 6379
    sweep_args: Sequence[str] = field(default_factory=list)

    def directives(self) -> dict[str, str | None]:
        """``#SBATCH`` option -> value (None: the line is disabled, ``##SBATCH``); absent: kept."""
        out: dict[str, str | None] = {
            "job-name": self.job_name,
            "nodes": str(self.nodes),
            "gpus-per-node": str(self.gpus_per_node) if self.gpus_per_node else None,
            "signal": f"B:USR1@{self.signal_before}",
            "output": self.output,
            "partition": self.partition,
            "account": self.account,
        }
        if self.cpus_per_node is not None:
            out["cpus-per-task"] = str(self.cpus_per_node)
        if self.time is not None:
            out["time"] = self.time
        return out

    def variables(self) -> dict[str, str]:
        """Shell variables of the settings block -> shell text of their values."""
        return {
            "CORDBENCH_BIN": shlex.quote(self.bin_dir),
            "CORDBENCH_WORKDIR": shlex.quote(self.workdir),
            "SWEEP_CONFIG": shlex.quote(self.config),
            "SWEEP_STORAGE": shlex.quote(self.storage),
            "SWEEP_ARGS": "(" + " ".join(shlex.quote(a) for a in self.sweep_args) + ")",
            "GPUS_PER_NODE": str(self.gpus_per_node),
            "RAY_PORT": str(self.ray_port),
            "STOP_GRACE": str(max(1, self.signal_before // 2)),
        }


def template_value(text: str, option: str) -> str | None:
    """The value of an enabled ``#SBATCH --option=value`` line of a script, or None."""
    m = re.search(rf"^#SBATCH --{re.escape(option)}=(\S+)", text, flags=re.M)
    return m.group(1) if m else None


def fill_template(text: str, settings: JobSettings, where: str | Path = TEMPLATE) -> str:
    """The template with its ``#SBATCH`` lines and settings variables replaced; a line the
    template lacks is a one-line error naming the template."""
    settings_block, sep, body = text.partition(END_OF_SETTINGS)
    if not sep:
        raise ConfigError(f"no '{END_OF_SETTINGS}' line", where)
    for option, value in settings.directives().items():
        pattern = re.compile(rf"^#+SBATCH --{re.escape(option)}=(\S*)(.*)$", flags=re.M)
        m = pattern.search(settings_block)
        if m is None:
            if value is None:
                continue
            raise ConfigError(f"no '#SBATCH --{option}=' line to fill in", where)
        line = f"#SBATCH --{option}={value}" if value is not None else f"##SBATCH --{option}={m.group(1)}"
        settings_block = settings_block[: m.start()] + line + settings_block[m.end() :]
    for name, value in settings.variables().items():
        pattern = re.compile(rf"^{name}=.*$", flags=re.M)
        if not pattern.search(settings_block):
            raise ConfigError(f"no '{name}=' line in the settings block to fill in", where)
        settings_block = pattern.sub(lambda _m, v=f"{name}={value}": v, settings_block, count=1)
    return settings_block + sep + body


# ------------------------------------------------------------------------------------ allocation
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def time_limit_seconds(value: str) -> int:
    """SLURM's ``--time`` formats (``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``) in seconds."""
    m = _TIME.match(value.strip())
    if not m:
        raise ConfigError(f"--time {value!r}: not a SLURM time (MINUTES, HH:MM:SS or DAYS-HH:MM:SS)")
    days, a, b, c = (int(g) if g is not None else None for g in m.groups())
    if days is None:  # M | M:S | H:M:S
        seconds = a * 60 if b is None else (a * 60 + b if c is None else a * 3600 + b * 60 + c)
    else:  # D-H | D-H:M | D-H:M:S
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    if seconds <= 0:
        raise ConfigError(f"--time {value!r}: must be positive")
    return seconds


def check_allocation(sweep: Sweep, settings: JobSettings, template_text: str) -> None:
    """A trial must fit on one node of the job, and the time-limit signal must come before the limit."""
    limit = settings.time or template_value(template_text, "time")
    if limit and time_limit_seconds(limit) <= settings.signal_before:
        raise ConfigError(
            f"--signal-before {settings.signal_before} s: must be shorter than the time limit {limit} "
            "(the job stops and requeues itself that long before the limit)"
        )
    res = sweep.resources
    if int(res.get("workers") or 1) > 1:
        return  # DDP workers may spread over nodes; Ray checks their room when the sweep starts
    cpus = settings.cpus_per_node
    if cpus is None:
        value = template_value(template_text, "cpus-per-task")
        cpus = int(value) if value and value.isdigit() else None
    if cpus is not None and float(res["cpu"]) > cpus:
        raise ConfigError(
            f"key 'resources.cpu': a trial asks {res['cpu']} CPU(s) but each node of the job has {cpus} "
            "(--cpus-per-node)",
            sweep.path,
        )
    gpu = res.get("gpu")
    if gpu != "auto" and float(gpu or 0) > settings.gpus_per_node:
        raise ConfigError(
            f"key 'resources.gpu': a trial asks {gpu} GPU(s) but each node of the job has "
            f"{settings.gpus_per_node} (--gpus-per-node)",
            sweep.path,
        )


# ---------------------------------------------------------------------------------------- sbatch
def find_sbatch() -> str:
    """The ``sbatch`` executable on PATH, or a one-line error."""
    exe = shutil.which("sbatch")
    if exe is None:
        raise ConfigError(
            "sbatch not found on PATH: run `cordbench slurm submit` on a SLURM login node (or use "
            "--dry-run to write the batch script only)"
        )
    return exe


def submit(script: Path, sbatch: str | None = None) -> str:
    """``sbatch --parsable SCRIPT``; the job id, or a one-line error with SLURM's reason."""
    exe = sbatch or find_sbatch()
    try:
        proc = subprocess.run(
            [exe, "--parsable", str(script)], capture_output=True, text=True, timeout=120, cwd=script.parent
        )
    except subprocess.TimeoutExpired:
        raise ConfigError("sbatch did not answer within 120 s (is slurmctld reachable?)", script) from None
    job_id = proc.stdout.strip().split(";")[0]
    if proc.returncode != 0 or not job_id.isdigit():
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        reason = "; ".join(ln.removeprefix("sbatch: ").removeprefix("error: ") for ln in lines) or "no message"
        raise ConfigError(f"sbatch rejected the job (exit status {proc.returncode}): {reason}", script)
    return job_id


# ------------------------------------------------------------------------------------ in the job
def sweep_started(sweep_dir: str) -> bool:
    """Whether ``sweep_dir`` holds a sweep that ``cordbench sweep --resume`` can resume (Ray Tune's
    experiment state is there): a requeued job, or the same sweep submitted again."""
    from ray.tune import Tuner

    if not is_uri(sweep_dir) and not Path(sweep_dir).is_dir():
        return False
    return bool(Tuner.can_restore(sweep_dir))


def wait_for_nodes(address: str, nodes: int, timeout: float = 600, poll: float = 1.0) -> int:
    """Join the Ray cluster at ``address``, wait until ``nodes`` nodes are alive, leave it again.

    Returns the number of alive nodes; a one-line error when they are not there within ``timeout`` s.
    """
    import logging

    import ray

    ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    try:
        deadline = time.monotonic() + timeout
        while True:
            alive = sum(1 for n in ray.nodes() if n.get("Alive"))
            if alive >= nodes or time.monotonic() > deadline:
                break
            time.sleep(poll)
    finally:
        ray.shutdown()
    if alive < nodes:
        raise ConfigError(f"Ray cluster {address}: {alive} of {nodes} node(s) joined within {timeout:.0f} s")
    return alive
