"""Swin-Unet (Cao et al. 2021): SAttisUNet with plain concatenation skips — the ablation baseline.

Registered as a variant of :class:`~lightning_modules.networks.sattisunet.SAttisUNet` (same code,
knobs and presets) that fixes ``attentive_skips=False`` and ``skip_heads=None`` (unused with plain
skips): neither is an option of ``swinunet``, so with the same seed the two networks differ only in
their skip modules (:class:`~lightning_modules.networks.sattisunet.PlainSkip`).
"""

from __future__ import annotations

from lightning_modules.model_spec import register_variant
from lightning_modules.networks.sattisunet import PRESETS, RECIPES, SAttisUNet

register_variant(
    "swinunet",
    SAttisUNet,
    fixed={"attentive_skips": False, "skip_heads": None},
    description="Swin-Unet: Swin encoder/decoder with concatenation + Linear skips "
    "(SAttisUNet with attentive_skips=False).",
    presets=PRESETS,
    spatial_dims=(2,),
    recipes=RECIPES,
)
