"""``cordbench slurm``: sweeps on a SLURM cluster.

* ``cordbench slurm submit CONFIG --storage DIR [--nodes N --gpus-per-node G --time T …]`` validates
  the sweep, fills ``configs/cluster/slurm.sbatch`` in and submits it with ``sbatch``;
* ``cordbench slurm run CONFIG --storage DIR --address HOST:PORT --nodes N`` is what the job runs on its
  first node: wait for the job's Ray nodes, then ``cordbench sweep CONFIG --storage DIR`` — or
  ``cordbench sweep --resume <DIR>/<name>`` when that folder already holds the sweep (a requeued job,
  the same sweep submitted again).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from core.ranges import Range, add_number

HELP = "run a sweep on a SLURM cluster: submit fills configs/cluster/slurm.sbatch in and calls sbatch"


def _sweep_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="sweep YAML (configs/sweeps/*.yaml or a bare name such as quickstart)")
    p.add_argument(
        "--storage",
        metavar="DIR",
        help="sweep storage every node reaches: a shared folder or s3://, gs:// (default: the sweep file's storage)",
    )
    p.add_argument(
        "--override", action="append", default=[], metavar="KEY=VALUE", help="sweep key override (repeatable)"
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="slurm_command", metavar="{submit,run}", required=True)
    s = sub.add_parser(
        "submit",
        help="validate a sweep, fill the batch script in and submit it with sbatch",
        description="Validate the sweep, fill configs/cluster/slurm.sbatch in (the allocation, the sweep and "
        "its storage) and submit it with sbatch; prints the job id and the sweep folder.",
    )
    _sweep_options(s)
    add_number(
        s,
        "--nodes",
        kind=int,
        range=Range(1, 100_000),
        default=1,
        help="nodes of the job, one Ray node each (default 1)",
    )
    add_number(s, "--gpus-per-node", kind=int, range=Range(0, 1024), default=0, help="GPUs per node (0: CPU nodes)")
    add_number(
        s, "--cpus-per-node", kind=int, range=Range(1, 1_000_000), help="CPUs per node for Ray (default: template)"
    )
    s.add_argument("--time", help="time limit, e.g. 12:00:00 or 2-00:00:00 (default: the template's)")
    s.add_argument("--partition", help="SLURM partition")
    s.add_argument("--account", help="SLURM account")
    add_number(
        s,
        "--signal-before",
        kind=int,
        range=Range(1, 86_400),
        default=300,
        metavar="SECONDS",
        help="stop the sweep and requeue the job this long before the time limit (default 300)",
    )
    s.add_argument("--job-name", help="default: cordbench-<sweep name>")
    add_number(s, "--ray-port", kind=int, range=Range(1, 65535), default=6379, help="Ray head's port (default 6379)")
    s.add_argument(
        "--job-dir",
        default="outputs/slurm",
        metavar="DIR",
        help="where the filled batch script and the job's output go (default outputs/slurm)",
    )
    s.add_argument(
        "--template", default=None, metavar="FILE", help="batch script template (configs/cluster/slurm.sbatch)"
    )
    s.add_argument(
        "--node-local-ok",
        action="store_true",
        help="accept a node-local storage path (/tmp, $TMPDIR, …) that is the same folder on every node",
    )
    s.add_argument("--dry-run", action="store_true", help="write the batch script and print its path; do not submit")
    r = sub.add_parser(
        "run",
        help="inside the job: wait for the Ray nodes, run the sweep or resume it from its storage",
        description="What the batch script runs on the job's first node: wait until --nodes Ray nodes are alive, "
        "then run the sweep, or resume it when its folder already holds it (a requeued job).",
    )
    _sweep_options(r)
    r.add_argument("--address", required=True, help="the job's Ray head, HOST:PORT")
    add_number(r, "--nodes", kind=int, range=Range(1, 100_000), default=1, help="Ray nodes to wait for (default 1)")
    add_number(
        r, "--wait", range=Range(0, 86_400), default=600, metavar="SECONDS", help="how long to wait (default 600)"
    )


def run(args: argparse.Namespace) -> int:
    if args.slurm_command == "submit":
        return submit(args)
    return run_in_job(args)


def submit(args: argparse.Namespace) -> int:
    from core.errors import ConfigError
    from sweeps import slurm
    from sweeps.config import is_uri, load_sweep

    if args.storage is not None:
        slurm.check_shared_storage(args.storage, args.node_local_ok)
    sbatch = None if args.dry_run else slurm.find_sbatch()
    template = Path(args.template) if args.template else slurm.TEMPLATE
    try:
        text = template.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the batch script template: {exc.strerror}", template) from None
    sweep = load_sweep(args.config, overrides=args.override, storage=args.storage)
    slurm.check_shared_storage(sweep.storage, args.node_local_ok)
    job_dir = Path(args.job_dir).expanduser().resolve()
    settings = slurm.JobSettings(
        config=str(sweep.path.resolve()),
        storage=sweep.storage if is_uri(sweep.storage) else str(Path(sweep.storage).resolve()),
        job_name=args.job_name or f"cordbench-{sweep.name}",
        output=str(job_dir / f"{sweep.name}-%j.out"),
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        cpus_per_node=args.cpus_per_node,
        time=args.time,
        signal_before=args.signal_before,
        partition=args.partition,
        account=args.account,
        bin_dir=str(Path(sys.executable).parent),
        workdir=str(Path.cwd()),
        ray_port=args.ray_port,
        sweep_args=[a for o in args.override for a in ("--override", o)],
    )
    slurm.check_allocation(sweep, settings, text)
    script_text = slurm.fill_template(text, settings, template)
    job_dir.mkdir(parents=True, exist_ok=True)
    script = job_dir / f"{sweep.name}-{time.strftime('%Y%m%d-%H%M%S')}.sbatch"
    script.write_text(script_text)
    print(f"sweep {sweep.name}: {sweep.n_trials} trial(s), {sweep.n_validated} config(s) validated")
    print(f"batch script: {script}")
    if args.dry_run:
        return 0
    job_id = slurm.submit(script, sbatch)
    print(f"submitted batch job {job_id}")
    print(f"sweep folder: {sweep.sweep_dir}")
    print(f"job output: {settings.output.replace('%j', job_id)}   (squeue -j {job_id})")
    return 0


def run_in_job(args: argparse.Namespace) -> int:
    from cordbench.commands import sweep as sweep_command
    from sweeps import slurm
    from sweeps.config import load_sweep

    sweep = load_sweep(args.config, overrides=args.override, storage=args.storage, validate_all=False)
    alive = slurm.wait_for_nodes(args.address, args.nodes, timeout=args.wait)
    print(f"Ray cluster {args.address}: {alive} node(s)", flush=True)
    if slurm.sweep_started(sweep.sweep_dir):
        print(f"resuming the sweep in {sweep.sweep_dir}", flush=True)
        ns = dict(config=None, resume=sweep.sweep_dir, storage=None, override=[])
    else:
        ns = dict(config=args.config, resume=None, storage=args.storage, override=list(args.override))
    return sweep_command.run(argparse.Namespace(address=args.address, check=False, overwrite=False, **ns))
