"""The real data of the tests: present, or a skip (a failure under ``CI=true``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def require(path: Path) -> Path:
    """``path`` if it exists; otherwise skip the test, or fail it under ``CI=true``."""
    if not path.exists():
        msg = f"real data missing: {path} (set CORDBENCH_DATA or put ../shared/data beside the repo)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path
