"""Foundation benchmark: phantom generation speed and U-Net training throughput vs matmul peak.

Prints figures and ratios, never asserts. Run: ``python benchmarks/foundation.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _reference import describe_machine, matmul_gflops  # noqa: E402


def phantom_speed(n_subjects: int) -> dict[str, float]:
    """Seconds and subjects/s to generate a phantom cohort (T2w, T2*, no DWI and with DWI)."""
    from data_modules.phantom import generate_cohort

    out = {}
    for dwi in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            generate_cohort(Path(tmp) / "ph", n_subjects=n_subjects, seed=0, dwi=dwi)
            dt = time.perf_counter() - t0
        key = "with_dwi" if dwi else "no_dwi"
        out[f"phantom_{key}_s"] = dt
        out[f"phantom_{key}_subjects_per_s"] = n_subjects / dt
    return out


def unet_throughput(preset: str, size: int, batch: int, steps: int) -> dict[str, float]:
    """Training slices/s (fwd+bwd+AdamW) and achieved GFLOP/s of the U-Net at ``size``²."""
    from lightning_modules.flops import flop_counter
    from lightning_modules.registry import build_network

    torch.manual_seed(0)
    net = build_network("unet", preset=preset)
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    x = torch.randn(batch, 1, size, size)
    y = torch.randint(0, 2, (batch, size, size))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()

    with flop_counter() as fc:
        step()
    flops = fc.get_total_flops()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = sorted(times)[len(times) // 2]
    return {
        "unet_preset": preset,
        "input": f"{batch}x1x{size}x{size}",
        "step_s": med,
        "slices_per_s": batch / med,
        "gflop_per_step": flops / 1e9,
        "achieved_gflops": flops / med / 1e9,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer subjects and steps")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "foundation.json"))
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    peak = matmul_gflops()
    res = {"machine": describe_machine(), "matmul_fp32_gflops": peak}
    res.update(phantom_speed(4 if args.quick else 20))
    res["unet"] = unet_throughput("small", 64, 16, 3 if args.quick else 7)
    res["unet"]["share_of_matmul_peak"] = res["unet"]["achieved_gflops"] / peak
    print(json.dumps(res, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
