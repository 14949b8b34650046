"""wandb tracking: one offline run per trial holding the final metrics; fallbacks; rank 0 only."""

from __future__ import annotations

import json
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from runs import tracking
from tests.support.tiny_sweep import GROUP, TRIALS, trial_config, wandb_records, wandb_run_info


def _wandb_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "wandb" in str(w.message)]


# --------------------------------------------------------------------------- real trial runs
@pytest.mark.slow
def test_each_trial_has_one_offline_run_whose_summary_holds_the_final_metrics(real_sweep):
    results = pd.read_csv(real_sweep / "results.csv").set_index("trial_id")
    runs = {}
    for trial_id, *_ in TRIALS:
        found = sorted((real_sweep / "trials" / trial_id / "wandb").glob("offline-run-*"))
        assert len(found) == 1, f"{trial_id}: {found}"
        runs[trial_id] = found[0]
    with ThreadPoolExecutor(max_workers=2) as pool:
        infos = dict(zip(runs, pool.map(lambda d: (wandb_run_info(d), wandb_records(d)), runs.values())))
    for trial_id, model, seed, options in TRIALS:
        tdir = real_sweep / "trials" / trial_id
        (info, records), run_dir = infos[trial_id], runs[trial_id]
        run, summary = info["run"], info["summary"]
        assert info["exit"]["exit_code"] == 0
        # identity: project / group / job type / tags
        assert run["project"] == "cordbench" and run["run_group"] == GROUP and run["job_type"] == "trial"
        tags = set(run["tags"])
        assert {f"model:{model}", "preset:tiny", "data:phantom", "task:sc", f"seed:{seed}"} <= tags
        assert {f"{k}:{v}" for k, v in options.items()} <= tags
        # the full resolved config
        resolved = yaml.safe_load((tdir / "config.yaml").read_text())
        logged = run["config"]["update"]
        for section in ("model", "data", "trainer", "logger"):
            assert logged[section] == json.loads(json.dumps(resolved[section])), section
        assert logged["seed_everything"] == seed
        # per-epoch metrics in the history
        history = [r["history"]["item"] for r in records if r.get("type") == "history"]
        assert any("val/dice" in h for h in history) and any("train/loss_epoch" in h for h in history)
        # final metrics in the summary, equal to the run folder's own files
        test_summary = json.loads((tdir / "test_summary.json").read_text())
        for key in ("sc/dice", "sc/hd95", "sc/jaccard"):
            want = test_summary["metrics"][key]["mean"]
            # a NaN mean (undefined metric) must be NaN in the summary too, not anything
            assert summary[f"test/{key}"] == pytest.approx(want, rel=1e-9, nan_ok=True), (key, want)
        assert summary["final/val/dice"] == pytest.approx(results.loc[trial_id, "val_dice"], rel=1e-6)
        assert summary["test/n_subjects"] == 3
        # per-subject table = test_metrics.csv
        per_subject = pd.read_csv(tdir / "test_metrics.csv")
        table = json.loads((run_dir / "files" / summary["test/per_subject.path"]).read_text())
        got = pd.DataFrame(table["data"], columns=table["columns"])
        assert list(got["subject"]) == list(per_subject["subject"])
        assert got["sc/dice"].tolist() == pytest.approx(per_subject["sc/dice"].tolist(), rel=1e-12)
        # checkpoint: summary path + a reference artifact pointing at the file
        ckpt = tdir / "checkpoints" / "best.ckpt"
        assert Path(summary["checkpoint"]) == ckpt and ckpt.exists()
        models = [a for a in info["artifacts"] if a["type"] == "model"]
        assert len(models) == 1 and "best" in models[0]["aliases"]
        refs = [c["ref"] for c in models[0]["manifest"]["contents"]]
        assert refs == [ckpt.resolve().as_uri()]


@pytest.mark.slow
def test_a_broken_wandb_never_fails_the_run(real_sweep, tmp_path, monkeypatch):
    import wandb

    from runs.runner import fit

    def broken_init(*args, **kwargs):
        raise RuntimeError("wandb backend unavailable (simulated)")

    monkeypatch.setattr(wandb, "init", broken_init)
    cfg = trial_config(real_sweep.parent / "phantom", tmp_path / "run", "broken", "unet", 0, {})
    cfg["logger"]["wandb"]["mode"] = "online"
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        result = fit(cfg)
    msgs = _wandb_warnings(rec)
    assert len(msgs) == 1 and "continuing without wandb" in msgs[0] and "online" in msgs[0]
    assert (tmp_path / "run" / "test_metrics.csv").exists() and result.best_ckpt
    assert not list((tmp_path / "run").glob("wandb/offline-run-*"))


# --------------------------------------------------------------------------- fallback and ranks
class FakeLogger:
    """Stands in for WandbLogger: fails in the modes listed in ``fail``."""

    fail: tuple[str, ...] = ()
    calls: list[str] = []

    def __init__(self, mode: str, **kwargs):
        FakeLogger.calls.append(mode)
        self.mode, self.kwargs = mode, kwargs

    @property
    def experiment(self):
        if self.mode in FakeLogger.fail:
            raise ConnectionError(f"cannot reach wandb in {self.mode} mode")
        return SimpleNamespace(id="fake")


@pytest.fixture()
def fake_logger(monkeypatch):
    import pytorch_lightning.loggers as loggers

    FakeLogger.calls, FakeLogger.fail = [], ()
    monkeypatch.setattr(loggers, "WandbLogger", FakeLogger)
    for var in tracking.RANK_VARS:
        monkeypatch.delenv(var, raising=False)
    return FakeLogger


def _cfg(mode=None, options=None):
    from runs.config import load_config

    return load_config(
        [],
        [],
        {
            "name": "r",
            "model": {"name": "unet", "preset": "tiny", "options": options or {}},
            "logger": {"wandb": {"mode": mode, "group": "g"}},
        },
    )


def test_online_failure_falls_back_to_offline_with_one_warning(fake_logger, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    fake_logger.fail = ("online",)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        logger = tracking.make_wandb_logger(_cfg(), tmp_path)
    assert fake_logger.calls == ["online", "offline"] and logger.mode == "offline"
    msgs = _wandb_warnings(rec)
    assert len(msgs) == 1 and "logging offline instead" in msgs[0] and "ConnectionError" in msgs[0]
    assert logger.kwargs["group"] == "g" and logger.kwargs["save_dir"] == str(tmp_path)


def test_offline_by_default_without_api_key_and_no_warning(fake_logger, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        logger = tracking.make_wandb_logger(_cfg(), tmp_path)
    assert fake_logger.calls == ["offline"] and logger.mode == "offline" and not _wandb_warnings(rec)


def test_everything_failing_gives_none_and_one_warning(fake_logger, tmp_path):
    fake_logger.fail = ("online", "offline")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        assert tracking.make_wandb_logger(_cfg(mode="online"), tmp_path) is None
    msgs = _wandb_warnings(rec)
    assert fake_logger.calls == ["online", "offline"]
    assert len(msgs) == 1 and "continuing without wandb" in msgs[0]


@pytest.mark.parametrize(
    "env, rank_zero",
    [
        ({}, True),
        ({"RANK": "0", "LOCAL_RANK": "0"}, True),
        ({"RANK": "1"}, False),
        ({"LOCAL_RANK": "1"}, False),
        ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False),
        ({"SLURM_PROCID": "3"}, False),
    ],
)
def test_only_global_rank_zero_creates_a_run(fake_logger, tmp_path, monkeypatch, env, rank_zero):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert tracking.is_global_rank_zero() is rank_zero
    logger = tracking.make_wandb_logger(_cfg(mode="offline"), tmp_path)
    assert (logger is not None) is rank_zero
    assert fake_logger.calls == (["offline"] if rank_zero else [])


def test_disabled_mode_creates_nothing(fake_logger, tmp_path):
    assert tracking.make_wandb_logger(_cfg(mode="disabled"), tmp_path) is None and fake_logger.calls == []


def test_tags_name_model_data_seed_and_every_knob():
    cfg = _cfg()
    cfg["model"]["options"] = {"depths": [2, 2, 6, 2], "skip_connections": 2, "embed_dim": 24}
    cfg["logger"]["wandb"]["tags"] = ["paper-table-2"]
    tags = tracking.run_tags(cfg)
    assert tags[:5] == ["model:unet", "preset:tiny", "data:phantom", "task:sc", "seed:0"]
    assert {"depths:[2,2,6,2]", "skip_connections:2", "embed_dim:24", "paper-table-2"} <= set(tags)
    cfg["model"]["options"] = {"depths": list(range(40))}
    long = tracking.run_tags(cfg)
    assert all(len(t) <= tracking.MAX_TAG for t in long) and any(t.startswith("depths:[0,1,2") for t in long)


def test_finish_never_raises(recwarn):
    class Broken:
        @property
        def experiment(self):
            raise OSError("disk full")

    tracking.finish_wandb(
        Broken(), SimpleNamespace(val={}, test_summary={}, test_records=[], best_ckpt=None, out=Path("."), seconds=0.0)
    )
    assert len(_wandb_warnings(recwarn.list)) == 1


def test_leaderboard_run_falls_back_to_offline(tmp_path, monkeypatch):
    """A real wandb run: online refused (simulated), logged offline in the given group with one warning."""
    import wandb

    real_init = wandb.init

    def init(*args, **kwargs):
        if kwargs.get("mode") == "online":
            raise ConnectionError("no network (simulated)")
        return real_init(*args, **kwargs)

    monkeypatch.setattr(wandb, "init", init)
    table = pd.DataFrame(
        {
            "rank": [1, 2],
            "entry": ["a", "b"],
            "mean": [0.9, 0.8],
            "ci_low": [0.85, 0.7],
            "ci_high": [0.95, 0.85],
            "p_holm": [float("nan"), 0.01],
        }
    )
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        run_dir = tracking.log_leaderboard(
            tmp_path, table, {}, {"sweep": "s", "column": "sc/dice", "by": "model"}, group="grp", mode="online"
        )
    msgs = _wandb_warnings(rec)
    assert len(msgs) == 1 and "logging offline instead" in msgs[0]
    assert run_dir is not None and run_dir.name.startswith("offline-run-")
    info = wandb_run_info(run_dir)
    assert info["run"]["run_group"] == "grp" and info["run"]["job_type"] == "leaderboard"
    assert info["summary"]["best/entry"] == "a" and info["summary"]["leaderboard.nrows"] == 2
