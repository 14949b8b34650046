"""Run configuration: YAML files in ``configs/`` merged over defaults, plus dotted overrides.

The layout follows LightningCLI conventions — top-level ``seed_everything``, ``model``,
``data``, ``trainer`` sections — with a few cordbench sections (``logger``, ``output_dir``).
Files merge left to right over :data:`DEFAULTS`; ``--section.key=value`` overrides come last.
Every key is checked against the schema (:mod:`core.schema`: type, range, choices): an unknown
key, a wrong type or a value out of range is rejected with the file and the dotted key named. YAML is read by
:mod:`core.yamlio` only (safe; duplicate keys, alias bombs, empty and non-text files refused).
"""

from __future__ import annotations

import copy
import importlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from core import schema, yamlio
from core.dotted import get as get_dotted
from core.errors import ConfigError
from core.ranges import Range, check_value
from core.schema import RunConfig
from data_modules.phantom import randomise_options

#: Every configurable key with its default, derived from the schema (:class:`core.schema.RunConfig`).
#: ``None`` defaults accept any value of the documented type; recipe keys are filled by :mod:`runs.recipes`.
DEFAULTS: dict[str, Any] = schema.defaults(RunConfig)

#: Declared range of every numeric key (checked where the key is set, with the file or override named,
#: and again on the resolved config). Lists (patch_size, crop, spacing) are checked element by element.
RANGES: dict[str, Range] = {d: k.range for d, k in schema.leaves(RunConfig).items() if k.range is not None}


def check_ranges(cfg: Mapping[str, Any], source: str = "config", of: type = RunConfig) -> None:
    """Raise one line for the first numeric key of ``cfg`` outside its declared range."""
    for d, k in schema.leaves(of).items():
        if k.range is not None:
            check_value(get_dotted(cfg, d), k.range, f"key {d!r}", source)


def choices(dotted: str, of: type = RunConfig) -> tuple[Any, ...] | None:
    """The choices of a key: declared in the schema, or read from the registry it names (imported here)."""
    c = schema.get(of, dotted).choices
    if isinstance(c, schema.Registry):
        module, attr = c.path.rsplit(".", 1)
        value = getattr(importlib.import_module(module), attr)
        return tuple(value() if callable(value) else value)
    return c


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")  # exponent without a dot: a string to YAML 1.1


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping through :func:`core.yamlio.read_mapping`; errors name the file (and key, line)."""
    return yamlio.read_mapping(path)


def _check(value: Any, k: schema.Key, source: str) -> Any:
    """Type-check ``value`` against the key's declared type; returns the (coerced) value."""
    if value is None or not k.typed:
        return value
    key, kinds = k.dotted, k.kinds
    if bool in kinds:
        extra = [c for c in k.choices if not isinstance(c, bool)] if isinstance(k.choices, tuple) else []
        if isinstance(value, bool) or (isinstance(value, str) and value in extra):
            return value  # e.g. trainer.deterministic: warn (Lightning warns for ops without a deterministic one)
        choices = _or(["true", "false", *map(str, extra)]) if extra else "true/false"
        raise ConfigError(f"key {key!r} must be {choices}, got {value!r}", source)
    if kinds[0] in (int, float):
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"key {key!r} must be a number, got {value!r}", source)
        if kinds[0] is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"key {key!r} must be an integer, got {value!r}", source)
        return float(value) if kinds[0] is float else int(value)
    if str in kinds:
        if not isinstance(value, kinds):  # e.g. trainer.devices: 2, devices: [0, 1]
            raise ConfigError(f"key {key!r} must be a string, got {value!r}", source)
        return value
    if list in kinds and not isinstance(value, list):
        raise ConfigError(f"key {key!r} must be a list, got {value!r}", source)
    return value


def merge(
    base: dict[str, Any], update: Mapping[str, Any], source: str, of: type = RunConfig, prefix: str = ""
) -> dict[str, Any]:
    """Deep-merge ``update`` into a copy of ``base``, rejecting keys the schema ``of`` does not declare."""
    out = copy.deepcopy(base)
    index = schema.keys(of)
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        k = index.get(dotted)
        if k is None:
            known = ", ".join(sorted(schema.children(of, prefix)))
            raise ConfigError(f"unknown key {dotted!r} (known here: {known})", source)
        if k.section is not None:
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(f"key {dotted!r} must be a mapping, got {value!r}", source)
            out[key] = merge(out.get(key) or {}, value, source, of, dotted + ".")
        elif k.free_form:  # keys checked elsewhere (model.options: the model registry)
            if not isinstance(value, Mapping):
                raise ConfigError(f"key {dotted!r} must be a mapping, got {value!r}", source)
            out[key] = {**(out.get(key) or {}), **value}
        else:
            out[key] = _check(value, k, source)
            if k.range is not None:
                check_value(out[key], k.range, f"key {dotted!r}", source)
    return out


def parse_override(item: str) -> tuple[list[str], Any]:
    """``section.key=value`` → (["section", "key"], parsed YAML value)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    key, raw = item.split("=", 1)
    key = key.lstrip("-")
    try:
        value = yamlio.loads(raw, f"override {key}") if raw != "" else None
    except yamlio.YamlSyntaxError:  # not YAML: the text itself (duplicate keys, alias bombs still refused)
        value = raw
    return key.split("."), value


def nest(path: list[str], value: Any) -> dict[str, Any]:
    """(["a", "b"], v) → {"a": {"b": v}}."""
    out: Any = value
    for part in reversed(path):
        out = {part: out}
    return out


def load_config(
    files: Iterable[str | Path] = (), overrides: Iterable[str] = (), extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Defaults ← each YAML file ← ``extra`` (e.g. from CLI shortcuts) ← dotted overrides."""
    cfg = copy.deepcopy(DEFAULTS)
    for f in files:
        cfg = merge(cfg, load_yaml(f), str(f))
    if extra:
        cfg = merge(cfg, extra, "command line")
    for item in overrides:
        path, value = parse_override(item)
        cfg = merge(cfg, nest(path, value), f"override {item!r}")
    cfg = fill_recipe(cfg)
    validate(cfg)
    return cfg


def fill_recipe(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` with the model preset's training recipe in every recipe key left null (runs.recipes)."""
    from runs.recipes import apply_recipe

    return apply_recipe(cfg)


def _or(choices: Iterable[str]) -> str:
    """``a, b or c``."""
    c = list(choices)
    return c[0] if len(c) == 1 else f"{', '.join(c[:-1])} or {c[-1]}"


def validate(cfg: Mapping[str, Any], source: str = "config") -> None:
    """Cross-key checks that need more than types (model knobs, task, split)."""
    from lightning_modules.registry import resolve_kwargs  # light import (torch.nn only)

    check_ranges(cfg, source)
    m, d = cfg["model"], cfg["data"]
    randomise_options.from_config(d["phantom"].get("randomise"))  # min <= max of each drawn range
    name = str(cfg.get("name") or "")
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ConfigError(
            f"key 'name' must be a plain folder name (it names outputs/runs/<name>), got {name!r}", source
        )
    resolve_kwargs(m["name"], m["preset"], **(m.get("options") or {}))
    tasks, dims = choices("data.task"), choices("data.spatial_dims")
    if d["task"] not in tasks:
        raise ConfigError(f"key 'data.task' must be one of {', '.join(tasks)}; got {d['task']!r}", source)
    if d["spatial_dims"] not in dims:
        raise ConfigError(f"key 'data.spatial_dims' must be {_or(map(str, dims))}, got {d['spatial_dims']!r}", source)
    want = 2 if d["spatial_dims"] == 2 else 3
    if len(d["patch_size"]) != want:
        raise ConfigError(
            f"key 'data.patch_size' needs {want} sizes for spatial_dims={d['spatial_dims']}, got {d['patch_size']!r}",
            source,
        )
    if d.get("crop") is not None and (not isinstance(d["crop"], list) or len(d["crop"]) != 2):
        raise ConfigError(f"key 'data.crop' must be null or [x, y] in voxels, got {d['crop']!r}", source)
    pipelines = choices("data.pipeline")
    if d.get("pipeline") not in (None, *pipelines):
        raise ConfigError(
            f"key 'data.pipeline' must be null, {_or(map(repr, pipelines))}; got {d['pipeline']!r}", source
        )
    if d.get("pipeline") == "fast" and d["spatial_dims"] != 2:
        raise ConfigError(
            "key 'data.pipeline': 'fast' samples 2D slices; use 'torchio' (or null) for spatial_dims=3", source
        )
    if d.get("cache_dir") is not None and not isinstance(d["cache_dir"], str):
        raise ConfigError(f"key 'data.cache_dir' must be a folder path or null, got {d['cache_dir']!r}", source)
    if d.get("preset") is not None and d["preset"] not in choices("data.preset"):  # (torchio: imported when set)
        raise ConfigError(
            f"key 'data.preset' must be null or {_or(map(repr, choices('data.preset')))}, got {d['preset']!r}", source
        )
    if d.get("scoring") not in choices("data.scoring"):
        raise ConfigError(
            f"key 'data.scoring' must be {_or(choices('data.scoring'))}, got {d.get('scoring')!r}", source
        )
    sp = d.get("spacing")
    if sp is not None and (
        not isinstance(sp, list)
        or len(sp) != 3
        or not all(v is None or (isinstance(v, (int, float)) and v > 0) for v in sp)
    ):
        raise ConfigError(
            f"key 'data.spacing' must be null or [x, y, z] in mm (> 0; null keeps an axis), got {sp!r}", source
        )
    postprocess, schedulers, methods = (
        choices("model.postprocess"),
        choices("model.scheduler"),
        choices("data.split.method"),
    )
    if m.get("postprocess") not in (None, *postprocess):
        raise ConfigError(f"key 'model.postprocess' must be null, {_or(postprocess)}; got {m['postprocess']!r}", source)
    if m["scheduler"] not in schedulers:
        raise ConfigError(f"key 'model.scheduler' must be {_or(schedulers)}; got {m['scheduler']!r}", source)
    s = d["split"]
    if s["method"] not in methods:
        raise ConfigError(f"key 'data.split.method' must be {_or(methods)}; got {s['method']!r}", source)
    if s["val_fraction"] + s["test_fraction"] >= 1:
        raise ConfigError(
            "keys 'data.split.val_fraction' + 'data.split.test_fraction' must be < 1, got "
            f"{s['val_fraction']:g} + {s['test_fraction']:g}",
            source,
        )
    if s["method"] == "kfold" and s["fold"] >= s["folds"]:
        raise ConfigError(f"key 'data.split.fold' = {s['fold']} must be < data.split.folds = {s['folds']}", source)


def network_options(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``model.options`` plus the ``model.dropout`` shortcut for networks that have a ``dropout`` knob."""
    m = cfg["model"]
    options = dict(m.get("options") or {})
    if m.get("dropout") is not None:
        from lightning_modules.registry import get_spec

        if "dropout" in get_spec(m["name"]).knobs():
            options.setdefault("dropout", float(m["dropout"]))
    return options


def dump(cfg: Mapping[str, Any]) -> str:
    """The resolved config as YAML."""
    return yaml.safe_dump(dict(cfg), sort_keys=False)
