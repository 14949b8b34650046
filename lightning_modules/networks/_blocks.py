"""Building blocks shared by the networks (no model-specific code here)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_nd(spatial_dims: int) -> type[nn.Module]:
    """``nn.Conv2d`` or ``nn.Conv3d``."""
    return {2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims]


def norm_nd(spatial_dims: int, channels: int, kind: str = "instance") -> nn.Module:
    """Instance/batch/group normalisation for 2D or 3D feature maps."""
    if kind == "batch":
        return {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[spatial_dims](channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[spatial_dims](channels, affine=True)


class ConvBlock(nn.Module):
    """Two (conv → norm → LeakyReLU) layers, optional dropout between them."""

    def __init__(self, spatial_dims: int, in_ch: int, out_ch: int, norm: str = "instance",
                 dropout: float = 0.0):
        super().__init__()
        conv = conv_nd(spatial_dims)
        self.block = nn.Sequential(
            conv(in_ch, out_ch, 3, padding=1, bias=False), norm_nd(spatial_dims, out_ch, norm),
            nn.LeakyReLU(0.01, inplace=True),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            conv(out_ch, out_ch, 3, padding=1, bias=False), norm_nd(spatial_dims, out_ch, norm),
            nn.LeakyReLU(0.01, inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "constant") -> tuple[torch.Tensor, tuple[int, ...]]:
    """Pad the spatial axes of ``x`` (end side) to a multiple; returns the original sizes."""
    sizes = tuple(x.shape[2:])
    pads: list[int] = []
    for s in reversed(sizes):
        pads += [0, (-s) % multiple]
    if any(pads):
        x = F.pad(x, pads, mode=mode)
    return x, sizes


def crop_to(x: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """Crop the spatial axes of ``x`` back to ``sizes`` (inverse of :func:`pad_to_multiple`)."""
    return x[(slice(None), slice(None)) + tuple(slice(0, s) for s in sizes)]


def kept_skips(num_levels: int, skip_connections: int) -> list[bool]:
    """Which of ``num_levels`` skip levels (shallowest first) are kept.

    ``skip_connections`` counts kept skips, the deepest first, as TransUNet's ``n_skip``:
    with 4 levels and 1 skip only the deepest level keeps its skip.
    """
    if not 0 <= skip_connections <= num_levels:
        raise ValueError(f"skip_connections={skip_connections} must be in 0..{num_levels}")
    return [i >= num_levels - skip_connections for i in range(num_levels)]


class SkipConcat(nn.Module):
    """Concatenate a decoder feature and an encoder skip along channels.

    A module (rather than an inline ``torch.cat``) so that the skip paths a network really
    uses can be counted with forward hooks: modules with ``is_skip_path = True`` are the
    skip paths (tests/test_models.py counts their calls against ``skip_connections``).
    """

    is_skip_path = True

    def __init__(self, skip_first: bool = False):
        super().__init__()
        self.skip_first = skip_first

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return torch.cat([skip, x] if self.skip_first else [x, skip], dim=1)
