"""Dilated CNN of Perone et al. 2018 (the network behind ``sct_deepseg_gm``), 2D or 3D."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from lightning_modules.model_spec import register
from lightning_modules.networks._blocks import FastDropout, conv_nd, norm_nd


class ConvReluBN(nn.Sequential):
    """conv (with bias) → ReLU → BatchNorm → Dropout: the layer order of the Keras reference."""

    def __init__(
        self,
        spatial_dims: int,
        in_ch: int,
        out_ch: int,
        kernel: int,
        dilation: int = 1,
        dropout: float = 0.0,
        bn_momentum: float = 0.1,
    ):
        bn = norm_nd(spatial_dims, out_ch, "batch")
        bn.momentum = bn_momentum
        super().__init__(
            conv_nd(spatial_dims)(in_ch, out_ch, kernel, padding=dilation * (kernel // 2), dilation=dilation),
            nn.ReLU(inplace=True),
            bn,
            FastDropout(dropout) if dropout > 0 else nn.Identity(),
        )


def keras_param_count(model: nn.Module) -> int:
    """Parameters as Keras counts them: trainable ones plus BatchNorm moving mean/variance."""
    bn_stats = sum(
        m.running_mean.numel() + m.running_var.numel()
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
    )
    return sum(p.numel() for p in model.parameters()) + bn_stats


@register(
    "dilated_cnn",
    presets={
        "tiny": dict(base_channels=8, dilations=(6, 12), amort_channels=16, dropout=0.0, dropout_concat=0.0),
        "small": dict(base_channels=16, amort_channels=32, dropout=0.1, dropout_concat=0.2),
        "paper": dict(
            base_channels=32,
            dilations=(6, 12, 18, 24),
            amort_channels=64,
            dropout=0.4,
            dropout_concat=0.4,
            bn_momentum=0.9,
        ),
    },
    spatial_dims=(2, 3),
)
class DilatedCNN(nn.Module):
    """Perone et al. 2018 dilated CNN: no pooling, ASPP-like dilated branches, global context.

    Layer arrangement (that of SCT's ``deepseg_gm`` Keras model, which reproduces the paper's
    parameter count exactly): two 3×3 convs → two 3×3 convs with dilation 2 → parallel
    branches on that output: a "1×1" branch (3×3 conv then 1×1 conv) and, per dilation in
    ``dilations`` (6, 12, 18, 24), two 3×3 convs with that dilation; plus a global-context
    branch: the global average of the *first* conv pair's output broadcast over the image
    (no conv). Concatenation (order: 1×1, d6, d12, d18, global, d24) → BatchNorm → dropout
    (``dropout_concat``) → 1×1 conv to ``amort_channels`` (64) → ReLU → BatchNorm → dropout →
    1×1 conv to ``num_classes``. Every conv has a bias and is followed by ReLU → BatchNorm →
    dropout (``dropout``, 0.4 in the paper); all convs have ``base_channels`` (32) outputs.

    Parameter count at the paper setting: 127,585 as Keras counts it (trainable weights plus
    BatchNorm moving mean/variance, see :func:`keras_param_count`) with the paper's single
    sigmoid output (``num_classes=1``); PyTorch's trainable count is 126,177 (126,242 with
    two softmax classes). The arrangement "3×3 dilated then 1×1" per branch gives 94,817,
    so each dilated branch has two dilated 3×3 convs. Keras' BatchNorm ``momentum=0.1``
    means a running-average weight of 0.9 on the *new* batch, i.e. PyTorch momentum 0.9
    (``paper`` preset); BatchNorm eps is PyTorch's 1e-5 (Keras 1e-3). Any input size works
    (stride 1, "same" padding).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        spatial_dims: int = 2,
        base_channels: int = 32,
        dilations: Sequence[int] = (6, 12, 18, 24),
        amort_channels: int = 64,
        dropout: float = 0.4,
        dropout_concat: float = 0.4,
        bn_momentum: float = 0.1,
    ):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims={spatial_dims} must be 2 or 3")
        if base_channels < 1 or amort_channels < 1:
            raise ValueError("base_channels and amort_channels must be positive")
        if any(int(d) < 1 for d in dilations):
            raise ValueError(f"dilations={list(dilations)} must be positive integers")
        for name, p in (("dropout", dropout), ("dropout_concat", dropout_concat), ("bn_momentum", bn_momentum)):
            if not 0 <= p < 1:
                raise ValueError(f"{name}={p} must be in [0, 1)")
        c, sd = base_channels, spatial_dims
        layer = dict(dropout=dropout, bn_momentum=bn_momentum)
        self.stem = nn.Sequential(ConvReluBN(sd, in_channels, c, 3, **layer), ConvReluBN(sd, c, c, 3, **layer))
        self.rate2 = nn.Sequential(ConvReluBN(sd, c, c, 3, 2, **layer), ConvReluBN(sd, c, c, 3, 2, **layer))
        self.branch1x1 = nn.Sequential(ConvReluBN(sd, c, c, 3, **layer), ConvReluBN(sd, c, c, 1, **layer))
        self.dilated = nn.ModuleList(
            nn.Sequential(ConvReluBN(sd, c, c, 3, int(d), **layer), ConvReluBN(sd, c, c, 3, int(d), **layer))
            for d in dilations
        )
        n_cat = c * (len(dilations) + 2)
        self.concat_bn = norm_nd(sd, n_cat, "batch")
        self.concat_bn.momentum = bn_momentum
        self.concat_drop = FastDropout(dropout_concat) if dropout_concat > 0 else nn.Identity()
        self.amort = ConvReluBN(sd, n_cat, amort_channels, 1, **layer)
        self.head = conv_nd(sd)(amort_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.stem(x)
        y = self.rate2(stem)
        branches = [self.branch1x1(y)] + [b(y) for b in self.dilated]
        axes = tuple(range(2, x.ndim))
        glob = stem.mean(dim=axes, keepdim=True).expand_as(stem)
        # Reference order: 1×1, d6, d12, d18, global, d24 (global just before the last branch).
        branches.insert(len(branches) - 1 if len(self.dilated) else len(branches), glob)
        y = self.concat_drop(self.concat_bn(torch.cat(branches, dim=1)))
        return self.head(self.amort(y))
