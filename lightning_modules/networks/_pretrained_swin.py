"""ImageNet Swin-T weights (timm's or the original Swin release's layout) for ``swinunet``/``sattisunet``.

Key mapping (file → :class:`~lightning_modules.networks.sattisunet.SAttisUNet`):

* ``patch_embed.proj`` / ``patch_embed.norm`` → ``patch_embed.*`` (RGB kernel summed to one channel);
* ``layers.N.blocks.M.{norm1, attn.qkv, attn.proj, attn.relative_position_bias_table, norm2}``
  → ``encoder.N.blocks.M.*``; ``mlp.fc1``/``mlp.fc2`` → ``mlp.linear1``/``mlp.linear2`` (MONAI names);
* patch merging: the original release puts it at the *end* of stage N (``layers.N.downsample``,
  N = 0..2), timm ≥ 0.9 at the *start* of stage N+1 (``layers.N+1.downsample``); both → ``merges.N``.
  The neighbour order of the 4C concatenation is the same in all three codes (Swin's x0, x1, x2,
  x3 = (h0,w0), (h1,w0), (h0,w1), (h1,w1); timm's reshape/permute; MONAI's ``PatchMergingV2``);
* ``norm`` (after the last stage) → ``norm`` (the bottleneck LayerNorm);
* decoder, as Swin-Unet's ``load_from`` (it copies ``layers.N`` to ``layers_up.3-N``): the Swin
  blocks of decoder level N start as copies of encoder stage N's blocks (same widths, heads, window).

Skipped: the classifier (``head.*``/``head.fc.*``), blocks beyond the model's depth (Swin-T has 6
blocks in stage 2; Swin-Unet-T keeps the first 2, as Swin-Unet does) and the original release's
buffers ``relative_position_index`` (checked equal to ours) and ``attn_mask`` (recomputed). Patch
expanding, the skip modules, ``norm_up`` and the head stay as initialised.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn as nn

from core.errors import InputError
from lightning_modules.networks._pretrained import PretrainedReport, assign, read_weights, rgb_to_gray
from lightning_modules.networks._transformer import relative_position_index

_BLOCK = re.compile(r"layers\.(\d+)\.blocks\.(\d+)\.(.+)")
_MERGE = re.compile(r"layers\.(\d+)\.downsample\.(.+)")
_RENAME = {"mlp.fc1.": "mlp.linear1.", "mlp.fc2.": "mlp.linear2."}


def swin_layout(sd: dict[str, torch.Tensor], path: Path) -> str:
    """``"swin"`` (original release: merging at the end of a stage) or ``"timm"`` (at the start)."""
    if "layers.0.downsample.reduction.weight" in sd:
        return "swin"
    if any(k.startswith("layers.") for k in sd) and "patch_embed.proj.weight" in sd:
        return "timm"
    raise InputError(
        "not a Swin Transformer checkpoint (no patch_embed.proj.weight / layers.N.* keys; "
        "expected timm's swin_tiny_patch4_window7_224 or the Swin release's .pth)",
        path,
    )


def map_swin(
    sd: dict[str, torch.Tensor], model: nn.Module, path: Path
) -> tuple[dict[str, torch.Tensor], list[str], str]:
    """``(model key → tensor, skipped file keys, layout)`` for a Swin state dict ``sd``."""
    layout = swin_layout(sd, path)
    own = model.state_dict()
    n_stages, n_merges, n_dec = len(model.encoder), len(model.merges), len(model.decoder)
    out: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    for k, v in sd.items():
        if k.startswith("patch_embed."):
            if k == "patch_embed.proj.weight":
                v = rgb_to_gray(v, model.patch_embed.proj.in_channels, k, path)
            out[k] = v
        elif k.startswith("norm."):
            out[k] = v
        elif m := _BLOCK.fullmatch(k):
            n, b, rest = int(m[1]), int(m[2]), m[3]
            for old, new in _RENAME.items():
                rest = rest.replace(old, new) if rest.startswith(old) else rest
            if rest == "attn.relative_position_index":
                _check_index(v, model, k, path)
                skipped.append(k)
                continue
            dst = f"encoder.{n}.blocks.{b}.{rest}"
            if n >= n_stages or dst not in own:
                skipped.append(k)
                continue
            out[dst] = v
            if n < n_dec:
                out[f"decoder.{n}.blocks.{b}.{rest}"] = v
        elif m := _MERGE.fullmatch(k):
            level = int(m[1]) - (1 if layout == "timm" else 0)
            if 0 <= level < n_merges:
                out[f"merges.{level}.{m[2]}"] = v
            else:
                skipped.append(k)
        else:
            skipped.append(k)
    return out, skipped, layout


def _check_index(index: torch.Tensor, model: nn.Module, key: str, path: Path) -> None:
    """The file's relative-position index must be the one :class:`WindowAttention` builds."""
    ws = model.encoder[0].window_size
    if tuple(index.shape) == (ws * ws, ws * ws) and not torch.equal(index.long(), relative_position_index(ws, ws, ws)):
        raise InputError(f"{key}: relative-position index differs from Swin's (another window convention)", path)


def encoder_keys(model: nn.Module) -> list[str]:
    """Every model key a Swin-T file must fill: embedding, encoder stages, merges, norm, decoder blocks."""
    enc = ("patch_embed.", "encoder.", "merges.", "norm.")
    dec = tuple(f"decoder.{i}.blocks." for i in range(len(model.decoder)))
    return [k for k in model.state_dict() if k.startswith(enc + dec)]


def load_swin_pretrained(model: nn.Module, path: str | Path) -> PretrainedReport:
    """Load a Swin-T ImageNet checkpoint into ``model``'s encoder (and decoder blocks); see the module doc."""
    path, sd = read_weights(path)
    mapped, skipped, layout = map_swin(sd, model, path)
    return assign(model, mapped, encoder_keys(model), skipped, path, layout)
