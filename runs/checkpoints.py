"""Safe checkpoints: ``torch.load(weights_only=True)``, compatibility checks, atomic saving.

* :func:`read_checkpoint` / :func:`load_module` load with ``weights_only=True`` (a checkpoint
  carrying a pickled object is refused, never executed) and name the file on every problem.
* :func:`atomic_checkpoint_io` is the Lightning ``CheckpointIO`` the runner gives every Trainer:
  it writes ``best.ckpt``/``last.ckpt`` to a temporary name in the destination folder and renames
  it (Lightning's own save writes to the system temp folder and *moves* it, which is a copy —
  not atomic — when that folder is on another file system, as on most clusters), and it loads
  resume/test checkpoints with ``weights_only=True``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from core.errors import InputError


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a Lightning checkpoint with ``weights_only=True``; errors name the file."""
    import pickle
    import zipfile

    import torch

    path = Path(path)
    if not path.exists():
        raise InputError("checkpoint not found", path)
    if path.is_dir():
        from runs.run_folder import BEST_CKPT, BEST_CKPT_NAME

        inside = next((c for c in (path / BEST_CKPT, path / BEST_CKPT_NAME) if c.is_file()), None)
        raise InputError("is a folder, not a checkpoint file" + (f" (did you mean {inside}?)" if inside else ""), path)
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        what = f" such as {found.group(1)}" if found else ""
        raise InputError(
            f"unsafe checkpoint: it holds pickled objects{what} that weights-only loading refuses "
            "(cordbench never executes them)",
            path,
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        first = re.sub(r"\. This is an internal miniz error.*", "", first)  # torch's long advice
        raise InputError(f"corrupted checkpoint, truncated or damaged ({type(exc).__name__}: {first})", path) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise InputError("not a cordbench checkpoint (no state_dict / hyper_parameters)", path)
    return ckpt


def load_module(path: str | Path, expect: dict[str, Any] | None = None):
    """A :class:`SegmentationModule` from a checkpoint, checked against ``expect`` hyper-parameters."""
    from evaluation.evaluator import SubjectEvaluator
    from lightning_modules.module import SegmentationModule

    ckpt = read_checkpoint(path)
    hp = dict(ckpt["hyper_parameters"])
    for key, want in (expect or {}).items():
        if want is not None and hp.get(key) != want:
            raise InputError(f"checkpoint has {key}={hp.get(key)!r} but this run needs {want!r}", path)
    if (hp.get("options") or {}).get("pretrained"):
        # the checkpoint holds the trained weights: the ImageNet file it started from is not needed (nor read)
        hp["options"] = {k: v for k, v in hp["options"].items() if k != "pretrained"}
    try:
        module = SegmentationModule(**hp)
    except (RuntimeError, TypeError, KeyError, ValueError) as exc:
        raise InputError(
            f"checkpoint hyper-parameters do not build a model ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})",
            path,
        ) from None
    _check_weights(module.state_dict(), ckpt["state_dict"], hp, path)
    module.load_state_dict(ckpt["state_dict"])
    module.eval()
    module.evaluator = SubjectEvaluator()
    module.checkpoint_path = str(path)
    return module


def _check_weights(own: dict[str, Any], saved: dict[str, Any], hp: dict[str, Any], path: str | Path) -> None:
    """Every weight present with its shape; else say how the checkpoint differs from its model."""
    missing = [k for k in own if k not in saved]
    unexpected = [k for k in saved if k not in own]
    reshaped = [k for k in own if k in saved and tuple(own[k].shape) != tuple(saved[k].shape)]
    if not (missing or unexpected or reshaped):
        return
    if reshaped:
        k = reshaped[0]
        eg = f"{k} is {tuple(saved[k].shape)}, the model needs {tuple(own[k].shape)}"
    else:
        eg = f"{'missing ' + missing[0] if missing else 'unexpected ' + unexpected[0]}"
    raise InputError(
        f"checkpoint weights do not fit its model {hp.get('network')!r} (preset {hp.get('preset')!r}, "
        f"{hp.get('num_classes')} classes): {len(missing)} missing, {len(unexpected)} unexpected, "
        f"{len(reshaped)} of another shape, e.g. {eg} (weights of another model or class count?)",
        path,
    )


def atomic_checkpoint_io():
    """A ``TorchCheckpointIO`` that saves atomically (same-folder temp + rename) and loads weights only."""
    from runs.trainer_parts import AtomicCheckpointIO

    return AtomicCheckpointIO()
