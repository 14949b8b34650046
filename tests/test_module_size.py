"""No module over ~450 lines without a reason written at its top (its module docstring says why)."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("cordbench", "core", "evaluation", "runs", "leaderboard", "sweeps", "analysis", "data_modules",
            "lightning_modules", "benchmarks")
LIMIT = 460  # "about 450"


def test_long_modules_say_why():
    unexplained = []
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            text = path.read_text()
            if text.count("\n") <= LIMIT:
                continue
            doc = ast.get_docstring(ast.parse(text)) or ""
            if "Why over" not in doc and "Why about" not in doc:
                unexplained.append(f"{path.relative_to(REPO)} ({text.count(chr(10))} lines)")
    assert not unexplained, "split these or say why at the top ('Why over ~450 lines: ...'): " + ", ".join(unexplained)
