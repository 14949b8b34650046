"""Config loading: defaults, files, overrides, and errors naming the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from runs.config import DEFAULTS, load_config

REPO = Path(__file__).resolve().parents[1]


def test_every_shipped_config_loads():
    for f in sorted((REPO / "configs").glob("*.yaml")):
        cfg = load_config([f])
        assert cfg["model"]["name"]


def test_file_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: {name: unet, preset: tiny}\ntrainer: {max_epochs: 3}\n")
    cfg = load_config([f], ["trainer.max_epochs=5", "model.options.skip_connections=1"])
    assert cfg["trainer"]["max_epochs"] == 5
    assert cfg["model"]["preset"] == "tiny"
    assert cfg["model"]["options"] == {"skip_connections": 1}
    assert cfg["data"]["batch_size"] == DEFAULTS["data"]["batch_size"]


@pytest.mark.parametrize(
    "text, needle",
    [
        ("model: {nmae: unet}\n", "model.nmae"),
        ("trainer: {max_epochs: ten}\n", "trainer.max_epochs"),
        ("model: {name: nosuchnet}\n", "nosuchnet"),
        ("model: {name: unet, options: {depthh: 3}}\n", "depthh"),
        ("data: {task: spleen}\n", "data.task"),
        ("data: {split: {val_fraction: 0.6, test_fraction: 0.5}}\n", "val_fraction"),
        ("- a\n- b\n", "mapping"),
        ("model: [\n", "invalid YAML"),
    ],
)
def test_bad_config_named(tmp_path, text, needle):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config([f])
    assert needle in str(err.value)


def test_unknown_override_named():
    with pytest.raises(ConfigError, match="trainer.max_epoch"):
        load_config([], ["trainer.max_epoch=3"])


def test_yaml_is_safe(tmp_path):
    f = tmp_path / "evil.yaml"
    f.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config([f])
