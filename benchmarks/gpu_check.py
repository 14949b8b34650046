"""GPU check: short AMP fits of every model (small and paper presets), one ``cordbench predict``,
and a 2-process DDP fit when the machine has 2 GPUs. Prints one table, writes
``benchmarks/results/gpu_check.json``. Budget: about 8 minutes on one GPU (``--budget``).

Run: ``python benchmarks/gpu_check.py [--steps 30] [--models unet,swinunet] [--budget 480]``.

No GPU: one line (``gpu_check: no CUDA GPU ...``) and **exit status 0** — nothing to measure is
not a failure of the check (``--require-gpu`` makes it exit 2 instead, for scripts that must
know). ``--allow-cpu`` runs the same code path on CPU with ``--steps`` as given (to check the
script itself; its figures say nothing about a GPU and are written to ``gpu_check.cpu.json``).

Definitions (per model × preset, one ``runs.runner.fit`` of ``--steps`` training steps on
the 20-subject phantom with ``configs/demo.yaml``, ``precision: auto`` = ``bf16-mixed`` on
Ampere and newer, ``16-mixed`` before, validation on the 4 validation subjects, no test):

* slices/s = batch × timed steps / (their compute time + the data time before them), the first
  3 steps excluded (CUDA context, cuDNN autotuning);
* data wait = share of that time spent waiting for the next batch (between the end of one
  step and the start of the next; the step time is measured up to ``torch.cuda.synchronize``);
* peak memory = ``torch.cuda.max_memory_allocated`` during the fit (reset before it);
* predict = wall time of ``cordbench predict`` of one phantom image with the fit's last
  checkpoint (a fresh process: imports, checkpoint load, inference, NIfTI write);
* DDP (2 GPUs only): ``cordbench fit --trainer.strategy=ddp --trainer.devices=2`` of the U-Net
  small preset, wall time and the number of test subjects scored (must equal the split's).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30, help="training steps per fit (default 30)")
    p.add_argument("--models", default="", help="comma-separated models (default: every registered model)")
    p.add_argument("--presets", default="small,paper", help="presets (default small,paper)")
    p.add_argument("--budget", type=float, default=480.0, help="seconds; later entries are skipped (default 480)")
    p.add_argument("--subjects", type=int, default=20, help="phantom subjects (default 20)")
    p.add_argument("--work", default=str(ROOT / "outputs" / "gpu_check"), help="scratch folder")
    p.add_argument("--require-gpu", action="store_true", help="exit 2 (not 0) when there is no GPU")
    p.add_argument("--allow-cpu", action="store_true", help="run on CPU to check the script (figures meaningless)")
    return p.parse_args(argv)


def make_timer():
    """A Lightning callback timing each training step (to CUDA sync) and the data wait before it."""
    import pytorch_lightning as pl
    import torch

    class StepTimer(pl.Callback):
        def __init__(self) -> None:
            self.compute: list[float] = []
            self.wait: list[float] = []
            self._end: float | None = None
            self._start = 0.0

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self._end = time.perf_counter()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            now = time.perf_counter()
            self.wait.append(now - self._end if self._end is not None else 0.0)
            self._start = now

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self._end = time.perf_counter()
            self.compute.append(self._end - self._start)

    return StepTimer()


def run_config(args: argparse.Namespace, model: str, preset: str, out: Path, on_gpu: bool) -> dict[str, Any]:
    from runs.config import load_config

    return load_config(
        [str(ROOT / "configs" / "demo.yaml")],
        [],
        {
            "name": f"gpu-check-{model}-{preset}",
            "output_dir": str(out),
            "model": {"name": model, "preset": preset},
            "data": {"phantom": {"subjects": args.subjects}, "num_workers": 0},
            "trainer": {
                "max_epochs": 1,
                "limit_train_batches": args.steps,
                "precision": "auto",
                "accelerator": "gpu" if on_gpu else "cpu",
                "devices": 1,
                "deterministic": False,
            },
            "logger": {"wandb": {"enabled": False}},
        },
    )


def fit_entry(args: argparse.Namespace, model: str, preset: str, work: Path, on_gpu: bool) -> dict[str, Any]:
    """One short fit + one ``cordbench predict``; the figures defined in the module docstring."""
    import torch

    from core.devices import choose_precision, cuda_capability
    from runs.runner import fit

    out = work / f"{model}-{preset}"
    cfg = run_config(args, model, preset, out, on_gpu)
    timer = make_timer()
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = fit(cfg, callbacks=[timer], test=False)
    fit_s = time.perf_counter() - t0
    skip = min(3, max(0, len(timer.compute) - 1))
    compute, wait = sum(timer.compute[skip:]), sum(timer.wait[skip:])
    steps = len(timer.compute) - skip
    batch = int(cfg["data"]["batch_size"])
    row: dict[str, Any] = {
        "model": model,
        "preset": preset,
        "precision": choose_precision("auto", cuda_capability(on_gpu)),
        "steps": steps,
        "slices_s": batch * steps / (compute + wait) if steps else None,
        "data_wait": wait / (compute + wait) if steps else None,
        "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if on_gpu else None,
        "fit_s": fit_s,
        "val_dice": result.val.get("val/dice"),
    }
    from runs.run_folder import RunFolder

    ckpt = RunFolder(out).last_ckpt
    image = _one_image(cfg)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cordbench",
            "predict",
            "--ckpt",
            str(ckpt),
            "-i",
            str(image),
            "-o",
            str(out / "predict.nii.gz"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    row["predict_s"] = time.perf_counter() - t0 if proc.returncode == 0 else None
    if proc.returncode:
        row["error"] = (proc.stderr.strip().splitlines() or ["predict failed"])[-1]
    return row


def _one_image(cfg: dict[str, Any]) -> Path:
    """The first T2w image of the phantom the fit used."""
    from data_modules.registry import build_datamodule

    dm = build_datamodule(cfg["data"])
    return Path(dm.specs[0].image)


def ddp_entry(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """``cordbench fit`` of U-Net small on 2 GPUs (DDP, NCCL)."""
    out = work / "ddp-unet-small"
    cmd = [
        sys.executable,
        "-m",
        "cordbench",
        "fit",
        "--config",
        "configs/demo.yaml",
        "--preset",
        "small",
        "--trainer.max_epochs=1",
        f"--trainer.limit_train_batches={args.steps}",
        "--trainer.strategy=ddp",
        "--trainer.devices=2",
        "--trainer.accelerator=gpu",
        "--logger.wandb.enabled=false",
        f"--data.phantom.subjects={args.subjects}",
        "--output-dir",
        str(out),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    row: dict[str, Any] = {"model": "unet", "preset": "small (DDP x2)", "fit_s": time.perf_counter() - t0}
    if proc.returncode:
        row["error"] = (proc.stderr.strip().splitlines() or ["ddp fit failed"])[-1]
        return row
    from runs.run_folder import RunFolder

    split = RunFolder(out).read_split()
    tested = list(RunFolder(out).read_test_metrics()["subject"])
    row.update(test_subjects=len(tested), every_test_subject_once=sorted(tested) == sorted(split["test"]))
    return row


def table(rows: list[dict[str, Any]]) -> str:
    cols = [
        ("model", "{}"),
        ("preset", "{}"),
        ("precision", "{}"),
        ("slices_s", "{:.0f}"),
        ("data_wait", "{:.0%}"),
        ("peak_mem_gb", "{:.2f}"),
        ("fit_s", "{:.0f}"),
        ("predict_s", "{:.1f}"),
        ("note", "{}"),
    ]
    lines = ["  ".join(f"{c:>12}" for c, _ in cols)]
    for r in rows:
        note = (
            r.get("error")
            or r.get("skipped")
            or (
                f"{r['test_subjects']} test subjects, each once: {r['every_test_subject_once']}"
                if "test_subjects" in r
                else ""
            )
        )
        cells = []
        for c, fmt in cols:
            v = note if c == "note" else r.get(c)
            cells.append(f"{'-' if v in (None, '') else fmt.format(v):>12}")
        lines.append("  ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    on_gpu = torch.cuda.is_available()
    if not on_gpu and not args.allow_cpu:
        print(f"gpu_check: no CUDA GPU on this machine (torch {torch.__version__}); nothing measured")
        return 2 if args.require_gpu else 0
    from lightning_modules.registry import list_models
    from runs.runner import quiet

    quiet()
    models = [m for m in args.models.split(",") if m] or list_models()
    presets = [p for p in args.presets.split(",") if p]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for model in models:
        for preset in presets:
            if time.perf_counter() - t_start > args.budget:
                rows.append({"model": model, "preset": preset, "skipped": "time budget"})
                continue
            try:
                rows.append(fit_entry(args, model, preset, work, on_gpu))
            except Exception as exc:  # one failing model must not hide the others' figures
                rows.append({"model": model, "preset": preset, "error": f"{type(exc).__name__}: {exc}"[:200]})
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    if on_gpu and torch.cuda.device_count() >= 2:
        rows.append(ddp_entry(args, work))
    device = torch.cuda.get_device_name(0) if on_gpu else "cpu (script check only)"
    report = {
        "device": device,
        "gpus": torch.cuda.device_count() if on_gpu else 0,
        "steps": args.steps,
        "torch": torch.__version__,
        "seconds": time.perf_counter() - t_start,
        "rows": rows,
    }
    print(f"\ngpu_check on {device} ({report['seconds']:.0f} s)\n{table(rows)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / ("gpu_check.json" if on_gpu else "gpu_check.cpu.json")
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
