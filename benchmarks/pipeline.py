"""Training input pipeline benchmark: can the loader feed the model?

Prints, in one run, and writes ``benchmarks/results/pipeline.json``:

* **loader** slices/s of the torchio path (``tio.Queue`` with per-volume augmentation) and the fast
  path (slices from the cached arrays + batch augmentation on the training device — here the CPU),
  augmentation on (default ``data.augment``) and off, with 0/1/2 loader workers (``data.num_workers``);
  one epoch each (every training subject × ``samples_per_volume``), after one warm-up batch;
* **model** training consumption, slices/s, of every registered model's ``small`` preset at 64² and
  128² (forward + Dice-CE loss + backward + AdamW step, batch 16, median of timed steps);
* **ratio** loader / model (≥ 1 means the loader keeps up; the issue's target on a CPU: fast
  augmented loader ≥ 5 × U-Net ``small`` at 64²). Both are single-threaded, so the ratios are taken
  per **CPU second** (process time, plus finished loader workers): on a machine shared with other
  jobs, wall-clock rates swing with the load while CPU-second rates and their ratios do not.
  Wall-clock slices/s are printed beside them (and are the only fair figure with loader workers);
* on a CUDA device (when present): the batch augmentation's throughput on the GPU and, per small
  model, the share of step time spent waiting for data when training from the fast loader.

Data: the default ``data`` config (64² slices, batch 16, default augmentation) on a 20-subject
phantom (``--root``, else generated into a temporary folder). Threads: ``--threads`` (default 1:
"one core") for both the loader and the models, so ratios compare like with like.
Run: ``python benchmarks/pipeline.py [--root PHANTOM] [--quick]``.
"""

from __future__ import annotations

import argparse
import copy
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _reference import describe_machine  # noqa: E402

from runs.config import DEFAULTS  # noqa: E402

AUG_OFF = {"strength": 0.0}


def cpu_seconds() -> float:
    """CPU time of this process plus its finished children (loader workers are joined each epoch)."""
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def data_config(root: Path, cache_dir: Path, pipeline: str, augment: bool, workers: int) -> dict[str, Any]:
    cfg = copy.deepcopy(DEFAULTS["data"])
    cfg.update(root=str(root), cache_dir=str(cache_dir), pipeline=pipeline, num_workers=workers)
    if not augment:
        cfg["augment"] = {**cfg["augment"], **AUG_OFF}
    return cfg


def loader_rate(cfg: dict[str, Any], device: torch.device, max_batches: int | None = None) -> dict[str, Any]:
    """Slices/s of one training epoch through the loader (fast path: + augmentation on ``device``)."""
    from data_modules.registry import build_datamodule

    torch.manual_seed(0)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    loader = dm.train_dataloader()
    n_batches = len(loader) if max_batches is None else min(len(loader), max_batches)
    n, t0, c0, first = 0, None, 0.0, True
    for i, batch in enumerate(loader):
        batch = {
            k: ({kk: vv.to(device) for kk, vv in v.items() if torch.is_tensor(vv)} if isinstance(v, dict) else v)
            for k, v in batch.items()
        }
        out = dm.on_after_batch_transfer(batch, 0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if first:  # warm-up batch (worker start, first allocations) not timed
            t0, c0, first = time.perf_counter(), cpu_seconds(), False
            continue
        n += int(out["image"]["data"].shape[0])
        if i + 1 >= n_batches:
            break
    del loader
    dt = time.perf_counter() - (t0 or time.perf_counter())
    cpu = cpu_seconds() - c0
    return {
        "pipeline": cfg["pipeline"],
        "augment": cfg["augment"].get("strength", 1.0) > 0,
        "workers": cfg["num_workers"],
        "slices": n,
        "seconds": dt,
        "cpu_seconds": cpu,
        "slices_s": n / dt if dt > 0 else float("nan"),
        "slices_cpu_s": n / cpu if cpu > 0 else float("nan"),
    }


def model_rate(name: str, size: int, batch: int, repeats: int, device: torch.device) -> dict[str, Any]:
    """Training slices/s of ``name`` (small preset): forward, Dice-CE, backward, AdamW step."""
    from monai.losses import DiceCELoss

    from lightning_modules.registry import build_network

    torch.manual_seed(0)
    net = build_network(name, in_channels=1, num_classes=2, spatial_dims=2, preset="small").to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False)
    x = torch.randn(batch, 1, size, size, device=device)
    y = torch.randint(0, 2, (batch, 1, size, size), device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()
    times, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    t, c = statistics.median(times), statistics.median(cpus)
    return {
        "model": name,
        "size": size,
        "batch": batch,
        "step_s": t,
        "step_cpu_s": c,
        "slices_s": batch / t,
        "slices_cpu_s": batch / c,
    }


def gpu_section(root: Path, cache_dir: Path, models: list[str], steps: int) -> dict[str, Any]:
    """GPU: batch augmentation throughput, and the data-wait share of training steps per small model."""
    from monai.losses import DiceCELoss

    from data_modules.registry import build_datamodule
    from lightning_modules.registry import build_network

    dev = torch.device("cuda")
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(0)}
    cfg = data_config(root, cache_dir, "fast", True, 2)
    torch.manual_seed(0)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    big = {k: torch.cat([v] * 16).to(dev) for k, v in batch["fast2d"].items()}
    img = torch.cat([batch["image"]["data"]] * 16).to(dev)
    lab = torch.cat([batch["label"]["data"]] * 16).to(dev)
    dm.batch_augment(img, lab, big)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        dm.batch_augment(img, lab, big)
    torch.cuda.synchronize()
    out["augment_slices_s"] = 10 * img.shape[0] / (time.perf_counter() - t0)
    waits = []
    for name in models:
        torch.manual_seed(0)
        net = build_network(name, in_channels=1, num_classes=2, spatial_dims=2, preset="small").to(dev)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
        loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False)
        wait = total = 0.0
        done = 0
        while done < steps:
            it = iter(dm.train_dataloader())
            while done < steps:
                t0 = time.perf_counter()
                try:
                    b = next(it)
                except StopIteration:
                    break
                b = {k: ({kk: vv.to(dev, non_blocking=True) for kk, vv in v.items()}) for k, v in b.items()}
                b = dm.on_after_batch_transfer(b, 0)
                torch.cuda.synchronize()
                t1 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                loss_fn(net(b["image"]["data"][..., 0]), b["label"]["data"][..., 0]).backward()
                opt.step()
                torch.cuda.synchronize()
                t2 = time.perf_counter()
                if done > 2:  # warm-up steps not counted
                    wait, total = wait + (t1 - t0), total + (t2 - t0)
                done += 1
        waits.append(
            {
                "model": name,
                "data_wait_share": wait / total if total else float("nan"),
                "step_ms": 1e3 * total / max(1, steps - 3),
            }
        )
    out["data_wait"] = waits
    return out


def table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.1f}" if isinstance(v, float) else str(v)

    widths = [max(len(c), *(len(fmt(r.get(c, "-"))) for r in rows)) for c in cols]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(fmt(r.get(c, "-")).ljust(w) for c, w in zip(cols, widths)) for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, help="a 20-subject phantom (generated in a temporary folder if omitted)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="U-Net only, workers 0 only")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from core.io import write_json
    from lightning_modules.registry import list_models

    tmp = Path(tempfile.mkdtemp(prefix="cordbench-pipeline-"))
    root = args.root
    if root is None:
        from data_modules.phantom import generate_cohort

        root = tmp / "phantom"
        generate_cohort(root, n_subjects=20, seed=0, snr=30.0, dwi=False)
    cache_dir = tmp / "cache"
    cpu = torch.device("cpu")
    t_start = time.perf_counter()
    loaders = []
    workers = [0] if args.quick else [0, 1, 2]
    for pipeline in ("torchio", "fast"):
        for augment in (True, False):
            for w in workers:
                loaders.append(loader_rate(data_config(root, cache_dir, pipeline, augment, w), cpu))
                print(
                    f"  loader {pipeline:7s} augment={augment!s:5s} workers={w}: "
                    f"{loaders[-1]['slices_s']:.0f} slices/s, {loaders[-1]['slices_cpu_s']:.0f} per CPU s",
                    flush=True,
                )
    models = ["unet"] if args.quick else list_models()
    consumers = []
    for name in models:
        for size in (64, 128):
            consumers.append(model_rate(name, size, 16, args.repeats, cpu))
            print(
                f"  model {name} {size}²: {consumers[-1]['slices_s']:.0f} slices/s, {consumers[-1]['slices_cpu_s']:.0f} per CPU s",
                flush=True,
            )
    unet = next(c for c in consumers if c["model"] == "unet" and c["size"] == 64)
    for r in loaders:
        r["ratio_to_unet64"] = r["slices_s"] / unet["slices_s"]
        r["cpu_ratio_to_unet64"] = r["slices_cpu_s"] / unet["slices_cpu_s"]
    fast_aug = next(r for r in loaders if r["pipeline"] == "fast" and r["augment"] and r["workers"] == 0)
    tio_aug = next(r for r in loaders if r["pipeline"] == "torchio" and r["augment"] and r["workers"] == 0)
    for c in consumers:
        c["fast_loader_ratio"] = fast_aug["slices_cpu_s"] / c["slices_cpu_s"]
        c["torchio_loader_ratio"] = tio_aug["slices_cpu_s"] / c["slices_cpu_s"]
    unet64 = unet["slices_cpu_s"]
    result: dict[str, Any] = {
        "machine": {**describe_machine(), "note": "shared 2-core machine unless stated: compare ratios, not seconds"},
        "data": {"root": str(root), "config": "DEFAULTS['data'] (64² slices, batch 16, default augmentation)"},
        "loaders": loaders,
        "models": consumers,
        "summary": {
            "basis": "slices per CPU-second (one thread), robust to other load on a shared machine",
            "fast_aug_slices_cpu_s": fast_aug["slices_cpu_s"],
            "torchio_aug_slices_cpu_s": tio_aug["slices_cpu_s"],
            "unet_small_64_slices_cpu_s": unet64,
            "fast_over_torchio": fast_aug["slices_cpu_s"] / tio_aug["slices_cpu_s"],
            "fast_aug_over_unet64": fast_aug["slices_cpu_s"] / unet64,
            "target_fast_aug_over_unet64": 5.0,
            "torchio_aug_over_unet64": tio_aug["slices_cpu_s"] / unet64,
        },
    }
    if torch.cuda.is_available():
        result["gpu"] = gpu_section(root, cache_dir, models, steps=30)
    result["seconds"] = time.perf_counter() - t_start
    print("\nloader: slices per wall second and per CPU second; ratios = loader / U-Net small 64² training")
    print(
        table(
            loaders,
            ["pipeline", "augment", "workers", "slices_s", "slices_cpu_s", "ratio_to_unet64", "cpu_ratio_to_unet64"],
        )
    )
    print(
        "\nmodel training consumption (small preset, batch 16); loader / model ratios per CPU second "
        "(0 workers, augmented)"
    )
    print(table(consumers, ["model", "size", "slices_s", "slices_cpu_s", "fast_loader_ratio", "torchio_loader_ratio"]))
    s = result["summary"]
    print(
        f"\nper CPU second: fast augmented loader = {s['fast_aug_over_unet64']:.1f} x U-Net small 64² (target >= 5; torchio: "
        f"{s['torchio_aug_over_unet64']:.2f} x); fast / torchio = {s['fast_over_torchio']:.1f} x"
    )
    if "gpu" in result:
        g = result["gpu"]
        print(f"GPU {g['device']}: batch augmentation {g['augment_slices_s']:.0f} slices/s")
        print(table(g["data_wait"], ["model", "data_wait_share", "step_ms"]))
    print(f"threads {torch.get_num_threads()}, {result['seconds']:.0f} s; machine: {result['machine']}")
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "pipeline.json", result)
    print(f"wrote {args.out / 'pipeline.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
