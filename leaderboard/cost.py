"""Compute cost of each leaderboard entry: parameters, FLOPs and CPU inference latency.

The network is rebuilt from a trial's resolved ``config.yaml`` (``model.name``, ``model.preset``,
``model.options``, ``data.task`` → number of classes, ``data.spatial_dims``) with the model
registry; weights do not change the cost. FLOPs are counted by :func:`lightning_modules.flops.flop_counter`
(``torch.utils.flop_counter`` with CPU fused attention mapped: 2 FLOPs per multiply-add of
convolutions, matrix products and attention; element-wise operations are not counted) for one forward pass of batch 1 at a common input size: the most
frequent training patch size among the sweep's trials of that dimensionality (``1×1×H×W`` for
2D). Latency is timed over ``reps`` forward passes (after 2 warm-ups) of batch 1 on the
CPU in ``torch.inference_mode``, with the current torch thread count (≤ 2 here), measured now.
Latency is the *minimum* of ``reps`` timed passes: on a shared CPU the other processes only ever
add time, so the fastest pass is the least disturbed estimate (the advice of Python's ``timeit``).
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from functools import lru_cache
from typing import Any

import pandas as pd


def _trial_model(cfg: dict[str, Any]) -> tuple[str, str | None, tuple, int, int, tuple[int, ...]]:
    m, d = cfg.get("model") or {}, cfg.get("data") or {}
    from core.tasks import TASKS

    task = TASKS.get(str(d.get("task", "sc")))
    num_classes = task.num_classes if task is not None else 2
    options = tuple(sorted((k, _hashable(v)) for k, v in (m.get("options") or {}).items()))
    return (
        str(m.get("name")),
        m.get("preset"),
        options,
        int(d.get("spatial_dims") or 2),
        num_classes,
        tuple(int(s) for s in (d.get("patch_size") or (64, 64))),
    )


def _hashable(v: Any) -> Any:
    return tuple(_hashable(x) for x in v) if isinstance(v, (list, tuple)) else v


def _unhash(v: Any) -> Any:
    return [_unhash(x) for x in v] if isinstance(v, tuple) else v


@lru_cache(maxsize=64)
def measure(
    name: str,
    preset: str | None,
    options: tuple,
    spatial_dims: int,
    num_classes: int,
    size: tuple[int, ...],
    reps: int = 10,
) -> dict[str, float]:
    """Params, forward FLOPs and latency (ms, fastest of ``reps``) of one network at input ``(1, 1, *size)``."""
    import torch

    from lightning_modules.flops import flop_counter
    from lightning_modules.registry import build_network

    net = build_network(
        name,
        in_channels=1,
        num_classes=num_classes,
        spatial_dims=spatial_dims,
        preset=preset,
        **{k: _unhash(v) for k, v in options},
    )
    net.eval()
    x = torch.randn(1, 1, *size)
    params = sum(p.numel() for p in net.parameters())
    with torch.inference_mode():
        with flop_counter() as counter:
            net(x)
        flops = counter.get_total_flops()
        for _ in range(2):
            net(x)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t0)
    return {"params": float(params), "gflops": flops / 1e9, "latency_ms": 1e3 * min(times)}


def entry_costs(sweep: Any, trials: pd.DataFrame, reps: int = 10) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per entry: params, GFLOPs, latency (ms) and the input size, from the entry's first trial config.

    Trials of one entry with different architectures (``--by model`` over several presets) get the
    median over their trials. A network that cannot be rebuilt gets NaNs and one warning.
    """
    import torch

    configs: dict[str, tuple] = {}
    for _, row in trials.iterrows():
        run = sweep.run_folder(row)
        path = run.config
        try:
            configs[row["trial_id"]] = _trial_model(run.read_config())
        except Exception as exc:  # a missing config must not sink the leaderboard
            warnings.warn(f"{path}: no cost figures ({exc})")
    common: dict[int, tuple[int, ...]] = {}
    for dims in {c[3] for c in configs.values()}:
        common[dims] = Counter(c[5] for c in configs.values() if c[3] == dims).most_common(1)[0][0]
    rows = []
    for entry, grp in trials.groupby("entry", sort=False):
        figures = []
        for tid in grp["trial_id"]:
            if tid not in configs:
                continue
            name, preset, options, dims, ncls, _ = configs[tid]
            try:
                figures.append(
                    {
                        **measure(name, preset, options, dims, ncls, common[dims], reps),
                        "input": "×".join(map(str, (1, 1, *common[dims]))),
                    }
                )
            except Exception as exc:
                warnings.warn(f"entry {entry}: cannot rebuild {name} for cost figures ({exc})")
        if figures:
            df = pd.DataFrame(figures)
            rows.append(
                {
                    "entry": entry,
                    "params": df["params"].median(),
                    "gflops": df["gflops"].median(),
                    "latency_ms": df["latency_ms"].median(),
                    "input": df["input"].iloc[0],
                }
            )
        else:
            rows.append({"entry": entry})
    out = pd.DataFrame(rows, columns=["entry", "params", "gflops", "latency_ms", "input"])
    meta = {
        "cost_input": {str(d): "×".join(map(str, (1, 1, *s))) for d, s in common.items()},
        "latency_threads": torch.get_num_threads(),
        "latency_reps": reps,
    }
    return out, meta
