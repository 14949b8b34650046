"""The project's packages, as the layers contract in ``pyproject.toml`` lists them (top to bottom)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = (
    "cordbench",
    "leaderboard",
    "sweeps",
    "runs",
    "evaluation",
    "analysis",
    "lightning_modules",
    "data_modules",
    "core",
)
#: every folder of product code: the packages and the benchmark scripts
CODE_FOLDERS = (*PACKAGES, "benchmarks")
