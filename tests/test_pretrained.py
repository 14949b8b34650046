"""ImageNet Swin-T weights into swinunet/sattisunet (``pretrained``), checked against timm's own architecture.

timm is not a dependency: ``tests/data/pretrained/`` holds what ``make_fixtures.py`` generated with timm —
the key names and shapes of timm's ``swin_tiny_patch4_window7_224`` (and of the original Swin release's
layout), and a small Swin built by timm with random weights plus timm's stage outputs for a fixed image.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from core.errors import InputError
from lightning_modules.networks._pretrained_swin import encoder_keys
from lightning_modules.networks._transformer import relative_position_index
from lightning_modules.registry import build_network

DATA = Path(__file__).parent / "data" / "pretrained"
LAYOUTS = json.loads((DATA / "swin_t_layouts.json").read_text())


def _image(size: int = 224) -> torch.Tensor:
    """The fixed grey image of make_fixtures.py."""
    i = torch.arange(size, dtype=torch.float32).view(-1, 1)
    j = torch.arange(size, dtype=torch.float32).view(1, -1)
    return (torch.sin(0.3 * i) * torch.cos(0.17 * j) + torch.sin(0.011 * i * j) + 0.01 * (i - j)).view(1, 1, size, size)


def _random_file(layout: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict with exactly the keys and shapes of Swin-T in ``layout`` (buffers as Swin's)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in LAYOUTS[layout].items():
        if k.endswith("relative_position_index"):
            out[k] = relative_position_index(7, 7, 7).clone()
        elif k.endswith("attn_mask"):
            out[k] = torch.zeros(shape)
        else:
            out[k] = torch.randn(shape, generator=g)
    return out


def _to_original(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm layout → the Swin release's (merging at the end of the previous stage, ``head.*``, index buffers)."""
    out = {
        re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) - 1}.downsample", k).replace(
            "head.fc.", "head."
        ): v
        for k, v in sd.items()
    }
    for k in [k for k in out if k.endswith("attn.relative_position_bias_table")]:
        out[k.replace("bias_table", "index")] = relative_position_index(7, 7, 7).clone()
    return out


def _expected(file: dict[str, torch.Tensor], layout: str, n_stages: int = 4) -> dict[str, torch.Tensor]:
    """Model key → tensor by the documented rules, written out independently of the loader."""
    want = {}
    for k, v in file.items():
        m = re.fullmatch(r"layers\.(\d)\.blocks\.(\d)\.(.+)", k)
        if m and int(m[2]) < 2 and not m[3].startswith(("attn.relative_position_index", "attn_mask")):
            rest = m[3].replace("mlp.fc1", "mlp.linear1").replace("mlp.fc2", "mlp.linear2")
            want[f"encoder.{m[1]}.blocks.{m[2]}.{rest}"] = v
            if int(m[1]) < n_stages - 1:
                want[f"decoder.{m[1]}.blocks.{m[2]}.{rest}"] = v  # Swin-Unet: layers.N → layers_up.3-N
        elif m := re.fullmatch(r"layers\.(\d)\.downsample\.(.+)", k):
            want[f"merges.{int(m[1]) - (layout == 'timm')}.{m[2]}"] = v
        elif k == "patch_embed.proj.weight":
            want[k] = v.sum(1, keepdim=True)
        elif k.startswith(("patch_embed.", "norm.")):
            want[k] = v
    return want


def _save(sd: dict[str, torch.Tensor], path: Path, layout: str) -> Path:
    torch.save({"model": sd} if layout == "swin" else sd, path)  # the Swin release wraps under "model"
    return path


@pytest.mark.parametrize("layout", ["timm", "swin"])
def test_mini_swin_features_equal_timm(tmp_path, layout):
    """Same weights → our encoder's stage outputs equal timm's (embedding, merge order, qkv, bias, norms)."""
    fix = torch.load(DATA / "swin_timm_mini.pt", weights_only=True)
    sd = fix["state_dict"] if layout == "timm" else _to_original(fix["state_dict"])
    path = _save(sd, tmp_path / "mini.pth", layout)
    torch.manual_seed(0)
    net = build_network(
        "swinunet",
        in_channels=1,
        num_classes=2,
        embed_dim=4,
        depths=[2, 2, 2, 2],
        num_heads=[1, 1, 2, 2],
        window_size=7,
        patch_size=4,
    ).eval()
    report = net.load_pretrained(path)
    assert report.layout == layout
    with torch.no_grad():
        t = net.patch_embed(_image())
        got = []
        for i, stage in enumerate(net.encoder):
            t = stage(net.merges[i - 1](t) if i else t)
            got.append(t)
        got.append(net.norm(t))
    for i, (a, b) in enumerate(zip(got, fix["features"])):
        assert a.shape == b.shape
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (i, float((a - b).abs().max()))


@pytest.mark.parametrize("layout,model", [("timm", "swinunet"), ("swin", "sattisunet")])
def test_swin_t_file_loads_every_encoder_parameter(tmp_path, layout, model):
    file = _random_file(layout)
    path = _save(file, tmp_path / "swin_tiny_patch4_window7_224.pth", layout)
    torch.manual_seed(0)
    net = build_network(model, in_channels=1, num_classes=3, preset="paper").eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = _image(64)
    with torch.no_grad():
        y0 = net(x)
    report = net.load_pretrained(path)
    want = _expected(file, layout)
    assert report.loaded == sorted(want) == sorted(encoder_keys(net))
    own = net.state_dict()
    for k, v in want.items():
        assert torch.equal(own[k], v), k
    for k, v in before.items():  # decoder expanding, skips, norm_up, head: as initialised
        if k not in want:
            assert torch.equal(own[k], v), k
    assert any(k.startswith("skips.") for k in before) and any(k.startswith("expands.") for k in before)
    extra = {k for k in file if re.fullmatch(r"layers\.2\.blocks\.[2-5]\..+", k)}  # Swin-T's stage 2 has 6 blocks
    head = {"head.fc.weight", "head.fc.bias"} if layout == "timm" else {"head.weight", "head.bias"}
    buffers = {k for k in file if k.endswith(("relative_position_index", "attn_mask"))}
    assert set(report.skipped) == head | extra | buffers
    assert (layout == "swin") == bool(buffers)
    with torch.no_grad():
        y1 = net(x)
    assert (y1 - y0).abs().max() > 1e-3


def test_pretrained_knob_and_summary(tmp_path, caplog):
    path = _save(_random_file("timm"), tmp_path / "model.pth", "timm")
    with caplog.at_level("INFO", logger="cordbench.pretrained"):
        net = build_network("swinunet", in_channels=1, num_classes=2, preset="paper", pretrained=str(path))
    w = torch.load(path, weights_only=True)["patch_embed.proj.weight"]
    assert torch.equal(net.patch_embed.proj.weight, w.sum(1, keepdim=True))
    assert "timm weights, loaded" in caplog.text and "head.fc.bias" in caplog.text and str(path) in caplog.text


def test_pretrained_swin_errors(tmp_path):
    file = _random_file("timm")
    path = _save(file, tmp_path / "swin_t.pth", "timm")

    def one_line(match: str, target, where: Path) -> None:
        with pytest.raises(InputError, match=match) as err:
            target.load_pretrained(where)
        assert "\n" not in str(err.value) and str(where) in str(err.value)

    small = build_network("swinunet", in_channels=1, num_classes=2, preset="small")
    one_line(r"patch_embed\.proj\.weight: shape \(96, 1, 4, 4\) in the file does not match", small, path)
    paper = build_network("swinunet", in_channels=1, num_classes=2, preset="paper")
    one_line("not found", paper, tmp_path / "missing.pth")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "resnet.pth")
    one_line("not a Swin Transformer checkpoint", paper, tmp_path / "resnet.pth")
    torch.save({k: v for k, v in file.items() if "layers.3.blocks.1." not in k}, tmp_path / "cut.pth")
    one_line(
        "encoder tensors missing .*layers|encoder tensors missing .*encoder.3.blocks.1", paper, tmp_path / "cut.pth"
    )
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    one_line("cannot read weights", paper, tmp_path / "junk.pth")
    window8 = build_network("swinunet", in_channels=1, num_classes=2, preset="paper", window_size=8)
    one_line("relative_position_bias_table: shape", window8, path)


def test_checkpoint_reload_does_not_need_the_pretrained_file(tmp_path):
    """A run started from ImageNet weights is restored from its checkpoint alone (predict on another machine)."""
    from lightning_modules.module import SegmentationModule
    from runs.checkpoints import load_module

    src = build_network("transunet", in_channels=1, num_classes=2, preset="tiny")
    torch.save(src.state_dict(), tmp_path / "r50vit.pt")
    module = SegmentationModule(network="transunet", preset="tiny", options={"pretrained": str(tmp_path / "r50vit.pt")})
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, tmp_path / "best.ckpt")
    (tmp_path / "r50vit.pt").unlink()
    restored = load_module(tmp_path / "best.ckpt")
    assert torch.equal(restored.net.encoder.patch_embeddings.weight, src.encoder.patch_embeddings.weight)


# ---------------------------------------------------------------- TransUNet: timm's vit_base_r50_s16_224
def _timm_r50_names(enc) -> dict[str, str]:
    """Our encoder key → timm's key, written out independently of the loader."""
    names = {
        "resnet.root.conv.weight": "patch_embed.backbone.stem.conv.weight",
        "patch_embeddings.weight": "patch_embed.proj.weight",
        "patch_embeddings.bias": "patch_embed.proj.bias",
        "position_embeddings": "pos_embed",
        "encoder_norm.weight": "norm.weight",
        "encoder_norm.bias": "norm.bias",
    }
    for k in enc.state_dict():
        if k.startswith("resnet.root.gn."):
            names[k] = k.replace("resnet.root.gn.", "patch_embed.backbone.stem.norm.")
        elif m := re.fullmatch(r"resnet\.body\.block(\d)\.unit(\d+)\.(\w+)\.(\w+)", k):
            part = {"downsample": "downsample.conv", "gn_proj": "downsample.norm"}.get(m[3], m[3].replace("gn", "norm"))
            names[k] = f"patch_embed.backbone.stages.{int(m[1]) - 1}.blocks.{int(m[2]) - 1}.{part}.{m[4]}"
        elif m := re.fullmatch(r"blocks\.(\d+)\.(.+)\.(weight|bias)", k):
            part = {
                "attention_norm": "norm1",
                "qkv": "attn.qkv",
                "out": "attn.proj",
                "ffn_norm": "norm2",
                "mlp.linear1": "mlp.fc1",
                "mlp.linear2": "mlp.fc2",
            }[m[2]]
            names[k] = f"blocks.{m[1]}.{part}.{m[3]}"
    return names


def test_transunet_timm_layout_covers_every_encoder_tensor():
    """timm's vit_base_r50_s16_224 names and shapes (fixture) fill the paper encoder exactly (meta tensors)."""
    from lightning_modules.networks._pretrained import UsedKeys
    from lightning_modules.networks.transunet import _timm_to_state_dict

    layout = json.loads((DATA / "vit_r50_timm_layout.json").read_text())["timm"]
    with torch.device("meta"):
        net = build_network("transunet", in_channels=1, num_classes=2, preset="paper")
        used = UsedKeys({k: torch.empty(s) for k, s in layout.items()})
    sd = _timm_to_state_dict(used, net.encoder, Path("x.pth"))
    own = net.encoder.state_dict()
    assert set(sd) == set(own) and all(sd[k].shape == own[k].shape for k in own)
    assert used.unused() == ["cls_token"]
    assert {_timm_r50_names(net.encoder)[k] for k in own} == set(layout) - {"cls_token"}


def test_transunet_loads_timm_layout(tmp_path):
    torch.manual_seed(1)
    src = build_network("transunet", in_channels=1, num_classes=2, preset="tiny")
    torch.manual_seed(2)
    dst = build_network("transunet", in_channels=1, num_classes=2, preset="tiny")
    names = _timm_r50_names(src.encoder)
    file = {names[k]: v.clone() for k, v in src.encoder.state_dict().items()}
    file["patch_embed.backbone.stem.conv.weight"] = file["patch_embed.backbone.stem.conv.weight"].repeat(1, 3, 1, 1) / 3
    file["pos_embed"] = torch.cat([torch.zeros_like(file["pos_embed"][:, :1]), file["pos_embed"]], 1)
    file |= {"cls_token": torch.zeros(1, 1, 32), "head.weight": torch.zeros(5, 32), "head.bias": torch.zeros(5)}
    torch.save(file, tmp_path / "pytorch_model.bin")
    report = dst.load_pretrained(tmp_path / "pytorch_model.bin")
    assert report.layout == "timm vit_base_r50_s16_224" and report.skipped == ["cls_token", "head.bias", "head.weight"]
    for k, v in src.encoder.state_dict().items():
        assert torch.allclose(dst.encoder.state_dict()[k], v, atol=1e-6), k
    del file["blocks.0.mlp.fc2.bias"]
    torch.save(file, tmp_path / "cut.bin")
    with pytest.raises(InputError, match=r"cut\.bin: missing weight 'blocks\.0\.mlp\.fc2\.bias'"):
        dst.load_pretrained(tmp_path / "cut.bin")
