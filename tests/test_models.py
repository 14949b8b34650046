"""Model zoo tests: every registered network (tiny preset) plus model-specific references.

Generic tests iterate the registry, so models added later are covered automatically.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from core.errors import ConfigError, InputError
from lightning_modules.registry import build_network, get_spec, list_models

MODELS = list_models()
MODELS_3D = [m for m in MODELS if 3 in get_spec(m).spatial_dims]
SKIP_MODELS = [m for m in MODELS if "skip_connections" in get_spec(m).knobs()]


def _build(name: str, seed: int = 0, spatial_dims: int = 2, **kw) -> nn.Module:
    torch.manual_seed(seed)
    return build_network(name, in_channels=1, num_classes=3, spatial_dims=spatial_dims, preset="tiny", **kw)


def _ce_loss(y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against fixed random labels (a plain sum would cancel through BatchNorm)."""
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, y.shape[1], (y.shape[0],) + tuple(y.shape[2:]), generator=g)
    return F.cross_entropy(y, target)


# ---------------------------------------------------------------- generic, every model
def test_registry_has_issue_models():
    assert {"sattisunet", "swinunet", "transunet", "dilated_cnn", "unet"} <= set(MODELS)
    for name in MODELS:
        assert {"tiny", "small", "paper"} <= set(get_spec(name).presets), name


@pytest.mark.parametrize("name", MODELS)
def test_odd_size_shape_and_every_parameter_gets_gradient(name):
    model = _build(name).train()
    y = model(torch.randn(2, 1, 97, 131))
    assert y.shape == (2, 3, 97, 131)
    _ce_loss(y).backward()
    no_grad = [k for k, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not no_grad, f"{name}: parameters without gradient: {no_grad[:5]}"


@pytest.mark.parametrize("name", MODELS_3D)
def test_3d_odd_size_shape(name):
    model = _build(name, spatial_dims=3).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 1, 13, 17, 11))
    assert y.shape == (1, 3, 13, 17, 11)


@pytest.mark.parametrize("name", [m for m in MODELS if 3 not in get_spec(m).spatial_dims])
def test_3d_rejected_when_unsupported(name):
    with pytest.raises(ConfigError):
        _build(name, spatial_dims=3)


@pytest.mark.parametrize("name", MODELS)
def test_determinism_same_seed_same_output(name):
    x = torch.randn(2, 1, 40, 44)
    outs = []
    for _ in range(2):
        model = _build(name, seed=3).train()
        torch.manual_seed(7)  # dropout / drop-path draws
        outs.append(model(x).detach())
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], _build(name, seed=4).train()(x).detach())


def _skip_values(name: str) -> list[int]:
    """All accepted ``skip_connections`` values of the tiny preset (0, 1, … until ConfigError)."""
    values, k = [], 0
    while k < 16:
        try:
            _build(name, skip_connections=k)
        except ConfigError:
            break
        values.append(k)
        k += 1
    return values


@pytest.mark.parametrize("name", SKIP_MODELS)
def test_skip_connections_change_the_network(name):
    values = _skip_values(name)
    assert len(values) >= 2 and values[0] == 0
    with pytest.raises(ConfigError):
        _build(name, skip_connections=values[-1] + 1)
    x = torch.randn(1, 1, 48, 40)
    outputs = []
    for k in values:
        model = _build(name, skip_connections=k).eval()
        if hasattr(model, "keep"):
            assert sum(model.keep) == k
        skip_modules = [m for m in model.modules() if getattr(m, "is_skip_path", False)]
        calls = []
        hooks = [m.register_forward_hook(lambda *a: calls.append(1)) for m in skip_modules]
        with torch.no_grad():
            outputs.append(model(x))
        for h in hooks:
            h.remove()
        if name != "unet":  # the U-Net concatenates inline (no skip module to hook)
            assert len(skip_modules) == k and len(calls) == k, (name, k, len(skip_modules), len(calls))
    for i in range(len(outputs)):
        for j in range(i + 1, len(outputs)):
            assert not torch.allclose(outputs[i], outputs[j]), (name, values[i], values[j])


# ---------------------------------------------------------------- dilated CNN
def test_dilated_cnn_paper_parameter_count():
    from lightning_modules.networks.dilated_cnn import keras_param_count

    model = build_network("dilated_cnn", num_classes=1, preset="paper")
    # Perone et al. 2018 report 127,585 parameters (Keras count: BN moving stats included,
    # one sigmoid output).
    assert abs(keras_param_count(model) - 127_585) <= 0.01 * 127_585
    assert keras_param_count(model) == 127_585
    assert sum(p.numel() for p in model.parameters()) == 126_177
    # the alternative arrangement "dilated 3×3 then 1×1" would be 32,768 parameters fewer
    assert sum(isinstance(m, nn.Conv2d) and m.dilation == (24, 24) for m in model.modules()) == 2


def test_dilated_cnn_keeps_resolution_and_global_branch():
    model = build_network("dilated_cnn", preset="tiny", dropout=0.0).eval()
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in model.modules())
    x = torch.randn(1, 1, 30, 30)
    grabbed = {}
    model.concat_bn.register_forward_hook(lambda m, i, o: grabbed.setdefault("cat", i[0]))
    with torch.no_grad():
        model(x)
    c = model.stem[0][0].out_channels
    cat = grabbed["cat"]
    assert cat.shape[1] == c * (len(model.dilated) + 2)
    glob = cat[:, c * len(model.dilated) : c * (len(model.dilated) + 1)]  # just before the last branch
    assert torch.allclose(glob, glob[..., :1, :1].expand_as(glob))  # spatially constant


# ---------------------------------------------------------------- Swin / SAttisUNet
def test_sattisunet_and_swinunet_differ_only_in_skip_modules():
    a, b = _build("sattisunet"), _build("swinunet")
    sa, sb = a.state_dict(), b.state_dict()
    rest_a = {k: v for k, v in sa.items() if not k.startswith("skips.")}
    rest_b = {k: v for k, v in sb.items() if not k.startswith("skips.")}
    assert rest_a.keys() == rest_b.keys()
    assert all(torch.equal(rest_a[k], rest_b[k]) for k in rest_a)
    assert a.skips.keys() == b.skips.keys() and len(a.skips) == len(a.keep) == 2
    assert {type(m).__name__ for m in a.skips.values()} == {"AttentiveSkip"}
    assert {type(m).__name__ for m in b.skips.values()} == {"PlainSkip"}


def test_attentive_skip_merges_all_kept_levels_plain_skip_does_not():
    from lightning_modules.networks.sattisunet import AttentiveSkip, PlainSkip

    torch.manual_seed(0)
    dims = {0: 8, 1: 16, 2: 32}
    att, plain = AttentiveSkip(0, dims, num_heads=2).eval(), PlainSkip(0, 8).eval()
    enc = {0: torch.randn(1, 16, 12, 8), 1: torch.randn(1, 8, 6, 16), 2: torch.randn(1, 4, 3, 32)}
    dec = torch.randn(1, 16, 12, 8)
    enc2 = {**enc, 2: torch.randn(1, 4, 3, 32)}
    assert not torch.allclose(att(dec, enc), att(dec, enc2))
    assert torch.equal(plain(dec, enc), plain(dec, enc2))


@pytest.mark.parametrize(
    "knobs, message",
    [
        (dict(num_heads=[3, 2, 2]), "num_heads[0]=3 must divide"),
        (dict(num_heads=[1, 2]), "one entry per stage"),
        (dict(skip_connections=3), "skip_connections=3 must be in 0..2"),
        (dict(skip_heads=3), "skip_heads=3"),
        (dict(depths=[]), "depths"),
    ],
)
def test_sattisunet_rejects_bad_knobs(knobs, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _build("sattisunet", **knobs)


def test_swin_block_matches_monai_reference():
    from monai.networks.nets.swin_unetr import SwinTransformerBlock, compute_mask

    from lightning_modules.networks._transformer import SwinBlock, window_mask

    torch.manual_seed(0)
    for shift in ((0, 0), (2, 2)):
        ref = SwinTransformerBlock(16, 2, (4, 4), shift, qkv_bias=True).eval()
        mine = SwinBlock(16, 2, 4).eval()
        mine.load_state_dict({k: v for k, v in ref.state_dict().items() if "relative_position_index" not in k})
        x = torch.randn(2, 12, 8, 16)
        want = ref(x, compute_mask([12, 8], (4, 4), shift, x.device) if any(shift) else None)
        got = mine(x, (4, 4), shift, window_mask(12, 8, 12, 8, (4, 4), shift, x.device))
        assert torch.allclose(got, want, atol=1e-5)


def test_swin_block_ignores_padded_tokens():
    from lightning_modules.networks._transformer import SwinBlock, window_mask

    torch.manual_seed(0)
    blk = SwinBlock(8, 2, 4).eval()
    h, w, hp, wp = 9, 6, 12, 8
    base = torch.randn(1, h, w, 8)
    outs = []
    for fill in (torch.zeros, torch.randn):
        x = fill(1, hp, wp, 8)
        x[:, :h, :w] = base
        for shift in ((0, 0), (2, 2)):
            outs.append(blk(x, (4, 4), shift, window_mask(hp, wp, h, w, (4, 4), shift, x.device))[:, :h, :w])
    assert torch.allclose(outs[0], outs[2], atol=1e-6) and torch.allclose(outs[1], outs[3], atol=1e-6)


def test_clamped_window_uses_true_relative_offsets():
    from lightning_modules.networks._transformer import relative_position_index

    full, small = relative_position_index(5, 5, 5), relative_position_index(3, 2, 5)
    pos = [(r, c) for r in range(3) for c in range(2)]
    for i, (r1, c1) in enumerate(pos):
        for j, (r2, c2) in enumerate(pos):
            assert small[i, j] == full[r1 * 5 + c1, r2 * 5 + c2]


def _naive_xca(xca, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
    """Loop-by-loop cross-covariance attention from the XCiT definition."""
    b, n, c = x.shape
    h = xca.num_heads
    d = c // h
    q = x @ xca.q.weight.T
    k = ctx @ xca.kv.weight[:c].T
    v = ctx @ xca.kv.weight[c:].T
    out = torch.zeros(b, n, c, dtype=torch.float64)
    for bi in range(b):
        for hi in range(h):
            sl = slice(hi * d, (hi + 1) * d)
            qh, kh, vh = q[bi, :, sl].double(), k[bi, :, sl].double(), v[bi, :, sl].double()
            qh = qh / qh.norm(dim=0, keepdim=True)
            kh = kh / kh.norm(dim=0, keepdim=True)
            tau = float(xca.temperature[hi])
            for i in range(d):
                logits = torch.tensor([tau * float((qh[:, i] * kh[:, j]).sum()) for j in range(d)], dtype=torch.float64)
                a = torch.exp(logits - logits.max())
                a = a / a.sum()
                out[bi, :, hi * d + i] = (vh * a).sum(dim=1)
    return (out @ xca.proj.weight.double().T + xca.proj.bias.double()).float()


def test_xca_matches_naive_reference():
    from lightning_modules.networks._transformer import XCA

    torch.manual_seed(0)
    xca = XCA(8, num_heads=2).eval()
    with torch.no_grad():
        xca.temperature.copy_(torch.tensor([0.7, 1.9]).view(2, 1, 1))
        x, ctx = torch.randn(2, 10, 8), torch.randn(2, 10, 8)
        assert torch.allclose(xca(x, ctx), _naive_xca(xca, x, ctx), atol=1e-5)
        assert torch.allclose(xca(x), _naive_xca(xca, x, x), atol=1e-5)


def _flops(fn) -> int:
    from cordbench.commands.models import count_flops

    return count_flops(fn)


def test_flop_counter_counts_cpu_fused_attention():
    q = torch.randn(1, 4, 64, 8, requires_grad=True)
    with FlopCounterMode(display=False) as plain:
        F.scaled_dot_product_attention(q, q, q)
    # QK^T and AV: 2 matmuls of 64×8×64 MACs per head, 2 FLOPs per MAC
    assert _flops(lambda: F.scaled_dot_product_attention(q, q, q)) == 2 * 2 * 4 * 64 * 8 * 64
    assert plain.get_total_flops() in (0, 2 * 2 * 4 * 64 * 8 * 64)  # torch may learn to count it


def test_xca_and_attentive_skip_flops_linear_in_tokens():
    from lightning_modules.networks._transformer import XCA
    from lightning_modules.networks.sattisunet import AttentiveSkip

    xca = XCA(32, num_heads=4)
    f = [_flops(lambda n=n: xca(torch.randn(1, n, 32))) for n in (256, 1024, 4096)]
    assert f[1] / f[0] == pytest.approx(4.0, rel=0.01) and f[2] / f[1] == pytest.approx(4.0, rel=0.01)
    # the quadratic alternative for contrast: plain token attention
    sdpa = [_flops(lambda n=n: F.scaled_dot_product_attention(*(torch.randn(1, 4, n, 8),) * 3)) for n in (256, 1024)]
    assert sdpa[1] / sdpa[0] == pytest.approx(16.0, rel=0.01)
    skip = AttentiveSkip(0, {0: 16, 1: 32}, num_heads=4)
    g = []
    for s in (16, 32, 64):
        enc = {0: torch.randn(1, s, s, 16), 1: torch.randn(1, s // 2, s // 2, 32)}
        g.append(_flops(lambda enc=enc, s=s: skip(torch.randn(1, s, s, 16), enc)))
    assert g[1] / g[0] == pytest.approx(4.0, rel=0.01) and g[2] / g[1] == pytest.approx(4.0, rel=0.01)


# ---------------------------------------------------------------- TransUNet
def test_transunet_position_embedding_interpolation():
    model = _build("transunet").eval()
    enc = model.encoder
    g = enc.pos_grid
    assert enc.position_embedding(g, g) is enc.position_embeddings
    with torch.no_grad():
        enc.position_embeddings.copy_(
            torch.arange(g * g, dtype=torch.float32).view(1, -1, 1).expand_as(enc.position_embeddings)
        )
    pe = enc.position_embedding(2 * g, 3 * g)
    assert pe.shape == (1, 6 * g * g, enc.position_embeddings.shape[-1])
    want = F.interpolate(
        torch.arange(g * g, dtype=torch.float32).view(1, 1, g, g),
        size=(2 * g, 3 * g),
        mode="bilinear",
        align_corners=False,
    ).flatten()
    assert torch.allclose(pe[0, :, 0], want)


def test_transunet_loads_local_state_dict(tmp_path):
    src, dst = _build("transunet", seed=1), _build("transunet", seed=2)
    path = tmp_path / "r50vit.pt"
    torch.save({"state_dict": src.state_dict()}, path)
    dec_before = {k: v.clone() for k, v in dst.state_dict().items() if not k.startswith("encoder.")}
    report = dst.load_pretrained(path)
    assert report.loaded == sorted(f"encoder.{k}" for k in dst.encoder.state_dict())
    assert report.skipped == sorted(k for k in src.state_dict() if not k.startswith("encoder."))
    for k, v in src.state_dict().items():
        if k.startswith("encoder."):
            assert torch.equal(dst.state_dict()[k], v), k
    assert all(torch.equal(dst.state_dict()[k], v) for k, v in dec_before.items())
    # via the knob, as a config would do
    assert torch.equal(
        _build("transunet", seed=3, pretrained=str(path)).encoder.patch_embeddings.weight,
        src.encoder.patch_embeddings.weight,
    )


def _to_google_npz(model, path, rgb: bool = True) -> None:
    """Write ``model``'s encoder in the layout of Google's R50+ViT-B_16.npz (HWIO kernels, …)."""
    enc = model.encoder
    w: dict[str, np.ndarray] = {}
    hwio = lambda t: t.detach().numpy().transpose(2, 3, 1, 0)  # noqa: E731
    root = hwio(enc.resnet.root.conv.weight)
    w["conv_root/kernel"] = np.repeat(root / 3, 3, axis=2) if rgb else root
    w["gn_root/scale"], w["gn_root/bias"] = (
        enc.resnet.root.gn.weight.detach().numpy(),
        enc.resnet.root.gn.bias.detach().numpy(),
    )
    for bname, block in enc.resnet.body.named_children():
        for uname, unit in block.named_children():
            p = f"{bname}/{uname}"
            for conv, gn in (("conv1", "gn1"), ("conv2", "gn2"), ("conv3", "gn3"), ("conv_proj", "gn_proj")):
                mod = getattr(unit, "downsample" if conv == "conv_proj" else conv, None)
                if mod is None:
                    continue
                w[f"{p}/{conv}/kernel"] = hwio(mod.weight)
                w[f"{p}/{gn}/scale"] = getattr(unit, gn).weight.detach().numpy()
                w[f"{p}/{gn}/bias"] = getattr(unit, gn).bias.detach().numpy()
    w["embedding/kernel"], w["embedding/bias"] = (
        hwio(enc.patch_embeddings.weight),
        enc.patch_embeddings.bias.detach().numpy(),
    )
    pe = enc.position_embeddings.detach().numpy()
    w["Transformer/posembed_input/pos_embedding"] = np.concatenate([np.zeros_like(pe[:, :1]), pe], axis=1)
    w["Transformer/encoder_norm/scale"] = enc.encoder_norm.weight.detach().numpy()
    w["Transformer/encoder_norm/bias"] = enc.encoder_norm.bias.detach().numpy()
    for i, blk in enumerate(enc.blocks):
        r = f"Transformer/encoderblock_{i}"
        hid, heads = blk.out.weight.shape[0], blk.num_heads
        qkv_w, qkv_b = blk.qkv.weight.detach().numpy(), blk.qkv.bias.detach().numpy()
        for j, name in enumerate(("query", "key", "value")):
            w[f"{r}/MultiHeadDotProductAttention_1/{name}/kernel"] = qkv_w[j * hid : (j + 1) * hid].T.reshape(
                hid, heads, hid // heads
            )
            w[f"{r}/MultiHeadDotProductAttention_1/{name}/bias"] = qkv_b[j * hid : (j + 1) * hid].reshape(heads, -1)
        w[f"{r}/MultiHeadDotProductAttention_1/out/kernel"] = blk.out.weight.detach().numpy().T.reshape(heads, -1, hid)
        w[f"{r}/MultiHeadDotProductAttention_1/out/bias"] = blk.out.bias.detach().numpy()
        for j, lin in ((0, blk.mlp.linear1), (1, blk.mlp.linear2)):
            w[f"{r}/MlpBlock_3/Dense_{j}/kernel"] = lin.weight.detach().numpy().T
            w[f"{r}/MlpBlock_3/Dense_{j}/bias"] = lin.bias.detach().numpy()
        for norm, src in ((blk.attention_norm, "LayerNorm_0"), (blk.ffn_norm, "LayerNorm_2")):
            w[f"{r}/{src}/scale"], w[f"{r}/{src}/bias"] = norm.weight.detach().numpy(), norm.bias.detach().numpy()
    np.savez(path, **w)


def test_transunet_loads_google_npz_layout(tmp_path):
    src, dst = _build("transunet", seed=1).eval(), _build("transunet", seed=2).eval()
    with torch.no_grad():
        src.encoder.position_embeddings.normal_()
    _to_google_npz(src, tmp_path / "R50+ViT-B_16.npz")
    with np.load(tmp_path / "R50+ViT-B_16.npz") as npz:
        extra = dict(npz) | {"head/kernel": np.zeros((4, 2)), "pre_logits/bias": np.zeros(4)}
    np.savez(tmp_path / "R50+ViT-B_16.npz", **extra)  # Google's file also holds the classifier
    report = dst.load_pretrained(tmp_path / "R50+ViT-B_16.npz")
    assert report.skipped == ["head/kernel", "pre_logits/bias"]
    assert len(report.loaded) == len(dst.encoder.state_dict())
    for k, v in src.encoder.state_dict().items():
        assert torch.allclose(dst.encoder.state_dict()[k], v, atol=1e-6), k
    x = torch.randn(1, 1, 32, 48)
    with torch.no_grad():
        assert torch.allclose(src.encoder(x)[0], dst.encoder(x)[0], atol=1e-4)


def test_transunet_pretrained_errors(tmp_path):
    model = _build("transunet")
    with pytest.raises(InputError, match="not found"):
        model.load_pretrained(tmp_path / "missing.npz")
    other = build_network("transunet", preset="tiny", hidden_size=16)
    torch.save(other.state_dict(), tmp_path / "other.pt")
    with pytest.raises(InputError, match="shape"):
        model.load_pretrained(tmp_path / "other.pt")
    torch.save({"decoder.x": torch.zeros(1)}, tmp_path / "empty.pt")
    with pytest.raises(InputError, match="missing"):
        model.load_pretrained(tmp_path / "empty.pt")


# ---------------------------------------------------------------- cordbench models
def test_models_table_rows_and_hand_counted_flops():
    from cordbench.commands.models import format_table, model_rows

    rows = model_rows(32, presets=["tiny"])
    assert {r["model"] for r in rows} == set(MODELS)
    dil = next(r for r in rows if r["model"] == "dilated_cnn")
    assert dil["params"] == sum(p.numel() for p in build_network("dilated_cnn", preset="tiny").parameters())
    # tiny: 8 channels, dilations (6, 12), amort 16, 2 classes; FLOPs = 2·Cin·Cout·k²·H·W per conv
    hw = 32 * 32
    convs = (
        [(1, 8, 9), (8, 8, 9), (8, 8, 9), (8, 8, 9), (8, 8, 9), (8, 8, 1)] + [(8, 8, 9)] * 4 + [(32, 16, 1), (16, 2, 1)]
    )
    assert dil["gflops"] * 1e9 == pytest.approx(sum(2 * a * b * k * hw for a, b, k in convs), rel=1e-9)
    table = format_table(rows, 32, 2)
    assert "dilated_cnn" in table and "GFLOPs@32^2" in table


def test_fast_dropout_statistics():
    from lightning_modules.networks._blocks import FastDropout

    torch.manual_seed(0)
    drop = FastDropout(0.4)
    x = torch.ones(4, 8, 64, 64)
    y = drop(x)
    kept = (y != 0).float().mean().item()
    assert kept == pytest.approx(1 - 102 / 256, abs=0.005)  # p rounded to 102/256
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)  # expectation preserved
    vals = torch.unique(y).tolist()
    assert len(vals) == 2 and vals[0] == 0.0 and vals[1] == pytest.approx(256 / 154)
    xc = x.to(memory_format=torch.channels_last)
    assert ((drop(xc) != 0).float().mean().item()) == pytest.approx(kept, abs=0.01)
    assert torch.equal(drop.eval()(x), x)
    g = torch.ones(2, 3, requires_grad=True)
    out = FastDropout(0.5).train()(g)
    out.sum().backward()
    assert torch.equal(g.grad, (out != 0).float() * 2.0)


@pytest.mark.parametrize("name, reported", [("swinunet", 27.17e6), ("transunet", 105.28e6)])
def test_paper_presets_match_reported_parameter_counts(name, reported):
    """Swin-Unet-T and R50-ViT-B/16 TransUNet (9 Synapse classes) as reported in their papers."""
    model = build_network(name, num_classes=9, preset="paper")
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(reported, rel=0.001)
