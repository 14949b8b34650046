"""Safe checkpoints: ``torch.load(weights_only=True)``, compatibility checks, atomic saving.

* :func:`read_checkpoint` / :func:`load_module` load with ``weights_only=True`` (a checkpoint
  carrying a pickled object is refused, never executed) and name the file on every problem; a
  file of another format named ``.ckpt`` is named for what it is (:func:`foreign_format`, from
  its first bytes: safetensors, HDF5, NumPy ``.npz``/``.npy``, TorchScript, gzip/NIfTI).
* :func:`check_training_checkpoint` — ``fit --ckpt-path`` continues training only from a full
  Lightning checkpoint of the same network (not weights alone, not another model).
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
    foreign = foreign_format(path)
    if foreign:
        raise InputError(
            f"not a PyTorch checkpoint but {foreign}; cordbench reads the .ckpt files written by cordbench fit", path
        )
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


def foreign_format(path: str | Path) -> str | None:
    """What a file that is not a PyTorch checkpoint is, from its first bytes (None: possibly a checkpoint).

    A PyTorch checkpoint is a zip archive holding ``<name>/data.pkl`` (or, in the legacy format, a
    pickle stream starting with byte 0x80); the others are recognised by their signatures."""
    import zipfile

    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(352)
    except OSError:
        return None
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "an HDF5 file (Keras/h5py weights?)"
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy .npy array"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip file (a .nii.gz image?)"
    if head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return "a NIfTI image"
    if len(head) > 9 and head[8:10] in (b'{"', b"{ ") and int.from_bytes(head[:8], "little") < 1 << 27:
        return "a safetensors file (weights without the hyper-parameters cordbench needs)"
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            return None  # a damaged checkpoint: torch.load names the damage
        if names and all(n.endswith(".npy") for n in names):
            return "a NumPy .npz archive"
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return "a TorchScript archive (torch.jit.save: a compiled model, not a checkpoint)"
        if not any(n.endswith("data.pkl") for n in names):
            return f"a zip archive without a PyTorch data.pkl ({len(names)} entries, e.g. {names[0] if names else '-'})"
    return None


def check_training_checkpoint(ckpt: dict[str, Any], cfg: dict[str, Any], path: str | Path) -> None:
    """``fit --ckpt-path``: a full Lightning checkpoint (weights, optimizer, epoch, step) of the network
    this run trains; else one line naming the file and what it is."""
    from runs import run_folder as rf

    lacking = [k for k in ("optimizer_states", "loops", "epoch", "global_step") if k not in ckpt]
    if lacking:
        raise InputError(
            f"holds weights only (no {', '.join(lacking)}): fit --ckpt-path continues a training run from a "
            f"full Lightning checkpoint such as <run>/{rf.CHECKPOINTS}/{rf.LAST_CKPT}",
            path,
        )
    from core.schema import hparams

    hp, mine = ckpt["hyper_parameters"], hparams(cfg)  # what the module of this run is built with
    theirs = (hp.get("network"), hp.get("preset"), hp.get("task"))
    ours = (mine.get("network"), mine.get("preset"), cfg["data"]["task"])
    if theirs != ours:
        raise InputError(
            f"checkpoint of model {theirs[0]!r} (preset {theirs[1]!r}, task {theirs[2]!r}) but this run trains "
            f"{ours[0]!r} (preset {ours[1]!r}, task {ours[2]!r}): fit --ckpt-path continues a run of the same network",
            path,
        )


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
    check_weights(module.state_dict(), ckpt["state_dict"], hp, path)
    module.load_state_dict(ckpt["state_dict"])
    module.eval()
    module.evaluator = SubjectEvaluator()
    module.checkpoint_path = str(path)
    return module


def check_weights(own: dict[str, Any], saved: dict[str, Any], hp: dict[str, Any], path: str | Path) -> None:
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
