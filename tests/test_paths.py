"""core.paths: sweep and cluster YAMLs found at their place in configs/ and at the old sweeps/ paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.paths import CLUSTER_CONFIGS, REPO_ROOT, SWEEP_CONFIGS, find_config, moved_config_path


@pytest.mark.parametrize(
    "given", ["sweeps/ci.yaml", "configs/sweeps/ci.yaml", "ci", "ci.yaml", str(REPO_ROOT / "sweeps" / "ci.yaml")]
)
def test_sweep_yaml_found_by_old_and_new_paths(given: str, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the repository: the lookup falls back on it
    assert find_config(given).resolve() == (SWEEP_CONFIGS / "ci.yaml").resolve()


def test_cluster_yaml_old_path_still_exists_for_ray():
    """``ray up sweeps/cluster/aws.yaml`` reads the file itself: the old folder links to the new one."""
    for p in sorted(CLUSTER_CONFIGS.glob("*.yaml")):
        old = REPO_ROOT / "sweeps" / "cluster" / p.name
        assert old.read_text() == p.read_text() and os.path.samefile(old, p)
        assert find_config(f"sweeps/cluster/{p.name}").resolve() == p.resolve()
    assert {p.name for p in CLUSTER_CONFIGS.glob("*.yaml")} == {"aws.yaml", "gcp.yaml", "local.yaml"}


def test_moved_paths_and_unknown_names(tmp_path: Path, monkeypatch):
    assert moved_config_path("sweeps/hpo.yaml") == Path("configs/sweeps/hpo.yaml")
    assert moved_config_path("/a/b/sweeps/cluster/gcp.yaml") == Path("/a/b/configs/cluster/gcp.yaml")
    assert moved_config_path("configs/demo.yaml") is None
    monkeypatch.chdir(tmp_path)
    assert find_config("sweeps/nothere.yaml") == Path("sweeps/nothere.yaml")  # the caller names it
    mine = tmp_path / "sweeps" / "ci.yaml"  # a user's own file at that path wins over the repository's
    mine.parent.mkdir()
    mine.write_text("name: mine\n")
    assert find_config("sweeps/ci.yaml") == Path("sweeps/ci.yaml")


def test_cordbench_sweep_check_accepts_the_old_path(tmp_path: Path, monkeypatch, capsys):
    from cordbench.cli import main

    monkeypatch.chdir(REPO_ROOT)
    assert main(["sweep", "sweeps/ci.yaml", "--check", "--storage", str(tmp_path)]) == 0
    assert "sweep ci: 2 trial(s)" in capsys.readouterr().out


def test_sweep_yamls_live_in_configs_sweeps():
    """New sweep YAMLs go to configs/sweeps/ (sweeps/ holds the code; old paths are only looked up)."""
    assert sorted(p.name for p in (REPO_ROOT / "sweeps").glob("*.yaml")) == []
    assert {"quickstart.yaml", "ci.yaml", "models.yaml"} <= {p.name for p in SWEEP_CONFIGS.glob("*.yaml")}
