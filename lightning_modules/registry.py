"""Model registry: adding a model is adding one file to ``lightning_modules/networks/`` and its name to the
explicit list in ``lightning_modules/networks/__init__.py``.

A network module decorates its class with ``@register("name", presets={...})``; a variant of a
registered class with some knobs fixed (Swin-Unet = SAttisUNet with ``attentive_skips=False``) is
registered with :func:`register_variant`, as timm registers model variants. Every
network class takes ``in_channels``, ``num_classes`` and ``spatial_dims`` plus its own
knobs as keyword arguments, accepts inputs of any spatial size and returns logits of the
input's size. Presets: ``tiny`` (tests), ``small`` (laptop), ``paper`` (GPU, paper size).
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from core.errors import ConfigError
from lightning_modules.model_spec import _REGISTRY, ModelSpec, register, register_variant  # noqa: F401 (re-exported)
from lightning_modules.presets import PRESET_NAMES  # noqa: F401 (re-exported)

_LOADED = False


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
            raise ConfigError(f"model {name!r} has no preset {preset!r}; presets: {', '.join(spec.presets) or 'none'}")
        kwargs.update(spec.presets[preset])
    knobs = spec.knobs()
    unknown = sorted(set(overrides) - set(knobs) - {"in_channels", "num_classes", "spatial_dims"})
    if unknown:
        raise ConfigError(f"model {name!r} has no option(s) {unknown}; options: {sorted(knobs)}")
    kwargs.update(overrides)
    return kwargs


def build_network(
    name: str,
    in_channels: int = 1,
    num_classes: int = 2,
    spatial_dims: int = 2,
    preset: str | None = None,
    **overrides: Any,
) -> nn.Module:
    """Instantiate a registered network from a preset plus keyword overrides."""
    spec = get_spec(name)
    if spatial_dims not in spec.spatial_dims:
        raise ConfigError(f"model {name!r} supports spatial_dims {list(spec.spatial_dims)}, not {spatial_dims}")
    kwargs = resolve_kwargs(
        name, preset, **{k: v for k, v in overrides.items() if k not in ("in_channels", "num_classes", "spatial_dims")}
    )
    try:
        return spec.cls(
            in_channels=in_channels, num_classes=num_classes, spatial_dims=spatial_dims, **kwargs, **spec.fixed
        )
    except (ValueError, AssertionError) as exc:
        raise ConfigError(f"model {name!r}: {exc}") from None
