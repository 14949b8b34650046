"""Plain U-Net (Ronneberger et al. 2015) in 2D or 3D with a skip-count ablation knob."""

from __future__ import annotations

import torch
import torch.nn as nn

from lightning_modules.model_spec import register
from lightning_modules.networks._blocks import ConvBlock, conv_nd, crop_to, kept_skips, pad_to_multiple


@register(
    "unet",
    presets={
        "tiny": dict(depth=3, base_channels=8),
        "small": dict(depth=4, base_channels=16),
        "paper": dict(depth=5, base_channels=64),
    },
    spatial_dims=(2, 3),
    # training defaults (runs.recipes): configs/demo.yaml's values, 0.967 held-out sc Dice (docs/models.md)
    recipes={"small": dict(lr=2e-3, max_epochs=8)},
)
class UNet(nn.Module):
    """U-Net: conv blocks, max-pool down, transposed-conv up, concatenated skips.

    ``depth`` is the number of resolution levels (``depth - 1`` poolings) and
    ``skip_connections`` how many skips are kept, the deepest first (0 = none, default all).
    A dropped skip is simply not concatenated, so the decoder block is narrower.
    Inputs of any size are padded to a multiple of ``2**(depth-1)`` and cropped back.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        spatial_dims: int = 2,
        depth: int = 4,
        base_channels: int = 16,
        skip_connections: int | None = None,
        norm: str = "instance",
        dropout: float = 0.0,
    ):
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth={depth} must be >= 2")
        n_skip_levels = depth - 1
        skip_connections = n_skip_levels if skip_connections is None else skip_connections
        self.keep = kept_skips(n_skip_levels, skip_connections)
        self.skip_connections = skip_connections
        self.multiple = 2 ** (depth - 1)
        chans = [base_channels * 2**i for i in range(depth)]
        conv = conv_nd(spatial_dims)
        convT = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[spatial_dims]
        self.pool = {2: nn.MaxPool2d, 3: nn.MaxPool3d}[spatial_dims](2)
        self.encoders = nn.ModuleList(
            ConvBlock(spatial_dims, in_channels if i == 0 else chans[i - 1], chans[i], norm, dropout)
            for i in range(depth)
        )
        self.ups = nn.ModuleList(convT(chans[i + 1], chans[i], 2, stride=2) for i in range(depth - 1))
        self.decoders = nn.ModuleList(
            ConvBlock(spatial_dims, chans[i] * (2 if self.keep[i] else 1), chans[i], norm, dropout)
            for i in range(depth - 1)
        )
        self.head = conv(chans[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, sizes = pad_to_multiple(x, self.multiple)
        feats = []
        for i, enc in enumerate(self.encoders):
            x = enc(x if i == 0 else self.pool(x))
            feats.append(x)
        x = feats[-1]
        for i in reversed(range(len(self.decoders))):
            x = self.ups[i](x)
            if self.keep[i]:
                x = torch.cat([feats[i], x], dim=1)
            x = self.decoders[i](x)
        return crop_to(self.head(x), sizes)
