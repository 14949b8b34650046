"""Lightning pieces of a run's Trainer: the epoch printer callback and the atomic checkpoint I/O.

This module imports Lightning and torch; :mod:`runs.runner` and :mod:`runs.checkpoints`
import it lazily.
"""

from __future__ import annotations

import time

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from core.io import atomic_path


class EpochPrinter(pl.Callback):
    """One line per epoch — loss, ``val/dice``, seconds — for logs where the progress bar is off."""

    def on_train_epoch_start(self, trainer, pl_module):
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        if not trainer.is_global_zero:
            return
        m = trainer.callback_metrics
        loss = m.get("train/loss_epoch")
        dt = time.perf_counter() - getattr(self, "_t0", time.perf_counter())
        print(
            f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  "
            f"train/loss={float(loss) if loss is not None else float('nan'):.4f}  "
            f"val/dice={float(m.get('val/dice', float('nan'))):.4f}  ({dt:.1f} s)",
            flush=True,
        )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Atomic local saves (same-folder temp + rename) and weights-only loads; remote URLs go through
    Lightning's fsspec path unchanged."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):  # noqa: D102
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_path(path) as tmp:
            torch.save(checkpoint, str(tmp))

    def load_checkpoint(
        self,
        path,
        map_location=lambda storage, loc: storage,  # noqa: D102
        weights_only=None,
    ):
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)
