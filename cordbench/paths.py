"""Default locations: shared real data, outputs."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """Real data root: ``$CORDBENCH_DATA`` or ``../shared/data`` beside the repository."""
    env = os.environ.get("CORDBENCH_DATA")
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "data")


def output_dir() -> Path:
    """Default root of run outputs: ``$CORDBENCH_OUTPUT`` or ``./outputs``."""
    return Path(os.environ.get("CORDBENCH_OUTPUT", "outputs"))
