"""A throwaway SLURM cluster on this machine for the tests: a private ``munged`` (its own socket),
``slurmctld`` and two ``slurmd`` (nodes ``n1`` and ``n2``, one CPU each, distinct ports, both at
127.0.0.1) from a configuration written into a scratch folder. Needs Debian's ``slurm-wlm`` and
``munge`` and root (``slurmd`` runs jobs as their users); :func:`missing` says what is absent.

Clients reach it through ``SLURM_CONF`` (:attr:`SlurmCluster.env`). Requeued jobs start again about
6 s later (``cred_expire=5``: SLURM holds a requeued job for the credential lifetime + 1 s); the
scheduler looks at pending jobs every second.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

NODES = ("n1", "n2")
DAEMONS = ("munged", "slurmctld", "slurmd")


def _which(name: str) -> str | None:
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None)


def missing() -> str | None:
    """Why the cluster cannot start here (a short phrase), or None."""
    absent = [n for n in (*DAEMONS, "sbatch", "squeue", "scontrol") if _which(n) is None]
    if absent:
        return f"missing {', '.join(absent)} (Debian: apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "slurmd must run as root"
    if not Path("/etc/munge/munge.key").exists():
        return "no /etc/munge/munge.key (mungekey -c)"
    return None


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class SlurmCluster:
    """Start with :meth:`start`, stop with :meth:`stop` (daemons ended by their pid files)."""

    def __init__(self) -> None:
        # a short path readable by the munge user (the socket folder must be world-executable)
        self.root = Path(tempfile.mkdtemp(prefix="cbslurm-", dir="/tmp"))
        self.root.chmod(0o755)
        self.conf = self.root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    # ------------------------------------------------------------------------------------ setup
    def _write_conf(self) -> None:
        ctl, *node_ports = free_ports(1 + len(NODES))
        r = self.root
        lines = [
            "ClusterName=cbtest",
            "SlurmctldHost=localhost",
            f"SlurmctldPort={ctl}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            f"AuthInfo=socket={r}/munge/munge.socket,cred_expire=5",
            "CredType=cred/munge",
            f"StateSaveLocation={r}/state",
            f"SlurmdSpoolDir={r}/spool-%n",
            f"SlurmctldPidFile={r}/slurmctld.pid",
            f"SlurmdPidFile={r}/slurmd-%n.pid",
            f"SlurmctldLogFile={r}/slurmctld.log",
            f"SlurmdLogFile={r}/slurmd-%n.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "MpiDefault=none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SchedulerType=sched/builtin",
            "SchedulerParameters=sched_interval=1",
            "ReturnToService=2",
            "KillWait=5",
        ]
        for name, port in zip(NODES, node_ports):
            lines.append(
                f"NodeName={name} NodeHostname=localhost NodeAddr=127.0.0.1 Port={port} CPUs=1 "
                "RealMemory=2000 State=UNKNOWN"
            )
        lines.append(f"PartitionName=debug Nodes={','.join(NODES)} Default=YES MaxTime=INFINITE State=UP")
        self.conf.write_text("\n".join(lines) + "\n")
        (r / "state").mkdir()
        for name in NODES:
            (r / f"spool-{name}").mkdir()

    def _start_munged(self) -> None:
        folder = self.root / "munge"
        folder.mkdir(mode=0o755)
        shutil.chown(folder, "munge", "munge")
        cmd = (
            f"{_which('munged')} --socket={folder}/munge.socket --pid-file={folder}/munged.pid "
            f"--log-file={folder}/munged.log --seed-file={folder}/seed --key-file=/etc/munge/munge.key"
        )
        subprocess.run(["su", "-s", "/bin/sh", "munge", "-c", cmd], check=True, timeout=30, capture_output=True)

    def start(self, timeout: float = 60) -> SlurmCluster:
        """Write the configuration, start the daemons, wait until both nodes are idle."""
        self._write_conf()
        self._start_munged()
        run = dict(check=True, timeout=30, capture_output=True, env=self.env)
        subprocess.run([_which("slurmctld"), "-f", str(self.conf)], **run)
        for name in NODES:
            subprocess.run([_which("slurmd"), "-f", str(self.conf), "-N", name], **run)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.cmd("sinfo", "--Node", "--noheader", "--format=%N %t", check=False).stdout.split()
            if out.count("idle") == len(NODES):
                return self
            time.sleep(0.5)
        raise RuntimeError(f"SLURM nodes not idle within {timeout} s: {self.logs()}")

    # ---------------------------------------------------------------------------------- clients
    def cmd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """A SLURM client command against this cluster."""
        return subprocess.run(list(args), capture_output=True, text=True, timeout=60, env=self.env, check=check)

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as ``{key: value}`` (JobState, Restarts, …)."""
        out = self.cmd("scontrol", "show", "job", "--oneliner", job_id, check=False).stdout
        return dict(f.split("=", 1) for f in out.split() if "=" in f)

    def wait_job(self, job_id: str, states: tuple[str, ...], timeout: float, poll: float = 1.0) -> dict[str, str]:
        """Wait until the job is in one of ``states``; its record (fails with the logs on a timeout)."""
        deadline = time.monotonic() + timeout
        info: dict[str, str] = {}
        while time.monotonic() < deadline:
            info = self.job(job_id)
            if info.get("JobState") in states:
                return info
            time.sleep(poll)
        raise AssertionError(f"job {job_id} not in {states} within {timeout} s: {info}\n{self.logs()}")

    def logs(self) -> str:
        """The tail of the daemons' logs (for failure messages)."""
        out = []
        for log in sorted(self.root.glob("*.log")):
            out.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(out)

    # -------------------------------------------------------------------------------------- stop
    def stop(self) -> None:
        """Cancel what is left, end the daemons (by pid file) and delete the scratch folder."""
        if self.conf.exists():
            jobs = self.cmd("squeue", "--noheader", "--format=%i", check=False).stdout.split()
            if jobs:
                self.cmd("scancel", *jobs, check=False)
                time.sleep(1)
        pidfiles = [self.root / f"slurmd-{n}.pid" for n in NODES]
        pidfiles += [self.root / "slurmctld.pid", self.root / "munge" / "munged.pid"]
        for pidfile in pidfiles:
            try:
                os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        time.sleep(0.5)
        shutil.rmtree(self.root, ignore_errors=True)
