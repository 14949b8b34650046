"""How a network registers: :class:`ModelSpec`, the :func:`register` decorator and :func:`register_variant`.

Network modules import this (not :mod:`lightning_modules.registry`, which imports the network modules'
explicit list to look models up), so the registration has no import circle.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from core import schema
from core.schema import RunConfig
from lightning_modules.presets import RECIPE_KEYS


@dataclass(frozen=True)
class ModelSpec:
    """A registered network: its class, presets and supported spatial dims."""

    name: str
    cls: type[nn.Module]
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    spatial_dims: tuple[int, ...] = (2,)
    description: str = ""
    fixed: dict[str, Any] = field(default_factory=dict)  # knobs a variant fixes: passed, not options
    recipes: dict[str, dict[str, Any]] = field(default_factory=dict)  # training defaults per preset (runs.recipes)

    def knobs(self) -> dict[str, Any]:
        """Constructor keyword arguments and their defaults (excluding the common three and fixed knobs)."""
        sig = inspect.signature(self.cls.__init__)
        skip = {"self", "in_channels", "num_classes", "spatial_dims", *self.fixed}
        return {
            k: (None if p.default is inspect.Parameter.empty else p.default)
            for k, p in sig.parameters.items()
            if k not in skip and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        }


_REGISTRY: dict[str, ModelSpec] = {}


def register(
    name: str,
    presets: dict[str, dict[str, Any]] | None = None,
    spatial_dims: tuple[int, ...] = (2,),
    recipes: dict[str, dict[str, Any]] | None = None,
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator registering a network under ``name`` (``recipes``: training defaults per preset)."""

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"model name {name!r} registered twice")
        doc = (inspect.getdoc(cls) or "").splitlines()
        _REGISTRY[name] = ModelSpec(
            name,
            cls,
            dict(presets or {}),
            tuple(spatial_dims),
            doc[0] if doc else "",
            recipes=_checked_recipes(name, recipes),
        )
        return cls

    return deco


def register_variant(
    name: str,
    cls: type[nn.Module],
    fixed: dict[str, Any],
    description: str,
    presets: dict[str, dict[str, Any]] | None = None,
    spatial_dims: tuple[int, ...] = (2,),
    recipes: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Register ``cls`` again under ``name`` with the knobs in ``fixed`` set for good (not options)."""
    if name in _REGISTRY:
        raise ValueError(f"model name {name!r} registered twice")
    knobs = set(inspect.signature(cls.__init__).parameters)
    if not set(fixed) <= knobs:
        raise ValueError(f"variant {name!r}: {sorted(set(fixed) - knobs)} are not knobs of {cls.__name__}")
    presets = {p: {k: v for k, v in values.items() if k not in fixed} for p, values in (presets or {}).items()}
    _REGISTRY[name] = ModelSpec(
        name, cls, presets, tuple(spatial_dims), description, dict(fixed), _checked_recipes(name, recipes)
    )


def _checked_recipes(name: str, recipes: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """``recipes`` with every key checked against :data:`lightning_modules.presets.RECIPE_KEYS` and each value
    against the run-config key it fills (its type and range in :mod:`core.schema`)."""
    for preset, values in (recipes or {}).items():
        unknown = sorted(set(values) - set(RECIPE_KEYS))
        if unknown:
            raise ValueError(f"model {name!r} recipe {preset!r}: unknown keys {unknown}; known: {sorted(RECIPE_KEYS)}")
        for k, v in values.items():
            spec = schema.get(RunConfig, RECIPE_KEYS[k])
            if not (spec.range.contains(v) if spec.range is not None else isinstance(v, spec.kinds)):
                want = (
                    spec.range.describe() if spec.range is not None else "a " + "/".join(t.__name__ for t in spec.kinds)
                )
                raise ValueError(f"model {name!r} recipe {preset!r}: {k}={v!r} must be {want} (key {spec.dotted!r})")
    return {p: dict(v) for p, v in (recipes or {}).items()}
