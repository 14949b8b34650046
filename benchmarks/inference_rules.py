"""Cost of the label-free inference rules (``data.inference``) on a 384 × 384 × 52 scan.

Each rule runs :func:`lightning_modules.volume.volume_probabilities` in its own process (so each peak
memory is its own) with the network of ``configs/sim2real.yaml`` (U-Net ``small``, 2D, crop 96 × 96, patch
64 × 64; random weights: the cost does not depend on them), on a preprocessed volume of 384 × 384 × 52
voxels (1, 1, X, Y, Z):

* ``centre`` — the FOV-centred 96 × 96 × 52 crop (what the rule runs: 52 slices of 96²);
* ``sliding`` — the whole 384 × 384 slices, 96² windows, overlap 0.25, Gaussian blending;
* ``localise`` — ``sliding`` plus the cord track and a 96² crop per slice;
* ``monai`` (reference) — MONAI's own ``sliding_window_inference`` on the same slices, windows, overlap and
  blending, logits blended, 32 windows per batch.

Printed per rule: wall and CPU seconds, seconds per million covered voxels (the crop's 96²·52 for
``centre``, the whole 384²·52 otherwise) and its ratio to ``centre`` (the issue's target: sliding ≤ 2×),
the ratio to MONAI's time, and the peak resident memory above the process's state before the run
(``ru_maxrss``; input, network and model loaded). Ratios are taken in the same run: on a machine shared
with other jobs wall-clock figures swing with the load; CPU seconds less so. No timed assertion.
Run: ``python benchmarks/inference_rules.py [--threads 2] [--slices 52]``; writes
``benchmarks/results/inference_rules.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

RULES = ("centre", "sliding", "localise", "monai")
CROP = (96, 96)


def _module(rule: str):
    from lightning_modules.module import SegmentationModule

    pre = {"crop": list(CROP), "inference": "centre" if rule == "monai" else rule, "inference_overlap": 0.25}
    m = SegmentationModule(
        network="unet", preset="small", classes={"sc": [1]}, patch_size=[64, 64], task="sc", log_images=False
    )
    m.hparams["preprocessing"] = pre
    return m.eval()


def _volume(slices: int):
    """A smooth random 'scan' with a bright tube (the cord) 90 voxels off the centre, z-scored."""
    import torch

    g = torch.Generator().manual_seed(0)
    v = torch.nn.functional.avg_pool3d(torch.randn(1, 1, 384, 384, slices, generator=g), 5, 1, 2)
    xs, ys = torch.meshgrid(torch.arange(384.0), torch.arange(384.0), indexing="ij")
    v[0, 0] += 3.0 * (((xs - 282) ** 2 + (ys - 180) ** 2) < 36).float()[..., None]
    return (v - v.mean()) / v.std()


def run_one(rule: str, slices: int, threads: int) -> dict:
    """Time and peak memory of one rule in this process."""
    import torch

    torch.set_num_threads(threads)
    from lightning_modules.volume import volume_probabilities

    m = _module(rule)
    vol = _volume(slices)
    if rule == "centre":
        x0, y0 = (384 - CROP[0]) // 2, (384 - CROP[1]) // 2
        vol = vol[:, :, x0 : x0 + CROP[0], y0 : y0 + CROP[1]].contiguous()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        if rule == "monai":
            from monai.inferers import sliding_window_inference

            s = vol[0].permute(3, 0, 1, 2)
            out = sliding_window_inference(s, CROP, 32, m, overlap=0.25, mode="gaussian").softmax(1)
        else:
            out = volume_probabilities(m, vol, m.hparams)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    covered = CROP[0] * CROP[1] * slices if rule == "centre" else 384 * 384 * slices
    return {
        "rule": rule,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "covered_voxels": covered,
        "wall_s_per_Mvoxel": round(wall / covered * 1e6, 3),
        "cpu_s_per_Mvoxel": round(cpu / covered * 1e6, 3),
        "peak_rss_above_start_MiB": round((peak - before) / 1024, 1),
        "output_shape": list(out.shape),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--slices", type=int, default=52)
    ap.add_argument("--one", choices=RULES, help=argparse.SUPPRESS)  # the child process of one rule
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.slices, args.threads)))
        return
    from _reference import describe_machine

    rows = []
    for rule in RULES:
        cmd = [sys.executable, __file__, "--one", rule, "--threads", str(args.threads), "--slices", str(args.slices)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    by = {r["rule"]: r for r in rows}
    for r in rows:
        r["cpu_per_voxel_vs_centre"] = round(r["cpu_s_per_Mvoxel"] / by["centre"]["cpu_s_per_Mvoxel"], 2)
        r["wall_per_voxel_vs_centre"] = round(r["wall_s_per_Mvoxel"] / by["centre"]["wall_s_per_Mvoxel"], 2)
        r["cpu_vs_monai"] = round(r["cpu_s"] / by["monai"]["cpu_s"], 2)
    print(f"{'rule':9} {'wall s':>7} {'CPU s':>7} {'CPU s/Mvox':>10} {'÷ centre':>8} {'÷ MONAI':>8} {'peak MiB':>9}")
    for r in rows:
        print(
            f"{r['rule']:9} {r['wall_s']:7.2f} {r['cpu_s']:7.2f} {r['cpu_s_per_Mvoxel']:10.3f} "
            f"{r['cpu_per_voxel_vs_centre']:8.2f} {r['cpu_vs_monai']:8.2f} {r['peak_rss_above_start_MiB']:9.1f}"
        )
    out = ROOT / "benchmarks" / "results" / "inference_rules.json"
    out.write_text(json.dumps({"machine": describe_machine(), "threads": args.threads, "rows": rows}, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
