"""DDP for real: real multi-process runs on CPU (gloo), checked against single-process runs.

* sharding and gathering rules (pure functions), the AMP choice, first-writer-wins failure records;
* a real 2-process gloo process group: each rank's training subjects differ, every rank runs as
  many steps, the next epoch reshuffles, validation shards cover the split once;
* ``cordbench fit --trainer.strategy=ddp --trainer.devices=2 --trainer.accelerator=cpu``: every test
  subject once in ``test_metrics.csv``, equal (Dice within 1e-6) to a single-process ``cordbench
  test`` of the best checkpoint, the logged ``val/dice`` equal to a single-process validation, one
  summary, one wandb run;
* a sweep whose one trial is 2 Ray ``TorchTrainer`` workers on CPU: its results.csv row, its
  per-subject test file with every test subject once, exactly one wandb run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.distributed import merge_shards, write_first
from core.paths import REPO_ROOT
from data_modules.sharding import eval_indices, train_shards


# ------------------------------------------------------------------------------------ pure rules
@pytest.mark.parametrize("n, world", [(5, 2), (3, 2), (1, 2), (4, 2), (7, 3), (2, 4)])
def test_eval_shards_are_equal_and_merge_back_to_the_split_once(n: int, world: int):
    items = [f"sub-{i:03d}" for i in range(n)]
    shards = [[{"subject": items[i], "rank": r} for i in eval_indices(n, r, world)] for r in range(world)]
    assert len({len(s) for s in shards}) == 1  # every rank runs as many evaluation steps
    merged = merge_shards(shards)
    assert [m["subject"] for m in merged] == items  # every subject once, in single-process order
    assert eval_indices(n, 0, 1) == list(range(n))


@pytest.mark.parametrize("n, world", [(4, 2), (5, 2), (8, 3)])
def test_train_shards_disjoint_equal_and_reshuffled(n: int, world: int):
    e0, e1 = train_shards(n, world, seed=0, epoch=0), train_shards(n, world, seed=0, epoch=1)
    for shards in (e0, e1):
        assert len({len(s) for s in shards}) == 1  # ranks stay in step
        flat = [i for s in shards for i in s]
        assert set(flat) == set(range(n))
        assert len(flat) - len(set(flat)) == world * -(-n // world) - n  # repeats only as padding
    assert e0 != e1


@pytest.mark.parametrize(
    "requested, capability, want",
    [
        ("auto", (8, 0), "bf16-mixed"),
        ("auto", (9, 0), "bf16-mixed"),
        ("auto", (8, 6), "bf16-mixed"),
        ("auto", (7, 5), "16-mixed"),
        ("auto", (7, 0), "16-mixed"),
        (None, (6, 1), "16-mixed"),
        ("auto", None, "32-true"),
        ("32-true", (9, 0), "32-true"),
        ("16-mixed", (9, 0), "16-mixed"),
        ("bf16-mixed", None, "bf16-mixed"),
    ],
)
def test_precision_auto_choice(requested, capability, want):
    from core.devices import choose_precision

    assert choose_precision(requested, capability) == want


def test_failure_record_first_writer_wins(tmp_path: Path):
    p = tmp_path / "failure.json"
    assert write_first(p, '{"rank": 1}') is True
    assert write_first(p, '{"rank": 0}') is False
    assert json.loads(p.read_text()) == {"rank": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["failure.json"]  # no temporary left behind


def test_ddp_worker_resources_validation(tmp_path: Path):
    from core.errors import ConfigError
    from sweeps.config import load_sweep
    from sweeps.ddp_trial import worker_resources
    from sweeps.runner import make_setup
    from sweeps.trainable import trial_resources

    path = REPO_ROOT / "configs" / "sweeps" / "ddp_cpu.yaml"
    setup = make_setup(load_sweep(path, storage=str(tmp_path), validate_all=False, check_data=False))
    assert setup.ddp and setup.workers == 2
    assert worker_resources(setup) == {"CPU": 0.995}  # 2 CPUs less the driver's 0.01, halved: fits 2 cores
    assert trial_resources(setup.resources) == {"cpu": 0.01, "gpu": 0}
    for bad, key in (
        (["resources.gpu=1"], "resources.gpu"),
        (["resources.workers=0"], "resources.workers"),
        (["resources.workers=3"], "resources.cpu"),
    ):
        with pytest.raises(ConfigError, match=key):
            load_sweep(path, overrides=bad, storage=str(tmp_path), validate_all=False, check_data=False)


# --------------------------------------------------------------------- a real gloo process group
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _probe_rank(rank: int, world: int, port: int, cfg_data: dict[str, dict], out: str) -> None:
    """One DDP rank: for each pipeline of ``cfg_data`` (name -> data config), iterate two epochs of the
    train loader as Lightning's fit loop does, then the validation loader."""
    import torch
    import torch.distributed as dist
    from lightning_fabric.utilities.data import _set_sampler_epoch

    from data_modules.registry import build_datamodule

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for pipeline, data in cfg_data.items():
            dm = build_datamodule(data)
            dm.setup("fit")
            loader = dm.train_dataloader()
            epochs = []
            for epoch in range(2):
                _set_sampler_epoch(loader, epoch)
                steps, ids = 0, set()
                for batch in loader:
                    steps += 1
                    ids.update(batch["subject_id"])
                epochs.append({"steps": steps, "subjects": sorted(ids)})
            val = [b["subject_id"][0] for b in dm.val_dataloader()]
            record = {"epochs": epochs, "val": val, "train_split": dm.split["train"], "val_split": dm.split["val"]}
            Path(out, f"{pipeline}-rank{rank}.json").write_text(json.dumps(record))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def phantom8(tmp_path_factory) -> Path:
    from data_modules.phantom import generate_cohort

    root = tmp_path_factory.mktemp("ddp-phantom-n8")
    generate_cohort(root, n_subjects=8, seed=0, snr=30.0, dwi=False, workers=1)
    return root


PIPELINES = ("torchio", "fast")


@pytest.mark.ddp
@pytest.mark.slow
def test_ranks_train_on_different_subjects(phantom8: Path, tmp_path: Path):
    """Both data pipelines, one after the other in one 2-rank process group (one spawn of the ranks)."""
    import torch.multiprocessing as mp

    from runs.config import load_config

    data = {
        pipeline: load_config(
            [str(REPO_ROOT / "configs" / "debug.yaml")],
            [],
            {
                "data": {
                    "pipeline": pipeline,
                    "cache_dir": str(tmp_path / f"cache-{pipeline}"),
                    "root": str(phantom8),
                    "phantom": {"subjects": 8},
                    "patch_size": [32, 32],
                    "batch_size": 4,
                    "samples_per_volume": 4,
                    "queue_length": 16,
                    "split": {"val_fraction": 0.25, "test_fraction": 0.25},
                }
            },
        )["data"]
        for pipeline in PIPELINES
    }
    mp.spawn(_probe_rank, args=(2, _free_port(), data, str(tmp_path)), nprocs=2, join=True)
    for pipeline in PIPELINES:
        ranks = [json.loads((tmp_path / f"{pipeline}-rank{r}.json").read_text()) for r in range(2)]
        train = ranks[0]["train_split"]
        assert len(train) == 4, pipeline
        for epoch in range(2):
            a, b = (set(r["epochs"][epoch]["subjects"]) for r in ranks)
            print(f"{pipeline}, epoch {epoch}: rank 0 trains on {sorted(a)}, rank 1 on {sorted(b)}")
            assert a and b and not a & b, f"{pipeline}: both ranks drew patches from the same subject"
            assert a | b == set(train), pipeline
            # 2 subjects x 4 patches / batches of 4
            assert ranks[0]["epochs"][epoch]["steps"] == ranks[1]["epochs"][epoch]["steps"] == 2, pipeline
        # validation: equal shares that together are the validation split, each subject once
        assert len(ranks[0]["val"]) == len(ranks[1]["val"]) == 1, pipeline
        assert sorted(ranks[0]["val"] + ranks[1]["val"]) == sorted(ranks[0]["val_split"]), pipeline


# -------------------------------------------------------------------- cordbench fit, 2 processes
def _env() -> dict[str, str]:
    return {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONWARNINGS": "ignore"}


@pytest.mark.ddp
@pytest.mark.subprocess
@pytest.mark.slow
def test_ddp_fit_scores_every_subject_once_like_a_single_process(phantom8: Path, tmp_path: Path):
    from runs.config import load_config
    from runs.runner import evaluate

    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "cordbench",
        "fit",
        "--config",
        "configs/demo.yaml",
        "--root",
        str(phantom8),
        "--preset",
        "tiny",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--data.phantom.subjects=8",
        "--data.split.val_fraction=0.4",
        "--data.split.test_fraction=0.4",
        "--trainer.strategy=ddp",
        "--trainer.devices=2",
        "--trainer.accelerator=cpu",
        "--logger.wandb.log_images=false",
        "--output-dir",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.count("best checkpoint:") == 1  # one summary (rank 0's)
    assert "sync_dist=True" not in proc.stderr  # every epoch-level metric is synced
    assert not (out / "failure.json").exists()
    split = json.loads((out / "split.json").read_text())
    assert len(split["test"]) == 3 and len(split["val"]) == 3  # odd: one rank's share is padded
    ddp = pd.read_csv(out / "test_metrics.csv")
    assert list(ddp["subject"]) == split["test"]  # every test subject once, in split order
    assert len(list((out / "wandb").glob("offline-run-*"))) == 1
    # per-subject files: one per test subject, written by the rank that scored it (padding skipped)
    if (out / "predictions").exists():
        assert sorted(p.name for p in (out / "predictions").iterdir()) == sorted(
            f"{s}_pred.nii.gz" for s in split["test"]
        )
    summary = json.loads((out / "test_summary.json").read_text())
    assert summary["n_subjects"] == 3

    # single process: `cordbench test` / `cordbench validate` of the saved best checkpoint
    best = str(out / "checkpoints" / "best.ckpt")
    cfg = load_config(
        [str(out / "config.yaml")],
        [],
        {
            "output_dir": str(tmp_path / "single"),
            "trainer": {"strategy": "auto", "devices": 1},
            "logger": {"wandb": {"enabled": False}},
        },
    )
    single = pd.DataFrame(evaluate(cfg, best, "test").test_records)
    assert list(single["subject"]) == list(ddp["subject"])
    np.testing.assert_allclose(ddp["sc/dice"], single["sc/dice"], rtol=0, atol=1e-6)
    assert list(single["contrast"]) == list(ddp["contrast"])
    for col in single.columns.drop(["subject", "contrast"]):
        np.testing.assert_allclose(
            ddp[col].astype(float), single[col].astype(float), rtol=1e-6, atol=1e-6, equal_nan=True, err_msg=col
        )
    logged = pd.read_csv(out / "metrics.csv")["val/dice"].dropna()
    assert len(logged) == 1
    val = evaluate(cfg, best, "validate").val["val/dice"]
    assert float(logged.iloc[0]) == pytest.approx(val, abs=1e-6)


# ------------------------------------------------------------- a sweep trial of 2 Ray Train workers
@pytest.mark.ddp
@pytest.mark.ray
@pytest.mark.slow
def test_sweep_trial_with_two_cpu_workers(sweep_phantom: Path, tmp_path: Path, monkeypatch):
    import ray

    from sweeps.config import load_sweep
    from sweeps.runner import ENV_DEFAULTS, run_sweep

    for k, v in ENV_DEFAULTS.items():
        monkeypatch.setenv(k, os.environ.get(k, v))
    monkeypatch.setenv("WANDB_MODE", "offline")
    sweep = load_sweep(
        REPO_ROOT / "configs" / "sweeps" / "ddp_cpu.yaml",
        storage=str(tmp_path),
        overrides=[f"config.data.root={sweep_phantom}", "ray.verbose=0", "ray.num_cpus=2"],
    )
    try:
        outcome = run_sweep(sweep)
    finally:
        ray.shutdown()
    frame = outcome.frame
    assert len(frame) == 1, frame
    row = frame.iloc[0]
    assert row["status"] == "TERMINATED", row["error"]
    run = Path(outcome.sweep_dir) / row["run_dir"]
    split = json.loads((run / "split.json").read_text())
    per_subject = pd.read_csv(run / "test_metrics.csv")
    assert list(per_subject["subject"]) == split["test"] and len(split["test"]) == 2
    assert row["test_dice"] == pytest.approx(per_subject["sc/dice"].mean())
    assert row["val_dice"] == pytest.approx(pd.read_csv(run / "metrics.csv")["val/dice"].max())
    assert row["epochs"] == 1
    done = json.loads((run / "trial.json").read_text())
    assert done["last_report"]["test_dice"] == pytest.approx(row["test_dice"])
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1  # one wandb run for the 2 workers
    assert not (run / "failure.json").exists()


@pytest.mark.ddp
@pytest.mark.subprocess
@pytest.mark.slow
def test_ddp_rank_failure_takes_the_run_down_with_its_reason(phantom8: Path, tmp_path: Path):
    """A diverging DDP fit (lr 1e12: the loss is NaN at the second step on every rank) exits non-zero
    with the reason in failure.json, written once (first rank wins), and no half-written file."""
    out = tmp_path / "ddp-nan"
    cmd = [
        sys.executable,
        "-m",
        "cordbench",
        "fit",
        "--config",
        "configs/debug.yaml",
        "--root",
        str(phantom8),
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=3",
        "--model.lr=1e12",
        "--data.phantom.subjects=8",
        "--trainer.strategy=ddp",
        "--trainer.devices=2",
        "--trainer.accelerator=cpu",
        "--logger.wandb.enabled=false",
        "--output-dir",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    failure = json.loads((out / "failure.json").read_text())
    assert failure["error"] == "TrainingDivergedError" and failure["world_size"] == 2
    assert failure["rank"] in (0, 1) and "loss is" in failure["reason"]
    assert not (out / "test_metrics.csv").exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(".") and p.is_file()], "a temporary file was left"
