"""TransUNet (Chen et al. 2021): ResNet-v2 encoder + ViT over bottleneck tokens + cascaded upsampler."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.errors import InputError
from lightning_modules.model_spec import register
from lightning_modules.networks._blocks import SkipConcat, crop_to, kept_skips, pad_to_multiple
from lightning_modules.networks._pretrained import PretrainedReport, UsedKeys, assign, read_weights, rgb_to_gray
from lightning_modules.networks._transformer import ViTBlock, init_transformer_weights


class StdConv2d(nn.Conv2d):
    """Conv2d with weight standardisation (BiT / R50-ViT hybrid)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v, m = torch.var_mean(self.weight, dim=[1, 2, 3], keepdim=True, unbiased=False)
        return F.conv2d(
            x,
            (self.weight - m) / torch.sqrt(v + 1e-5),
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )


def _gn(channels: int, groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with 32 groups (fewer when the width does not allow), eps 1e-6 as in R50-ViT."""
    return nn.GroupNorm(math.gcd(groups, channels), channels, eps=1e-6)


class Bottleneck(nn.Module):
    """R50-ViT bottleneck unit: 1×1 → 3×3 (stride) → 1×1 std-convs with GroupNorm, projection shortcut."""

    def __init__(self, cin: int, cout: int, cmid: int, stride: int = 1):
        super().__init__()
        self.conv1, self.gn1 = StdConv2d(cin, cmid, 1, bias=False), _gn(cmid)
        self.conv2, self.gn2 = StdConv2d(cmid, cmid, 3, stride=stride, padding=1, bias=False), _gn(cmid)
        self.conv3, self.gn3 = StdConv2d(cmid, cout, 1, bias=False), _gn(cout)
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or cin != cout:
            self.downsample = StdConv2d(cin, cout, 1, stride=stride, bias=False)
            self.gn_proj = nn.GroupNorm(cout, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.gn_proj(self.downsample(x)) if hasattr(self, "downsample") else x
        y = self.relu(self.gn1(self.conv1(x)))
        y = self.relu(self.gn2(self.conv2(y)))
        return self.relu(residual + self.gn3(self.conv3(y)))


class ResNetV2(nn.Module):
    """R50 trunk of R50-ViT: root (7×7/2 + GN + ReLU, max-pool /2) and three blocks (/1, /2, /2).

    Returns the ``16·width``-channel map at 1/16 and the skip features, deepest first:
    block 2 (``8·width``, 1/8), block 1 (``4·width``, 1/4), root (``width``, 1/2).
    """

    def __init__(self, in_channels: int, width: int, units: Sequence[int]):
        super().__init__()
        self.root = nn.Sequential()
        self.root.add_module("conv", StdConv2d(in_channels, width, 7, stride=2, padding=3, bias=False))
        self.root.add_module("gn", _gn(width))
        self.root.add_module("relu", nn.ReLU(inplace=True))
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.body = nn.Sequential()
        cin = width
        for b, n in enumerate(units):
            cout, cmid = width * 4 * 2**b, width * 2**b
            block = nn.Sequential()
            for u in range(n):
                block.add_module(
                    f"unit{u + 1}",
                    Bottleneck(cin if u == 0 else cout, cout, cmid, stride=2 if (u == 0 and b > 0) else 1),
                )
            self.body.add_module(f"block{b + 1}", block)
            cin = cout

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.root(x)
        feats = [x]
        x = self.pool(x)
        for i, block in enumerate(self.body):
            x = block(x)
            if i < len(self.body) - 1:
                feats.append(x)
        return x, feats[::-1]


class ConvBNReLU(nn.Sequential):
    """3×3 conv (no bias) → BatchNorm → ReLU (TransUNet's ``Conv2dReLU``)."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DecoderBlock(nn.Module):
    """Cascaded-upsampler block: bilinear ×2 (align_corners, as TransUNet), [skip concat], 2 × ConvBNReLU."""

    def __init__(self, cin: int, cout: int, skip_channels: int):
        super().__init__()
        self.skip = SkipConcat() if skip_channels else None
        self.conv1 = ConvBNReLU(cin + skip_channels, cout)
        self.conv2 = ConvBNReLU(cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        if self.skip is not None:
            x = self.skip(x, skip)
        return self.conv2(self.conv1(x))


class HybridViTEncoder(nn.Module):
    """R50 trunk + 1×1 patch embedding + ViT blocks + final LayerNorm (R50-ViT-B/16 layout)."""

    def __init__(
        self,
        in_channels: int,
        width: int,
        units: Sequence[int],
        hidden_size: int,
        num_layers: int,
        num_heads: int,
        mlp_dim: int,
        pos_grid: int,
        dropout: float,
        attn_dropout: float,
    ):
        super().__init__()
        self.resnet = ResNetV2(in_channels, width, units)
        self.patch_embeddings = nn.Conv2d(width * 16, hidden_size, 1)
        self.pos_grid = pos_grid
        self.position_embeddings = nn.Parameter(torch.zeros(1, pos_grid * pos_grid, hidden_size))
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            ViTBlock(hidden_size, num_heads, mlp_dim, dropout, attn_dropout) for _ in range(num_layers)
        )
        self.encoder_norm = nn.LayerNorm(hidden_size, eps=1e-6)

    def position_embedding(self, h: int, w: int) -> torch.Tensor:
        """Position embeddings for an ``h × w`` token grid (bilinear interpolation of the learned grid)."""
        pe = self.position_embeddings
        if (h, w) == (self.pos_grid, self.pos_grid):
            return pe
        g = pe.transpose(1, 2).reshape(1, -1, self.pos_grid, self.pos_grid)
        return F.interpolate(g, size=(h, w), mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x, feats = self.resnet(x)
        x = self.patch_embeddings(x)
        b, c, h, w = x.shape
        t = self.dropout(x.flatten(2).transpose(1, 2) + self.position_embedding(h, w))
        for blk in self.blocks:
            t = blk(t)
        t = self.encoder_norm(t)
        return t.transpose(1, 2).reshape(b, c, h, w), feats


@register(
    "transunet",
    presets={
        "tiny": dict(
            resnet_width=8,
            resnet_units=(1, 1, 1),
            hidden_size=32,
            num_layers=1,
            num_heads=2,
            mlp_dim=64,
            head_channels=32,
            decoder_channels=(16, 8, 8, 8),
            pos_grid=4,
            dropout=0.0,
        ),
        "small": dict(
            resnet_width=16,
            resnet_units=(1, 2, 2),
            hidden_size=128,
            num_layers=2,
            num_heads=4,
            mlp_dim=256,
            head_channels=128,
            decoder_channels=(64, 32, 16, 16),
            pos_grid=4,
            dropout=0.0,
        ),
        "paper": dict(
            resnet_width=64,
            resnet_units=(3, 4, 9),
            hidden_size=768,
            num_layers=12,
            num_heads=12,
            mlp_dim=3072,
            head_channels=512,
            decoder_channels=(256, 128, 64, 16),
            pos_grid=14,
            dropout=0.1,
        ),
    },
    spatial_dims=(2,),
)
class TransUNet(nn.Module):
    """TransUNet: R50-style CNN encoder, ViT over the 1/16 tokens, cascaded upsampler with CNN skips.

    Follows the reference R50-ViT-B/16 TransUNet: weight-standardised convs with GroupNorm,
    a 1×1 patch embedding of the 1/16 feature map, pre-norm ViT blocks, ``conv_more`` (3×3
    conv-BN-ReLU to ``head_channels``), four decoder blocks (bilinear ×2, concat skip, two
    conv-BN-ReLU) and a 3×3 segmentation head. ``skip_connections`` is TransUNet's
    ``n_skip`` (0..3, deepest first: 1/8, 1/4, 1/2). Differences: the input channel is used as
    is (no repeat to RGB); the root max-pool has padding 1 so every size halves exactly; the
    image is zero-padded to a multiple of 16 and cropped back; position embeddings are
    learned on a ``pos_grid²`` grid and bilinearly interpolated to the actual token grid;
    ViT linear layers start from trunc-normal(0.02) (ViT) instead of Xavier.
    No pretrained weights by default: :meth:`load_pretrained` (or the ``pretrained`` knob, the
    same as ``swinunet``/``sattisunet``'s) loads R50-ViT-B/16 weights from a local file (Google's
    ``R50+ViT-B_16.npz``, timm's ``vit_base_r50_s16_224`` or a state dict of this class's ``encoder``).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        spatial_dims: int = 2,
        resnet_width: int = 64,
        resnet_units: Sequence[int] = (3, 4, 9),
        hidden_size: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        mlp_dim: int = 3072,
        head_channels: int = 512,
        decoder_channels: Sequence[int] = (256, 128, 64, 16),
        pos_grid: int = 14,
        skip_connections: int | None = None,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        pretrained: str | None = None,
    ):
        super().__init__()
        self.multiple = 16  # the image is padded to this multiple (the ResNet stem's and ViT grid's stride)
        decoder_channels, resnet_units = [int(c) for c in decoder_channels], [int(u) for u in resnet_units]
        if spatial_dims != 2:
            raise ValueError(f"spatial_dims={spatial_dims}: only 2D is supported")
        if len(resnet_units) != 3 or min(resnet_units) < 1:
            raise ValueError(f"resnet_units={resnet_units} must be three positive unit counts")
        if len(decoder_channels) != 4 or min(decoder_channels) < 1:
            raise ValueError(f"decoder_channels={decoder_channels} must be four positive channel counts")
        if num_heads < 1 or hidden_size % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide hidden_size={hidden_size}")
        if min(resnet_width, num_layers, mlp_dim, head_channels, pos_grid) < 1:
            raise ValueError("resnet_width, num_layers, mlp_dim, head_channels and pos_grid must be positive")
        for name, p in (("dropout", dropout), ("attn_dropout", attn_dropout)):
            if not 0 <= p < 1:
                raise ValueError(f"{name}={p} must be in [0, 1)")
        skip_connections = 3 if skip_connections is None else skip_connections
        self.keep = kept_skips(3, skip_connections)  # levels 1/2, 1/4, 1/8 (shallowest first)
        self.skip_connections = skip_connections
        self.encoder = HybridViTEncoder(
            in_channels,
            resnet_width,
            resnet_units,
            hidden_size,
            num_layers,
            num_heads,
            mlp_dim,
            pos_grid,
            dropout,
            attn_dropout,
        )
        self.encoder.blocks.apply(init_transformer_weights)
        self.conv_more = ConvBNReLU(hidden_size, head_channels)
        skip_chs = [resnet_width * 8, resnet_width * 4, resnet_width, 0]
        ins = [head_channels] + decoder_channels[:-1]
        self.decoder = nn.ModuleList(
            DecoderBlock(ins[i], decoder_channels[i], skip_chs[i] if self._uses_skip(i) else 0) for i in range(4)
        )
        self.seg_head = nn.Conv2d(decoder_channels[-1], num_classes, 3, padding=1)
        if pretrained:
            self.load_pretrained(pretrained)

    def _uses_skip(self, block: int) -> bool:
        """Decoder block ``block`` (0 = deepest) concatenates the skip of level ``2 - block``."""
        return block < 3 and self.keep[2 - block]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, sizes = pad_to_multiple(x, self.multiple)
        y, feats = self.encoder(x)
        y = self.conv_more(y)
        for i, block in enumerate(self.decoder):
            y = block(y, feats[i] if self._uses_skip(i) else None)
        return crop_to(self.seg_head(y), sizes)

    # ------------------------------------------------------------------ pretrained weights
    def load_pretrained(self, path: str | Path) -> PretrainedReport:
        """Load encoder weights from a local file; returns the keys loaded and skipped.

        ``*.npz``: Google's R50+ViT-B/16 checkpoint (as used by TransUNet; needs the ``paper``
        encoder sizes): kernels are transposed to PyTorch layout, q/k/v are fused, the class
        token's position embedding is dropped and the grid interpolated to ``pos_grid``.
        A torch/safetensors file of timm's ``vit_base_r50_s16_224`` (``patch_embed.backbone.*``,
        ``blocks.N.*``; timm's conversion of the same Google weights). Otherwise a torch file holding
        a state dict (optionally under ``"state_dict"``) whose ``encoder.*`` keys match this model
        (e.g. saved from another run). Either way an RGB root
        kernel is summed over its colour axis for a 1-channel input, every encoder tensor must
        be present with the right shape (one-line error naming the file and key), and the
        decoder is left untouched (:mod:`~lightning_modules.networks._pretrained`).
        """
        path, raw = read_weights(path)
        in_ch = self.encoder.resnet.root.conv.in_channels
        try:
            if path.suffix == ".npz":
                used = UsedKeys(raw)
                sd = _npz_to_state_dict(used, self.encoder, path)
                skipped, layout = used.unused(), "Google R50+ViT-B/16 .npz"
            elif "patch_embed.backbone.stem.conv.weight" in raw:
                used = UsedKeys(raw)
                sd = _timm_to_state_dict(used, self.encoder, path)
                skipped, layout = used.unused(), "timm vit_base_r50_s16_224"
            else:
                sd = {k[len("encoder.") :]: v for k, v in raw.items() if k.startswith("encoder.")}
                skipped, layout = sorted(k for k in raw if not k.startswith("encoder.")), "cordbench TransUNet"
                root = "resnet.root.conv.weight"
                if root in sd:
                    sd[root] = rgb_to_gray(sd[root], in_ch, f"encoder.{root}", path)
        except (ValueError, KeyError) as exc:
            if isinstance(exc, KeyError):
                raise InputError(f"missing weight {exc.args[0]!r}", path) from None
            raise InputError(f"cannot read weights: {exc}", path) from None
        mapped = {f"encoder.{k}": v for k, v in sd.items()}
        return assign(self, mapped, [f"encoder.{k}" for k in self.encoder.state_dict()], skipped, path, layout)


def _conv(w: np.ndarray) -> torch.Tensor:
    """HWIO kernel → OIHW tensor."""
    return torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))).float()


def _t(w: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(w)).float()


def _grid_position_embedding(pe: torch.Tensor, pos_grid: int) -> torch.Tensor:
    """``(1, [1 +] g², C)`` ViT position embeddings → ``(1, pos_grid², C)``: class token dropped, grid resized."""
    if pe.shape[1] != pos_grid**2:
        pe = pe[:, 1:] if int(math.isqrt(pe.shape[1] - 1)) ** 2 == pe.shape[1] - 1 else pe
        g = math.isqrt(pe.shape[1])
        if g * g != pe.shape[1]:
            raise ValueError(f"position embedding of {pe.shape[1]} tokens is not a square grid")
        if g != pos_grid:
            pe = (
                F.interpolate(
                    pe.transpose(1, 2).reshape(1, -1, g, g), size=(pos_grid,) * 2, mode="bilinear", align_corners=False
                )
                .flatten(2)
                .transpose(1, 2)
            )
    return pe.contiguous()


_TIMM_BLOCK = {
    "norm1": "attention_norm",
    "attn.qkv": "qkv",
    "attn.proj": "out",
    "norm2": "ffn_norm",
    "mlp.fc1": "mlp.linear1",
    "mlp.fc2": "mlp.linear2",
}


def _timm_to_state_dict(w: dict[str, torch.Tensor], enc: HybridViTEncoder, path: Path) -> dict[str, torch.Tensor]:
    """Map timm's ``vit_base_r50_s16_224`` names onto :class:`HybridViTEncoder` keys (same tensor layouts).

    The weights are Google's (timm converted the ``.npz``); the network stays TransUNet's (root padding 3,
    ``gn_proj`` with one group per channel), as when TransUNet loads the ``.npz``.
    """
    bb = "patch_embed.backbone."
    sd = {
        "resnet.root.conv.weight": rgb_to_gray(
            w[bb + "stem.conv.weight"], enc.resnet.root.conv.in_channels, bb + "stem.conv.weight", path
        ),
        "resnet.root.gn.weight": w[bb + "stem.norm.weight"],
        "resnet.root.gn.bias": w[bb + "stem.norm.bias"],
        "patch_embeddings.weight": w["patch_embed.proj.weight"],
        "patch_embeddings.bias": w["patch_embed.proj.bias"],
        "position_embeddings": _grid_position_embedding(w["pos_embed"], enc.pos_grid),
        "encoder_norm.weight": w["norm.weight"],
        "encoder_norm.bias": w["norm.bias"],
    }
    for b, block in enumerate(enc.resnet.body):
        for u, unit in enumerate(block):
            src, dst = f"{bb}stages.{b}.blocks.{u}.", f"resnet.body.block{b + 1}.unit{u + 1}."
            pairs = [(f"conv{i}.weight", f"conv{i}.weight") for i in (1, 2, 3)]
            pairs += [(f"norm{i}.{p}", f"gn{i}.{p}") for i in (1, 2, 3) for p in ("weight", "bias")]
            if hasattr(unit, "downsample"):
                pairs += [
                    ("downsample.conv.weight", "downsample.weight"),
                    ("downsample.norm.weight", "gn_proj.weight"),
                    ("downsample.norm.bias", "gn_proj.bias"),
                ]
            sd.update({dst + d: w[src + s] for s, d in pairs})
    for i in range(len(enc.blocks)):
        for s, d in _TIMM_BLOCK.items():
            for p in ("weight", "bias"):
                sd[f"blocks.{i}.{d}.{p}"] = w[f"blocks.{i}.{s}.{p}"]
    return sd


def _npz_to_state_dict(w: dict[str, np.ndarray], enc: HybridViTEncoder, path: Path) -> dict[str, torch.Tensor]:
    """Map Google's R50+ViT-B/16 ``.npz`` names and layouts onto :class:`HybridViTEncoder` keys."""
    sd: dict[str, torch.Tensor] = {}
    sd["resnet.root.conv.weight"] = rgb_to_gray(
        _conv(w["conv_root/kernel"]), enc.resnet.root.conv.in_channels, "conv_root/kernel", path
    )
    sd["resnet.root.gn.weight"], sd["resnet.root.gn.bias"] = (
        _t(w["gn_root/scale"]).view(-1),
        _t(w["gn_root/bias"]).view(-1),
    )
    for bname, block in enc.resnet.body.named_children():
        for uname, unit in block.named_children():
            src, dst = f"{bname}/{uname}", f"resnet.body.{bname}.{uname}"
            names = [("conv1", "gn1"), ("conv2", "gn2"), ("conv3", "gn3")]
            if hasattr(unit, "downsample"):
                names.append(("downsample", "gn_proj"))
            for conv, gn in names:
                sconv = "conv_proj" if conv == "downsample" else conv
                sd[f"{dst}.{conv}.weight"] = _conv(w[f"{src}/{sconv}/kernel"])
                sd[f"{dst}.{gn}.weight"] = _t(w[f"{src}/{gn}/scale"]).view(-1)
                sd[f"{dst}.{gn}.bias"] = _t(w[f"{src}/{gn}/bias"]).view(-1)
    sd["patch_embeddings.weight"] = _conv(w["embedding/kernel"])
    sd["patch_embeddings.bias"] = _t(w["embedding/bias"])
    sd["position_embeddings"] = _grid_position_embedding(
        _t(w["Transformer/posembed_input/pos_embedding"]), enc.pos_grid
    )
    sd["encoder_norm.weight"] = _t(w["Transformer/encoder_norm/scale"])
    sd["encoder_norm.bias"] = _t(w["Transformer/encoder_norm/bias"])
    for i in range(len(enc.blocks)):
        r, d = f"Transformer/encoderblock_{i}", f"blocks.{i}"
        att = f"{r}/MultiHeadDotProductAttention_1"
        hid = w[f"{att}/query/kernel"].shape[0]
        sd[f"{d}.qkv.weight"] = torch.cat(
            [_t(w[f"{att}/{q}/kernel"]).reshape(hid, hid).t() for q in ("query", "key", "value")]
        )
        sd[f"{d}.qkv.bias"] = torch.cat([_t(w[f"{att}/{q}/bias"]).reshape(-1) for q in ("query", "key", "value")])
        sd[f"{d}.out.weight"] = _t(w[f"{att}/out/kernel"]).reshape(hid, hid).t()
        sd[f"{d}.out.bias"] = _t(w[f"{att}/out/bias"]).reshape(-1)
        for j, lin in ((0, "linear1"), (1, "linear2")):
            sd[f"{d}.mlp.{lin}.weight"] = _t(w[f"{r}/MlpBlock_3/Dense_{j}/kernel"]).t()
            sd[f"{d}.mlp.{lin}.bias"] = _t(w[f"{r}/MlpBlock_3/Dense_{j}/bias"])
        for norm, src in (("attention_norm", "LayerNorm_0"), ("ffn_norm", "LayerNorm_2")):
            sd[f"{d}.{norm}.weight"] = _t(w[f"{r}/{src}/scale"])
            sd[f"{d}.{norm}.bias"] = _t(w[f"{r}/{src}/bias"])
    return {k: v.contiguous() for k, v in sd.items()}
