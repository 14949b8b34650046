"""Transformer blocks shared by the Swin- and ViT-based networks (2D, channels-last tokens).

Feature maps travel as ``(B, H, W, C)`` tensors between Swin blocks and as ``(B, N, C)``
token sequences inside attention. Reused from MONAI: ``MLPBlock`` (the Swin/ViT MLP),
``DropPath`` (stochastic depth), ``window_partition`` / ``window_reverse`` and
``PatchMergingV2`` (Swin patch merging, same neighbour order as the Swin reference code).

Written here because MONAI's Swin block does not fit dynamic shapes exactly: when a grid is
smaller than the window, MONAI clamps the window but keeps indexing the relative position
bias table of the full window (``index[:n, :n]``), which assigns wrong biases; and it does
not mask zero-padded tokens in unshifted windows. :class:`SwinStage` clamps the window as the
Swin reference does *with* the matching relative-position index, pads each grid to a window
multiple and masks the padded keys, so valid outputs do not depend on the padding.
Parameter names follow MONAI's ``SwinTransformerBlock`` so state dicts are interchangeable.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks.mlp import MLPBlock
from monai.networks.layers import DropPath
from monai.networks.nets.swin_unetr import PatchMergingV2, window_partition, window_reverse

__all__ = [
    "MLPBlock",
    "DropPath",
    "PatchMergingV2",
    "PatchEmbed2d",
    "PatchExpand2d",
    "WindowAttention",
    "SwinBlock",
    "SwinStage",
    "XCA",
    "ViTBlock",
    "window_mask",
    "relative_position_index",
    "init_transformer_weights",
    "MASK_VALUE",
]

#: Additive attention mask for disallowed pairs; finite so fully masked rows stay finite.
MASK_VALUE = -1.0e4


@lru_cache(maxsize=64)
def relative_position_index(wh: int, ww: int, window: int) -> torch.Tensor:
    """Index into a ``(2*window-1)**2`` bias table for every token pair of a ``wh × ww`` window.

    Identical to the Swin reference index when ``wh == ww == window``; for a clamped
    (smaller) window it picks the table entries of the true relative offsets.
    """
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :]
    return (rel[0] + window - 1) * (2 * window - 1) + (rel[1] + window - 1)


def window_mask(
    hp: int, wp: int, h: int, w: int, win: tuple[int, int], shift: tuple[int, int], device: torch.device
) -> torch.Tensor | None:
    """Additive mask ``(nW, N, N)`` for (shifted) window attention on a padded ``hp × wp`` grid.

    A query may attend a key of the same window when both lie in the same shift region
    (Swin's cyclic-shift regions, defined in the rolled frame) and the key is a real token
    (inside the unpadded ``h × w`` grid). Returns None when nothing is masked.
    """
    if shift == (0, 0) and (hp, wp) == (h, w):
        return None
    region = torch.zeros(1, hp, wp, 1, device=device)
    hs = (slice(0, -win[0]), slice(-win[0], -shift[0]), slice(-shift[0], None)) if shift[0] else (slice(None),)
    ws = (slice(0, -win[1]), slice(-win[1], -shift[1]), slice(-shift[1], None)) if shift[1] else (slice(None),)
    cnt = 0
    for a in hs:
        for b in ws:
            region[:, a, b, :] = cnt
            cnt += 1
    valid = torch.zeros(1, hp, wp, 1, device=device)
    valid[:, :h, :w] = 1.0
    if any(shift):
        valid = torch.roll(valid, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    r = window_partition(region, win).squeeze(-1)
    v = window_partition(valid, win).squeeze(-1) > 0.5
    allowed = (r[:, :, None] == r[:, None, :]) & v[:, None, :]
    return torch.zeros(allowed.shape, device=device).masked_fill_(~allowed, MASK_VALUE)


@lru_cache(maxsize=32)
def _cached_mask(
    hp: int, wp: int, h: int, w: int, win: tuple[int, int], shift: tuple[int, int], device: torch.device
) -> torch.Tensor | None:
    """:func:`window_mask`, memoised (masks are constants of the grid geometry)."""
    return window_mask(hp, wp, h, w, win, shift, device)


class PatchEmbed2d(nn.Module):
    """Non-overlapping ``patch × patch`` convolution to ``dim`` channels, LayerNorm; ``(B,C,H,W)`` → ``(B,H',W',dim)``."""

    def __init__(self, in_channels: int, dim: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class PatchExpand2d(nn.Module):
    """Swin-Unet patch expanding: Linear to ``scale²·out_dim``, pixel-shuffle by ``scale``, LayerNorm.

    ``scale=2, out_dim=dim//2`` is Swin-Unet's ``PatchExpand``; ``scale=4, out_dim=dim`` its
    ``FinalPatchExpand_X4``.
    """

    def __init__(self, dim: int, out_dim: int, scale: int = 2):
        super().__init__()
        self.scale, self.out_dim = scale, out_dim
        self.expand = nn.Linear(dim, scale * scale * out_dim, bias=False)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        s, c = self.scale, self.out_dim
        x = self.expand(x).view(b, h, w, s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h * s, w * s, c)
        return self.norm(x)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative position bias (Swin)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ):
        super().__init__()
        self.num_heads, self.window_size = num_heads, window_size
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, win: tuple[int, int], mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(B·nW, N, C)`` windows of size ``win``; ``mask``: ``(nW, N, N)`` additive or None."""
        bw, n, c = x.shape
        nw = 1 if mask is None else mask.shape[0]
        h = self.num_heads
        # (B, nW, h, N, d): the bias (and mask) are added once per window type, broadcast over B
        q, k, v = self.qkv(x).view(bw // nw, nw, n, 3, h, c // h).permute(3, 0, 1, 4, 2, 5)
        idx = relative_position_index(win[0], win[1], self.window_size).to(x.device)
        bias = self.relative_position_bias_table[idx.reshape(-1)].view(n, n, h).permute(2, 0, 1)
        bias = bias.unsqueeze(0) if mask is None else bias.unsqueeze(0) + mask.unsqueeze(1)
        attn = self.attn_drop(((q * self.scale) @ k.transpose(-2, -1) + bias).softmax(dim=-1))
        x = (attn @ v).permute(0, 1, 3, 2, 4).reshape(bw, n, c)
        return self.proj_drop(self.proj(x))


class SwinBlock(nn.Module):
    """Swin Transformer block: pre-norm (shifted) window attention and MLP, both residual.

    Works on a ``(B, H, W, C)`` map whose sizes are multiples of ``win`` (see :class:`SwinStage`).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window_size, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), dropout_rate=drop, act="GELU", dropout_mode="swin")

    def forward(
        self, x: torch.Tensor, win: tuple[int, int], shift: tuple[int, int], mask: torch.Tensor | None
    ) -> torch.Tensor:
        b, h, w, c = x.shape
        y = self.norm1(x)
        if any(shift):
            y = torch.roll(y, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        y = self.attn(window_partition(y, win), win, mask)
        y = window_reverse(y.view(-1, win[0], win[1], c), win, [b, h, w])
        if any(shift):
            y = torch.roll(y, shifts=shift, dims=(1, 2))
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SwinStage(nn.Module):
    """``depth`` Swin blocks at one resolution, alternating regular and shifted windows.

    Any grid size: the window is clamped to the grid (no shift along an axis the window
    covers, as in the Swin reference), the grid is zero-padded to a window multiple and the
    padded keys are masked, then the padding is cropped.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float | list[float] = 0.0,
    ):
        super().__init__()
        dp = drop_path if isinstance(drop_path, (list, tuple)) else [drop_path] * depth
        self.window_size = window_size
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window_size, mlp_ratio, qkv_bias, drop, attn_drop, dp[i]) for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w, _ = x.shape
        ws = self.window_size
        win = (min(ws, h), min(ws, w))
        shift = (ws // 2 if h > ws else 0, ws // 2 if w > ws else 0)
        # ceil to a window multiple without floor division of a negative number (the ONNX
        # exporter rounds that toward zero)
        hp, wp = (h + win[0] - 1) // win[0] * win[0], (w + win[1] - 1) // win[1] * win[1]
        if (hp, wp) != (h, w):
            x = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
        masks = {
            False: _cached_mask(hp, wp, h, w, win, (0, 0), x.device),
            True: _cached_mask(hp, wp, h, w, win, shift, x.device),
        }
        for i, blk in enumerate(self.blocks):
            shifted = i % 2 == 1 and any(shift)
            x = blk(x, win, shift if shifted else (0, 0), masks[shifted])
        return x[:, :h, :w].contiguous() if (hp, wp) != (h, w) else x


class XCA(nn.Module):
    """Cross-covariance attention (XCiT, El-Nouby et al. 2021), optionally across two inputs.

    Per head, queries and keys (``N × d`` token matrices) are L2-normalised along the tokens;
    the ``d × d`` attention ``softmax(τ · q̂ᵀk̂)`` mixes value *channels*, so the cost is linear
    in the number of tokens ``N``. ``τ`` is a learned temperature per head (initialised to 1).
    ``forward(x)`` is XCiT's self-XCA; ``forward(x, context)`` takes queries from ``x`` and
    keys/values from ``context`` (same token count and width).
    """

    def __init__(
        self, dim: int, num_heads: int, qkv_bias: bool = False, attn_drop: float = 0.0, proj_drop: float = 0.0
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"XCA: num_heads={num_heads} must divide the {dim} channels")
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(B, N, C)`` queries; ``context``: ``(B, N, C)`` keys/values (default ``x``)."""
        b, n, c = x.shape
        h = self.num_heads
        ctx = x if context is None else context
        q = self.q(x).view(b, n, h, c // h).permute(0, 2, 3, 1)  # B h d N
        k, v = self.kv(ctx).view(b, n, 2, h, c // h).permute(2, 0, 3, 4, 1)  # 2 B h d N
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = self.attn_drop(((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1))  # B h d d
        out = (attn @ v).permute(0, 3, 1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(out))


class ViTBlock(nn.Module):
    """Pre-norm ViT encoder block (multi-head self-attention + MLP), as in ViT/TransUNet."""

    def __init__(
        self, dim: int, num_heads: int, mlp_dim: int, dropout: float = 0.0, attn_dropout: float = 0.0, eps: float = 1e-6
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"ViT: num_heads={num_heads} must divide hidden_size={dim}")
        self.num_heads, self.attn_dropout = num_heads, attn_dropout
        self.attention_norm = nn.LayerNorm(dim, eps=eps)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.ffn_norm = nn.LayerNorm(dim, eps=eps)
        self.mlp = MLPBlock(dim, mlp_dim, dropout_rate=dropout, act="GELU", dropout_mode="swin")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(self.attention_norm(x)).view(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_dropout if self.training else 0.0)
        x = x + self.drop(self.out(y.transpose(1, 2).reshape(b, n, c)))
        return x + self.mlp(self.ffn_norm(x))


def init_transformer_weights(module: nn.Module) -> None:
    """Swin/ViT initialisation: Linear ~ trunc_normal(0.02), zero bias; LayerNorm (1, 0)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
