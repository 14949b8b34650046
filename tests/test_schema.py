"""The typed config schema (core/schema.py): every default, range and fallback declared once and derived
everywhere else; every shipped and legacy config still loads; ``--help`` lists every key; the Lightning
module is built from the schema's keys."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from core import schema
from core.errors import ConfigError
from core.schema import RandomiseConfig, RandomiseRanges, RunConfig, SweepConfig

REPO = Path(__file__).resolve().parents[1]
LEGACY = REPO / "tests" / "data" / "legacy_sweep"


# ------------------------------------------------------------------------------ one owner of defaults
def test_defaults_ranges_and_fallbacks_are_the_schemas():
    from data_modules.phantom import randomise_options
    from lightning_modules.presets import PRESET_NAMES, RECIPE_KEYS
    from runs.config import DEFAULTS, RANGES
    from runs.recipes import FALLBACK
    from sweeps.config import SWEEP_DEFAULTS

    leaves = schema.leaves(RunConfig)
    assert DEFAULTS == schema.defaults(RunConfig)
    assert RANGES == {d: k.range for d, k in leaves.items() if k.range is not None}
    assert FALLBACK == {d: k.fallback for d, k in leaves.items() if k.fallback is not None}
    assert set(RECIPE_KEYS.values()) == set(FALLBACK) and PRESET_NAMES == leaves["model.preset"].choices
    assert SWEEP_DEFAULTS == {
        k: v for k, v in schema.defaults(SweepConfig).items() if k not in ("config", "space", "stop", "source")
    }
    # the whole-neck keys are recorded only when in use, options added later only when set (cohorts made
    # before them keep their record)
    full = dataclasses.asdict(RandomiseRanges())
    recorded = randomise_options.RandomiseOptions().to_dict()
    narrow = {k: v for k, v in full.items() if k not in randomise_options.WIDE_KEYS}
    assert {**recorded, **randomise_options.LATER_DEFAULTS} == narrow
    assert set(recorded).isdisjoint(randomise_options.LATER_DEFAULTS)
    assert randomise_options.RandomiseOptions(wide_fov_prob=0.5).to_dict() == {
        **recorded,
        **{k: full[k] for k in randomise_options.WIDE_KEYS},
        "wide_fov_prob": 0.5,
    }
    assert DEFAULTS["data"]["phantom"]["randomise"] == {"enabled": False, **dataclasses.asdict(RandomiseRanges())}
    assert randomise_options.RANGES == {k.name: k.range for k in schema.leaves(RandomiseConfig).values() if k.range}


def test_every_key_has_help_and_a_checkable_type():
    for of in (RunConfig, SweepConfig):
        for d, k in schema.keys(of).items():
            assert k.help, d
            if k.section is None:
                assert k.kinds and all(isinstance(t, type) for t in k.kinds), d
                if k.default is not None:
                    assert isinstance(k.default, k.kinds), (d, k.default, k.kinds)
                if k.fallback is not None:
                    assert isinstance(k.fallback, k.kinds) and k.recipe, d
                if k.range is not None and k.default is not None:
                    assert all(
                        k.range.contains(v) for v in (k.default if isinstance(k.default, list) else [k.default])
                    ), d
                if isinstance(k.choices, tuple) and k.default is not None:
                    assert k.default in k.choices, d


def test_registry_choices_resolve():
    """Choices owned by a registry of another layer are found where the schema says (runs.config.choices)."""
    from runs.config import choices

    for d, k in schema.keys(RunConfig).items():
        if isinstance(k.choices, schema.Registry):
            found = choices(d)
            assert found and (k.default is None or k.default in found), d


def _schema_defaults_by_name() -> dict[str, set[str]]:
    """Leaf name -> the reprs of its non-null defaults/fallbacks over both schemas."""
    out: dict[str, set[str]] = {}
    for of in (RunConfig, SweepConfig):
        for k in schema.leaves(of).values():
            for v in (k.default, k.fallback):
                if v is not None and not isinstance(v, (list, dict)) and v != "":
                    out.setdefault(k.name, set()).add(repr(v))
    return out


def _literal(node: ast.AST | None) -> str | None:
    try:
        return repr(ast.literal_eval(node)) if node is not None else None
    except ValueError:
        return None


def test_no_module_declares_config_defaults_again():
    """A mapping, a dataclass body or a signature that repeats three or more schema defaults under their key
    names is a second owner of those defaults (derive them from core.schema instead)."""
    known = _schema_defaults_by_name()
    found = []
    for path in sorted(REPO.glob("*/**/*.py")):
        rel = path.relative_to(REPO)
        if rel.parts[0] in ("tests", "benchmarks", "docs") or rel == Path("core/schema.py") or ".venv" in rel.parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            pairs: list[tuple[str, str | None]] = []
            if isinstance(node, ast.Dict):
                pairs = [
                    (k.value.rsplit(".", 1)[-1], _literal(v))
                    for k, v in zip(node.keys, node.values)
                    if isinstance(k, ast.Constant) and isinstance(k.value, str)
                ]  # "model.lr": lr
            elif isinstance(node, ast.ClassDef):
                pairs = [
                    (n.target.id, _literal(n.value))
                    for n in node.body
                    if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
                ]
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args.args[len(node.args.args) - len(node.args.defaults) :]
                pairs = [(a.arg, _literal(v)) for a, v in zip(args, node.args.defaults)]
                pairs += [(a.arg, _literal(v)) for a, v in zip(node.args.kwonlyargs, node.args.kw_defaults)]
            same = [name for name, value in pairs if value is not None and value in known.get(name, ())]
            if len(same) >= 3:
                found.append(f"{rel}:{node.lineno}: {same}")
    assert not found, found


# ---------------------------------------------------------------------------- every config still loads
def _configs() -> list[Path]:
    return sorted(p for p in (REPO / "configs").rglob("*.y*ml"))


@pytest.mark.parametrize("path", _configs(), ids=[str(p.relative_to(REPO / "configs")) for p in _configs()])
def test_every_yaml_under_configs_loads(path: Path):
    from runs.config import load_config
    from sweeps.config import load_sweep

    kind = path.relative_to(REPO / "configs").parts[0]
    if kind == "sweeps":
        sweep = load_sweep(path, validate_all=False, check_data=False)  # every trial: tests/test_sweeps_config.py
        assert sweep.n_trials >= 1 and sweep.run_config["model"]["name"]
    elif kind == "cluster":  # Ray cluster-launcher files (`ray up`), not cordbench configs
        data = yaml.safe_load(path.read_text())
        assert data["cluster_name"] and data["provider"]["type"]
    else:
        assert load_config([path])["model"]["name"]


def test_every_config_of_the_legacy_sweep_loads():
    from runs.config import load_config
    from sweeps.config import load_sweep

    configs = sorted(LEGACY.rglob("config.yaml"))
    assert len(configs) >= 3
    for f in configs:
        cfg = load_config([f])
        assert cfg["model"]["name"] and isinstance(cfg["model"]["lr"], float)
    sweep = load_sweep(LEGACY, validate_all=False, check_data=False)
    assert sweep.name == "legacy"


# --------------------------------------------------------------------------------------------- --help
def _help(capsys, argv: list[str]) -> str:
    from cordbench.cli import main

    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command, of", [("fit", RunConfig), ("validate", RunConfig), ("sweep", SweepConfig)])
def test_help_lists_every_key_with_type_default_and_range(capsys, command, of):
    text = _help(capsys, [command, "--help"])
    lines = text.splitlines()
    lines = lines[next(i for i, ln in enumerate(lines) if ln.startswith(("config keys", "sweep keys"))) :]
    for d, k in schema.leaves(of).items():
        at = [i for i, ln in enumerate(lines) if ln.startswith(f"  {d}  ")]
        assert len(at) == 1, (d, at)
        line = lines[at[0]]
        assert f"  {d}  {k.type}, default {schema.show(k.default)}" in line, line
        if k.fallback is not None:
            assert f"else {schema.show(k.fallback)}" in line, line
        if k.range is not None:
            assert f"range: {k.range.describe()}" in line, line
        if isinstance(k.choices, tuple):
            assert "choices: " + ", ".join(schema.show(c) for c in k.choices) in line, line
        assert lines[at[0] + 1].strip() == k.help, d


def test_help_shows_registry_choices(capsys):
    from lightning_modules.schedule import SCHEDULERS

    text = _help(capsys, ["fit", "--help"])
    line = next(ln for ln in text.splitlines() if ln.startswith("  model.scheduler  "))
    assert "choices: " + ", ".join(SCHEDULERS) in line


# ------------------------------------------------------------------------------ the Lightning module
#: SegmentationModule arguments that come from the data module or are resolved (runs.runner.build_module).
FROM_DATA = {
    "options",
    "num_classes",
    "in_channels",
    "spatial_dims",
    "classes",
    "task",
    "contrast",
    "preprocessing",
    "postprocess",
    "inference_batch",
}


def test_every_module_argument_is_a_schema_key_or_comes_from_the_data():
    from lightning_modules.module import SegmentationModule

    params = inspect.signature(SegmentationModule.__init__).parameters
    mapped = {k.hparam: k for k in schema.leaves(RunConfig).values() if k.hparam}
    assert set(params) - {"self"} == set(mapped) | FROM_DATA
    for name, k in mapped.items():
        default = params[name].default
        if default is not None:  # patch_size/spacing: None in old checkpoints means "not recorded"
            assert default == schema.default(k.dotted), name


def test_build_module_takes_the_configs_values():
    from runs.config import load_config
    from runs.runner import build_module

    cfg = load_config(
        overrides=[
            "model.preset=tiny",
            "model.lr=0.005",
            "model.warmup_epochs=2",
            "model.dice_weight=0.5",
            "data.patch_size=[32,32]",
            "logger.wandb.log_images=false",
        ]
    )
    pre = SimpleNamespace(to_dict=lambda: {"task": "sc"})
    dm = SimpleNamespace(
        num_classes=2,
        spatial_dims=2,
        class_map={"sc": [1]},
        task=SimpleNamespace(name="sc"),
        contrast="T2w",
        preprocessing=pre,
    )
    hp = build_module(cfg, dm).hparams
    assert (hp.network, hp.preset, hp.lr, hp.warmup_epochs, hp.dice_weight, hp.patch_size, hp.log_images) == (
        "unet",
        "tiny",
        0.005,
        2,
        0.5,
        [32, 32],
        False,
    )
    assert isinstance(hp.lr, float) and isinstance(hp.warmup_epochs, int)
    assert hp.scheduler == cfg["model"]["scheduler"] and hp.postprocess == "largest_component"


# ------------------------------------------------------------------------------- shared from_mapping
def test_from_mapping_names_unknown_keys():
    from data_modules.phantom.options import PhantomOptions
    from data_modules.phantom.randomise_options import RandomiseOptions
    from data_modules.preprocessing import Preprocessing

    with pytest.raises(ConfigError, match=r"unknown keys \['nosuch'\] in phantom options"):
        PhantomOptions.from_kwargs({"nosuch": 1})
    with pytest.raises(ConfigError, match=r"unknown keys \['nosuch'\] in 'data.phantom.randomise'"):
        RandomiseOptions.from_mapping({"enabled": True, "nosuch": 1})
    with pytest.raises(ConfigError, match=r"unknown keys \['nosuch'\] in the preprocessing description"):
        Preprocessing.from_dict({"nosuch": 1})
    assert RandomiseOptions.from_mapping({"enabled": True, "snr_min": 9}).snr_min == 9
