"""The tree's layers as docs/architecture.md draws them, and the import contracts that keep them.

``lint-imports`` itself runs in ``make test``; here its contracts are checked to say what the
architecture page says, and the rules it cannot express are tested directly.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.support.layout import PACKAGES

REPO = Path(__file__).resolve().parents[1]


def _contracts() -> list[dict]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_layers_contract_names_every_package_top_to_bottom():
    layers = next(c for c in _contracts() if c["type"] == "layers")["layers"]
    flat = [p.strip() for layer in layers for p in layer.split("|")]
    assert sorted(flat) == sorted(PACKAGES)
    assert layers[0] == "cordbench" and layers[-1] == "core"  # the CLI on top, the ground at the bottom
    assert "lightning_modules | data_modules" in layers  # independent of each other, above core only


def test_every_package_is_a_top_level_folder_and_in_the_architecture_page():
    doc = (REPO / "docs" / "architecture.md").read_text()
    for pkg in PACKAGES:
        assert (REPO / pkg / "__init__.py").is_file(), pkg
        assert re.search(rf"\b{pkg}/", doc), f"docs/architecture.md does not show {pkg}/"
    found = {p.parent.name for p in REPO.glob("*/__init__.py")}
    assert found == set(PACKAGES), f"a package is missing from the layers: {sorted(found - set(PACKAGES))}"


def test_modules_named_in_the_architecture_page_exist():
    doc = (REPO / "docs" / "architecture.md").read_text()
    alternatives = "|".join(PACKAGES)
    named = set(re.findall(rf"`((?:{alternatives})/[\w/]+\.py)`", doc))
    assert named, "the page names no module"
    missing = sorted(p for p in named if not (REPO / p).is_file())
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"


def test_no_product_module_is_named_like_a_test():
    bad = [
        str(p.relative_to(REPO))
        for pkg in PACKAGES
        for p in (REPO / pkg).rglob("*.py")
        if re.match(r"test_.*\.py$|.*_test\.py$", p.name)
    ]
    assert not bad, f"product modules named like pytest test files: {bad}"


def test_ground_package_imports_nothing_of_the_project():
    """The same rule as the layers contract, read from the source (imports inside functions too)."""
    others = tuple(p for p in PACKAGES if p != "core")
    pattern = re.compile(rf"^\s*(?:from|import)\s+({'|'.join(others)})\b", re.M)
    hits = [
        f"{p.relative_to(REPO)}: {m.group(0).strip()}"
        for p in (REPO / "core").rglob("*.py")
        for m in pattern.finditer(p.read_text())
    ]
    assert not hits, hits


def test_registries_are_explicit_tables():
    """Data sets, networks and commands are listed, not found by scanning a folder."""
    for path in (
        "data_modules/registry.py",
        "lightning_modules/registry.py",
        "cordbench/cli.py",
        "cordbench/commands/__init__.py",
        "data_modules/base.py",
    ):
        src = (REPO / path).read_text()
        assert "pkgutil" not in src and "iter_modules" not in src, path
    from cordbench.commands import COMMANDS
    from data_modules.registry import DATAMODULES
    from lightning_modules.registry import list_models

    assert set(DATAMODULES) == {"phantom", "spine_generic", "gmchallenge"}
    assert {"unet", "sattisunet", "swinunet", "transunet", "dilated_cnn"} <= set(list_models())
    commands = {p.stem.replace("_", "-") for p in (REPO / "cordbench" / "commands").glob("[!_]*.py")}
    assert set(COMMANDS) == commands, "a command module is missing from cordbench.commands.COMMANDS"


def test_lint_imports_passes():
    exe = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(exe)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
