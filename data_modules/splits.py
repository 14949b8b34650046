"""Subject-level splits: random, k-fold, leave-site-out, or a fixed split file.

``make_split`` returns ``{"train": [...], "val": [...], "test": [...]}`` of subject ids;
the run saves it as ``split.json`` beside its outputs so every number can be traced back.
Splits are by subject (never by slice) and deterministic given the seed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core import yamlio
from core.errors import ConfigError, InputError

PARTS = ("train", "val", "test")


def _ids(specs: Sequence[Any]) -> list[str]:
    return sorted(s.subject if hasattr(s, "subject") else str(s) for s in specs)


def _site(spec: Any) -> str:
    meta = getattr(spec, "meta", {}) or {}
    for key in ("site", "institution_id"):
        if meta.get(key):
            return str(meta[key])
    raise InputError(
        f"subject {getattr(spec, 'subject', spec)!r} has no site/institution_id for a leave-site-out split"
    )


def random_split(ids: Sequence[str], val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[str]]:
    """Shuffle subjects with ``seed``; at least one val/test subject when the fraction is > 0."""
    ids = sorted(ids)
    rng = np.random.default_rng(seed)
    order = [ids[i] for i in rng.permutation(len(ids))]
    n = len(ids)
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    if n - n_test - n_val < 1:
        raise ConfigError(f"{n} subjects are too few for val_fraction={val_fraction} and test_fraction={test_fraction}")
    return {
        "test": sorted(order[:n_test]),
        "val": sorted(order[n_test : n_test + n_val]),
        "train": sorted(order[n_test + n_val :]),
    }


def kfold_split(ids: Sequence[str], folds: int, fold: int, val_fraction: float, seed: int) -> dict[str, list[str]]:
    """Fold ``fold`` of ``folds`` is the test set; validation drawn from the rest."""
    ids = sorted(ids)
    if not 2 <= folds <= len(ids):
        raise ConfigError(f"key 'data.split.folds'={folds} must be in 2..{len(ids)} (number of subjects)")
    if not 0 <= fold < folds:
        raise ConfigError(f"key 'data.split.fold'={fold} must be in 0..{folds - 1}")
    rng = np.random.default_rng(seed)
    order = [ids[i] for i in rng.permutation(len(ids))]
    test = sorted(order[fold::folds])
    rest = [i for i in order if i not in set(test)]
    n_val = max(1, round(len(rest) * val_fraction)) if val_fraction > 0 else 0
    return {"test": test, "val": sorted(rest[:n_val]), "train": sorted(rest[n_val:])}


def site_split(specs: Sequence[Any], fold: int, val_fraction: float, seed: int) -> dict[str, list[str]]:
    """Leave-site-out: the ``fold``-th site (sorted) is the test set."""
    sites = sorted({_site(s) for s in specs})
    if len(sites) < 2:
        raise ConfigError(f"leave-site-out needs at least 2 sites, found {sites}")
    if not 0 <= fold < len(sites):
        raise ConfigError(f"key 'data.split.fold'={fold} must be in 0..{len(sites) - 1} ({len(sites)} sites)")
    held = sites[fold]
    test = sorted(s.subject for s in specs if _site(s) == held)
    rest = sorted(s.subject for s in specs if _site(s) != held)
    rng = np.random.default_rng(seed)
    order = [rest[i] for i in rng.permutation(len(rest))]
    n_val = max(1, round(len(rest) * val_fraction)) if val_fraction > 0 else 0
    return {"test": test, "val": sorted(order[:n_val]), "train": sorted(order[n_val:]), "held_out_site": [held]}


def file_split(path: str | Path, ids: Sequence[str]) -> dict[str, list[str]]:
    """A fixed split from JSON/YAML ``{train: [...], val: [...], test: [...]}``."""
    path = Path(path)
    if not path.exists():
        raise InputError("split file not found", path)
    if path.suffix in (".yaml", ".yml"):
        data = yamlio.read_file(path, "split file", InputError)
    else:
        data = json.loads(path.read_text())
    if not isinstance(data, dict) or "train" not in data:
        raise InputError("split file must map train/val/test to lists of subject ids", path)
    known = set(ids)
    out = {p: sorted(str(x) for x in data.get(p, [])) for p in PARTS}
    unknown = sorted({i for p in PARTS for i in out[p]} - known)
    if unknown:
        raise InputError(f"split lists subjects not in the data set: {unknown[:5]}", path)
    seen: dict[str, str] = {}
    for p in PARTS:
        for i in out[p]:
            if i in seen:
                raise InputError(f"subject {i!r} is in both {seen[i]} and {p}", path)
            seen[i] = p
    return out


#: ``data.split.method`` choices, dispatched by :func:`make_split`.
SPLIT_METHODS = ("random", "kfold", "site", "file")


def make_split(specs: Sequence[Any], cfg: dict[str, Any]) -> dict[str, list[str]]:
    """Dispatch on ``cfg['method']`` (``data.split`` section of the run config)."""
    ids = _ids(specs)
    method = cfg.get("method", "random")
    seed = int(cfg.get("seed", 0))
    if method == "random":
        out = random_split(ids, float(cfg["val_fraction"]), float(cfg["test_fraction"]), seed)
    elif method == "kfold":
        out = kfold_split(ids, int(cfg["folds"]), int(cfg["fold"]), float(cfg["val_fraction"]), seed)
    elif method == "site":
        out = site_split(specs, int(cfg["fold"]), float(cfg["val_fraction"]), seed)
    elif method == "file":
        if not cfg.get("file"):
            raise ConfigError("key 'data.split.file' is required when data.split.method is 'file'")
        out = file_split(cfg["file"], ids)
    else:
        raise ConfigError(f"key 'data.split.method': unknown split method {method!r}")
    if not out["train"]:
        raise ConfigError("the split leaves no training subject")
    return out
