"""lightning_modules.flops: the one FLOP counter, used by ``cordbench models`` and the leaderboard alike."""

from __future__ import annotations

import torch

from lightning_modules.flops import count_flops


def test_leaderboard_cost_counts_transformer_attention_like_cordbench_models():
    """The leaderboard's GFLOPs of TransUNet (SDPA attention) = the library counter's, which includes the
    fused attention the plain torch counter misses on a CPU (the leaderboard under-counted before)."""
    from torch.utils.flop_counter import FlopCounterMode

    from leaderboard.cost import measure
    from lightning_modules.registry import build_network

    net = build_network("transunet", in_channels=1, num_classes=2, spatial_dims=2, preset="tiny").eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.inference_mode():
        full = count_flops(lambda: net(x))
        with FlopCounterMode(display=False) as plain:
            net(x)
    lb = measure("transunet", "tiny", (), 2, 2, (64, 64), reps=1)
    assert lb["gflops"] * 1e9 == full
    assert full > plain.get_total_flops()  # the attention the plain counter does not see on CPU
    from cordbench.commands.models import count_flops as cli_count

    assert cli_count is count_flops
