"""No command writes to a path given as an input.

``conftest.py`` wraps every command's ``run`` for every test: each path the command takes as an
input is hashed (a file: its bytes; a folder: every file under it, by relative path) before the
command and after it — also when it failed — and a difference fails the test that ran it, naming
the command, the option and the files. So every in-process ``cordbench`` call of the suite (the
end-to-end tests of test_pipeline, test_reliability_*, test_study, … included) checks it.

``INPUTS`` lists, per command, the arguments that are inputs and, for folders, the sub-paths a
command may write by design (``predict --bids`` writes ``derivatives/cordbench``; the leaderboard
caches per-trial ``morphometrics.csv``, rewrites the best trials' ``MODEL_CARD.md`` and, with ``--real``, ``real_metrics.csv``/``real_summary.json``/
``real_predictions/``, and writes ``leaderboard/`` inside the sweep folder). A name without a ``/``
is allowed at any depth (a file of that name, or any path through a folder of that name).
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

MAX_BYTES = 256 << 20  # larger files are compared by size and mtime only

#: command -> {argument dest: sub-paths of a folder input the command writes by design}
INPUTS: dict[str, dict[str, tuple[str, ...]]] = {
    "analyze": {"bids_dir": (), "exclude": ()},
    "download": {"dir": (), "filelist": ()},
    "export": {"ckpt": ()},
    "dti": {"dwi": (), "bval": (), "bvec": (), "mask": (), "levels": ()},
    "fit": {"config": (), "root": (), "ckpt_path": ()},
    "gmchallenge": {"root": (), "sweep": ()},
    "leaderboard": {
        "sweep_dir": (
            "leaderboard",
            "morphometrics.csv",
            "wandb",
            "real_metrics.csv",
            "real_summary.json",
            "real_predictions",
            "precision.csv",
            ".cordbench.lock",
            "MODEL_CARD.md",
        ),
        "real": (),
        "precision_data": (),
    },
    "models": {},
    "morphometrics": {"seg": (), "levels": (), "canal": (), "pmj": ()},
    "phantom": {},
    "predict": {"ckpt": (), "model": (), "input": (), "bids": ("derivatives/cordbench",)},
    "score": {"pred": (), "ref": ()},
    "slurm": {"config": ()},
    "stats": {"metrics": ()},
    "sweep": {"config": ()},
    "test": {"config": (), "root": (), "ckpt": (), "real": ()},
    "validate": {"config": (), "root": (), "ckpt": ()},
}


def _file_digest(p: Path) -> str:
    st = p.stat()
    if st.st_size > MAX_BYTES:
        return f"size={st.st_size} mtime={st.st_mtime_ns}"
    return hashlib.sha256(p.read_bytes()).hexdigest()


def snapshot(path: Path, allowed: tuple[str, ...] = ()) -> dict[str, str]:
    """``{relative path: digest}`` of a file or of every file under a folder (``allowed`` sub-paths left out)."""
    if path.is_file():
        return {".": _file_digest(path)}
    if not path.is_dir():
        return {}
    out = {}
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).as_posix()
        if any(rel == a or rel.startswith(a + "/") or p.name == a or f"/{a}/" in f"/{rel}" for a in allowed):
            continue
        if p.is_file() and not p.is_symlink():
            out[rel] = _file_digest(p)
    return out


def _paths(command: str, args: argparse.Namespace) -> dict[str, tuple[Path, tuple[str, ...]]]:
    found: dict[str, tuple[Path, tuple[str, ...]]] = {}
    for dest, allowed in INPUTS.get(command, {}).items():
        if command == "download" and dest == "dir" and getattr(args, "run", False):
            continue  # download --run fetches into that folder
        value = getattr(args, dest, None)
        values = value if isinstance(value, list) else [value]
        for i, v in enumerate(values):
            if v is not None:
                found[f"{dest}[{i}]" if len(values) > 1 else dest] = (Path(v), allowed)
    for item in getattr(args, "overrides", None) or []:  # --data.root=... of fit/validate/test
        if item.startswith("data.root="):
            found["data.root"] = (Path(item.split("=", 1)[1]), ())
    return found


def guarded(command: str, run: Callable[[argparse.Namespace], Any]) -> Callable[[argparse.Namespace], Any]:
    """``run`` checked to leave every input of ``command`` byte-identical."""

    def wrapper(args: argparse.Namespace) -> Any:
        paths = _paths(command, args)
        before = {k: snapshot(p, allowed) for k, (p, allowed) in paths.items()}
        try:
            return run(args)
        finally:
            for key, (p, allowed) in paths.items():
                after = snapshot(p, allowed)
                if before[key] and after != before[key]:
                    changed = sorted(k for k in set(before[key]) | set(after) if before[key].get(k) != after.get(k))
                    raise AssertionError(f"cordbench {command} modified its input {key} ({p}): {changed[:5]}")

    wrapper.__wrapped__ = run  # type: ignore[attr-defined]
    return wrapper
