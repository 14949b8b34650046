"""Model-zoo benchmark: throughput, latency, memory and achieved FLOP/s of every model × preset.

Beside them, measured in the same run: this machine's fp32 matmul GFLOP/s, MONAI's BasicUNet
and SwinUNETR (spatial_dims=2) at the same input, and the attentive skip module's time at
32², 64², 128², 256² tokens (linear growth expected). Prints figures and ratios, never
asserts; writes ``benchmarks/results/models.json`` and ``models.md``.

Run: ``python benchmarks/models.py [--quick]`` (quick: 128² only, 2 repeats).

Definitions
-----------
* train: forward + cross-entropy + backward (no optimiser step), batch ``--batch``; median
  of ``--repeats`` timed steps after one warm-up step (the FLOP-counting step). slices/s = batch / median time.
* infer: ``torch.inference_mode`` forward in eval mode, same batch; latency = median time of
  a batch-1 inference forward.
* FLOPs: ``torch.utils.flop_counter`` (2 × MACs of matmul/conv/attention, CPU fused attention
  included) of exactly the timed computation; achieved GFLOP/s = FLOPs / median time.
* peak memory: measured in a separate worker process started with
  ``MALLOC_MMAP_THRESHOLD_=65536`` so freed tensors go back to the OS; per configuration,
  after a warm-up step, the kernel's RSS high-water mark is reset (``/proc/self/clear_refs``)
  and peak memory = VmHWM after one step − VmRSS before it (model, gradients and input
  already resident). tracemalloc cannot see torch's allocator, hence RSS.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _reference import describe_machine, matmul_gflops  # noqa: E402

from lightning_modules.flops import count_flops  # noqa: E402

CNN_MODELS = {"unet", "dilated_cnn", "monai_basicunet"}
MONAI_REFS = ("monai_basicunet", "monai_swinunetr")


# ---------------------------------------------------------------- building
def build(name: str, preset: str) -> nn.Module:
    """A registered model (``preset``) or one of the MONAI references (preset ``-``)."""
    torch.manual_seed(0)
    if name == "monai_basicunet":
        from monai.networks.nets import BasicUNet

        return BasicUNet(spatial_dims=2, in_channels=1, out_channels=2)
    if name == "monai_swinunetr":
        from monai.networks.nets import SwinUNETR

        return SwinUNETR(in_channels=1, out_channels=2, feature_size=24, spatial_dims=2)
    from lightning_modules.registry import build_network

    return build_network(name, in_channels=1, num_classes=2, spatial_dims=2, preset=preset)


def family(name: str) -> str:
    return "cnn" if name in CNN_MODELS else "transformer"


def nearest_monai(name: str) -> str:
    return "monai_basicunet" if family(name) == "cnn" else "monai_swinunetr"


# ---------------------------------------------------------------- timing
def _median_time(fn: Callable[[], Any], repeats: int, warmup: bool = True) -> float:
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _steps(
    model: nn.Module, batch: int, size: int
) -> tuple[Callable[[], None], Callable[[], None], Callable[[], None]]:
    x = torch.randn(batch, 1, size, size)
    x1 = x[:1].clone()
    target = torch.randint(0, 2, (batch, size, size), generator=torch.Generator().manual_seed(0))

    def train() -> None:
        model.train()
        model.zero_grad(set_to_none=False)
        F.cross_entropy(model(x), target).backward()

    def infer(inp: torch.Tensor = x) -> None:
        model.eval()
        with torch.inference_mode():
            model(inp)

    return train, infer, lambda: infer(x1)


def measure(name: str, preset: str, size: int, batch: int, repeats: int) -> dict[str, Any]:
    """Throughput/latency/FLOPs of one configuration (memory comes from the worker)."""
    model = build(name, preset)
    train, infer, infer1 = _steps(model, batch, size)
    train_flops = count_flops(train)  # also the warm-up step
    infer_flops = count_flops(infer)
    t_train = _median_time(train, repeats, warmup=False)
    t_infer = _median_time(infer, repeats, warmup=False)
    t_lat = _median_time(infer1, repeats)
    row = {
        "model": name,
        "preset": preset,
        "size": size,
        "batch": batch,
        "family": family(name),
        "params": sum(p.numel() for p in model.parameters()),
        "train_gflop": train_flops / 1e9,
        "infer_gflop": infer_flops / 1e9,
        "train_s": t_train,
        "infer_s": t_infer,
        "latency_ms": 1e3 * t_lat,
        "train_slices_s": batch / t_train,
        "infer_slices_s": batch / t_infer,
        "train_gflops_s": train_flops / 1e9 / t_train,
        "infer_gflops_s": infer_flops / 1e9 / t_infer,
    }
    del model
    gc.collect()
    return row


# ---------------------------------------------------------------- memory worker
def _status_mb() -> dict[str, float]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, val = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(val.split()[0]) / 1024
    return out


def _peak_mb(fn: Callable[[], None]) -> float | None:
    fn()
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    before = _status_mb()["VmRSS"]
    fn()
    return _status_mb()["VmHWM"] - before


def memory_worker(configs: list[tuple[str, str, int]], batch: int) -> dict[str, dict[str, float | None]]:
    """Peak step memory (MB) per configuration; run in a process with a fixed mmap threshold."""
    out = {}
    for name, preset, size in configs:
        model = build(name, preset)
        train, infer, _ = _steps(model, batch, size)
        out[f"{name}|{preset}|{size}"] = {"train_peak_mb": _peak_mb(train), "infer_peak_mb": _peak_mb(infer)}
        del model, train, infer
        gc.collect()
    return out


def run_memory_worker(configs: list[tuple[str, str, int]], batch: int, threads: int) -> dict[str, Any]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--memory-worker",
        json.dumps(configs),
        "--batch",
        str(batch),
        "--threads",
        str(threads),
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        print(f"memory worker failed: {res.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return {}
    return json.loads(res.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- attentive skip
def skip_module_scaling(grids: list[int], dim: int, heads: int, batch: int, repeats: int) -> list[dict[str, float]]:
    """Forward+backward time of one attentive skip (2 kept levels) at grid² tokens."""
    from lightning_modules.networks.sattisunet import AttentiveSkip

    torch.manual_seed(0)
    skip = AttentiveSkip(0, {0: dim, 1: 2 * dim}, heads)
    rows = []
    for g in grids:
        dec = torch.randn(batch, g, g, dim, requires_grad=True)
        enc = {0: torch.randn(batch, g, g, dim), 1: torch.randn(batch, g // 2, g // 2, 2 * dim)}

        def step() -> None:
            skip(dec, enc).sum().backward()

        flops = count_flops(step)
        t = _median_time(step, repeats)
        rows.append({"grid": g, "tokens": g * g, "time_s": t, "gflop": flops / 1e9, "us_per_token": 1e6 * t / (g * g)})
    base = rows[0]
    for r in rows:
        r["linearity_vs_smallest"] = (r["time_s"] / base["time_s"]) / (r["tokens"] / base["tokens"])
    for a, b in zip(rows, rows[1:]):
        b["step_ratio"] = (b["time_s"] / a["time_s"]) / (b["tokens"] / a["tokens"])
    return rows


# ---------------------------------------------------------------- report
def markdown(result: dict[str, Any]) -> str:
    ref = result["matmul_gflops_s"]
    lines = [
        "# Model benchmark",
        "",
        f"CPU, {result['machine']['threads']} threads, torch {result['machine']['torch']}, batch "
        f"{result['batch']}, {result['repeats']} repeats (median). fp32 matmul: **{ref:.1f} GFLOP/s**. "
        f"Mode: {'quick' if result['quick'] else 'full'}.",
        "",
        "| model | preset | size | params | train GFLOP | train slices/s | infer slices/s | latency ms "
        "| train peak MB | infer peak MB | train GFLOP/s | % matmul | × MONAI nearest |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    for r in result["rows"]:
        lines.append(
            f"| {r['model']} | {r['preset']} | {r['size']}² | {r['params']:,} | {r['train_gflop']:.1f} "
            f"| {r['train_slices_s']:.1f} | {r['infer_slices_s']:.1f} | {r['latency_ms']:.1f} "
            f"| {fmt(r.get('train_peak_mb'), '.0f')} | {fmt(r.get('infer_peak_mb'), '.0f')} "
            f"| {r['train_gflops_s']:.1f} | {100 * r['matmul_fraction']:.0f}% | {fmt(r.get('vs_monai'), '.2f')} |"
        )
    lines += [
        "",
        "## Attentive skip module (forward+backward, 2 kept levels)",
        "",
        "| grid | tokens | time ms | µs/token | time ratio / token ratio (vs smallest) | vs previous |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in result["skip_module"]:
        lines.append(
            f"| {s['grid']}² | {s['tokens']} | {1e3 * s['time_s']:.2f} | {s['us_per_token']:.3f} "
            f"| {s['linearity_vs_smallest']:.2f} | {fmt(s.get('step_ratio'), '.2f')} |"
        )
    lines += [
        "",
        "Targets: achieved GFLOP/s ≥ 1.0× the nearest MONAI network (CNN → BasicUNet, transformer → "
        "SwinUNETR) and ≥ 60 % (CNN) / 50 % (transformer) of matmul; skip module within 1.2× of linear.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="128² only, 2 repeats")
    p.add_argument("--sizes", type=int, nargs="+")
    p.add_argument("--models", nargs="+", help="registered models (default: all)")
    p.add_argument("--presets", nargs="+", default=["tiny", "small", "paper"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--no-memory", action="store_true", help="skip the memory worker")
    p.add_argument("--memory-worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_worker:
        configs = [tuple(c) for c in json.loads(args.memory_worker)]
        print(json.dumps(memory_worker(configs, args.batch)))
        return 0

    from core.io import write_json, write_text
    from lightning_modules.registry import list_models

    sizes = args.sizes or ([128] if args.quick else [128, 256])
    repeats = args.repeats or (2 if args.quick else 3)
    models = args.models or list_models()
    t_start = time.perf_counter()
    mm = matmul_gflops()
    print(f"fp32 matmul: {mm:.1f} GFLOP/s ({args.threads} threads)", flush=True)
    configs = [(m, "-", s) for s in sizes for m in MONAI_REFS]
    configs += [(m, pr, s) for s in sizes for m in models for pr in args.presets]
    rows = []
    for name, preset, size in configs:
        row = measure(name, preset, size, args.batch, repeats)
        row["matmul_fraction"] = row["train_gflops_s"] / mm
        rows.append(row)
        print(
            f"{name:16s} {preset:6s} {size:4d}² params {row['params']:>11,}  train {row['train_slices_s']:7.1f} sl/s "
            f"{row['train_gflops_s']:6.1f} GFLOP/s ({100 * row['matmul_fraction']:3.0f}% matmul)  "
            f"infer {row['infer_slices_s']:7.1f} sl/s  latency {row['latency_ms']:7.1f} ms",
            flush=True,
        )
    by_key = {(r["model"], r["size"]): r for r in rows if r["model"] in MONAI_REFS}
    for r in rows:
        ref = by_key.get((nearest_monai(r["model"]), r["size"]))
        r["nearest_monai"] = ref["model"] if ref else None
        r["vs_monai"] = r["train_gflops_s"] / ref["train_gflops_s"] if ref and r["model"] not in MONAI_REFS else None
    if not args.no_memory:
        mem = run_memory_worker([list(c) for c in configs], args.batch, args.threads)
        for r in rows:
            r.update(mem.get(f"{r['model']}|{r['preset']}|{r['size']}", {}))
    skip = skip_module_scaling([32, 64, 128, 256], dim=24, heads=4, batch=2, repeats=max(repeats, 3))
    for s in skip:
        print(
            f"attentive skip {s['grid']:4d}²: {1e3 * s['time_s']:8.2f} ms  {s['us_per_token']:.3f} µs/token  "
            f"linearity {s['linearity_vs_smallest']:.2f}",
            flush=True,
        )
    result = {
        "machine": describe_machine(),
        "quick": args.quick,
        "batch": args.batch,
        "repeats": repeats,
        "sizes": sizes,
        "matmul_gflops_s": mm,
        "rows": rows,
        "skip_module": skip,
        "wall_s": time.perf_counter() - t_start,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "models.json", result)
    md = markdown(result)
    write_text(args.out / "models.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
