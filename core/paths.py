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


#: Where the sweep and cluster YAMLs live (before: ``sweeps/*.yaml`` and ``sweeps/cluster/*.yaml``).
SWEEP_CONFIGS = REPO_ROOT / "configs" / "sweeps"
CLUSTER_CONFIGS = REPO_ROOT / "configs" / "cluster"


def moved_config_path(path: str | Path) -> Path | None:
    """The new place of a YAML given by its path before the move (``…/sweeps/X.yaml`` →
    ``…/configs/sweeps/X.yaml``, ``…/sweeps/cluster/X.yaml`` → ``…/configs/cluster/X.yaml``), else None."""
    parts = Path(path).parts
    if len(parts) >= 3 and parts[-3:-1] == ("sweeps", "cluster"):
        return Path(*parts[:-3], "configs", "cluster", parts[-1])
    if len(parts) >= 2 and parts[-2] == "sweeps":
        return Path(*parts[:-2], "configs", "sweeps", parts[-1])
    return None


def find_config(path: str | Path, roots: tuple[Path, ...] = ()) -> Path:
    """A sweep or cluster YAML by its path — as given, at its old place (``sweeps/quickstart.yaml``,
    ``sweeps/cluster/aws.yaml``: ``configs/sweeps/`` and ``configs/cluster/`` since the move), or a bare
    name (``quickstart``, ``quickstart.yaml``) in ``configs/sweeps/``. A relative path is tried in the
    current folder, then in each of ``roots``, then in the repository. Returns ``path`` unchanged when
    nothing exists (the caller's error names it)."""
    p = Path(path).expanduser()
    candidates = [p]
    moved = moved_config_path(p)
    if moved is not None:
        candidates.append(moved)
    if len(p.parts) == 1:
        candidates.append(SWEEP_CONFIGS / (p.name if p.suffix else f"{p.name}.yaml"))
    for c in candidates:
        if c.exists():
            return c
        if not c.is_absolute():
            for root in (*roots, REPO_ROOT):
                if (root / c).exists():
                    return root / c
    return p


def require_dir(path: str | Path, what: str) -> Path:
    """``path`` as a folder that exists; else one line saying it is missing or what it is instead.

    The one check of every input folder (data sets, real sets, sweep folders): a file given where a
    folder is expected is said to be a file, not reported as "not found".
    """
    from core.errors import InputError

    p = Path(path)
    if p.is_dir():
        return p
    if p.exists():
        kind = "a file" if p.is_file() else "not a folder"
        raise InputError(f"{what} is {kind}, not a folder", p)
    raise InputError(f"{what} not found", p)
