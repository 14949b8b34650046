"""The learning-rate schedules of ``model.scheduler`` (torch-free: the config check imports it).

Per-epoch multiplicative factor of the base learning rate (``torch.optim.lr_scheduler.LambdaLR``):
a linear warm-up over ``warmup_epochs`` (``(epoch + 1) / (warmup + 1)``), then ``cosine``
(``0.5·(1 + cos(π·t))``) or ``poly`` (``(1 − t)^0.9``, nnU-Net's) with ``t`` the fraction of the
post-warm-up epochs done; ``none`` is no schedule at all (constant rate, no warm-up).
"""

from __future__ import annotations

import math

SCHEDULERS: tuple[str, ...] = ("cosine", "poly", "none")


def lr_factor(epoch: int, kind: str, warmup_epochs: int, max_epochs: int) -> float:
    """Factor of the base learning rate at ``epoch`` (0-based) for schedule ``kind``."""
    if kind == "none":
        return 1.0
    if epoch < warmup_epochs:
        return (epoch + 1) / (warmup_epochs + 1)
    t = (epoch - warmup_epochs) / max(1, max_epochs - warmup_epochs)
    if kind == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if kind == "poly":
        return (1 - min(t, 1.0)) ** 0.9
    return 1.0
