"""Model registry: adding a model is adding one file to ``lightning_modules/networks/``.

A network module decorates its class with ``@register("name", presets={...})``; a variant of a
registered class with some knobs fixed (Swin-Unet = SAttisUNet with ``attentive_skips=False``) is
registered with :func:`register_variant`, as timm registers model variants. Every
network class takes ``in_channels``, ``num_classes`` and ``spatial_dims`` plus its own
knobs as keyword arguments, accepts inputs of any spatial size and returns logits of the
input's size. Presets: ``tiny`` (tests), ``small`` (laptop), ``paper`` (GPU, paper size).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch.nn as nn

from core import schema
from core.errors import ConfigError
from core.schema import RunConfig

from lightning_modules.presets import PRESET_NAMES, RECIPE_KEYS  # noqa: F401,E402  (PRESET_NAMES re-exported)


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
        return {k: (None if p.default is inspect.Parameter.empty else p.default)
                for k, p in sig.parameters.items()
                if k not in skip and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


_REGISTRY: dict[str, ModelSpec] = {}
_LOADED = False


def register(name: str, presets: dict[str, dict[str, Any]] | None = None,
             spatial_dims: tuple[int, ...] = (2,), recipes: dict[str, dict[str, Any]] | None = None
             ) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator registering a network under ``name`` (``recipes``: training defaults per preset)."""

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"model name {name!r} registered twice")
        doc = (inspect.getdoc(cls) or "").splitlines()
        _REGISTRY[name] = ModelSpec(name, cls, dict(presets or {}), tuple(spatial_dims),
                                    doc[0] if doc else "", recipes=_checked_recipes(name, recipes))
        return cls

    return deco


def register_variant(name: str, cls: type[nn.Module], fixed: dict[str, Any], description: str,
                     presets: dict[str, dict[str, Any]] | None = None, spatial_dims: tuple[int, ...] = (2,),
                     recipes: dict[str, dict[str, Any]] | None = None) -> None:
    """Register ``cls`` again under ``name`` with the knobs in ``fixed`` set for good (not options)."""
    if name in _REGISTRY:
        raise ValueError(f"model name {name!r} registered twice")
    knobs = set(inspect.signature(cls.__init__).parameters)
    if not set(fixed) <= knobs:
        raise ValueError(f"variant {name!r}: {sorted(set(fixed) - knobs)} are not knobs of {cls.__name__}")
    presets = {p: {k: v for k, v in values.items() if k not in fixed} for p, values in (presets or {}).items()}
    _REGISTRY[name] = ModelSpec(name, cls, presets, tuple(spatial_dims), description, dict(fixed),
                                _checked_recipes(name, recipes))


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
                want = spec.range.describe() if spec.range is not None else "a " + "/".join(t.__name__ for t in spec.kinds)
                raise ValueError(f"model {name!r} recipe {preset!r}: {k}={v!r} must be {want} (key {spec.dotted!r})")
    return {p: dict(v) for p, v in (recipes or {}).items()}


def _load_all() -> None:
    """Import the network modules (their explicit list: ``lightning_modules.networks``), which register."""
    global _LOADED
    if not _LOADED:
        import lightning_modules.networks  # noqa: F401

        _LOADED = True


def list_models() -> list[str]:
    """Registered model names, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; ConfigError naming the choices when unknown."""
    _load_all()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def resolve_kwargs(name: str, preset: str | None = None, **overrides: Any) -> dict[str, Any]:
    """Preset values updated by ``overrides``; unknown knobs rejected by name."""
    spec = get_spec(name)
    kwargs: dict[str, Any] = {}
    if preset is not None:
        if preset not in spec.presets:
            raise ConfigError(f"model {name!r} has no preset {preset!r}; presets: "
                              f"{', '.join(spec.presets) or 'none'}")
        kwargs.update(spec.presets[preset])
    knobs = spec.knobs()
    unknown = sorted(set(overrides) - set(knobs) - {"in_channels", "num_classes", "spatial_dims"})
    if unknown:
        raise ConfigError(f"model {name!r} has no option(s) {unknown}; options: {sorted(knobs)}")
    kwargs.update(overrides)
    return kwargs


def build_network(name: str, in_channels: int = 1, num_classes: int = 2, spatial_dims: int = 2,
                  preset: str | None = None, **overrides: Any) -> nn.Module:
    """Instantiate a registered network from a preset plus keyword overrides."""
    spec = get_spec(name)
    if spatial_dims not in spec.spatial_dims:
        raise ConfigError(f"model {name!r} supports spatial_dims {list(spec.spatial_dims)}, "
                          f"not {spatial_dims}")
    kwargs = resolve_kwargs(name, preset, **{k: v for k, v in overrides.items()
                                             if k not in ("in_channels", "num_classes", "spatial_dims")})
    try:
        return spec.cls(in_channels=in_channels, num_classes=num_classes, spatial_dims=spatial_dims,
                        **kwargs, **spec.fixed)
    except (ValueError, AssertionError) as exc:
        raise ConfigError(f"model {name!r}: {exc}") from None
