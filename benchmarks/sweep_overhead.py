"""Sweep overhead and search efficiency.

Runs a real local sweep over the ``ablation_full`` grid (SAttisUNet skip_connections x depths x
num_heads; phantom cohort, small training budget; ``--quick``: a 16-config sub-grid) and prints:

1. **Overhead share**: the sweep's trial-slot time (wall time x concurrent trials) split into time
   inside training / validation / test steps, the rest of each ``cordbench fit`` (data set-up,
   model build, test metrics, logging), Tune reporting + checkpointing, and time outside any
   trial's ``fit`` (Ray start-up, trial-process start-up and imports, scheduling). The figure is
   the sweep-system share — start-up, scheduling, reporting, checkpointing — target <= 10 %.
   Reference measured in the same run: one trial config trained by ``runs.runner.fit``
   in this process without Ray (its own non-step share).
2. **ASHA + TPE vs the full grid**: compute (trial seconds) that Ray Tune's ``ASHAScheduler`` +
   ``OptunaSearch`` (TPE) need to find a config within 1 Dice point of the grid's best, as a share
   of the grid's compute (target <= 35 %). The searches are *replayed* on the grid's measured
   per-epoch learning curves (tabular benchmark: every config's curve and per-epoch seconds were
   measured by the grid sweep above; Tune's real ASHA and TPE decide which configs to train and
   when to stop them), for several searcher seeds.

    python benchmarks/sweep_overhead.py --quick     # ~5-8 min on 2 cores
    python benchmarks/sweep_overhead.py             # full 36-config grid, longer training
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def grid_overrides(quick: bool, phantom: str) -> list[str]:
    """The ablation_full sweep on a small budget (quick: 16 configs)."""
    ov = [
        f"config.data.root={phantom}",
        "config.data.phantom.subjects=8",
        "config.data.patch_size=[48,48]",
        "config.data.batch_size=8",
        "config.data.samples_per_volume=8",
        "config.data.queue_length=64",
        "config.data.split.val_fraction=0.25",
        "config.data.split.test_fraction=0.25",
        "config.logger.wandb.enabled=false",
        "config.model.lr=0.003",
        "resources.cpu=1",
        "resources.gpu=0",
        "search.max_concurrent_trials=2",
        "ray.verbose=0",
    ]
    if quick:
        ov += [
            "config.trainer.max_epochs=4",
            "config.trainer.limit_train_batches=6",
            "space.model.options.depths.grid=[[1,1,1,1],[2,2,2,2]]",
            "space.model.options.num_heads.grid=[[2,4,8,16],[3,6,12,24]]",
        ]
    else:
        ov += ["config.trainer.max_epochs=8", "config.trainer.limit_train_batches=16"]
    return ov


def reference_fit(sweep, params: dict) -> dict:
    """One grid config trained by runs.runner.fit in this process (no Ray)."""
    import torch

    from runs.runner import fit
    from sweeps.config import apply_params, decode_params
    from sweeps.trainable import report_callback

    torch.set_num_threads(1)
    cfg = apply_params(sweep.run_config, decode_params(params, sweep.dims), "reference")
    cfg["output_dir"] = tempfile.mkdtemp(prefix="cordbench-ref-")
    cfg["trainer"].update({"accelerator": "cpu", "devices": 1, "enable_progress_bar": False})

    cb = report_callback()  # the trials' timing hooks, without reporting (no Tune session here)
    cb.on_train_epoch_end = lambda trainer, module: None
    t0 = time.perf_counter()
    try:
        result = fit(cfg, callbacks=[cb])
    finally:
        wall = time.perf_counter() - t0
        import shutil

        shutil.rmtree(cfg["output_dir"], ignore_errors=True)
    return {"fit": wall, "steps": cb.timing["train_steps"] + cb.timing["eval_steps"], "val": result.val}


def overhead_figure(sweep, outcome, wall: float) -> dict:
    """Split the trial-slot time of the sweep (see module docstring)."""
    from sweeps.records import read_trial_record

    sweep_dir = Path(outcome.sweep_dir)
    lanes = int(sweep.search["max_concurrent_trials"])
    slot = wall * lanes
    steps = report = fit = 0.0
    for run_dir in outcome.frame["run_dir"]:
        rec = read_trial_record(sweep_dir / run_dir)
        t = rec["timing"]
        steps += t["train_steps"] + t["eval_steps"]
        report += t["report"]
        fit += rec["fit_seconds"]
    return {
        "trials": len(outcome.frame),
        "lanes": lanes,
        "wall": wall,
        "slot": slot,
        "steps": steps,
        "fit_rest": fit - steps - report,
        "report": report,
        "outside_fit": slot - fit,
        "system_share": (slot - fit + report) / slot,
        "outside_steps_share": 1 - steps / slot,
    }


def curves_of(sweep, outcome) -> dict[str, list[tuple[int, float, float]]]:
    """Per config: [(epoch, val_dice, seconds of that epoch)] from Tune's progress files."""
    from sweeps.config import decode_params

    sweep_dir = Path(outcome.sweep_dir)
    out = {}
    for tid in outcome.frame["trial_id"]:
        prog = pd.read_csv(sweep_dir / f"tune_{tid}" / "progress.csv")
        params = json.loads((sweep_dir / f"tune_{tid}" / "params.json").read_text())
        key = json.dumps(decode_params(params, sweep.dims), sort_keys=True)
        out[key] = [(int(r.epoch), float(r.val_dice), float(r.time_this_iter_s)) for r in prog.itertuples()]
    return out


def replay_search(sweep, curves: dict, seed: int, budget: int, storage: str) -> list[dict]:
    """ASHA + TPE (Ray Tune, real) over the recorded curves; returns every reported result in order."""
    import optuna
    from ray import tune
    from ray.tune import Callback, RunConfig, TuneConfig, Tuner
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from sweeps.config import decode_params

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dims = [d for d in sweep.dims if d.kind == "grid"]
    max_t = max(len(c) for c in curves.values())

    def replay(config: dict) -> None:
        key = json.dumps(decode_params(config, dims), sort_keys=True)
        for epoch, val, secs in curves[key]:
            tune.report({"epoch": epoch, "val_dice": val, "compute_s": secs})

    log: list[dict] = []

    class Log(Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            log.append(
                {
                    "trial": trial.trial_id,
                    "epoch": result["epoch"],
                    "val_dice": result["val_dice"],
                    "compute_s": result["compute_s"],
                }
            )

    space = {d.key: tune.choice(d.ray_values()) for d in dims}
    tuner = Tuner(
        replay,
        param_space=space,
        tune_config=TuneConfig(
            metric="val_dice",
            mode="max",
            num_samples=budget,
            max_concurrent_trials=2,
            search_alg=OptunaSearch(sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=4)),
            scheduler=ASHAScheduler(time_attr="epoch", max_t=max_t, grace_period=1, reduction_factor=2),
            reuse_actors=True,
        ),
        run_config=RunConfig(name=f"replay-{seed}", storage_path=storage, verbose=0, callbacks=[Log()]),
    )
    tuner.fit()
    return log


def search_figure(curves: dict, logs: dict[int, list[dict]]) -> dict:
    max_t = max(len(c) for c in curves.values())
    finals = {k: c[-1][1] for k, c in curves.items() if len(c) == max_t}
    grid_best = max(finals.values())
    grid_compute = sum(s for c in curves.values() for _, _, s in c)
    target = grid_best - 0.01
    per_seed = {}
    for seed, log in logs.items():
        used, reached = 0.0, None
        best_full = -1.0
        for r in log:
            used += r["compute_s"]
            if r["epoch"] == max_t:
                best_full = max(best_full, r["val_dice"])
                if reached is None and r["val_dice"] >= target:
                    reached = used
        per_seed[seed] = {
            "share": None if reached is None else reached / grid_compute,
            "total_share": used / grid_compute,
            "best_full": best_full,
            "trials": len({r["trial"] for r in log}),
        }
    return {
        "grid_best": grid_best,
        "grid_compute": grid_compute,
        "configs": len(curves),
        "max_t": max_t,
        "per_seed": per_seed,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="16-config sub-grid, 4 short epochs")
    ap.add_argument("--seeds", type=int, default=None, help="searcher seeds for the replay (default 3 quick, 5)")
    ap.add_argument("--out", default=None, help="work folder (default: a temporary folder)")
    args = ap.parse_args()
    os.environ.setdefault("CORDBENCH_OUTPUT", str(REPO / "outputs"))
    work = Path(args.out or tempfile.mkdtemp(prefix="cordbench-sweep-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()

    from data_modules.phantom import generate_cohort
    from sweeps.config import load_sweep
    from sweeps.runner import run_sweep

    phantom = work / "phantom-n8"
    if not (phantom / "participants.tsv").exists():
        generate_cohort(phantom, n_subjects=8, seed=0, snr=30.0, dwi=False)
    sweep = load_sweep(
        REPO / "configs" / "sweeps" / "ablation_full.yaml",
        overrides=grid_overrides(args.quick, str(phantom)),
        storage=str(work / "sweeps"),
    )
    print(
        f"grid: {sweep.n_trials} configs of ablation_full, {sweep.run_config['trainer']['max_epochs']} epochs "
        f"x {sweep.run_config['trainer']['limit_train_batches']} batches, 2 trials at a time (1 CPU each)",
        flush=True,
    )

    # reference: one config by runs.runner.fit in this process (no Ray)
    first = {d.key: d.ray_values()[0] for d in sweep.dims}
    ref = reference_fit(sweep, first)
    print(
        f"reference fit (no Ray): {ref['fit']:.1f} s, steps {ref['steps']:.1f} s "
        f"-> non-step share of a plain fit {1 - ref['steps'] / ref['fit']:.1%}",
        flush=True,
    )

    t0 = time.perf_counter()
    outcome = run_sweep(sweep)
    wall = time.perf_counter() - t0
    assert (outcome.frame["status"] == "TERMINATED").all(), outcome.frame
    ov = overhead_figure(sweep, outcome, wall)
    slot = ov["slot"]
    print(
        f"\n1) overhead of a {ov['trials']}-trial local sweep ({ov['lanes']} concurrent trials, "
        f"wall {wall:.0f} s, trial-slot time {slot:.0f} s):"
    )
    print(f"   train/val/test steps                          {ov['steps']:8.1f} s  {ov['steps'] / slot:6.1%}")
    print(f"   rest of each cordbench fit (data, model, test) {ov['fit_rest']:8.1f} s  {ov['fit_rest'] / slot:6.1%}")
    print(f"   Tune reporting + checkpointing                {ov['report']:8.1f} s  {ov['report'] / slot:6.1%}")
    print(
        f"   outside fit (Ray + trial start-up, scheduling) {ov['outside_fit']:8.1f} s  {ov['outside_fit'] / slot:6.1%}"
    )
    print(
        f"   => sweep-system overhead (start-up, scheduling, reporting, checkpointing): "
        f"{ov['system_share']:.1%} of trial time (target <= 10%)"
    )
    print(
        f"      time outside training steps, everything included: {ov['outside_steps_share']:.1%} "
        f"(a plain fit of one config in-process: {1 - ref['steps'] / ref['fit']:.1%})"
    )

    import ray

    curves = curves_of(sweep, outcome)
    seeds = args.seeds or (3 if args.quick else 5)
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        logging_level="WARNING",
    )
    try:
        logs = {
            s: replay_search(sweep, curves, s, budget=len(curves), storage=str(work / "replay")) for s in range(seeds)
        }
    finally:
        ray.shutdown()
    sf = search_figure(curves, logs)
    print(
        f"\n2) ASHA + TPE vs the full grid ({sf['configs']} configs x {sf['max_t']} epochs, grid best val Dice "
        f"{sf['grid_best']:.4f}, grid compute {sf['grid_compute']:.0f} s; replayed on the measured curves, "
        f"{len(curves)} trials per search, ASHA grace 1 / factor 2):"
    )
    shares = []
    for seed, r in sf["per_seed"].items():
        got = (
            "never within 1 Dice point"
            if r["share"] is None
            else f"within 1 Dice point after {r['share']:.1%} of the grid's compute"
        )
        print(
            f"   seed {seed}: {got}; whole search {r['total_share']:.1%}, "
            f"best full-budget val Dice {r['best_full']:.4f}"
        )
        shares.append(r["share"] if r["share"] is not None else np.inf)
    med = float(np.median(shares))
    print(
        f"   => median compute to reach within 1 Dice point of the grid's best: "
        f"{'not reached' if not np.isfinite(med) else f'{med:.1%}'} of the full grid (target <= 35%)"
    )
    print(f"\nbenchmark time {time.perf_counter() - t_all:.0f} s; sweep folder {outcome.sweep_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
