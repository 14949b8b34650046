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

    def __init__(self, spatial_dims: int, in_ch: int, out_ch: int, norm: str = "instance", dropout: float = 0.0):
        super().__init__()
        conv = conv_nd(spatial_dims)
        self.block = nn.Sequential(
            conv(in_ch, out_ch, 3, padding=1, bias=False),
            norm_nd(spatial_dims, out_ch, norm),
            nn.LeakyReLU(0.01, inplace=True),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            conv(out_ch, out_ch, 3, padding=1, bias=False),
            norm_nd(spatial_dims, out_ch, norm),
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


class FastDropout(nn.Module):
    """Element dropout with a cheaper CPU mask than ``nn.Dropout`` (same Bernoulli semantics).

    ``nn.Dropout`` draws one random number per element, which costs ~40× a ReLU on CPU; here
    one 64-bit draw gives eight mask bytes. The drop probability is therefore rounded to a
    multiple of 1/256 (0.4 → 102/256 = 0.398) and kept values are scaled by the exact
    ``1 / keep`` so expectations are unchanged. Identity in eval mode.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout p={p} must be in [0, 1)")
        self.p = p
        self.threshold = int(round(p * 256))

    def extra_repr(self) -> str:
        return f"p={self.p} (effective {self.threshold}/256)"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == 0:
            return x
        n = x.numel()
        draws = torch.empty((n + 7) // 8, dtype=torch.int64, device=x.device).random_(-(2**63), None)
        byte = draws.view(torch.uint8)[:n]
        cl = {4: torch.channels_last, 5: torch.channels_last_3d}.get(x.dim())
        if cl is not None and not x.is_contiguous() and x.is_contiguous(memory_format=cl):
            byte = byte.as_strided(x.shape, x.stride())  # same memory order as x: faster elementwise op
        else:
            byte = byte.view(x.shape)
        mask = (byte >= self.threshold).to(x.dtype).mul_(256.0 / (256 - self.threshold))
        return x * mask
