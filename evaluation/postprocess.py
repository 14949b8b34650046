"""Post-processing of a predicted label map: the one definition validation, test and predict share.

``largest_component`` keeps only the largest connected component of the *foreground* (every
non-zero label together, 26-connectivity in 3D, voxel count; MONAI's
``KeepLargestConnectedComponent`` with ``independent=False``) and sets every other foreground voxel
to background; labels inside the kept component stay as predicted. The cord (and the canal around
it) is a single tube through the field of view, so a disconnected blob is a false positive — the
rule of ``sct_deepseg``'s ``-largest 1`` and of nnU-Net's "remove all but the largest component".
It runs on the grid the network predicted on (the preprocessed grid), in 3D over the whole
subject, before the mask is written back onto the native grid. ``none`` keeps the argmax map.

The run-config key ``model.postprocess`` chooses it; ``null`` means the task's default
(:data:`TASK_DEFAULT`). The resolved value is a hyper-parameter of the checkpoint, so ``predict``
and ``test --real`` post-process exactly as the run's own test did; a checkpoint written before
the key existed means ``none`` (what its test did).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: ``model.postprocess`` choices.
POSTPROCESS: tuple[str, ...] = ("none", "largest_component")

#: ``model.postprocess: null`` per task: the cord/canal tasks keep their largest component; ``gm``
#: (the GM challenge protocol scores the methods' raw masks) and ``levels`` keep the argmax map.
TASK_DEFAULT: dict[str, str] = {"sc": "largest_component", "canal": "largest_component", "gm": "none", "levels": "none"}


def resolve(value: str | None, task: str) -> str:
    """The post-processing a run uses: ``value``, else the task's default."""
    return str(value) if value is not None else TASK_DEFAULT.get(task, "none")


def labels_of(probs: Any, mode: str) -> Any:
    """The label map of class probabilities ``probs`` (C, ...): argmax over classes, then :func:`apply`."""
    return apply(probs.argmax(0), mode)


def mode_of(module: Any) -> str:
    """The post-processing of a model (its ``postprocess`` hyper-parameter; absent: ``none``)."""
    return str(module.hparams.get("postprocess") or "none")


def apply(labels: Any, mode: str) -> Any:
    """``labels`` (integer map, 2D or 3D; numpy or torch, returned as given) post-processed by ``mode``."""
    if mode == "none":
        return labels
    if mode != "largest_component":
        raise ValueError(f"unknown post-processing {mode!r} (choose {', '.join(POSTPROCESS)})")
    import torch
    from monai.transforms import KeepLargestConnectedComponent

    t = torch.as_tensor(labels)
    if not bool((t != 0).any()):
        return labels
    keep = KeepLargestConnectedComponent(applied_labels=None, is_onehot=False, independent=False, connectivity=None)
    out = keep(t[None].cpu().clone())[0]  # MONAI zeroes the removed voxels in place: never in the caller's array
    out = (out.as_tensor() if hasattr(out, "as_tensor") else torch.as_tensor(out)).to(dtype=t.dtype, device=t.device)
    return out.numpy() if isinstance(labels, np.ndarray) else out
