"""Pretrained encoder weights from local files: one reader, one report, one set of checks.

Used by :class:`~lightning_modules.networks.transunet.TransUNet` (R50-ViT-B/16) and by
:mod:`lightning_modules.networks._pretrained_swin` (Swin-T for ``swinunet``/``sattisunet``).
Nothing is downloaded: the file is read from disk. Rules shared by both loaders:

* a missing tensor or a shape mismatch raises :class:`~core.errors.InputError` on one
  line naming the file (and the key);
* an RGB input convolution is summed over its colour axis when the model has one input
  channel (the usual grey-level rule: equal to feeding the grey image replicated to RGB);
* the decoder and heads are left as initialised; the report lists the model keys loaded
  and the file's keys skipped, and is logged at INFO.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from core.errors import InputError

log = logging.getLogger("cordbench.pretrained")


@dataclass
class PretrainedReport:
    """What :func:`assign` did: ``loaded`` model keys, ``skipped`` file keys, the file's ``layout``."""

    path: str
    layout: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def summary(self, show: int = 8) -> str:
        """One line: counts, the layout and the first skipped keys."""
        sk = ", ".join(self.skipped[:show]) + (", …" if len(self.skipped) > show else "")
        return (
            f"{self.path}: {self.layout} weights, loaded {len(self.loaded)} tensors, "
            f"skipped {len(self.skipped)} file keys" + (f" ({sk})" if sk else "")
        )


def read_weights(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """The file's ``{name: array/tensor}``: ``.npz`` (numpy), ``.safetensors``, else a torch file.

    A torch file may hold the state dict itself or under ``"model"`` (Swin releases),
    ``"state_dict"`` (Lightning) or ``"module"``; a ``module.`` prefix (DDP) is removed.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("pretrained weights file not found", path)
    try:
        if path.suffix == ".npz":
            with np.load(path) as npz:
                arrays = {k: npz[k] for k in npz.files}
            if not arrays:
                raise InputError("no arrays in this .npz", path)
            return path, arrays
        if path.suffix == ".safetensors":
            try:
                from safetensors.torch import load_file
            except ImportError:
                raise InputError(
                    "reading .safetensors needs the 'safetensors' package "
                    "(pip install safetensors) or use the pytorch_model.bin of the same release",
                    path,
                ) from None
            raw: Any = load_file(str(path))
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one input error
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InputError(f"cannot read weights ({type(exc).__name__}: {first})", path) from None
    for wrapper in ("model", "state_dict", "module"):
        if isinstance(raw, dict) and isinstance(raw.get(wrapper), dict):
            raw = raw[wrapper]
    if not isinstance(raw, dict) or not raw or not all(torch.is_tensor(v) for v in raw.values()):
        raise InputError("not a state dict of tensors", path)
    if all(k.startswith("module.") for k in raw):
        raw = {k[len("module.") :]: v for k, v in raw.items()}
    return path, raw


def rgb_to_gray(weight: torch.Tensor, in_channels: int, key: str, path: Path) -> torch.Tensor:
    """An ``(O, 3, …)`` input kernel summed over RGB when the model takes one channel; else as is."""
    if weight.ndim < 2 or weight.shape[1] == in_channels:
        return weight
    if weight.shape[1] == 3 and in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    raise InputError(f"{key}: {weight.shape[1]} input channels in the file, the model has {in_channels}", path)


class UsedKeys(dict):
    """A dict that records which keys were read (to report the unused ones as skipped)."""

    def __init__(self, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        self.used: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.used.add(key)
        return super().__getitem__(key)

    def unused(self) -> list[str]:
        """Keys never read, sorted."""
        return sorted(set(self) - self.used)


def assign(
    model: nn.Module,
    mapped: Mapping[str, torch.Tensor],
    required: Iterable[str],
    skipped: list[str],
    path: Path,
    layout: str,
) -> PretrainedReport:
    """Copy ``mapped`` (model key → tensor) into ``model`` after checking every ``required`` key and shape."""
    own = model.state_dict()
    required = list(required)
    missing = [k for k in required if k not in mapped]
    if missing:
        raise InputError(
            f"{len(missing)} encoder tensors missing from this {layout} file, e.g. {missing[0]!r} "
            "(not an encoder of this model's size?)",
            path,
        )
    for k, v in mapped.items():
        if k not in own:
            raise InputError(f"{k}: no such tensor in the model", path)
        if tuple(v.shape) != tuple(own[k].shape):
            raise InputError(
                f"{k}: shape {tuple(v.shape)} in the file does not match the model's "
                f"{tuple(own[k].shape)} (wrong size of checkpoint for this preset?)",
                path,
            )
    with torch.no_grad():
        for k, v in mapped.items():
            own[k].copy_(v.to(own[k].dtype))
    report = PretrainedReport(str(path), layout, loaded=sorted(mapped), skipped=sorted(skipped))
    log.info("pretrained %s", report.summary())
    return report
