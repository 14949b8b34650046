"""Swin-Unet (Cao et al. 2021): SAttisUNet with plain concatenation skips — the ablation baseline."""
from __future__ import annotations

import inspect
from typing import Any

from lightning_modules.networks.sattisunet import PRESETS, SAttisUNet
from lightning_modules.registry import register

_PRESETS = {name: {k: v for k, v in p.items() if k != "skip_heads"} for name, p in PRESETS.items()}


@register("swinunet", presets=_PRESETS, spatial_dims=(2,))
class SwinUNet(SAttisUNet):
    """Swin-Unet: Swin encoder/decoder with concatenation + Linear skips (``attentive_skips=False``).

    Same code, knobs and presets as :class:`SAttisUNet` minus ``attentive_skips`` (fixed to
    False) and ``skip_heads`` (unused), so with the same seed the two networks differ only
    in their skip modules.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, spatial_dims: int = 2, **knobs: Any):
        for knob in ("attentive_skips", "skip_heads"):
            if knob in knobs:
                raise ValueError(f"swinunet has plain skips and no {knob!r} knob; use model 'sattisunet'")
        super().__init__(in_channels, num_classes, spatial_dims, attentive_skips=False, **knobs)


# Advertise the parent's knobs (minus the two fixed ones) so the registry can list and check them.
_params = [p for name, p in inspect.signature(SAttisUNet.__init__).parameters.items()
           if name not in ("attentive_skips", "skip_heads")]
SwinUNet.__init__.__signature__ = inspect.Signature(_params)  # type: ignore[attr-defined]
