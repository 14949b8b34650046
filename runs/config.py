"""Run configuration: YAML files in ``configs/`` merged over defaults, plus dotted overrides.

The layout follows LightningCLI conventions — top-level ``seed_everything``, ``model``,
``data``, ``trainer`` sections — with a few cordbench sections (``logger``, ``output_dir``).
Files merge left to right over :data:`DEFAULTS`; ``--section.key=value`` overrides come last.
Every key is checked against the defaults: an unknown key or a wrong type is rejected with
the file and the dotted key named. YAML is read with ``yaml.safe_load`` only.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from core.dotted import get as get_dotted
from core.errors import ConfigError
from core.ranges import SEED_MAX, Range, check_value
from data_modules.phantom import randomise_options

#: Every configurable key with its default. ``None`` defaults accept any value of the documented type.
DEFAULTS: dict[str, Any] = {
    "name": "run",                       # run name (folder name and wandb run name)
    "seed_everything": 0,
    "output_dir": None,                  # default: outputs/runs/<name>
    "model": {
        "name": "unet",                  # any registered network (``cordbench models``)
        "preset": "small",               # tiny | small | paper
        "options": {},                   # network knobs overriding the preset
        # null: the preset's training recipe, else 1e-3 / 1e-4 / cosine / 0 (runs.recipes)
        "lr": None,
        "weight_decay": None,
        "scheduler": None,               # cosine | poly | none
        "warmup_epochs": None,
        "dice_weight": 1.0,
        "ce_weight": 1.0,
        "dropout": None,                 # shortcut: passed to networks that have a ``dropout`` knob
        # none | largest_component; null: the task's default (sc, canal: largest_component; gm, levels:
        # none) — evaluation.postprocess
        "postprocess": None,
    },
    "data": {
        "name": "phantom",               # phantom | spine_generic | gmchallenge
        "root": None,                    # data set folder; phantom: generated when missing
        "task": "sc",                    # sc | gm | canal | levels
        "contrast": None,                # default per task (sc/canal/levels: T2w, gm: T2star)
        "spatial_dims": 2,               # 2: axial slices, 3: patches
        "spacing": None,                 # target spacing [x, y, z] (mm); None keeps native spacing, a null
                                         # entry keeps that axis (e.g. [0.25, 0.25, null])
        "patch_size": [64, 64],          # in-plane (2D) or [x, y, z] (3D)
        "crop": None,                    # [x, y] in-plane crop/pad (voxels): centred on the label for
                                         # training, on the FOV for val/test/predict; None keeps the FOV
        "batch_size": 16,
        "num_workers": 0,
        "samples_per_volume": 24,
        "queue_length": 240,
        "foreground_probability": 0.8,   # share of training patches centred on the label
        "pipeline": None,                # training input: fast (2D: cached slices, batch augmentation on the
                                         # training device) | torchio (per-volume queue); None: fast for 2D,
                                         # torchio for 3D
        "cache": True,                   # cache preprocessed subjects on disk (keyed by file contents + settings)
        "cache_dir": None,               # default: $CORDBENCH_CACHE or ~/.cache/cordbench/preprocessed
        "split": {
            "method": "random",          # random | kfold | site | file
            "val_fraction": 0.2,
            "test_fraction": 0.2,
            "folds": 5,
            "fold": 0,
            "file": None,
            "seed": 0,
        },
        "augment": {
            "strength": 1.0,             # scales every augmentation probability; 0 disables
            "affine": 0.3,
            "elastic": 0.0,
            "bias_field": 0.3,
            "noise": 0.3,
            "gamma": 0.3,
        },
        "raters": "majority",            # GM challenge: majority | staple | random
        "preset": None,                  # preprocessing preset: "perone" (GM challenge, Perone et al. 2018)
        "scoring": "native",             # test metrics on each subject's native grid | "preprocessed" grid
        "phantom": {"subjects": 20, "seed": 0, "snr": 30.0, "dwi": False,
                    # domain randomisation (docs/phantom.md): off keeps the cohort byte-identical
                    "randomise": randomise_options.config_defaults()},
    },
    "trainer": {
        "max_epochs": None,              # null: the preset's training recipe, else 10
        "accelerator": "auto",
        "devices": "auto",
        "strategy": "auto",
        "precision": "auto",             # auto: bf16-mixed on Ampere+ GPUs, 16-mixed on older, 32-true on CPU
        "deterministic": True,           # true | false | warn (GPU: see docs/reliability.md)
        "log_every_n_steps": 10,
        "limit_train_batches": None,
        "limit_val_batches": None,
        "check_val_every_n_epoch": 1,
        "gradient_clip_val": None,
        "num_sanity_val_steps": 0,
        "enable_progress_bar": True,
    },
    "logger": {
        "wandb": {
            "enabled": True,
            "mode": None,                # offline | online | disabled; default offline unless WANDB_API_KEY
            "project": "cordbench",
            "entity": None,
            "group": None,
            "job_type": "fit",
            "tags": [],
            "log_images": True,
        },
    },
}

#: Declared range of every numeric key (checked where the key is set, with the file or override named,
#: and again on the resolved config). Lists (patch_size, crop, spacing) are checked element by element.
_POS = Range(0, None, lo_open=True)
_PROB = Range(0, 1)
_FRACTION = Range(0, 1, hi_open=True)
RANGES: dict[str, Range] = {
    "seed_everything": Range(0, SEED_MAX, integer=True),
    "model.lr": Range(0, None, lo_open=True),   # a huge lr is legal (tests use 1e30 to make a loss diverge)
    "model.weight_decay": Range(0, 10),
    "model.warmup_epochs": Range(0, 1_000_000, integer=True),
    "model.dice_weight": Range(0, 1e6),
    "model.ce_weight": Range(0, 1e6),
    "model.dropout": Range(0, 1, hi_open=True),
    "data.spacing": Range(0, 100, lo_open=True),
    "data.patch_size": Range(1, 4096, integer=True),
    "data.crop": Range(1, 4096, integer=True),
    "data.batch_size": Range(1, 65536, integer=True),
    "data.num_workers": Range(0, 256, integer=True),
    "data.samples_per_volume": Range(1, 100_000, integer=True),
    "data.queue_length": Range(1, 10_000_000, integer=True),
    "data.foreground_probability": _PROB,
    "data.split.val_fraction": _FRACTION,
    "data.split.test_fraction": _FRACTION,
    "data.split.folds": Range(2, 1000, integer=True),
    "data.split.fold": Range(0, 999, integer=True),
    "data.split.seed": Range(0, SEED_MAX, integer=True),
    "data.augment.strength": Range(0, 5),
    "data.augment.affine": _PROB,
    "data.augment.elastic": _PROB,
    "data.augment.bias_field": _PROB,
    "data.augment.noise": _PROB,
    "data.augment.gamma": _PROB,
    "data.phantom.subjects": Range(1, 10_000, integer=True),
    "data.phantom.seed": Range(0, SEED_MAX, integer=True),
    "data.phantom.snr": Range(0, None, allow_inf=True),
    **{f"data.phantom.randomise.{k}": r for k, r in randomise_options.RANGES.items()},
    "trainer.max_epochs": Range(1, 1_000_000, integer=True),
    "trainer.log_every_n_steps": Range(1, 1_000_000, integer=True),
    "trainer.limit_train_batches": Range(0, 1e9, lo_open=True),
    "trainer.limit_val_batches": Range(0, 1e9),
    "trainer.check_val_every_n_epoch": Range(1, 1_000_000, integer=True),
    "trainer.gradient_clip_val": Range(0, 1e9),
    "trainer.num_sanity_val_steps": Range(-1, 1_000_000, integer=True),
}


def check_ranges(cfg: Mapping[str, Any], source: str = "config") -> None:
    """Raise one line for the first numeric key of ``cfg`` outside its declared range."""
    for key, rng in RANGES.items():
        check_value(get_dotted(cfg, key), rng, f"key {key!r}", source)


_FREE_FORM = {"model.options"}
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")  # exponent without a dot: a string to YAML 1.1   # validated by the model registry instead


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping safely; errors name the file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError("config file not found", path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping at top level, got {type(data).__name__}", path)
    return data


def _check(value: Any, default: Any, key: str, source: str) -> Any:
    """Type-check ``value`` against ``default``'s type; returns the (coerced) value."""
    if value is None:
        return value
    if default is None:
        from runs.recipes import FALLBACK

        if key not in FALLBACK:
            return value
        default = FALLBACK[key]  # a recipe key: typed like its fallback value
    if isinstance(default, bool):
        if key == "trainer.deterministic" and value == "warn":
            return value  # Lightning: deterministic algorithms, a warning (not an error) for ops without one
        if not isinstance(value, bool):
            choices = "true, false or warn" if key == "trainer.deterministic" else "true/false"
            raise ConfigError(f"key {key!r} must be {choices}, got {value!r}", source)
        return value
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            # devices/accelerator-like keys are strings in defaults; numbers reach here only for numbers
            raise ConfigError(f"key {key!r} must be a number, got {value!r}", source)
        if isinstance(default, int) and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"key {key!r} must be an integer, got {value!r}", source)
        return type(default)(value) if isinstance(default, float) else int(value)
    if isinstance(default, str):
        if key.startswith("trainer.") and isinstance(value, (int, list)):
            return value  # e.g. devices: 2, devices: [0, 1]
        if not isinstance(value, str):
            raise ConfigError(f"key {key!r} must be a string, got {value!r}", source)
        return value
    if isinstance(default, list):
        if not isinstance(value, list):
            raise ConfigError(f"key {key!r} must be a list, got {value!r}", source)
        return value
    return value


def merge(base: dict[str, Any], update: Mapping[str, Any], source: str,
          defaults: Mapping[str, Any] = DEFAULTS, prefix: str = "") -> dict[str, Any]:
    """Deep-merge ``update`` into a copy of ``base``, rejecting keys not in ``defaults``."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in defaults:
            known = ", ".join(sorted(defaults))
            raise ConfigError(f"unknown key {dotted!r} (known here: {known})", source)
        default = defaults[key]
        if isinstance(default, dict) and dotted not in _FREE_FORM:
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(f"key {dotted!r} must be a mapping, got {value!r}", source)
            out[key] = merge(out.get(key) or {}, value, source, default, dotted + ".")
        elif dotted in _FREE_FORM:
            if not isinstance(value, Mapping):
                raise ConfigError(f"key {dotted!r} must be a mapping, got {value!r}", source)
            out[key] = {**(out.get(key) or {}), **value}
        else:
            out[key] = _check(value, default, dotted, source)
            if dotted in RANGES:
                check_value(out[key], RANGES[dotted], f"key {dotted!r}", source)
    return out


def parse_override(item: str) -> tuple[list[str], Any]:
    """``section.key=value`` → (["section", "key"], parsed YAML value)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    key, raw = item.split("=", 1)
    key = key.lstrip("-")
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def nest(path: list[str], value: Any) -> dict[str, Any]:
    """(["a", "b"], v) → {"a": {"b": v}}."""
    out: Any = value
    for part in reversed(path):
        out = {part: out}
    return out


def load_config(files: Iterable[str | Path] = (), overrides: Iterable[str] = (),
                extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
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
    from data_modules.splits import SPLIT_METHODS
    from core.tasks import TASK_NAMES
    from lightning_modules.registry import resolve_kwargs  # light import (torch.nn only)
    from evaluation.postprocess import POSTPROCESS
    from lightning_modules.schedule import SCHEDULERS

    check_ranges(cfg, source)
    m, d = cfg["model"], cfg["data"]
    randomise_options.from_config(d["phantom"].get("randomise"))  # min <= max of each drawn range
    name = str(cfg.get("name") or "")
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ConfigError(f"key 'name' must be a plain folder name (it names outputs/runs/<name>), got {name!r}",
                          source)
    resolve_kwargs(m["name"], m["preset"], **(m.get("options") or {}))
    if d["task"] not in TASK_NAMES:
        raise ConfigError(f"key 'data.task' must be one of {', '.join(TASK_NAMES)}; got {d['task']!r}", source)
    if d["spatial_dims"] not in (2, 3):
        raise ConfigError(f"key 'data.spatial_dims' must be 2 or 3, got {d['spatial_dims']!r}", source)
    want = 2 if d["spatial_dims"] == 2 else 3
    if len(d["patch_size"]) != want:
        raise ConfigError(f"key 'data.patch_size' needs {want} sizes for spatial_dims={d['spatial_dims']}, "
                          f"got {d['patch_size']!r}", source)
    if d.get("crop") is not None and (not isinstance(d["crop"], list) or len(d["crop"]) != 2):
        raise ConfigError(f"key 'data.crop' must be null or [x, y] in voxels, got {d['crop']!r}", source)
    if d.get("pipeline") not in (None, "fast", "torchio"):
        raise ConfigError(f"key 'data.pipeline' must be null, 'fast' or 'torchio'; got {d['pipeline']!r}", source)
    if d.get("pipeline") == "fast" and d["spatial_dims"] != 2:
        raise ConfigError("key 'data.pipeline': 'fast' samples 2D slices; use 'torchio' (or null) for "
                          "spatial_dims=3", source)
    if d.get("cache_dir") is not None and not isinstance(d["cache_dir"], str):
        raise ConfigError(f"key 'data.cache_dir' must be a folder path or null, got {d['cache_dir']!r}", source)
    if d.get("preset") not in (None, "perone"):
        raise ConfigError(f"key 'data.preset' must be null or 'perone', got {d['preset']!r}", source)
    if d.get("scoring") not in ("native", "preprocessed"):
        raise ConfigError(f"key 'data.scoring' must be native or preprocessed, got {d.get('scoring')!r}", source)
    sp = d.get("spacing")
    if sp is not None and (not isinstance(sp, list) or len(sp) != 3
                           or not all(v is None or (isinstance(v, (int, float)) and v > 0) for v in sp)):
        raise ConfigError(f"key 'data.spacing' must be null or [x, y, z] in mm (> 0; null keeps an axis), "
                          f"got {sp!r}", source)
    if m.get("postprocess") not in (None, *POSTPROCESS):
        raise ConfigError(f"key 'model.postprocess' must be null, {_or(POSTPROCESS)}; got {m['postprocess']!r}",
                          source)
    if m["scheduler"] not in SCHEDULERS:
        raise ConfigError(f"key 'model.scheduler' must be {_or(SCHEDULERS)}; got {m['scheduler']!r}", source)
    s = d["split"]
    if s["method"] not in SPLIT_METHODS:
        raise ConfigError(f"key 'data.split.method' must be {_or(SPLIT_METHODS)}; got {s['method']!r}",
                          source)
    if s["val_fraction"] + s["test_fraction"] >= 1:
        raise ConfigError("keys 'data.split.val_fraction' + 'data.split.test_fraction' must be < 1, got "
                          f"{s['val_fraction']:g} + {s['test_fraction']:g}", source)
    if s["method"] == "kfold" and s["fold"] >= s["folds"]:
        raise ConfigError(f"key 'data.split.fold' = {s['fold']} must be < data.split.folds = {s['folds']}", source)


def dump(cfg: Mapping[str, Any]) -> str:
    """The resolved config as YAML."""
    return yaml.safe_dump(dict(cfg), sort_keys=False)
