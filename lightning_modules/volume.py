"""Whole-volume inference of a 2D or 3D segmentation network: the one owner of slice batching and the sliding window.

Used by :meth:`lightning_modules.module.SegmentationModule.predict_volume` (validation, test, ``predict``)
and by exported models (``evaluation.exported``), which swap only the forward pass.
"""

from __future__ import annotations

from typing import Any

import torch


def volume_probabilities(forward: Any, volume: torch.Tensor, hparams: Any) -> torch.Tensor:
    """Class probabilities (1, C, X, Y, Z) of a preprocessed volume (1, 1, X, Y, Z) through ``forward``.

    2D: axial slices in batches of ``inference_batch``; 3D: MONAI's sliding window over ``patch_size``
    patches (overlap 0.25, 4 per batch). ``forward`` maps a batch to logits: the module itself, or an
    exported network (``evaluation.exported``), so both predict through this one function.
    """
    if int(hparams.get("spatial_dims", 2)) == 2:
        slices = volume[0].permute(3, 0, 1, 2)  # (Z, 1, X, Y): axial slices in RAS
        batch = int(hparams.get("inference_batch") or 32)
        outs = [torch.softmax(forward(chunk), dim=1) for chunk in torch.split(slices, batch)]
        return torch.cat(outs).permute(1, 2, 3, 0)[None]
    from monai.inferers import sliding_window_inference

    roi = tuple(hparams.get("patch_size") or (64, 64, 32))
    logits = sliding_window_inference(volume, roi, sw_batch_size=4, predictor=forward, overlap=0.25)
    return torch.softmax(logits, dim=1)
