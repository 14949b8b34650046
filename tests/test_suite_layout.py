"""The test suite's own layout: test modules import builders from ``tests/support/``, never each other,
and the tiers of the Makefile select by markers that setup.cfg declares.

A test module imported by another is imported twice (pytest imports it as ``test_x``, the importer
as ``tests.test_x`` or ``test_x`` from elsewhere): its session fixtures are registered, and built,
once per importing module.
"""

from __future__ import annotations

import ast
import configparser
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_no_test_module_imports_another():
    offenders = {}
    for path in sorted(TESTS.rglob("*.py")):
        bad = sorted(
            m
            for m in _imported_modules(path)
            if m.split(".")[-1].startswith("test_") or m in ("conftest", "tests.conftest")
        )
        if bad:
            offenders[str(path.relative_to(REPO))] = bad
    assert not offenders, f"move what they share to tests/support/: {offenders}"


def test_tiers_select_by_declared_markers():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    declared = {line.split(":")[0].strip() for line in cfg["tool:pytest"]["markers"].splitlines() if line.strip()}
    assert {"slow", "ray", "subprocess", "ddp", "services"} <= declared
    makefile = (REPO / "Makefile").read_text()
    fast = re.search(r"^FAST_TESTS\s*:?=\s*(.+)$", makefile, re.M)
    assert fast, "the Makefile defines FAST_TESTS, the marker expression of `make test-fast`"
    used = set(re.findall(r"\bnot (\w+)", fast.group(1)))
    assert used and used <= declared, used - declared
    assert re.search(r"^test-fast:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
