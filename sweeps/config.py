"""Sweep YAML: schema, loading, and validation of every trial before any trial starts.

Why over ~450 lines: the sweep schema, the one-line errors naming each key, and the validation of
every trial config against that schema belong to one contract (the sweep file); most of the length
is the schema's documentation below.

A sweep file names a base training config (a run config, see :mod:`runs.config`),
run-config values shared by all trials, a search space over dotted run-config keys, and
how Ray Tune explores it::

    name: ablation_skips                 # folder <storage>/<name>/ (default: the file's stem)
    base: [configs/debug.yaml]           # run config file(s); relative to the sweep file, cwd or repo
    config:                              # run-config values for every trial (validated like `cordbench fit`)
      model: {name: sattisunet, preset: small}
    space:                               # dotted run-config key -> one distribution
      model.options.skip_connections: {grid: [0, 1, 2, 3]}
      model.lr: {loguniform: [1.0e-4, 1.0e-2]}
    search: {algorithm: basic, num_samples: 1, metric: val_dice, mode: max, seed: 0,
             max_concurrent_trials: null}
    scheduler: {name: fifo}              # or {name: asha, grace_period: 1, reduction_factor: 2, max_t: null}
    stop: {}                             # e.g. {epoch: 5} or {val_dice: 0.99}
    resources: {cpu: 1, gpu: 0}          # per trial; gpu < 1 = fractional, gpu > 1 = DDP workers;
                                         # {workers: N, cpu: K}: N DDP processes on CPU (gpu: N: one GPU each)
    failure: {max_failures: 2, fail_fast: false}
    storage: outputs/sweeps              # local folder or a URI (s3://, gs://)

Distributions: ``grid`` (every value, crossed with the other grids), ``choice`` (one at
random per sample), ``uniform`` / ``loguniform`` ``[low, high]``, ``randint`` ``[low, high]``
(both ends included). Values may be lists (e.g. ``depths``); such categories are carried
through Ray as JSON strings and decoded in the trial.

Validation (:func:`load_sweep`): unknown or mistyped sweep keys, unknown run-config keys,
unknown models or knobs, impossible knob combinations (``num_heads`` not dividing the
embedding, ``skip_connections`` beyond the stages, …) and missing data sets are rejected
with the sweep file and the key named. Every combination of the categorical values (and
both ends of every continuous range) is resolved into a full run config, passed through
:func:`runs.config.validate`, and its network is instantiated (without the random weight
initialisation, which dominates the build time) to catch impossible knob combinations.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core import schema, yamlio
from core.errors import ConfigError, CordbenchError
from core.paths import REPO_ROOT, find_config
from core.schema import SweepConfig
from runs.config import DEFAULTS, dump, fill_recipe, load_yaml, merge, nest, network_options, parse_override, validate
from sweeps.records import SWEEP_FILE

#: Sweep keys and defaults, from the schema (:class:`core.schema.SweepConfig`), without the free-form mappings
#: (``config``, ``space``, ``stop`` and ``source``).
_FREE_FORM = tuple(k.name for k in schema.leaves(SweepConfig).values() if k.free_form)
SWEEP_DEFAULTS: dict[str, Any] = {k: v for k, v in schema.defaults(SweepConfig).items() if k not in _FREE_FORM}
KINDS = ("grid", "choice", "uniform", "loguniform", "randint")
CATEGORICAL = ("grid", "choice")
ALGORITHMS: tuple[str, ...] = schema.get(SweepConfig, "search.algorithm").choices  # type: ignore[assignment]
SCHEDULERS: tuple[str, ...] = schema.get(SweepConfig, "scheduler.name").choices  # type: ignore[assignment]
#: Validate the full cross product of categorical values up to this many combinations.
MAX_COMBINATIONS = 4096
#: Run-config keys that get their own results.csv column anyway (not repeated as knobs).
FIXED_COLUMNS = {
    "model.name": "model",
    "model.preset": "preset",
    "seed_everything": "seed",
    "data.name": "data",
    "data.task": "task",
}


@dataclass(frozen=True)
class Dim:
    """One search-space dimension over a dotted run-config key."""

    key: str
    kind: str
    values: tuple[Any, ...]  # categories, or (low, high)
    encoded: bool = False  # categories are JSON strings in Ray (lists / mappings)

    @property
    def column(self) -> str:
        """results.csv column: ``model.options.X`` → ``X``, other keys keep their dotted name."""
        return self.key.split(".", 2)[2] if self.key.startswith("model.options.") else self.key

    def ray_values(self) -> list[Any]:
        """Categories as Ray sees them (JSON strings when encoded)."""
        return [encode(v) for v in self.values] if self.encoded else list(self.values)

    def validation_values(self) -> list[Any]:
        """Values checked before the sweep: every category, or both ends of a range."""
        if self.kind in CATEGORICAL:
            return list(self.values)
        lo, hi = self.values
        return [lo, hi] if self.kind != "randint" else [int(lo), int(hi)]


@dataclass
class Sweep:
    """A loaded and validated sweep."""

    path: Path  # the sweep file (or sweep.yaml of a sweep being resumed)
    name: str
    raw: dict[str, Any]  # sweep mapping with defaults filled (written as sweep.yaml)
    run_config: dict[str, Any]  # resolved base run config shared by every trial
    dims: list[Dim] = field(default_factory=list)
    n_validated: int = 0  # trial configs validated before the start

    @property
    def search(self) -> dict[str, Any]:
        return self.raw["search"]

    @property
    def scheduler(self) -> dict[str, Any]:
        return self.raw["scheduler"]

    @property
    def resources(self) -> dict[str, Any]:
        return self.raw["resources"]

    @property
    def storage(self) -> str:
        return str(self.raw["storage"])

    @property
    def is_remote_storage(self) -> bool:
        return is_uri(self.storage)

    @property
    def sweep_dir(self) -> str:
        """``<storage>/<name>`` (local absolute path or URI)."""
        return (
            f"{self.storage.rstrip('/')}/{self.name}" if self.is_remote_storage else str(Path(self.storage) / self.name)
        )

    @property
    def metric(self) -> str:
        return metric_name(self.search["metric"])

    @property
    def grid_size(self) -> int:
        """Number of grid points (1 without grids)."""
        n = 1
        for d in self.dims:
            if d.kind == "grid":
                n *= len(d.values)
        return n

    @property
    def n_trials(self) -> int:
        """Trials the sweep will run: grid points × num_samples (basic) or num_samples (optuna)."""
        n = int(self.search["num_samples"])
        return n * self.grid_size if self.search["algorithm"] == "basic" else n

    def knob_columns(self) -> list[str]:
        """results.csv columns of the swept knobs (fixed columns such as model/seed excluded)."""
        return [d.column for d in self.dims if d.key not in FIXED_COLUMNS]

    def max_epochs(self) -> int:
        """Largest ``trainer.max_epochs`` any trial can have (a model's recipe may set it per model)."""
        for d in self.dims:
            if d.key == "trainer.max_epochs":
                return int(max(d.validation_values()))
        picks = [d for d in self.dims if d.key in ("model.name", "model.preset") and d.kind in CATEGORICAL]
        epochs = []
        for values in itertools.product(*(d.validation_values() for d in picks)):
            try:
                cfg = apply_params(self.run_config, {d.key: v for d, v in zip(picks, values)}, str(self.path))
            except CordbenchError:
                continue  # a combination trial validation rejects, with its own message
            epochs.append(int(cfg["trainer"]["max_epochs"]))
        return max(epochs or [int(fill_recipe(self.run_config)["trainer"]["max_epochs"])])

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.raw, sort_keys=False)


# ----------------------------------------------------------------------------------------- helpers
def is_uri(path: str) -> bool:
    """True for ``scheme://…`` storage (s3, gs, …); local paths are False."""
    return "://" in str(path)


def metric_name(name: str) -> str:
    """Lightning's ``val/dice`` is reported to Tune as ``val_dice``."""
    return str(name).replace("/", "_")


def encode(value: Any) -> Any:
    """Categorical value as Ray carries it: JSON for lists and mappings, as-is otherwise."""
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else value


def decode_params(params: Mapping[str, Any], dims: Iterable[Dim]) -> dict[str, Any]:
    """Ray's sampled ``{dotted key: value}`` → plain values (JSON-encoded categories decoded)."""
    enc = {d.key for d in dims if d.encoded}
    out = {}
    for k, v in params.items():
        out[k] = json.loads(v) if k in enc and isinstance(v, str) else v
    return out


def apply_params(run_config: Mapping[str, Any], params: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A trial's run config: the base with each dotted key set (merged and type-checked), then the
    trial's model preset's training recipe in the keys still null (:mod:`runs.recipes`)."""
    cfg = copy.deepcopy(dict(run_config))
    for key, value in params.items():
        cfg = merge(cfg, nest(key.split("."), value), source)
    return fill_recipe(cfg)


def _resolve_file(name: str, sweep_path: Path) -> Path:
    p = Path(name).expanduser()
    if p.is_absolute():
        return p
    for root in (sweep_path.parent, Path.cwd(), REPO_ROOT):
        if (root / p).exists():
            return (root / p).resolve()
    raise ConfigError(
        f"key 'base': run config {name!r} not found (looked beside the sweep file, in the "
        "current folder and in the repository)",
        sweep_path,
    )


# ------------------------------------------------------------------------------------------ parsing
def parse_dim(key: str, spec: Any, where: str) -> Dim:
    """``{grid: [...]}`` / ``{choice: [...]}`` / ``{uniform: [lo, hi]}`` … → :class:`Dim`."""
    if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in KINDS:
        raise ConfigError(
            f"key 'space.{key}' must be a mapping with one of {', '.join(KINDS)} (e.g. {{grid: [a, b]}}), got {spec!r}",
            where,
        )
    kind, values = next(iter(spec.items()))
    if not isinstance(values, list) or not values:
        raise ConfigError(f"key 'space.{key}.{kind}' must be a non-empty list, got {values!r}", where)
    if kind in CATEGORICAL:
        encoded = any(isinstance(v, (list, tuple, dict)) for v in values)
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise ConfigError(f"key 'space.{key}.{kind}' has duplicated values {values!r}", where)
        return Dim(key, kind, tuple(values), encoded)
    if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ConfigError(f"key 'space.{key}.{kind}' must be [low, high] numbers, got {values!r}", where)
    lo, hi = values
    if not lo < hi:
        raise ConfigError(f"key 'space.{key}.{kind}' needs low < high, got {values!r}", where)
    if kind == "loguniform" and lo <= 0:
        raise ConfigError(f"key 'space.{key}.loguniform' needs low > 0, got {values!r}", where)
    if kind == "randint" and not all(float(v).is_integer() for v in values):
        raise ConfigError(f"key 'space.{key}.randint' needs integers, got {values!r}", where)
    return Dim(key, kind, (lo, hi))


def apply_sweep_overrides(raw: dict[str, Any], overrides: Iterable[str], where: str) -> dict[str, Any]:
    """``--override search.num_samples=4`` / ``config.trainer.max_epochs=1`` /
    ``space.model.lr.loguniform=[1e-4,1e-2]`` / ``storage=/tmp/x`` applied to the raw sweep mapping."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        path, value = parse_override(item)
        src = f"{where}: override {item!r}"
        if path[0] == "space":
            if len(path) < 3 or path[-1] not in KINDS:
                raise ConfigError(
                    "a space override looks like space.<run key>.<grid|choice|uniform|"
                    f"loguniform|randint>=<list>, got {item!r}",
                    where,
                )
            raw.setdefault("space", {})[".".join(path[1:-1])] = {path[-1]: value}
        elif path[0] in ("config", "stop", "source"):
            node = raw.setdefault(path[0], {})
            for part in path[1:-1]:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"cannot set {'.'.join(path)}: {part!r} is not a mapping", src)
            if len(path) == 1:
                raise ConfigError(f"override {item!r} needs a key below {path[0]!r}", where)
            node[path[-1]] = value
        else:
            raw = merge_raw(raw, nest(path, value))
    return raw


def merge_raw(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Plain recursive dict merge (no checks; checks happen in :func:`check_sweep_keys`)."""
    out = copy.deepcopy(dict(base))
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge_raw(out[k], v)
        else:
            out[k] = v
    return out


def check_sweep_keys(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Sweep mapping with defaults filled; unknown keys, wrong types and values out of their declared range
    (:class:`core.schema.SweepConfig`) rejected by name, then the checks across keys."""
    raw = dict(raw)
    free = {k: raw.pop(k) for k in _FREE_FORM if k in raw}
    if isinstance(raw.get("base"), str):
        raw["base"] = [raw["base"]]
    out = merge(copy.deepcopy(SWEEP_DEFAULTS), raw, where, of=SweepConfig)  # types and declared ranges
    for k in _FREE_FORM:
        v = free.get(k)
        if v is None:
            v = {}
        if not isinstance(v, Mapping):
            raise ConfigError(f"key {k!r} must be a mapping, got {v!r}", where)
        out[k] = dict(v)
    s, sch, res = out["search"], out["scheduler"], out["resources"]
    if s["algorithm"] not in ALGORITHMS:
        raise ConfigError(
            f"key 'search.algorithm' must be one of {', '.join(ALGORITHMS)}; got {s['algorithm']!r}", where
        )
    modes = schema.get(SweepConfig, "search.mode").choices
    if s["mode"] not in modes:
        raise ConfigError(f"key 'search.mode' must be {' or '.join(modes)}; got {s['mode']!r}", where)
    if sch["name"] not in SCHEDULERS:
        raise ConfigError(f"key 'scheduler.name' must be one of {', '.join(SCHEDULERS)}; got {sch['name']!r}", where)
    if res["gpu"] is None:
        res["gpu"] = 0
    if res["gpu"] != "auto" and (isinstance(res["gpu"], bool) or not isinstance(res["gpu"], (int, float))):
        raise ConfigError(f"key 'resources.gpu' must be a number or auto; got {res['gpu']!r}", where)
    cpu, gpu = float(res["cpu"]), (0.0 if res["gpu"] == "auto" else float(res["gpu"]))
    if gpu < 0:  # (resources.cpu: its declared range)
        raise ConfigError(f"key 'resources.gpu' must be >= 0 (or auto); got {res['gpu']!r}", where)
    if gpu > 1 and not gpu.is_integer():
        raise ConfigError(
            f"key 'resources.gpu': more than one GPU per trial must be a whole number "
            f"(one DDP worker per GPU), got {res['gpu']!r}",
            where,
        )
    workers = res.get("workers")  # a positive integer (its declared range)
    if workers is not None:
        if workers > 1 and res["gpu"] != "auto" and gpu not in (0.0, float(workers)):
            raise ConfigError(
                f"key 'resources.gpu': a trial of {workers} DDP workers takes 0 GPUs (CPU, gloo) or "
                f"one per worker (gpu: {workers}); got {res['gpu']!r}",
                where,
            )
        if workers > 1 and cpu < workers:
            raise ConfigError(
                f"key 'resources.cpu': {workers} DDP workers need at least {workers} CPUs per trial "
                f"(one each); got {res['cpu']!r}",
                where,
            )
    for k, v in out["stop"].items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"key 'stop.{k}' must be a number (stop when the metric reaches it); got {v!r}", where)
    if not str(out["storage"]).strip():
        raise ConfigError("key 'storage' must be a folder or a URI", where)
    return out


# --------------------------------------------------------------------------------------- validation
@contextlib.contextmanager
def _no_weight_init() -> Iterator[None]:
    """Skip ``torch.nn.init`` random fills while a network is built only to be checked and counted
    (truncated-normal init dominates the build time of transformer networks)."""
    import torch.nn.init as init

    names = (
        "trunc_normal_",
        "normal_",
        "uniform_",
        "kaiming_uniform_",
        "kaiming_normal_",
        "xavier_uniform_",
        "xavier_normal_",
        "orthogonal_",
    )
    saved = {n: getattr(init, n) for n in names if hasattr(init, n)}
    try:
        for n in saved:
            setattr(init, n, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for n, f in saved.items():
            setattr(init, n, f)


def network_check(cfg: Mapping[str, Any], cache: dict[str, int] | None = None) -> int:
    """Instantiate the trial's network (no random init); returns its parameter count.

    Raises :class:`ConfigError` for impossible knob combinations (the network's own
    ``ValueError`` message, which names the knob).
    """
    from core.tasks import TASKS
    from lightning_modules.registry import build_network

    m, d = cfg["model"], cfg["data"]
    options = network_options(cfg)
    task = TASKS[d["task"]]
    key = json.dumps(
        [m["name"], m["preset"], options, task.num_classes, d["spatial_dims"]], sort_keys=True, default=str
    )
    if cache is not None and key in cache:
        return cache[key]
    try:
        with _no_weight_init():
            net = build_network(
                m["name"],
                in_channels=1,
                num_classes=task.num_classes,
                spatial_dims=int(d["spatial_dims"]),
                preset=m["preset"],
                **options,
            )
    except CordbenchError:
        raise
    except (ValueError, TypeError, AssertionError, KeyError) as exc:
        raise ConfigError(f"model {m['name']!r}: {exc}") from None
    n = int(sum(p.numel() for p in net.parameters()))
    if cache is not None:
        cache[key] = n
    return n


def _combinations(dims: list[Dim]) -> tuple[list[dict[str, Any]], bool]:
    """Every combination of the dims' validation values, or one dim at a time when too many."""
    values = [d.validation_values() for d in dims]
    total = 1
    for v in values:
        total *= len(v)
    if total <= MAX_COMBINATIONS:
        return [dict(zip([d.key for d in dims], combo)) for combo in itertools.product(*values)], True
    return [{d.key: v} for d, vs in zip(dims, values) for v in vs], False


def _describe(params: Mapping[str, Any]) -> str:
    return ", ".join(f"space.{k}={v!r}" for k, v in params.items())


def validate_trials(sweep: Sweep, check_data: bool = True) -> int:
    """Resolve and validate every trial config (see module docstring); returns how many."""
    if sweep.search["algorithm"] == "optuna":
        for d in sweep.dims:
            if d.kind == "grid":
                raise ConfigError(
                    f"key 'space.{d.key}': the optuna searcher cannot sample a grid; use choice", sweep.path
                )
    time_attrs = schema.get(SweepConfig, "scheduler.time_attr").choices
    if sweep.scheduler["name"] == "asha" and sweep.scheduler["time_attr"] not in time_attrs:
        raise ConfigError(f"key 'scheduler.time_attr' must be {' or '.join(time_attrs)}", sweep.path)
    combos, _ = _combinations(sweep.dims)
    cache: dict[str, int] = {}
    for params in combos:
        where = f"{sweep.path} ({_describe(params)})" if params else str(sweep.path)
        try:
            cfg = apply_params(sweep.run_config, params, where)
            validate(cfg, where)
            network_check(cfg, cache)
        except CordbenchError as exc:
            msg = str(exc)
            raise ConfigError(msg if str(sweep.path) in msg else f"{where}: {msg}") from None
    if check_data:
        check_datasets(sweep, combos)
    return len(combos)


def check_datasets(sweep: Sweep, combos: list[dict[str, Any]]) -> None:
    """A real data set must exist and hold subjects for the task (indexed, not loaded)."""
    seen: set[str] = set()
    for params in combos:
        cfg = apply_params(sweep.run_config, params, str(sweep.path))
        d = cfg["data"]
        if d["name"] == "phantom":
            continue  # generated by the driver before the trials (sweeps.runner.prepare_data)
        key = json.dumps([d["name"], d.get("root"), d["task"], d.get("contrast")], default=str)
        if key in seen:
            continue
        seen.add(key)
        from data_modules.registry import build_datamodule

        try:
            _ = build_datamodule(d).specs
        except CordbenchError as exc:
            raise ConfigError(
                f"data set {d['name']!r} (key 'data.root'={d.get('root')!r}): {exc}", sweep.path
            ) from None


# ------------------------------------------------------------------------------------------- loading
def load_sweep(
    path: str | Path,
    overrides: Iterable[str] = (),
    storage: str | None = None,
    validate_all: bool = True,
    check_data: bool = True,
) -> Sweep:
    """Read, complete and validate a sweep file (or a sweep folder's ``sweep.yaml``)."""
    path = Path(path)
    if path.is_dir():
        path = path / SWEEP_FILE
    else:
        path = find_config(path)  # also the old sweeps/X.yaml paths and bare names
    raw = load_yaml(path)
    where = str(path)
    raw = apply_sweep_overrides(raw, overrides, where)
    if storage is not None:
        raw["storage"] = storage
    raw = check_sweep_keys(raw, where)
    raw["name"] = str(raw["name"] or path.stem)
    if "/" in raw["name"] or raw["name"] in ("", ".", ".."):
        raise ConfigError(f"key 'name' must be a plain folder name, got {raw['name']!r}", where)
    if not is_uri(raw["storage"]):
        raw["storage"] = str(Path(raw["storage"]).expanduser().resolve())
    # resolved run config: defaults <- base files <- config section
    base_files = [_resolve_file(b, path) for b in raw["base"]]
    run_cfg = copy.deepcopy(DEFAULTS)
    for f in base_files:
        run_cfg = merge(run_cfg, load_yaml(f), str(f))
    run_cfg = merge(run_cfg, raw["config"], f"{where}: key 'config'")
    dims = [parse_dim(k, v, where) for k, v in raw["space"].items()]
    for d in dims:
        try:
            merge(run_cfg, nest(d.key.split("."), d.validation_values()[0]), where)
        except ConfigError as exc:
            raise ConfigError(f"key 'space.{d.key}': {exc}") from None
    raw["base"] = [str(f) for f in base_files]
    sweep = Sweep(path=path, name=raw["name"], raw=raw, run_config=run_cfg, dims=dims)
    if validate_all:
        sweep.n_validated = validate_trials(sweep, check_data=check_data)
    return sweep


def resolved_yaml(sweep: Sweep) -> str:
    """``sweep.yaml`` written into the sweep folder: the full run config inlined, base files recorded."""
    raw = copy.deepcopy(sweep.raw)
    raw["source"] = {
        **raw.get("source", {}),
        "file": raw.get("source", {}).get("file", str(sweep.path)),
        "base": raw.get("source", {}).get("base", raw["base"]),
    }
    raw["base"] = []
    raw["config"] = yamlio.loads(dump(sweep.run_config), sweep.path)
    return yaml.safe_dump(raw, sort_keys=False)
