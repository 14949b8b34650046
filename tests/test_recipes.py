"""Training recipes (runs.recipes): a preset's training defaults fill only the keys left null,
per trial in a sweep, and the `small` Swin presets really shift their windows at every stage."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.errors import ConfigError
from lightning_modules.registry import build_network, register
from runs.config import load_config
from runs.recipes import FALLBACK, recipe_of, training_line
from sweeps.config import apply_params, load_sweep


def test_recipe_fills_null_keys_and_explicit_values_win(tmp_path: Path):
    rec = recipe_of("swinunet", "small")
    assert rec, "the flagship's small preset has a training recipe"
    cfg = load_config(extra={"model": {"name": "swinunet", "preset": "small"}})
    for key, value in rec.items():
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert node == value
    # a file, then an override, beat the recipe
    f = tmp_path / "c.yaml"
    f.write_text("model: {name: swinunet, preset: small, lr: 0.0007}\ntrainer: {max_epochs: 3}\n")
    cfg = load_config([f], overrides=["model.warmup_epochs=5"])
    assert (cfg["model"]["lr"], cfg["trainer"]["max_epochs"], cfg["model"]["warmup_epochs"]) == (0.0007, 3, 5)
    assert "*" not in training_line(cfg).split("lr=")[1].split(",")[0]


def test_model_without_recipe_gets_the_fallback_values():
    cfg = load_config(extra={"model": {"name": "dilated_cnn", "preset": "small"}})
    assert recipe_of("dilated_cnn", "small") == {}
    assert cfg["model"]["lr"] == FALLBACK["model.lr"] == 1e-3
    assert cfg["trainer"]["max_epochs"] == FALLBACK["trainer.max_epochs"] == 10
    assert cfg["model"]["scheduler"] == "cosine" and cfg["model"]["warmup_epochs"] == 0


def test_recipe_key_is_type_checked_like_its_fallback():
    with pytest.raises(ConfigError, match="model.lr"):
        load_config(overrides=["model.lr=fast"])


def test_unknown_recipe_key_is_rejected_at_registration():
    with pytest.raises(ValueError, match="unknown keys"):
        register("recipe-probe-model", presets={"small": {}}, recipes={"small": {"learning_rate": 1}})(
            torch.nn.Identity
        )


def test_each_sweep_trial_gets_its_own_models_recipe(tmp_path: Path):
    f = tmp_path / "s.yaml"
    f.write_text(
        "name: t\nbase: [configs/debug.yaml]\nconfig:\n  model: {preset: small}\n  trainer: {max_epochs: null}\n"
        "space:\n  model.name: {grid: [dilated_cnn, swinunet]}\nsearch: {algorithm: basic, num_samples: 1}\n"
    )
    sweep = load_sweep(f, validate_all=False, check_data=False)
    unet = apply_params(sweep.run_config, {"model.name": "dilated_cnn"}, "t")
    swin = apply_params(sweep.run_config, {"model.name": "swinunet"}, "t")
    assert unet["model"]["lr"] == FALLBACK["model.lr"]
    assert swin["model"]["lr"] == recipe_of("swinunet", "small")["model.lr"]
    epochs = [int(c["trainer"]["max_epochs"]) for c in (unet, swin)]
    assert sweep.max_epochs() == max(epochs)
    # the sweep's own value applies to every trial
    f.write_text(f.read_text().replace("preset: small}", "preset: small, lr: 0.0042}"))
    sweep = load_sweep(f, validate_all=False, check_data=False)
    assert apply_params(sweep.run_config, {"model.name": "swinunet"}, "t")["model"]["lr"] == 0.0042


@pytest.mark.parametrize("name", ["sattisunet", "swinunet"])
@pytest.mark.parametrize("patch", [48, 64])
def test_small_preset_shifts_windows_at_every_stage(name: str, patch: int):
    """At the training patch sizes the configs use, the second block of every encoder stage runs shifted windows."""
    net = build_network(name, preset="small").eval()
    seen: dict[int, list[tuple]] = {}
    for i, stage in enumerate(net.encoder):
        for blk in stage.blocks:
            blk.register_forward_pre_hook(
                lambda m, args, i=i: seen.setdefault(i, []).append((tuple(args[0].shape[1:3]), tuple(args[2])))
            )
    with torch.no_grad():
        net(torch.zeros(1, 1, patch, patch))
    assert len(seen) == len(net.encoder)
    for i, calls in sorted(seen.items()):
        (grid, first), (_, second) = calls[0], calls[1]
        assert first == (0, 0) and all(s > 0 for s in second), f"{name} small stage {i} at {patch}²: {grid}, {second}"


@pytest.mark.parametrize(
    "recipe, words",
    [
        ({"lr": -1.0}, ["lr=-1.0", "> 0", "model.lr"]),
        ({"max_epochs": 2.5}, ["max_epochs=2.5", "integer"]),
        ({"scheduler": 3}, ["scheduler=3", "str"]),
    ],
)
def test_recipe_values_are_checked_against_the_schema_at_registration(recipe, words):
    with pytest.raises(ValueError) as err:
        register("recipe-probe-typed", presets={"small": {}}, recipes={"small": recipe})(torch.nn.Identity)
    for w in words:
        assert w in str(err.value), (w, str(err.value))
