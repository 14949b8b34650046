"""Regenerate the Swin fixtures of tests/test_pretrained.py from timm's own architecture (not run by the tests).

Needs timm (not a cordbench dependency: its torchvision requirement does not load against the CPU torch
build): ``python -m venv v && v/bin/pip install timm`` beside cordbench's packages, then
``PYTHONPATH=. v/bin/python tests/data/pretrained/make_fixtures.py [--check]``. Writes

* ``swin_t_layouts.json``: every key and shape of timm's ``swin_tiny_patch4_window7_224`` state dict
  (timm ≥ 0.9 layout) and of the same network in the original Swin release's layout (merging at the
  end of a stage, ``head.*``, the persistent ``relative_position_index``/``attn_mask`` buffers);
* ``vit_r50_timm_layout.json``: every key and shape of timm's ``vit_base_r50_s16_224`` (TransUNet's encoder);
* ``swin_timm_mini.pt``: a 4-channel Swin (depths 2-2-2-2, window 7, patch 4) built by timm with
  random weights, its state dict and timm's stage outputs for a fixed 224² image replicated to RGB.

``--check`` also loads a random full-size Swin-T into cordbench's ``paper`` preset and prints the
largest difference of every stage output against timm's.
"""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import torch
import torch.library

_register_fake = torch.library.register_fake


def _tolerant(op, *a, **k):  # torchvision's compiled ops do not load against the CPU torch build
    dec = _register_fake(op, *a, **k)

    def wrap(f):
        try:
            return dec(f)
        except RuntimeError:
            return f
    return wrap


torch.library.register_fake = _tolerant
import timm  # noqa: E402
from timm.models.swin_transformer import SwinTransformer  # noqa: E402

HERE = Path(__file__).resolve().parent


def test_image(size: int = 224) -> torch.Tensor:
    """The fixed grey image the fixtures use, ``(1, 1, size, size)`` (also in tests/test_pretrained.py)."""
    i = torch.arange(size, dtype=torch.float32).view(-1, 1)
    j = torch.arange(size, dtype=torch.float32).view(1, -1)
    return (torch.sin(0.3 * i) * torch.cos(0.17 * j) + torch.sin(0.011 * i * j) + 0.01 * (i - j)).view(1, 1, size, size)


def to_original(sd: dict[str, torch.Tensor], model: SwinTransformer) -> dict[str, torch.Tensor]:
    """timm's layout → the Swin release's: merging back to the end of the previous stage, buffers added."""
    out = {}
    for k, v in sd.items():
        k = re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) - 1}.downsample", k)
        out[k.replace("head.fc.", "head.")] = v
    ws = 7
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + ws - 1
    index = rel[..., 0] * (2 * ws - 1) + rel[..., 1]
    res = 224 // 4
    for n, stage in enumerate(model.layers):
        res = res // 2 if n else res
        for b in range(len(stage.blocks)):
            out[f"layers.{n}.blocks.{b}.attn.relative_position_index"] = index.clone()
            if b % 2 and res > ws:
                out[f"layers.{n}.blocks.{b}.attn_mask"] = torch.zeros((res // ws) ** 2, ws * ws, ws * ws)
    return out


def stage_outputs(model: SwinTransformer, x: torch.Tensor) -> list[torch.Tensor]:
    """timm's output of every stage (NHWC) and of the final norm, for a grey image fed as RGB."""
    t = model.patch_embed(x.repeat(1, 3, 1, 1))
    outs = []
    for stage in model.layers:
        t = stage(t)
        outs.append(t.clone())
    return outs + [model.norm(t).clone()]


def main(check: bool) -> None:
    torch.manual_seed(0)
    full = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False).eval()
    sd = full.state_dict()
    layouts = {"timm_version": timm.__version__,
               "timm": {k: list(v.shape) for k, v in sd.items()},
               "swin": {k: list(v.shape) for k, v in to_original(sd, full).items()}}
    (HERE / "swin_t_layouts.json").write_text(json.dumps(layouts, indent=0) + "\n")
    r50 = timm.create_model("vit_base_r50_s16_224", pretrained=False)
    (HERE / "vit_r50_timm_layout.json").write_text(json.dumps(
        {"timm_version": timm.__version__, "timm": {k: list(v.shape) for k, v in r50.state_dict().items()}},
        indent=0) + "\n")

    torch.manual_seed(1)
    mini = SwinTransformer(img_size=224, patch_size=4, embed_dim=4, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2),
                           window_size=7, num_classes=5).eval()
    with torch.no_grad():
        for name, p in mini.named_parameters():  # non-trivial norms and biases too
            p.copy_(torch.randn_like(p) * (0.3 if "norm" in name else 0.2) + (1.0 if name.endswith("norm.weight")
                                                                                  or "norm1.weight" in name
                                                                                  or "norm2.weight" in name else 0.0))
        feats = stage_outputs(mini, test_image())
    torch.save({"timm_version": timm.__version__, "state_dict": mini.state_dict(), "features": feats},
               HERE / "swin_timm_mini.pt")
    print("wrote", HERE / "swin_t_layouts.json", HERE / "swin_timm_mini.pt")
    if check:
        sys.path.insert(0, str(HERE.parents[2]))
        from lightning_modules.registry import build_network

        with torch.no_grad():
            for p in full.parameters():
                p.copy_(torch.randn_like(p) * 0.05 + p)
            # Swin-Unet-T keeps the first 2 of stage 2's 6 blocks: timm's network of that depth
            # holding the same weights is the reference
            ref = SwinTransformer(img_size=224, depths=(2, 2, 2, 2), num_heads=(3, 6, 12, 24), embed_dim=96).eval()
            print("reference ignores", ref.load_state_dict(full.state_dict(), strict=False).unexpected_keys[:2], "…")
            want = stage_outputs(ref, test_image())
        for layout, state in (("timm", full.state_dict()), ("swin", to_original(full.state_dict(), full))):
            path = HERE / f"_check_{layout}.pth"
            torch.save({"model": state} if layout == "swin" else state, path)
            net = build_network("swinunet", in_channels=1, num_classes=3, preset="paper", pretrained=str(path)).eval()
            path.unlink()
            with torch.no_grad():
                t = net.patch_embed(test_image())
                got = []
                for i, stage in enumerate(net.encoder):
                    t = net.merges[i - 1](t) if i else t
                    t = stage(t)
                    got.append(t)
                got.append(net.norm(t))
            diffs = [float((a - b).abs().max()) for a, b in zip(got, want)]
            scale = [float(b.abs().max()) for b in want]
            print(layout, "max |ours - timm| per stage + norm:", ", ".join(f"{d:.2e} (of {s:.1f})"
                                                                           for d, s in zip(diffs, scale)))
            assert all(d <= 1e-3 * max(1.0, s) for d, s in zip(diffs, scale)), diffs
            assert not math.isnan(sum(diffs))


if __name__ == "__main__":
    main("--check" in sys.argv)
