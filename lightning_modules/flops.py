"""The FLOP counter of the project: ``torch.utils.flop_counter`` plus CPU fused attention.

torch's ``FlopCounterMode`` knows the CUDA scaled-dot-product-attention kernels but not
``aten._scaled_dot_product_flash_attention_for_cpu`` (forward) and its backward, which the
transformers (Swin-Unet, SAttisUNet, TransUNet) run on a CPU: without a mapping they count as
0 FLOPs. The same formulas as for the CUDA kernels (``sdpa_flop_count`` /
``sdpa_backward_flop_count``) are registered for them. FLOPs are 2 × the multiply-accumulates of
matrix products, convolutions and attention; element-wise operations are not counted.

Used by ``cordbench models``, the leaderboard's cost columns and ``benchmarks/``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def flop_counter() -> Any:
    """A ``FlopCounterMode`` (no display) that also counts CPU fused attention."""
    import torch
    import torch.utils.flop_counter as fcm

    aten = torch.ops.aten

    def fwd(query, key, value, *args: Any, out_shape=None, **kwargs: Any) -> int:
        return fcm.sdpa_flop_count(query, key, value)

    def bwd(grad_out, query, key, value, *args: Any, out_shape=None, **kwargs: Any) -> int:
        return fcm.sdpa_backward_flop_count(grad_out, query, key, value)

    mapping: dict[Any, Callable[..., int]] = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = fwd
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = bwd
    return fcm.FlopCounterMode(display=False, custom_mapping=mapping)


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs executed by ``fn()`` (forward, or forward+backward if ``fn`` calls backward)."""
    with flop_counter() as fc:
        fn()
    return int(fc.get_total_flops())
