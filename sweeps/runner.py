"""Run a sweep on Ray Tune: start (or join) Ray, build the Tuner, run or resume it.

* :func:`run_sweep` — a new sweep: validate everything, generate the phantom cohort once in
  the driver, write ``<storage>/<name>/sweep.yaml``, run the Tuner, write ``results.csv``.
* :func:`resume_sweep` — finish a sweep whose driver died (``cordbench sweep --resume DIR``):
  ``Tuner.restore`` keeps finished trials and continues unfinished ones from their last
  checkpoint. The searcher's state is saved by this module after every finished trial
  (``<sweep>/searcher/``) and loaded back into the restored searcher before the run resumes
  (Ray's own experiment snapshot, if newer and consistent with the trial list, then wins).
  Before Ray reads anything, every pickle of the folder must carry this user's signature
  (:mod:`sweeps.signing`): a sweep folder from elsewhere never runs code on resume.
* :class:`~sweeps.sweep_callback.SweepCallback` — driver-side Tune callback: refreshes ``results.csv`` (atomically)
  whenever a trial starts, finishes, fails or is recovered, and saves the searcher state.

Ray stays on the loopback interface in laptop mode (``127.0.0.1``, no dashboard, no usage
statistics); ``address`` joins an existing cluster (``auto`` or ``ray://host:port``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from core.errors import ConfigError
from sweeps import signing
from sweeps.config import Dim, Sweep, is_uri, load_sweep, resolved_yaml
from sweeps.records import RESULTS_FILE, SWEEP_FILE, TUNER_FILE, read_results_csv
from sweeps.sweep_callback import SweepCallback, inner_searcher, restore_searcher
from sweeps.trainable import TrialSetup, train_trial, trial_resources

#: Environment set in the driver (and passed to workers of a joined cluster) unless already set.
ENV_DEFAULTS = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keeps a local Ray on 127.0.0.1 (with it unset, ray.init on loopback can hang)
    "RAY_USAGE_STATS_ENABLED": "0",  # never phone home
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "TUNE_GLOBAL_CHECKPOINT_S": "2",  # experiment snapshot at most every 2 s (resume point)
    "RAY_DEDUP_LOGS": "1",
    "WANDB_SILENT": "true",
    "WANDB_CONSOLE": "off",
    "PYTHONWARNINGS": "ignore::DeprecationWarning",
}


@dataclass
class SweepOutcome:
    """What a finished (or resumed) sweep leaves behind."""

    sweep_dir: str
    results_csv: str
    frame: Any
    seconds: float


def set_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Set :data:`ENV_DEFAULTS` (and ``extra``) where not already set; returns what workers should get."""
    env = {**ENV_DEFAULTS, **(extra or {})}
    for k, v in env.items():
        os.environ.setdefault(k, v)
    return {k: os.environ[k] for k in env}


def trial_dirname(trial: Any) -> str:
    """Ray's per-trial folder (results, Tune checkpoints) beside ``trials/`` — ``tune_<trial id>``."""
    return f"tune_{trial.trial_id}"


# ----------------------------------------------------------------------------------------- Ray
def init_ray(
    address: str | None = None,
    num_cpus: int | None = None,
    log_to_driver: bool = False,
    env: dict[str, str] | None = None,
) -> bool:
    """Start a local Ray on loopback, or join ``address``; returns True if this call started Ray."""
    import logging

    import ray

    if ray.is_initialized():
        return False
    # the local cluster stays on 127.0.0.1 with Ray's default token authentication; its notice
    # ("Token authentication is enabled …") would be the only stray line of a one-line error
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    if address:
        kwargs: dict[str, Any] = {"runtime_env": {"env_vars": dict(env or {})}, "log_to_driver": log_to_driver}
        if not address.startswith("ray://"):
            kwargs["logging_level"] = logging.WARNING
        ray.init(address=address, **kwargs)
    else:
        # address="local": always a new Ray of our own, never another user's `ray start` on this machine
        ray.init(
            address="local",
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=log_to_driver,
            logging_level=logging.WARNING,
            configure_logging=True,
        )
    return True


# ------------------------------------------------------------------------------------ building
def param_space(dims: Iterable[Dim]) -> dict[str, Any]:
    """Ray Tune search space: ``{dotted key: tune domain}``."""
    space: dict[str, Any] = {}
    for d in dims:
        if d.kind == "grid":
            space[d.key] = tune.grid_search(d.ray_values())
        elif d.kind == "choice":
            space[d.key] = tune.choice(d.ray_values())
        elif d.kind == "uniform":
            space[d.key] = tune.uniform(float(d.values[0]), float(d.values[1]))
        elif d.kind == "loguniform":
            space[d.key] = tune.loguniform(float(d.values[0]), float(d.values[1]))
        elif d.kind == "randint":
            space[d.key] = tune.randint(int(d.values[0]), int(d.values[1]) + 1)  # high inclusive
        else:  # pragma: no cover - parse_dim rejects other kinds
            raise ConfigError(f"unknown distribution {d.kind!r} for {d.key!r}")
    return space


def build_searcher(sweep: Sweep):
    """``None`` → Tune's grid/random variant generator (seeded); ``optuna`` → OptunaSearch (TPE, seeded)."""
    s = sweep.search
    if s["algorithm"] == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=int(s["seed"]), n_startup_trials=int(s["n_startup_trials"]))
        return OptunaSearch(sampler=sampler)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    # TuneConfig.max_concurrent_trials is ignored for a generator instance: it takes the limit itself
    return BasicVariantGenerator(random_state=int(s["seed"]), max_concurrent=int(s["max_concurrent_trials"] or 0))


def build_scheduler(sweep: Sweep):
    """FIFO, or ASHA early stopping over ``time_attr`` (epochs) up to ``max_t``."""
    sch = sweep.scheduler
    if sch["name"] == "asha":
        from ray.tune.schedulers import ASHAScheduler

        return ASHAScheduler(
            time_attr=sch["time_attr"],
            max_t=int(sch["max_t"] or sweep.max_epochs()),
            grace_period=int(sch["grace_period"]),
            reduction_factor=float(sch["reduction_factor"]),
        )
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def make_setup(sweep: Sweep) -> TrialSetup:
    return TrialSetup(
        run_config=sweep.run_config,
        dims=list(sweep.dims),
        sweep_name=sweep.name,
        sweep_dir=sweep.sweep_dir,
        resources=dict(sweep.resources),
        sweep_file=str(sweep.path),
    )


def make_trainable(setup: TrialSetup):
    """``train_trial`` (DDP trials: ``train_ddp_trial``) with its setup attached and the trial's resources declared."""
    from sweeps.ddp_trial import train_ddp_trial

    fn = train_ddp_trial if setup.ddp else train_trial
    return tune.with_resources(tune.with_parameters(fn, setup=setup), trial_resources(setup.resources))


def build_tuner(sweep: Sweep, callback: SweepCallback | None = None) -> tune.Tuner:
    """The Tuner of a new sweep (see :mod:`sweeps.config` for every key used)."""
    from ray.tune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig, Tuner

    searcher = build_searcher(sweep)
    s = sweep.search
    callback = callback or SweepCallback(sweep)
    if s["algorithm"] != "basic":
        callback.searcher = searcher
    storage = sweep.storage if is_uri(sweep.storage) else str(Path(sweep.storage))
    return Tuner(
        make_trainable(make_setup(sweep)),
        param_space=param_space(sweep.dims),
        tune_config=TuneConfig(
            metric=sweep.metric,
            mode=s["mode"],
            search_alg=searcher,
            scheduler=build_scheduler(sweep),
            num_samples=int(s["num_samples"]),
            max_concurrent_trials=s["max_concurrent_trials"] if s["algorithm"] != "basic" else None,
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=RunConfig(
            name=sweep.name,
            storage_path=storage,
            stop=dict(sweep.raw["stop"]) or None,
            failure_config=FailureConfig(
                max_failures=int(sweep.raw["failure"]["max_failures"]),
                fail_fast=bool(sweep.raw["failure"]["fail_fast"]),
            ),
            checkpoint_config=CheckpointConfig(num_to_keep=int(sweep.raw["checkpoint"]["num_to_keep"])),
            callbacks=[callback],
            verbose=int(sweep.raw["ray"]["verbose"]),
        ),
    )


# ------------------------------------------------------------------------------------ callback
# ------------------------------------------------------------------------------------- running
def prepare_data(sweep: Sweep) -> None:
    """Generate the phantom cohort once in the driver and pin ``data.root`` (absolute) for all trials."""
    d = sweep.run_config["data"]
    swept = {dim.key for dim in sweep.dims}
    if any(k.startswith("data.phantom") or k in ("data.root", "data.name") for k in swept):
        return  # trials differ in data: each generates / reads its own
    if d["name"] == "phantom":
        from data_modules.registry import build_datamodule

        t0 = time.perf_counter()
        root = build_datamodule(d).root()
        d["root"] = str(Path(root).resolve())
        print(f"phantom cohort: {d['root']} ({time.perf_counter() - t0:.1f} s)", flush=True)
    elif d.get("root") and not is_uri(str(d["root"])):
        d["root"] = str(Path(d["root"]).expanduser().resolve())
    split_file = d["split"].get("file")
    if split_file:
        d["split"]["file"] = str(Path(split_file).expanduser().resolve())


def resolve_gpus(sweep: Sweep) -> float:
    """``resources.gpu: auto`` → 1 GPU per trial (per DDP worker) if the (joined) cluster has GPUs now, else 0."""
    workers = int(sweep.resources.get("workers") or 1)
    if sweep.resources.get("gpu") == "auto" and workers > 1:
        import ray

        sweep.resources["gpu"] = workers if ray.cluster_resources().get("GPU", 0) >= workers else 0
    if sweep.resources.get("gpu") == "auto":
        import ray

        sweep.resources["gpu"] = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    return float(sweep.resources["gpu"])


def check_feasible(sweep: Sweep, strict: bool) -> None:
    """Refuse (``strict``: a cluster that cannot grow) or warn about a trial no node could ever hold.

    Non-DDP trial: one node must have the trial's CPUs and GPUs. DDP trial (``workers`` > 1 or
    ``gpu`` > 1): the cluster needs room for every worker (its CPU share, and one GPU each on GPU).
    """
    import ray

    from sweeps.ddp_trial import worker_resources

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    cpu, gpu = float(sweep.resources["cpu"]), float(sweep.resources.get("gpu") or 0)
    big_cpu = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    big_gpu = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
    setup = make_setup(sweep)
    if setup.ddp:
        per = worker_resources(setup)
        slots = sum(
            min(int(n.get("CPU", 0) // per["CPU"] + 1e-9), int(n.get("GPU", 0)) if "GPU" in per else 1 << 30)
            for n in nodes
        )
        if slots >= setup.workers:
            return
        key = "resources.gpu" if "GPU" in per else "resources.cpu"
        msg = (
            f"key '{key}': a DDP trial asks {setup.workers} worker(s) with {per['CPU']:g} CPU(s)"
            f"{' and 1 GPU' if 'GPU' in per else ''} each but the Ray cluster has room for {slots} "
            f"(largest node: {big_cpu:g} CPU(s), {big_gpu:g} GPU(s))"
        )
    else:
        if any(n.get("CPU", 0) >= cpu and n.get("GPU", 0) >= gpu for n in nodes):
            return
        key = "resources.cpu" if big_cpu < cpu else "resources.gpu"
        msg = (
            f"key '{key}': a trial asks {cpu:g} CPU(s) and {gpu:g} GPU(s) but the largest node of the Ray "
            f"cluster has {big_cpu:g} CPU(s) and {big_gpu:g} GPU(s)"
        )
    if strict:
        raise ConfigError(f"{msg}: it would wait forever", sweep.path)
    import warnings

    warnings.warn(f"{sweep.path}: {msg}; the trials wait until an autoscaler adds such a node")


def _searcher_env(sweep: Sweep, pending: int | None = None) -> dict[str, str]:
    """``TUNE_MAX_PENDING_TRIALS_PG``: with a searcher Tune keeps one pending trial unless told."""
    if sweep.search["algorithm"] == "basic":
        return {}
    n = pending or sweep.search["max_concurrent_trials"] or int(sweep.raw["ray"]["num_cpus"] or os.cpu_count() or 1)
    return {"TUNE_MAX_PENDING_TRIALS_PG": str(max(1, int(n)))}


def _write_sweep_yaml(sweep: Sweep) -> None:
    from sweeps import storage

    if not is_uri(sweep.sweep_dir):
        Path(sweep.sweep_dir).mkdir(parents=True, exist_ok=True)
    storage.write_text(storage.join(sweep.sweep_dir, SWEEP_FILE), resolved_yaml(sweep))
    _write_provenance(sweep, ended=False)


def _write_provenance(sweep: Sweep, ended: bool) -> None:
    """The sweep folder's ``provenance.json`` and ``pip_freeze.txt`` (:mod:`runs.provenance`; each trial has its own)."""
    import json

    from runs import provenance
    from runs.run_folder import PIP_FREEZE, PROVENANCE
    from sweeps import storage

    path = storage.join(sweep.sweep_dir, PROVENANCE)
    record = (json.loads(storage.read_text(path)) if ended and storage.exists(path) else None) or provenance.collect()
    if ended:
        record["ended"] = provenance.now()
    else:
        storage.write_text(storage.join(sweep.sweep_dir, PIP_FREEZE), "".join(f"{x}\n" for x in provenance.freeze()))
    storage.write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")


def _finish(sweep: Sweep, tuner: Any, t0: float, started: bool) -> SweepOutcome:
    """Run the Tuner; the callback wrote the final results.csv at the experiment's end."""
    grid = tuner.fit()
    _write_provenance(sweep, ended=True)
    try:
        frame = read_results(sweep.sweep_dir)
    except FileNotFoundError:
        raise ConfigError(
            "the sweep ran but its results.csv is not readable here: with a ray:// address the "
            "storage must be a URI or a folder shared with the cluster",
            sweep.sweep_dir,
        ) from None
    if len(frame) < len(grid):  # more rows: finished trials kept from earlier (sweeps.results.keep_earlier_rows)
        raise RuntimeError(f"results.csv has {len(frame)} rows for {len(grid)} trials in {sweep.sweep_dir}")
    if started:
        import ray

        ray.shutdown()
    from sweeps import storage

    return SweepOutcome(sweep.sweep_dir, storage.join(sweep.sweep_dir, RESULTS_FILE), frame, time.perf_counter() - t0)


def run_sweep(sweep: Sweep, address: str | None = None, overwrite: bool = False) -> SweepOutcome:
    """Run a new sweep (already loaded and validated) to completion.

    ``overwrite`` first deletes an earlier sweep of the same name (a folder holding ``sweep.yaml``).
    """
    t0 = time.perf_counter()
    if is_uri(sweep.sweep_dir):
        _check_remote_sweep(sweep, overwrite)
    else:  # before the data, Ray or any trial: a file or a read-only folder is one line
        from core.outputs import check_output_dir

        check_output_dir(sweep.storage, what="sweep storage folder (storage: / --storage)")
        check_output_dir(sweep.sweep_dir, what="sweep folder")
    folder = Path(sweep.sweep_dir)
    if overwrite and not is_uri(sweep.sweep_dir) and (folder / SWEEP_FILE).exists():
        import shutil

        shutil.rmtree(folder)
    if folder.exists() and not is_uri(sweep.sweep_dir) and any(folder.glob("experiment_state-*.json")):
        raise ConfigError(
            f"sweep folder {sweep.sweep_dir} already holds a sweep: resume it with "
            f"`cordbench sweep --resume {sweep.sweep_dir}`, start again with --overwrite, or "
            "choose another name/--storage",
            sweep.path,
        )
    env = set_environment(_searcher_env(sweep))
    prepare_data(sweep)
    started = init_ray(address, sweep.raw["ray"]["num_cpus"], bool(sweep.raw["ray"]["log_to_driver"]), env)
    try:
        resolve_gpus(sweep)
        check_feasible(sweep, strict=started and not address)
    except BaseException:
        if started:
            import ray

            ray.shutdown()
        raise
    _write_sweep_yaml(sweep)
    signer = signing.Signer(sweep.sweep_dir)
    tuner = build_tuner(sweep, SweepCallback(sweep, None, signer))
    signer.sign_stored(TUNER_FILE)
    return _finish(sweep, tuner, t0, started)


def _check_remote_sweep(sweep: Sweep, overwrite: bool) -> None:
    """URI storage: reachable and writable (one-line error otherwise), no earlier sweep of this
    name unless ``overwrite`` (which deletes it)."""
    from sweeps import storage

    storage.check_access(sweep.storage)
    if not storage.exists(storage.join(sweep.sweep_dir, SWEEP_FILE)):
        return
    if overwrite:
        storage.delete_dir(sweep.sweep_dir)
        return
    raise ConfigError(
        f"sweep folder {sweep.sweep_dir} already holds a sweep: resume it with "
        f"`cordbench sweep --resume {sweep.sweep_dir}`, start again with --overwrite, or "
        "choose another name/--storage",
        sweep.path,
    )


def resume_sweep(sweep_dir: str | Path, address: str | None = None) -> SweepOutcome:
    """Finish an interrupted sweep: finished trials are kept, unfinished ones continue, the
    searcher continues from its saved state."""
    from ray.tune import Tuner

    t0 = time.perf_counter()
    sweep_dir = str(sweep_dir)
    local = not is_uri(sweep_dir)
    if local:
        sweep_dir = str(Path(sweep_dir).expanduser().resolve())
        if not Path(sweep_dir, SWEEP_FILE).exists():
            raise ConfigError("not a sweep folder (no sweep.yaml)", sweep_dir)
        signing.verify(sweep_dir)  # before Ray unpickles anything of the folder
        from core.outputs import check_output_dir

        check_output_dir(sweep_dir, what="sweep folder")  # resuming writes into it
        sweep = load_sweep(Path(sweep_dir, SWEEP_FILE), check_data=False)
    else:
        import tempfile

        from sweeps import storage

        sweep_dir = sweep_dir.rstrip("/")
        storage.check_access(sweep_dir)
        storage.delete_partials(sweep_dir)  # left by writers the dead driver's kill cut short
        text = storage.read_text_or_none(storage.join(sweep_dir, SWEEP_FILE))
        if text is None:
            raise ConfigError(f"not a sweep folder (no {SWEEP_FILE})", sweep_dir)
        tmp = Path(tempfile.mkdtemp(prefix="cordbench-sweep-"), SWEEP_FILE)
        tmp.write_text(text)
        sweep = load_sweep(tmp, check_data=False)
    signing.verify(sweep_dir)  # before Ray unpickles anything of the folder
    # the folder may have moved since: storage/name follow the folder being resumed
    sweep.raw["storage"] = str(Path(sweep_dir).parent) if local else sweep_dir.rsplit("/", 1)[0]
    sweep.raw["name"] = sweep.name = Path(sweep_dir).name if local else sweep_dir.rsplit("/", 1)[1]
    if not Tuner.can_restore(sweep_dir):
        raise ConfigError("no Ray Tune experiment state to resume (the sweep never started?)", sweep_dir)
    env = set_environment(_searcher_env(sweep))
    started = init_ray(address, sweep.raw["ray"]["num_cpus"], bool(sweep.raw["ray"]["log_to_driver"]), env)
    try:
        check_feasible(sweep, strict=started and not address)
    except BaseException:
        if started:
            import ray

            ray.shutdown()
        raise
    tuner = Tuner.restore(
        sweep_dir, trainable=make_trainable(make_setup(sweep)), resume_unfinished=True, resume_errored=False
    )
    internal = tuner._local_tuner
    if internal is None:
        raise ConfigError(
            "--resume needs the driver on the cluster (run it on the head, e.g. with "
            "`sweeps/run.py --resume DIR` through `ray submit`), not through ray:// (Ray Client)",
            sweep_dir,
        )
    search_alg = internal._tune_config.search_alg
    searcher = inner_searcher(search_alg) if sweep.search["algorithm"] != "basic" else None
    if searcher is not None:
        restore_searcher(searcher, sweep_dir)
    internal.get_run_config().callbacks = [SweepCallback(sweep, searcher, signing.Signer(sweep_dir))]
    return _finish(sweep, tuner, t0, started)


def read_results(sweep_dir: str | Path):
    """results.csv of a sweep folder (or URI) as a DataFrame."""
    import io

    from sweeps import storage

    return read_results_csv(io.StringIO(storage.read_text(storage.join(str(sweep_dir), RESULTS_FILE))))
