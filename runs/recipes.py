"""Training recipes: a model preset's own defaults for the optimiser, schedule and epochs.

A network file registers, beside its ``PRESETS`` (network knobs), ``RECIPES``: per preset the
training defaults that suit it (``lr``, ``weight_decay``, ``warmup_epochs``, ``scheduler``,
``max_epochs``), chosen by experiment (docs/models.md records what was tried). In a run config
these keys default to ``null`` — "the model's recipe" — and :func:`apply_recipe` fills every
key left null from the recipe of the run's ``model.name``/``model.preset``, else from
:data:`FALLBACK` (the values every model used before recipes existed; declared with the keys in
:class:`core.schema.RunConfig`). A value set anywhere
(a config file, a sweep's ``config`` or ``space``, a ``--key=value`` override) always wins, so
``model.lr: 0.002`` means 0.002 for every model of a sweep. The run folder's ``config.yaml``
holds the filled values.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from core import dotted, schema
from core.schema import RunConfig
from lightning_modules.presets import RECIPE_KEYS

#: Value of each recipe key for a model/preset without a recipe: the keys' ``fallback`` in the schema.
FALLBACK: dict[str, Any] = {d: k.fallback for d, k in schema.leaves(RunConfig).items() if k.fallback is not None}


def recipe_of(name: str, preset: str | None) -> dict[str, Any]:
    """The recipe of ``name`` at ``preset`` as ``{dotted key: value}`` (empty when it has none)."""
    from lightning_modules.registry import get_spec

    raw = get_spec(name).recipes.get(str(preset), {}) if preset is not None else {}
    return {RECIPE_KEYS[k]: v for k, v in raw.items()}


def apply_recipe(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` with every null recipe key filled from the model preset's recipe, else :data:`FALLBACK`."""
    out = copy.deepcopy(dict(cfg))
    recipe = recipe_of(out["model"]["name"], out["model"].get("preset"))
    for key, fallback in FALLBACK.items():
        if dotted.get(out, key) is None:
            dotted.put(out, key, recipe.get(key, fallback))
    return out


def training_line(cfg: Mapping[str, Any]) -> str:
    """``training: lr=…, weight_decay=…, …`` with the keys that equal the model preset's recipe marked."""
    m = cfg["model"]
    recipe = recipe_of(m["name"], m.get("preset"))
    parts = []
    for key in FALLBACK:
        value = dotted.get(cfg, key)
        mark = "*" if key in recipe and recipe[key] == value else ""
        parts.append(f"{key.split('.')[-1]}={value}{mark}")
    note = f" (* = recipe of {m['name']}/{m.get('preset')})" if recipe else ""
    return "training: " + ", ".join(parts) + note
