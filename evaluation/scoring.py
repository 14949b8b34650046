"""What one test subject's record holds: metrics on the native grid (default) or the training grid.

``native`` (the GM challenge's protocol, Prados et al. 2017): the argmax label map predicted on
the preprocessed grid is written back onto the subject's own image grid
(:func:`evaluation.native.to_native`, nearest neighbour in world coordinates — the mask
``cordbench predict`` writes for that image) and scored against the label read on that grid, with
the native voxel spacing. Both grids are scored after a pure reorientation to IRP (axial slices
first, SCT's orientation for the skeleton metrics, :func:`to_irp`). Data sets
with several raters (GM challenge) add every rater's scores as ``rater<N>/<class>/<metric>``
beside the fused ``<class>/<metric>``.

``preprocessed``: scored on the resampled/cropped grid against the equally preprocessed label
(the behaviour before native scoring; not comparable across preprocessing settings).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

SCORING_MODES = ("native", "preprocessed")


@dataclass
class NativePrediction:
    """A test prediction written back on its subject's native grid (for files and QC)."""

    subject: str
    labels: np.ndarray  # int16, native shape
    image: Any  # the nibabel image of the subject (header, affine, data)
    target: np.ndarray | None  # the fused native target (QC outline)


def to_irp(arrays: list[np.ndarray], affine: np.ndarray) -> tuple[list[np.ndarray], tuple[float, float, float]]:
    """The arrays reoriented to IRP (SCT's scoring orientation: axial slices first) and their spacing.

    A pure permutation/flip of voxels (no resampling): overlap and distance metrics are unchanged;
    the skeleton thinning then sees the slices in SCT's orientation.
    """
    import nibabel as nib

    ornt = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(affine), nib.orientations.axcodes2ornt(("I", "R", "P"))
    )
    zooms = np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)
    spacing = tuple(float(zooms[int(i)]) for i in np.argsort(ornt[:, 0]))
    return [nib.orientations.apply_orientation(a, ornt) for a in arrays], spacing  # type: ignore[return-value]


def _metrics(
    pred: np.ndarray, target: np.ndarray, affine: np.ndarray, classes: Mapping[str, list[int]]
) -> dict[str, float]:
    from evaluation.metrics import compute_metrics

    (p, t), spacing = to_irp([pred, target], affine)
    return compute_metrics(p, t, spacing, classes, slice_axis=0)


def class_metrics(pred: np.ndarray, target: np.ndarray, affine: np.ndarray, name: str) -> dict[str, float]:
    """``<name>/<metric>`` of two boolean masks of one class on one native grid (``affine``), scored as
    :func:`score_subject` scores it (IRP orientation, native spacing); used by ``cordbench test --real``."""
    return _metrics(
        np.asarray(pred, bool).astype(np.int16), np.asarray(target, bool).astype(np.int16), affine, {name: [1]}
    )


def score_subject(
    pred: np.ndarray,
    pre_affine: np.ndarray,
    target: np.ndarray,
    subject: str,
    classes: Mapping[str, list[int]],
    datamodule: Any = None,
    mode: str = "native",
) -> tuple[dict[str, Any], NativePrediction | None]:
    """``(record, native prediction)`` of one subject; see the module docstring.

    ``pred``/``target`` are on the preprocessed grid (affine ``pre_affine``). ``native`` needs a
    data module with ``native_targets(subject)``; the native prediction is returned in both modes
    when one is available (``None`` otherwise).
    """
    from evaluation.native import to_native

    if mode not in SCORING_MODES:
        raise ValueError(f"scoring mode must be one of {SCORING_MODES}, got {mode!r}")
    native = None
    if datamodule is not None and hasattr(datamodule, "native_targets"):
        img, targets = datamodule.native_targets(subject)
        back = to_native(pred, pre_affine, img.shape[:3], np.asarray(img.affine), mode="nearest")
        native = NativePrediction(subject, back, img, targets.get(""))
    elif mode == "native":
        raise ValueError("native-grid scoring needs the data module (trainer.test(..., datamodule=dm))")
    if mode == "preprocessed":
        return {"subject": subject, **_metrics(pred, target, pre_affine, classes)}, native
    return score_native(native.labels, np.asarray(native.image.affine), targets, subject, classes), native


def score_native(
    labels: np.ndarray,
    affine: np.ndarray,
    targets: Mapping[str, np.ndarray],
    subject: str,
    classes: Mapping[str, list[int]],
) -> dict[str, Any]:
    """The record of a label map already on the subject's native grid (``affine``) against its target(s)
    (``{"": fused, "rater1": …}``, as ``native_targets`` gives them); the ``native`` mode of
    :func:`score_subject`, also used for ensembles (``cordbench test --ckpt A --ckpt B``)."""
    record: dict[str, Any] = {"subject": subject}
    for name, tgt in targets.items():
        metrics = _metrics(np.asarray(labels).astype(np.int16), tgt, np.asarray(affine), classes)
        record.update({(f"{name}/{k}" if name else k): v for k, v in metrics.items()})
    return record
