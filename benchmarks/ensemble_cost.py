"""Cost of ensembles and flip TTA, against a single prediction measured in the same run.

On a 64 × 64 × 40 image (0.8 × 0.8 × 2 mm, RAS, a straight cord) and U-Nets of the ``small`` preset
(2D, different seeds, one preprocessing contract):

* the single prediction of each member: ``evaluation.inference.predict_array`` (what ``cordbench predict``
  runs for one checkpoint);
* an ensemble of N = 2, 3 members through ``evaluation.ensemble.predict_image`` (label map only, and
  with the probability/uncertainty maps of ``--soft --uncertainty``); the target is
  ``ensemble / (sum of the members' single predictions) <= 1.10``;
* ``--tta flips`` on one member: one more pass; the target is ``flips / single <= 2.0``.

Every configuration runs once per round, in turn, and keeps its best round (the machine is shared: the
load average is printed). Run: ``python benchmarks/ensemble_cost.py [--threads N] [--rounds R]``
(prints the times and the ratios; no assertion).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._reference import describe_machine

SHAPE = (64, 64, 40)
AFFINE = np.diag([0.8, 0.8, 2.0, 1.0])


def _member(seed: int):
    from evaluation.ensemble import Member
    from evaluation.evaluator import SubjectEvaluator
    from lightning_modules.module import SegmentationModule

    torch.manual_seed(seed)
    m = SegmentationModule(
        network="unet", preset="small", num_classes=2, classes={"sc": [1]}, patch_size=[64, 64], task="sc"
    )
    m.eval()
    m.evaluator = SubjectEvaluator()
    return Member(Path(f"seed{seed}.ckpt"), m, "")


def _image() -> np.ndarray:
    x, y = np.meshgrid(np.arange(SHAPE[0]), np.arange(SHAPE[1]), indexing="ij")
    disc = (x - 31.5) ** 2 + (y - 31.5) ** 2 <= 36
    rng = np.random.default_rng(0)
    return (100 + 300 * np.repeat(disc[:, :, None], SHAPE[2], 2) + rng.normal(0, 20, SHAPE)).astype(np.float32)


def interleaved(fns: dict, rounds: int) -> dict:
    """Best time of each function over ``rounds`` rounds that run every function once, in turn: on a
    shared machine the load then hits every configuration alike, and the minimum is the least disturbed run."""
    for fn in fns.values():
        fn()
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def main() -> None:
    from evaluation.ensemble import predict_image
    from evaluation.inference import predict_array

    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = _image()
    members = [_member(s) for s in range(3)]
    fns = {f"single{i}": (lambda i=i: predict_array(members[i].module, data, AFFINE)) for i in range(3)}
    for n in (1, 2, 3):
        fns[f"labels{n}"] = lambda n=n: predict_image(members[:n], data, AFFINE, with_maps=False)
        fns[f"maps{n}"] = lambda n=n: predict_image(members[:n], data, AFFINE, with_maps=True)
    fns["flips"] = lambda: predict_image(members[:1], data, AFFINE, "flips", with_maps=False)
    t = interleaved(fns, args.rounds)
    import os

    singles = [t[f"single{i}"] for i in range(3)]
    single = singles[0]
    print(f"machine: {describe_machine()}; load average {os.getloadavg()}; best of {args.rounds} interleaved rounds")
    print(f"single prediction {SHAPE}, each member alone: {', '.join(f'{s * 1e3:.1f}' for s in singles)} ms")
    for n in (1, 2, 3):
        labels, maps, alone = t[f"labels{n}"], t[f"maps{n}"], sum(singles[:n])
        print(
            f"ensemble of {n}: {labels * 1e3:.1f} ms, ratio to its {n} single predictions {labels / alone:.3f} "
            f"(target <= 1.10); with soft + uncertainty maps {maps * 1e3:.1f} ms, ratio {maps / alone:.3f}"
        )
    flips = t["flips"]
    print(
        f"--tta flips (1 flip), one member: {flips * 1e3:.1f} ms, ratio to single {flips / single:.3f} (target <= 2.0)"
    )


if __name__ == "__main__":
    main()
