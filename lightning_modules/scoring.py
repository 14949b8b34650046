"""What one test subject's record holds: metrics on the native grid (default) or the training grid.

``native`` (the GM challenge's protocol, Prados et al. 2017): the argmax label map predicted on
the preprocessed grid is written back onto the subject's own image grid
(:func:`data_modules.native.to_native`, nearest neighbour in world coordinates — the mask
``cordbench predict`` writes for that image) and scored against the label read on that grid, with
the native voxel spacing; skeleton metrics slice along the native axis closest to S–I. Data sets
with several raters (GM challenge) add every rater's scores as ``rater<N>/<class>/<metric>``
beside the fused ``<class>/<metric>``.

``preprocessed``: scored on the resampled/cropped grid against the equally preprocessed label
(the behaviour before native scoring; not comparable across preprocessing settings).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

SCORING_MODES = ("native", "preprocessed")


@dataclass
class NativePrediction:
    """A test prediction written back on its subject's native grid (for files and QC)."""

    subject: str
    labels: np.ndarray  # int16, native shape
    image: Any  # the nibabel image of the subject (header, affine, data)
    target: np.ndarray | None  # the fused native target (QC outline)


def axial_axis(affine: np.ndarray) -> int:
    """Index of the voxel axis closest to the S–I world axis."""
    rot = np.asarray(affine, float)[:3, :3]
    rot = rot / np.linalg.norm(rot, axis=0)
    return int(np.argmax(np.abs(rot[2])))


def voxel_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(s) for s in np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0))  # type: ignore


def score_subject(pred: np.ndarray, pre_affine: np.ndarray, target: np.ndarray, subject: str,
                  classes: Mapping[str, list[int]], datamodule: Any = None,
                  mode: str = "native") -> tuple[dict[str, Any], NativePrediction | None]:
    """``(record, native prediction)`` of one subject; see the module docstring.

    ``pred``/``target`` are on the preprocessed grid (affine ``pre_affine``). ``native`` needs a
    data module with ``native_targets(subject)``; the native prediction is returned in both modes
    when one is available (``None`` otherwise).
    """
    from data_modules.native import to_native
    from lightning_modules.metrics import compute_metrics

    if mode not in SCORING_MODES:
        raise ValueError(f"scoring mode must be one of {SCORING_MODES}, got {mode!r}")
    native = None
    if datamodule is not None and hasattr(datamodule, "native_targets"):
        img, targets = datamodule.native_targets(subject)
        back = to_native(pred, pre_affine, img.shape[:3], np.asarray(img.affine), mode="nearest")
        native = NativePrediction(subject, back, img, targets.get(""))
    elif mode == "native":
        raise ValueError("native-grid scoring needs the data module (trainer.test(..., datamodule=dm))")
    record: dict[str, Any] = {"subject": subject}
    if mode == "preprocessed":
        spacing = voxel_spacing(pre_affine)
        record.update(compute_metrics(pred, target, spacing, classes, slice_axis=axial_axis(pre_affine)))
        return record, native
    aff = np.asarray(native.image.affine)
    spacing, ax = voxel_spacing(aff), axial_axis(aff)
    for name, tgt in targets.items():
        metrics = compute_metrics(native.labels, tgt, spacing, classes, slice_axis=ax)
        record.update({(f"{name}/{k}" if name else k): v for k, v in metrics.items()})
    return record, native
