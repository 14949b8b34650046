"""SAttisUNet: Swin-Unet with attentive skip connections (seed 000, §III.B).

No public code exists; this is the project's reference implementation. The class docstring
lists every choice the seed leaves open.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from lightning_modules.model_spec import register
from lightning_modules.networks._blocks import crop_to, kept_skips, pad_to_multiple
from lightning_modules.networks._pretrained import PretrainedReport
from lightning_modules.networks._pretrained_swin import load_swin_pretrained
from lightning_modules.networks._transformer import (
    XCA,
    PatchEmbed2d,
    PatchExpand2d,
    PatchMergingV2,
    SwinStage,
    init_transformer_weights,
)


def _resample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resample a ``(B, H, W, C)`` map to ``size``: area-average down, bilinear up.

    Down by a whole factor (always the case inside :class:`SAttisUNet`, whose grids halve per level) the
    area average is an average pool with kernel = stride = the factor: the same means as adaptive pooling,
    and an operator the ONNX exporter accepts with a constant kernel.
    """
    if tuple(x.shape[1:3]) == tuple(size):
        return x
    y = x.permute(0, 3, 1, 2)
    if x.shape[1] >= size[0] and x.shape[2] >= size[1]:
        fh, fw = int(x.shape[1]) // int(size[0]), int(x.shape[2]) // int(size[1])
        whole = fh * int(size[0]) == int(x.shape[1]) and fw * int(size[1]) == int(x.shape[2])
        y = F.avg_pool2d(y, (fh, fw)) if whole else F.adaptive_avg_pool2d(y, size)
    else:
        y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
    return y.permute(0, 2, 3, 1)


class PlainSkip(nn.Module):
    """Swin-Unet skip: concatenate ``[decoder, encoder]`` channels and project back (Linear 2C→C)."""

    is_skip_path = True

    def __init__(self, level: int, dim: int):
        super().__init__()
        self.level = level
        self.fuse = nn.Linear(2 * dim, dim)

    def forward(self, dec: torch.Tensor, enc: dict[int, torch.Tensor]) -> torch.Tensor:
        return self.fuse(torch.cat([dec, enc[self.level]], dim=-1))


class AttentiveSkip(nn.Module):
    """SAttisUNet attentive skip at one level: merging cross-covariance attention, then fusion.

    ``merged = Linear(LayerNorm(concat_j resample(E_j)))`` over the encoder features ``E_j`` of
    all kept levels ``j`` (resampled to this level's grid); ``S = E_level + XCA(q=LN(D),
    kv=LN(merged))`` with ``D`` the decoder feature; output ``Linear([D, S])`` (2C→C).
    """

    is_skip_path = True

    def __init__(self, level: int, dims: dict[int, int], num_heads: int, qkv_bias: bool = True, drop: float = 0.0):
        super().__init__()
        self.level, self.sources = level, sorted(dims)
        dim = dims[level]
        total = sum(dims[j] for j in self.sources)
        self.norm_src = nn.LayerNorm(total)
        self.merge = nn.Linear(total, dim)
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.xca = XCA(dim, num_heads, qkv_bias=qkv_bias, proj_drop=drop)
        self.fuse = nn.Linear(2 * dim, dim)

    def forward(self, dec: torch.Tensor, enc: dict[int, torch.Tensor]) -> torch.Tensor:
        b, h, w, c = dec.shape
        merged = torch.cat([_resample(enc[j], (h, w)) for j in self.sources], dim=-1)
        merged = self.merge(self.norm_src(merged))
        attn = self.xca(self.norm_q(dec).reshape(b, h * w, c), self.norm_kv(merged).reshape(b, h * w, c))
        skip = enc[self.level] + attn.view(b, h, w, c)
        return self.fuse(torch.cat([dec, skip], dim=-1))


PRESETS = {
    "tiny": dict(
        embed_dim=8,
        depths=[2, 1, 1],
        num_heads=[1, 2, 2],
        skip_heads=2,
        window_size=4,
        patch_size=2,
        drop_path_rate=0.0,
    ),
    # small: window 4. At the 48²-64² training patches the stage grids are 24-32, 12-16 and 6-8
    # tokens, so every stage shifts its windows; with window 8 the last stage's window covered its whole
    # 8² grid at 64², silently disabling the shift there.
    "small": dict(
        embed_dim=32,
        depths=[2, 2, 2],
        num_heads=[2, 4, 8],
        skip_heads=4,
        window_size=4,
        patch_size=2,
        drop_path_rate=0.0,
    ),
    "paper": dict(
        embed_dim=96,
        depths=[2, 2, 2, 2],
        num_heads=[3, 6, 12, 24],
        skip_heads=None,
        window_size=7,
        patch_size=4,
        drop_path_rate=0.2,
    ),
}


#: Training defaults per preset (runs.recipes; how they were chosen: docs/models.md, "Training recipes").
RECIPES = {
    "small": dict(lr=3e-3, warmup_epochs=1, weight_decay=1e-4, max_epochs=16),
}


@register("sattisunet", presets=PRESETS, spatial_dims=(2,), recipes=RECIPES)
class SAttisUNet(nn.Module):
    """SAttisUNet: Swin-Unet encoder/decoder whose skips pass through attentive (XCA) skip modules.

    Architecture (Swin-Unet, Cao et al. 2021, unless noted): patch embedding
    (``patch_size`` conv + LayerNorm) → ``len(depths)`` stages of Swin blocks (regular and
    shifted windows alternating), patch merging between stages (channels ×2, grid /2) →
    LayerNorm on the bottleneck → decoder: patch expanding (×2 up, channels /2), skip
    fusion, Swin blocks with the encoder's depth/heads of that level → LayerNorm → final
    patch expanding by ``patch_size`` → linear head (1×1 conv). Stage ``l`` has
    ``embed_dim·2**l`` channels; there are ``stages − 1`` skip levels.

    Choices where the seed (§III.B) is silent:

    * Skip taps are Swin-Unet's: the feature *entering* encoder stage ``l`` (patch embedding
      for level 0, the patch-merging output for deeper levels).
    * Attentive skip at kept level ``l`` (:class:`AttentiveSkip`): the encoder taps of *all
      kept* levels are resampled to level ``l``'s grid (area average when finer, bilinear
      when coarser), concatenated along channels, LayerNorm-ed and linearly projected to
      ``C_l``: these give keys and values; queries come from the (LayerNorm-ed) decoder
      feature after patch expanding. XCA (L2-normalised q/k along tokens, per-head learned
      temperature, softmax over channels) mixes them; its output is added residually to the
      level's *encoder* tap, and the result is fused with the decoder by concatenation
      ``[decoder, skip]`` + Linear(2C→C) as in Swin-Unet. No extra MLP after XCA.
    * ``skip_heads`` = XCA heads per skip (None → that level's ``num_heads``).
    * ``skip_connections=k`` keeps the ``k`` deepest skip levels (TransUNet's ``n_skip``);
      a dropped level gets no fusion (the expanded decoder feature goes straight on), and
      only kept levels feed the merged keys/values. ``attentive_skips=False`` uses
      :class:`PlainSkip` (Swin-Unet) — the skip modules are the *only* difference.
    * Any input size: the image is zero-padded (end side) to a multiple of
      ``patch_size·2**(stages−1)`` so merging/expanding is exact, and cropped back. Windows
      are handled per stage by :class:`SwinStage` (window clamped to small grids with the
      correct relative-position bias; grids padded to a window multiple with padded keys
      masked) — cheaper than padding the image to ``patch·window·2**(stages−1)`` and exact
      for the real tokens.
    * Dropout ``dropout`` on embeddings, attention projections and MLPs; stochastic depth
      rising linearly to ``drop_path_rate`` over the encoder blocks, the decoder reusing the
      rate of the matching encoder level (Swin-Unet); no absolute position embedding.
    * One input channel is used as is (no repeat to RGB). ``pretrained: PATH`` loads an ImageNet
      Swin-T file (timm's or the Swin release's layout; ``paper`` preset) into the encoder, its
      RGB patch kernel summed to one channel, and — as Swin-Unet's ``load_from`` — copies encoder
      stage N's blocks into decoder level N (:mod:`~lightning_modules.networks._pretrained_swin`).

    Presets: ``paper`` is Swin-Unet-T (embed 96, depths 2-2-2-2, heads 3-6-12-24, window 7,
    patch 4; 27.17 M parameters for 9 classes without attentive skips, as reported);
    ``small`` (embed 32, patch 2, three stages, window 4) trains on a laptop CPU; ``tiny`` is for tests.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        spatial_dims: int = 2,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 2, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        skip_heads: int | None = None,
        window_size: int = 7,
        patch_size: int = 4,
        skip_connections: int | None = None,
        attentive_skips: bool = True,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.1,
        dropout: float = 0.0,
        pretrained: str | None = None,
    ):
        super().__init__()
        depths, num_heads = list(depths), list(num_heads)
        self._validate(
            spatial_dims,
            embed_dim,
            depths,
            num_heads,
            skip_heads,
            window_size,
            patch_size,
            skip_connections,
            mlp_ratio,
            drop_path_rate,
            dropout,
        )
        stages = len(depths)
        dims = [embed_dim * 2**i for i in range(stages)]
        n_levels = stages - 1
        skip_connections = n_levels if skip_connections is None else skip_connections
        self.keep = kept_skips(n_levels, skip_connections)
        self.skip_connections, self.attentive_skips = skip_connections, attentive_skips
        self.multiple = patch_size * 2 ** (stages - 1)
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        rates = [dpr[sum(depths[:i]) : sum(depths[: i + 1])] for i in range(stages)]
        stage = dict(window_size=window_size, mlp_ratio=mlp_ratio, drop=dropout)

        self.patch_embed = PatchEmbed2d(in_channels, embed_dim, patch_size)
        self.pos_drop = nn.Dropout(dropout)
        self.encoder = nn.ModuleList(
            SwinStage(dims[i], depths[i], num_heads[i], drop_path=rates[i], **stage) for i in range(stages)
        )
        self.merges = nn.ModuleList(PatchMergingV2(dims[i], spatial_dims=2) for i in range(n_levels))
        self.norm = nn.LayerNorm(dims[-1])
        self.expands = nn.ModuleList(PatchExpand2d(dims[i + 1], dims[i], 2) for i in range(n_levels))
        self.decoder = nn.ModuleList(
            SwinStage(dims[i], depths[i], num_heads[i], drop_path=rates[i], **stage) for i in range(n_levels)
        )
        self.norm_up = nn.LayerNorm(dims[0])
        self.final_expand = PatchExpand2d(dims[0], dims[0], patch_size)
        self.head = nn.Conv2d(dims[0], num_classes, 1, bias=False)
        self.apply(init_transformer_weights)
        # Skip modules are built (and initialised) last: with the same seed, every other
        # parameter is identical whether the skips are attentive or plain.
        kept = {i: dims[i] for i in range(n_levels) if self.keep[i]}
        self.skips = nn.ModuleDict(
            {
                str(i): (
                    AttentiveSkip(i, kept, skip_heads or num_heads[i], drop=dropout)
                    if attentive_skips
                    else PlainSkip(i, dims[i])
                )
                for i in kept
            }
        )
        self.skips.apply(init_transformer_weights)
        if pretrained:
            self.load_pretrained(pretrained)

    def load_pretrained(self, path: str | Path) -> PretrainedReport:
        """Load ImageNet Swin-T weights from a local file; returns what was loaded and skipped."""
        return load_swin_pretrained(self, path)

    @staticmethod
    def _validate(
        spatial_dims: int,
        embed_dim: int,
        depths: list[int],
        num_heads: list[int],
        skip_heads: int | None,
        window_size: int,
        patch_size: int,
        skip_connections: int | None,
        mlp_ratio: float,
        drop_path_rate: float,
        dropout: float,
    ) -> None:
        """Raise ValueError naming the knob for impossible settings."""
        if spatial_dims != 2:
            raise ValueError(f"spatial_dims={spatial_dims}: only 2D is supported")
        if not depths or any(int(d) < 1 for d in depths):
            raise ValueError(f"depths={depths} must be a non-empty list of positive block counts")
        if len(num_heads) != len(depths):
            raise ValueError(f"num_heads={num_heads} must have one entry per stage (len(depths)={len(depths)})")
        if embed_dim < 1 or window_size < 1 or patch_size < 1:
            raise ValueError("embed_dim, window_size and patch_size must be positive")
        for i, h in enumerate(num_heads):
            c = embed_dim * 2**i
            if h < 1 or c % h:
                raise ValueError(f"num_heads[{i}]={h} must divide the {c} channels of stage {i} (embed_dim·2^{i})")
        n_levels = len(depths) - 1
        if skip_connections is not None and not 0 <= skip_connections <= n_levels:
            raise ValueError(
                f"skip_connections={skip_connections} must be in 0..{n_levels} (stages − 1 for depths={depths})"
            )
        if skip_heads is not None:
            for i in range(n_levels):
                c = embed_dim * 2**i
                if skip_heads < 1 or c % skip_heads:
                    raise ValueError(f"skip_heads={skip_heads} must divide the {c} channels of skip level {i}")
        if mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio={mlp_ratio} must be > 0")
        for name, p in (("drop_path_rate", drop_path_rate), ("dropout", dropout)):
            if not 0 <= p < 1:
                raise ValueError(f"{name}={p} must be in [0, 1)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, sizes = pad_to_multiple(x, self.multiple)
        t = self.pos_drop(self.patch_embed(x))
        taps: dict[int, torch.Tensor] = {}
        for i, stage in enumerate(self.encoder):
            if i < len(self.merges) and self.keep[i]:
                taps[i] = t
            t = stage(t)
            if i < len(self.merges):
                t = self.merges[i](t)
        t = self.norm(t)
        for i in reversed(range(len(self.decoder))):
            t = self.expands[i](t)
            if self.keep[i]:
                t = self.skips[str(i)](t, taps)
            t = self.decoder[i](t)
        t = self.final_expand(self.norm_up(t))
        return crop_to(self.head(t.permute(0, 3, 1, 2)), sizes)
