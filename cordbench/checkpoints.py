"""Safe checkpoint loading: ``torch.load(weights_only=True)`` and explicit compatibility checks."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from cordbench.errors import InputError


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a Lightning checkpoint with ``weights_only=True``; errors name the file."""
    import pickle
    import zipfile

    import torch

    path = Path(path)
    if not path.exists():
        raise InputError("checkpoint not found", path)
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise InputError(f"corrupted or unsafe checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0]})",
                         path) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise InputError("not a cordbench checkpoint (no state_dict / hyper_parameters)", path)
    return ckpt


def load_module(path: str | Path, expect: dict[str, Any] | None = None):
    """A :class:`SegmentationModule` from a checkpoint, checked against ``expect`` hyper-parameters."""
    from lightning_modules.module import SegmentationModule

    ckpt = read_checkpoint(path)
    hp = dict(ckpt["hyper_parameters"])
    for key, want in (expect or {}).items():
        if want is not None and hp.get(key) != want:
            raise InputError(f"checkpoint has {key}={hp.get(key)!r}, expected {want!r}", path)
    try:
        module = SegmentationModule(**hp)
        module.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, TypeError, KeyError) as exc:
        raise InputError(f"checkpoint does not match its model ({str(exc).splitlines()[0]})", path) from None
    module.eval()
    module.checkpoint_path = str(path)
    return module
