"""Provenance of a run or sweep: the code, the environment, the data and the machine that made its numbers.

:func:`collect` gathers one record (written as ``provenance.json`` by :mod:`runs.run_folder`, with the
full package list beside it as ``pip_freeze.txt``):

* ``cordbench``: version; ``git``: the code's repository (the folder holding the project's packages)
  — ``commit``, ``dirty`` (``git status --porcelain`` lists anything: a modified, staged, deleted or
  untracked, not ignored, file) and ``diff_sha256``, the SHA-256 of ``git diff HEAD --binary`` followed
  by the sorted names of the untracked files (the same uncommitted changes give the same hash; their
  contents are not stored). ``null`` fields when the code is not a git work tree (an installed wheel).
* ``python`` and ``packages``: the versions of torch, pytorch-lightning, ray, torchio, monai, wandb,
  numpy (from the installed distributions' metadata, ``importlib.metadata``: what ``pip freeze`` reads).
* ``data`` (:func:`data_identity`): the data root, its BIDS ``dataset_description.json`` name / version /
  licence, the root's git commit (and whether it is a git-annex repository) when it is in a work tree,
  ``files_sha256`` = SHA-256 of the sorted, root-relative paths of the image and label files used (one per
  line; the file *list*, not the contents), and for a phantom the generator, its version, seed and options.
* ``hardware``: CPU model, logical CPU count, GPU model(s) and count, CUDA and cuDNN versions (null without CUDA).
* ``command`` (``sys.argv``), ``started`` and ``ended`` (ISO 8601, local time with offset).

Every field is best-effort: a missing ``git`` or an unreadable file gives ``null``, never a failed run.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import platform
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: The packages whose versions a record names (distribution names, as pip knows them).
PACKAGES = ("torch", "pytorch-lightning", "ray", "torchio", "monai", "wandb", "numpy", "onnx", "onnxruntime")


def now() -> str:
    """The current local time, ISO 8601 with its UTC offset (seconds)."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def code_root() -> Path:
    """The folder holding the project's packages (the repository root of a source checkout)."""
    import core

    return Path(core.__file__).resolve().parents[1]


def _git(root: Path, *args: str) -> bytes | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(root: str | Path) -> dict[str, Any]:
    """``commit``, ``dirty``, ``diff_sha256`` and ``toplevel`` of the git work tree holding ``root`` (nulls if none)."""
    root = Path(root)
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None:
        return {"commit": None, "dirty": None, "diff_sha256": None, "toplevel": None}
    commit = _git(root, "rev-parse", "HEAD")
    status = _git(root, "status", "--porcelain") or b""
    diff = _git(root, "diff", "HEAD", "--binary") or b""
    untracked = _git(root, "ls-files", "--others", "--exclude-standard") or b""
    digest = hashlib.sha256(diff + b"\0" + b"\n".join(sorted(untracked.splitlines()))).hexdigest()
    dirty = bool(status.strip())
    return {
        "commit": commit.decode().strip() if commit else None,
        "dirty": dirty,
        "diff_sha256": digest if dirty else None,
        "toplevel": top.decode().strip(),
    }


def freeze() -> list[str]:
    """``name==version`` of every installed distribution, sorted case-insensitively (``pip freeze``'s list)."""
    from importlib import metadata

    seen: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={dist.version}"
    return [seen[k] for k in sorted(seen)]


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution, null when it is not installed."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def hardware() -> dict[str, Any]:
    """CPU model and count; GPU models and count, CUDA and cuDNN versions when torch sees CUDA."""
    import os

    import torch

    cuda = torch.cuda.is_available()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    return {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": gpus[0] if gpus else None,
        "gpus": gpus,
        "gpu_count": len(gpus),
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
    }


def _licence(root: Path, desc: dict[str, Any]) -> str | None:
    """The data set's licence: ``License`` of its description, else the first lines of a LICENSE file."""
    if desc.get("License"):
        return str(desc["License"])
    for name in ("LICENSE", "LICENSE.txt", "LICENCE"):
        try:
            lines = [x.strip() for x in (root / name).read_text(errors="replace").splitlines() if x.strip()]
        except OSError:
            continue
        return " / ".join(lines[:2]) if lines else None
    return None


def data_identity(root: str | Path | None, files: Iterable[str | Path] = ()) -> dict[str, Any]:
    """What identifies a data set: BIDS description, licence, git commit, hash of the file list, phantom options."""
    out: dict[str, Any] = {"root": str(root) if root is not None else None}
    if root is None or not Path(root).is_dir():
        return out
    root = Path(root)
    try:
        desc = json.loads((root / "dataset_description.json").read_text())
        desc = desc if isinstance(desc, dict) else {}
    except (OSError, ValueError):
        desc = {}
    out.update(name=desc.get("Name"), bids_version=desc.get("BIDSVersion"), dataset_version=desc.get("DatasetVersion"))
    out["doi"] = desc.get("DatasetDOI")
    out["licence"] = _licence(root, desc)
    git = git_state(root)
    out["git_commit"], out["git_dirty"] = git["commit"], git["dirty"]
    out["git_annex"] = bool(git["toplevel"]) and (Path(git["toplevel"]) / ".git" / "annex").exists()
    rel = sorted({_relative(Path(f), root) for f in files})
    out["n_files"] = len(rel)
    out["files_sha256"] = hashlib.sha256("\n".join(rel).encode()).hexdigest() if rel else None
    out["phantom"] = _phantom(root)
    return out


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _phantom(root: Path) -> dict[str, Any] | None:
    """Generator, version, seed, subject count and options of a phantom cohort (its ``cohort.json``)."""
    try:
        from data_modules.phantom.cohort import COHORT_JSON

        cohort = json.loads((root / COHORT_JSON).read_text())
    except (OSError, ValueError, ImportError):
        return None
    keys = ("generator", "version", "seed", "n_subjects", "options")
    return {k: cohort.get(k) for k in keys} if isinstance(cohort, dict) else None


def datamodule_files(dm: Any) -> list[Path]:
    """The image and label files of every subject a data module indexed."""
    files: list[Path] = []
    for spec in dm.specs:
        files += _paths(spec.image) + _paths(spec.labels)
    return files


def _paths(value: Any) -> list[Path]:
    """Every path in a path, or a list or mapping of them (nested)."""
    if isinstance(value, (str, Path)):
        return [Path(value)]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [p for v in value for p in _paths(v)]
    return []


def collect(data: dict[str, Any] | None = None, root: str | Path | None = None) -> dict[str, Any]:
    """A provenance record: code (``root``: the code's work tree, default :func:`code_root`), environment,
    ``data`` (a :func:`data_identity` record), hardware, command line; ``started`` now, ``ended`` null."""
    from core import __version__

    return {
        "cordbench": __version__,
        "git": git_state(root if root is not None else code_root()),
        "python": platform.python_version(),
        "packages": package_versions(),
        "data": data,
        "hardware": hardware(),
        "command": list(sys.argv),
        "started": now(),
        "ended": None,
    }


def summary_fields(record: dict[str, Any] | None) -> dict[str, Any]:
    """Flat ``provenance/<key>`` fields of a record (commit, dirty, versions, data, hardware) for wandb and tables."""
    if not record:
        return {}
    git, data, hw = record.get("git") or {}, record.get("data") or {}, record.get("hardware") or {}
    out: dict[str, Any] = {
        "provenance/cordbench": record.get("cordbench"),
        "provenance/commit": git.get("commit"),
        "provenance/dirty": git.get("dirty"),
        "provenance/diff_sha256": git.get("diff_sha256"),
        "provenance/python": record.get("python"),
        **{f"provenance/{k}": v for k, v in (record.get("packages") or {}).items()},
        "provenance/data_name": data.get("name"),
        "provenance/data_files_sha256": data.get("files_sha256"),
        "provenance/data_git_commit": data.get("git_commit"),
        "provenance/cpu": hw.get("cpu"),
        "provenance/gpu": hw.get("gpu"),
        "provenance/gpu_count": hw.get("gpu_count"),
        "provenance/cuda": hw.get("cuda"),
        "provenance/command": " ".join(record.get("command") or []),
        "provenance/started": record.get("started"),
    }
    return out


#: What an evaluation (``validate`` / ``test`` in an existing run folder) adds to the folder's record.
EVALUATION_KEYS = ("cordbench", "git", "python", "packages", "hardware", "command", "started", "ended")


def record_start(folder: Any, dm: Any, evaluation: bool = False) -> dict[str, Any]:
    """Write the run folder's provenance at the start of a run (``folder``: a :class:`runs.run_folder.RunFolder`).

    A fit writes a new record (and ``pip_freeze.txt``); an evaluation of an existing run keeps the fit's
    record and appends its own code, environment and times to its ``evaluations`` list.
    """
    try:
        files = datamodule_files(dm)
    except Exception:  # the data module validated its files already; the list is best-effort
        files = []
    record = collect(data=data_identity(dm.describe().get("root"), files))
    old = folder.read_provenance() if evaluation else None
    if old is not None:
        old.setdefault("evaluations", []).append({k: record[k] for k in EVALUATION_KEYS})
        record = old
    folder.write_provenance(record, freeze())
    return record


def record_end(folder: Any) -> None:
    """Set ``ended`` of the latest entry (the last evaluation, else the run) in the folder's record."""
    record = folder.read_provenance()
    if record is None:
        return
    target = (record.get("evaluations") or [record])[-1]
    target["ended"] = now()
    folder.write_provenance(record)
