"""Sweep configs: every file in sweeps/ validates; bad configs are rejected before any trial with
the file and key named; search spaces, GPU/DDP settings and results.csv rows are built right.

No Ray cluster is started here (seconds in total).
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

from core.errors import ConfigError
from core.paths import REPO_ROOT
from sweeps.config import decode_params, load_sweep, parse_dim
from tests.support.sweep_trials import fake_trial

SWEEPS = sorted((REPO_ROOT / "configs" / "sweeps").glob("*.yaml"))
REQUIRED = {"ablation_skips", "ablation_depth", "ablation_heads", "ablation_full", "models", "hpo", "quickstart", "ci"}


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


BASE = """
name: t
base: [configs/debug.yaml]
config:
  model: {name: sattisunet, preset: small, options: {depths: [2, 2, 2, 2], num_heads: [2, 4, 8, 16]}}
space:
  model.options.skip_connections: {grid: [0, 1, 2, 3]}
storage: {storage}
"""


# ------------------------------------------------------------------------------------ every config
def test_all_required_configs_exist():
    assert REQUIRED <= {p.stem for p in SWEEPS}


def _root_from_the_command_line(path: Path) -> bool:
    """A protocol sweep whose data root is given on the command line (``cordbench gmchallenge ROOT``)."""
    data = ((yaml.safe_load(path.read_text()) or {}).get("config") or {}).get("data") or {}
    return data.get("name") == "gmchallenge" and not data.get("root")


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_sweep_config_validates(path: Path):
    sweep = load_sweep(path, check_data=not _root_from_the_command_line(path))
    assert sweep.name == yaml.safe_load(path.read_text()).get("name", path.stem)
    assert sweep.n_validated >= 1 and sweep.n_trials >= 1
    # every combination of categorical values was resolved and validated
    cats = [d for d in sweep.dims if d.kind in ("grid", "choice")]
    conts = [d for d in sweep.dims if d.kind not in ("grid", "choice")]
    assert sweep.n_validated == int(np.prod([len(d.values) for d in cats] or [1])) * 2 ** len(conts)


def test_trial_counts_of_the_benchmark_configs():
    counts = {p.stem: load_sweep(p, validate_all=False).n_trials for p in SWEEPS}
    assert counts["quickstart"] == 10  # 5 models x 2 seeds
    assert counts["models"] == 15  # 5 models x 3 seeds
    assert counts["ablation_skips"] == 12  # skips 0..3 x 3 seeds
    assert counts["ablation_full"] == 36  # 4 skips x 3 depths x 3 heads
    quick = load_sweep(REPO_ROOT / "sweeps" / "quickstart.yaml", validate_all=False)
    models = next(d for d in quick.dims if d.key == "model.name").values
    from lightning_modules.registry import list_models

    assert sorted(models) == list_models() and quick.run_config["model"]["preset"] == "small"


# --------------------------------------------------------------------------------------- rejection
@pytest.mark.parametrize(
    "change, words",
    [
        ("space.model.options.skip_connections.grid=[0,1,2,3,4]", ["skip_connections=4", "0..3"]),
        ("space.model.options.num_heads.grid=[[2,4,8,16],[2,5,8,16]]", ["num_heads", "divide"]),
        ("space.model.name.grid=[sattisunet,nosuchnet]", ["unknown model", "nosuchnet"]),
        ("space.model.options.nosuchknob.grid=[1]", ["nosuchknob"]),
        ("space.model.lr.uniform=[0.1]", ["space.model.lr.uniform", "[low, high]"]),
        ("space.model.lr.loguniform=[0,1]", ["loguniform", "low > 0"]),
        ("space.trainer.nosuch.grid=[1]", ["space.trainer.nosuch"]),
        ("space.model.lr.grid=[fast]", ["model.lr", "number"]),
        ("config.trainer.max_epochs=many", ["trainer.max_epochs", "number"]),
        ("config.model.nosuch=1", ["config", "model.nosuch"]),
        ("search.algorithm=bayes", ["search.algorithm"]),
        ("search.nosuch=1", ["search.nosuch"]),
        ("scheduler.name=hyperband", ["scheduler.name"]),
        ("resources.gpu=2.5", ["resources.gpu", "whole number"]),
        ("search.max_concurrent_trials=0", ["max_concurrent_trials"]),
        ("config.data.name=spine_generic", ["data.root"]),
        ("config.data.name=nosuchdata", ["nosuchdata"]),
    ],
)
def test_bad_sweeps_are_rejected_naming_file_and_key(tmp_path: Path, change: str, words: list[str]):
    path = write(tmp_path, BASE.replace("{storage}", str(tmp_path / "out")))
    with pytest.raises(ConfigError) as err:
        load_sweep(path, overrides=[change])
    msg = str(err.value)
    assert str(path) in msg, msg
    for w in words:
        assert w in msg, (w, msg)
    assert not (tmp_path / "out").exists()  # nothing started


def test_missing_data_set_is_rejected(tmp_path: Path):
    path = write(tmp_path, BASE.replace("{storage}", str(tmp_path / "out")))
    with pytest.raises(ConfigError) as err:
        load_sweep(path, overrides=["config.data.name=spine_generic", f"config.data.root={tmp_path / 'nothere'}"])
    assert "not found" in str(err.value) and str(path) in str(err.value) and "data.root" in str(err.value)


def test_optuna_rejects_grid_and_unknown_top_level_key(tmp_path: Path):
    path = write(tmp_path, BASE.replace("{storage}", str(tmp_path)) + "search: {algorithm: optuna}\n")
    with pytest.raises(ConfigError, match="space.model.options.skip_connections.*choice"):
        load_sweep(path)
    path = write(tmp_path, BASE.replace("{storage}", str(tmp_path)) + "bogus: 1\n", "b.yaml")
    with pytest.raises(ConfigError, match="unknown key 'bogus'"):
        load_sweep(path)


def test_missing_base_file_is_named(tmp_path: Path):
    path = write(tmp_path, "base: [configs/nothere.yaml]\n")
    with pytest.raises(ConfigError, match="nothere.yaml"):
        load_sweep(path)


# ------------------------------------------------------------------------------------ search space
def test_param_space_domains_and_json_round_trip():
    from ray import tune

    from sweeps.runner import param_space

    dims = [
        parse_dim("model.options.depths", {"grid": [[1, 1], [2, 2]]}, "f"),
        parse_dim("model.name", {"choice": ["unet", "swinunet"]}, "f"),
        parse_dim("model.lr", {"loguniform": [1e-4, 1e-2]}, "f"),
        parse_dim("model.dropout", {"uniform": [0.0, 0.3]}, "f"),
        parse_dim("model.options.depth", {"randint": [2, 4]}, "f"),
    ]
    space = param_space(dims)
    assert space["model.options.depths"] == {"grid_search": ["[1, 1]", "[2, 2]"]}
    assert isinstance(space["model.name"], tune.search.sample.Categorical)
    assert space["model.name"].categories == ["unet", "swinunet"]
    lr = space["model.lr"]
    assert isinstance(lr.sampler, tune.search.sample.LogUniform) and (lr.lower, lr.upper) == (1e-4, 1e-2)
    assert isinstance(space["model.dropout"].sampler, tune.search.sample.Uniform)
    assert (space["model.options.depth"].lower, space["model.options.depth"].upper) == (2, 5)  # high inclusive
    samples = [space["model.options.depth"].sample() for _ in range(200)]
    assert set(samples) == {2, 3, 4}
    lrs = np.array([lr.sample() for _ in range(500)])
    assert lrs.min() >= 1e-4 and lrs.max() <= 1e-2 and abs(np.median(np.log10(lrs)) + 3) < 0.25
    decoded = decode_params({"model.options.depths": "[2, 2]", "model.name": "unet"}, dims)
    assert decoded == {"model.options.depths": [2, 2], "model.name": "unet"}
    assert dims[0].column == "depths" and dims[2].column == "model.lr"


def test_overrides_and_storage(tmp_path: Path):
    path = write(tmp_path, BASE.replace("{storage}", "relative/out"))
    sweep = load_sweep(
        path,
        overrides=["search.num_samples=3", "config.trainer.max_epochs=1", "space.seed_everything.grid=[0,1]"],
        storage=str(tmp_path / "st"),
    )
    assert sweep.n_trials == 4 * 2 * 3
    assert sweep.run_config["trainer"]["max_epochs"] == 1
    assert sweep.sweep_dir == str(tmp_path / "st" / "t")
    assert sweep.knob_columns() == ["skip_connections"]  # seed_everything has its own column
    uri = load_sweep(path, storage="s3://bucket/sweeps", validate_all=False)
    assert uri.is_remote_storage and uri.sweep_dir == "s3://bucket/sweeps/t"


def test_resolved_sweep_yaml_reloads_identically(tmp_path: Path):
    from sweeps.config import resolved_yaml

    sweep = load_sweep(REPO_ROOT / "sweeps" / "ablation_heads.yaml", storage=str(tmp_path))
    out = write(tmp_path, resolved_yaml(sweep), "sweep.yaml")
    again = load_sweep(out)
    assert again.run_config == sweep.run_config
    assert again.dims == sweep.dims and again.n_trials == sweep.n_trials == 36
    assert yaml.safe_load(out.read_text())["source"]["file"].endswith("ablation_heads.yaml")


# ----------------------------------------------------------------------------------- devices / DDP
def _setup(gpu: float, cpu: float = 4):
    from sweeps.runner import make_setup

    sweep = load_sweep(
        REPO_ROOT / "sweeps" / "ci.yaml", overrides=[f"resources.gpu={gpu}", f"resources.cpu={cpu}"], validate_all=False
    )
    return make_setup(sweep)


def test_trial_config_cpu_gpu_fraction_and_names(tmp_path: Path):
    from sweeps.trainable import trial_config, trial_resources

    cpu = trial_config(_setup(0), {"seed_everything": 1}, "abc_00001", tmp_path)
    assert cpu["trainer"]["accelerator"] == "cpu" and cpu["trainer"]["devices"] == 1
    assert cpu["trainer"]["precision"] == "auto" and cpu["seed_everything"] == 1
    assert cpu["name"] == "abc_00001" and cpu["output_dir"] == str(tmp_path)
    assert cpu["logger"]["wandb"]["group"] == "ci" and "sweep:ci" in cpu["logger"]["wandb"]["tags"]
    frac = trial_config(_setup(0.5), {"seed_everything": 0}, "abc_00000", tmp_path)
    assert frac["trainer"]["accelerator"] == "gpu" and frac["trainer"]["devices"] == 1
    assert frac["trainer"]["precision"] == "auto"  # AMP chosen by the training process's GPU
    assert trial_resources({"cpu": 2, "gpu": 0.5}) == {"cpu": 2.0, "gpu": 0.5}
    from runs.config import validate

    validate(frac)


def test_ddp_trial_builds_torchtrainer_with_ray_lightning_strategy(tmp_path: Path):
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment
    from ray.train.torch import TorchTrainer

    from sweeps.ddp_trial import build_ddp_trainer, ddp_trainer_kwargs, ddp_worker_loop
    from sweeps.trainable import trial_config, trial_resources

    setup = _setup(2, cpu=8)
    assert setup.ddp
    cfg = trial_config(setup, {"seed_everything": 0}, "abc_00000", tmp_path / "run")
    assert cfg["trainer"]["precision"] == "auto" and cfg["trainer"]["accelerator"] == "gpu"
    trainer = build_ddp_trainer(cfg, setup, "abc_00000", callbacks=[])
    assert isinstance(trainer, TorchTrainer)
    sc = trainer.scaling_config
    assert sc.num_workers == 2 and sc.use_gpu
    assert sc.resources_per_worker == {"CPU": 3.995, "GPU": 1}  # 8 CPUs less the driver's 0.01, halved
    assert trainer.train_loop_per_worker is ddp_worker_loop
    assert trainer.train_loop_config["cfg"] == cfg and trainer.train_loop_config["cpu_per_worker"] == 3.995
    assert trainer.train_loop_config["upload_to"] is None  # a local sweep folder: nothing to upload
    assert trainer.run_config.name == "ddp_abc_00000"
    # the Tune trial only drives the TorchTrainer: the GPUs are reserved by its workers
    assert trial_resources(setup.resources)["gpu"] == 0
    kw = ddp_trainer_kwargs()
    assert isinstance(kw["strategy"], RayDDPStrategy)
    assert [type(p) for p in kw["plugins"]] == [RayLightningEnvironment]


def test_fit_trainer_kwargs_and_wrapper_customise_the_trainer(tmp_path: Path, monkeypatch):
    """runner.fit builds its Trainer with the extra arguments and passes it through the wrapper
    (how a Ray DDP worker adds RayDDPStrategy + prepare_trainer, without patching the runner)."""
    from pytorch_lightning.strategies import DDPStrategy

    import runs.runner as runner
    from sweeps.trainable import trial_config

    cfg = trial_config(_setup(0), {"seed_everything": 0}, "abc_00000", tmp_path)
    cfg["logger"]["wandb"]["enabled"] = False
    trainer = runner.build_trainer(
        cfg, tmp_path, trainer_kwargs={"strategy": DDPStrategy(process_group_backend="gloo"), "plugins": []}
    )
    assert isinstance(trainer.strategy, DDPStrategy)
    assert trainer._accelerator_connector.use_distributed_sampler is False  # the data module shards
    wrapped = []

    class Stop(Exception):
        pass

    def wrap(t):
        wrapped.append(t)
        raise Stop  # stop before training: only the customisation is under test

    monkeypatch.setattr(runner, "prepare", lambda c, **kw: (tmp_path, SimpleNamespace()))
    monkeypatch.setattr(runner, "build_module", lambda c, dm: None)
    with pytest.raises(Stop):
        runner.fit(cfg, trainer_kwargs={"max_epochs": 7}, wrap_trainer=wrap)
    assert wrapped and wrapped[0].max_epochs == 7


# ---------------------------------------------------------------------------------------- results
def test_results_rows_recomputed_from_trial_files(tmp_path: Path):
    from sweeps.results import TrialInfo, build_table, columns

    dims = [parse_dim("model.options.skip_connections", {"grid": [1]}, "f")]
    fake_trial(tmp_path, "a_00000", [0.5, 0.7, 0.9], [0.2, 0.6, 0.4])
    fake_trial(tmp_path, "a_00001", [0.3, 0.4], [0.1], task="gm")
    infos = [
        TrialInfo("a_00000", "RUNNING", {"model.options.skip_connections": 1}),
        TrialInfo("a_00001", "TERMINATED", {"model.options.skip_connections": 1}),
        TrialInfo("a_00000", "TERMINATED", {"model.options.skip_connections": 1}),  # later event wins
        TrialInfo("a_00002", "ERROR", {"model.options.skip_connections": 1}, {}, "ValueError: boom"),
    ]
    from runs.config import DEFAULTS

    frame = build_table(infos, dims, DEFAULTS, str(tmp_path))
    assert list(frame.columns) == columns(["skip_connections"])
    assert list(frame["trial_id"]) == ["a_00000", "a_00001", "a_00002"]  # each trial exactly once
    a, b, c = (frame.iloc[i] for i in range(3))
    assert a["status"] == "TERMINATED" and math.isclose(a["test_dice"], np.mean([0.5, 0.7, 0.9]))
    assert math.isclose(a["val_dice"], 0.6) and a["epochs"] == 3 and a["seconds"] == 12.5
    assert a["run_dir"] == "trials/a_00000" and a["attempts"] == 2 and a["skip_connections"] == 1
    from lightning_modules.registry import build_network

    assert a["params"] == sum(
        p.numel() for p in build_network("unet", 1, 2, 2, "tiny", skip_connections=1).parameters()
    )
    assert math.isclose(b["test_dice"], np.mean([0.3, 0.4]) * 3 / 3)  # gm task: the gm column (3/3 scale)
    assert c["status"] == "ERROR" and c["error"] == "ValueError: boom" and pd.isna(c["test_dice"])


def test_error_summary_takes_the_exception_line():
    from sweeps.results import error_summary

    tb = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad knob\n\nsome ray footer'
    assert error_summary(tb) == "ValueError: bad knob"
    assert error_summary("") == ""


# ------------------------------------------------------------------------------------------- CLI
def test_cli_check_and_one_line_errors(tmp_path: Path, capsys):
    from cordbench.cli import main

    assert main(["sweep", str(REPO_ROOT / "sweeps" / "ci.yaml"), "--check", "--storage", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "sweep ci: 2 trial(s)" in out and str(tmp_path / "ci") in out
    assert not (tmp_path / "ci").exists()  # --check runs nothing
    path = write(tmp_path, BASE.replace("{storage}", str(tmp_path)))
    assert main(["sweep", str(path), "--check", "--override", "space.model.options.skip_connections.grid=[5]"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "skip_connections=5" in err[0]
    assert main(["sweep"]) == 2 and "either a sweep config or --resume" in capsys.readouterr().err
    assert main(["sweep", "--resume", str(tmp_path / "nothing")]) == 2
    assert "sweep.yaml" in capsys.readouterr().err
