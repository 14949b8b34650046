"""The files of an ensemble / TTA prediction of one NIfTI (``cordbench predict --ckpt A --ckpt B …``).

Beside the mask ``<stem>.nii.gz`` (uint8, the input's grid and header) and its JSON sidecar
``<stem>.json`` (every checkpoint with its SHA-256, the combination rule, the TTA rule and, with
``--uncertainty``, the image's uncertainty summary):

* ``--soft``: ``<stem>_prob-<class>.nii.gz`` per class of the checkpoints' class map — the class's
  probability, float32 in [0, 1], on the input's grid with its header;
* ``--uncertainty``: ``<stem>_entropy.nii.gz`` (normalised predictive entropy, [0, 1]) and, with more
  than one pass (several checkpoints or TTA), ``<stem>_variance.nii.gz`` (variance across passes).

Definitions: :mod:`evaluation.ensemble`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core import __version__, io
from evaluation.ensemble import Member, class_probabilities, combination_record, predict_image, summarise
from evaluation.inference import EmptyPredictionWarning, check_axial_extent, sidecar_path


def _stem(path: Path) -> Path:
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return path.with_name(name[: -len(ext)])
    return path.with_suffix("")


def soft_path(mask: Path, cls: str) -> Path:
    """``<stem>_prob-<class>.nii.gz`` beside the mask."""
    s = _stem(Path(mask))
    return s.with_name(f"{s.name}_prob-{cls}.nii.gz")


def entropy_path(mask: Path) -> Path:
    s = _stem(Path(mask))
    return s.with_name(f"{s.name}_entropy.nii.gz")


def variance_path(mask: Path) -> Path:
    s = _stem(Path(mask))
    return s.with_name(f"{s.name}_variance.nii.gz")


def extra_outputs(
    mask: Path, classes: dict[str, list[int]], soft: bool, uncertainty: bool, several_passes: bool
) -> list[Path]:
    """Every file written beside ``mask`` (checked against the inputs before any prediction)."""
    out = [soft_path(mask, c) for c in classes] if soft else []
    if uncertainty:
        out.append(entropy_path(mask))
        if several_passes:
            out.append(variance_path(mask))
    return out


def classes_of(module: Any) -> dict[str, list[int]]:
    """The class map of a checkpoint (``fg`` = every foreground label when it names none)."""
    hp = module.hparams
    return {k: list(v) for k, v in (hp.get("classes") or {"fg": list(range(1, int(hp.get("num_classes", 2))))}).items()}


def predict_ensemble_file(
    members: Sequence[Member],
    image_path: str | Path,
    out_path: str | Path,
    tta: str = "none",
    soft: bool = False,
    uncertainty: bool = False,
) -> dict[str, Any]:
    """Predict one NIfTI with the ensemble and write the mask, sidecar and requested maps.

    Returns the image's row: ``subject`` (the image's stem), the written files and, with
    ``uncertainty``, the summary of :func:`evaluation.ensemble.summarise`.
    """
    img = io.load_nifti(image_path, ndim=3, kind="input image")
    data = np.asanyarray(img.dataobj).astype(np.float32)
    io.check_image_values(data, image_path)
    affine = np.asarray(img.affine)
    check_axial_extent(data.shape[:3], affine, image_path)
    pred = predict_image(members, data, affine, tta, with_maps=soft or uncertainty)
    if not pred.labels.any():
        import warnings

        warnings.warn(f"{image_path}: the model found no foreground: the mask is empty", EmptyPredictionWarning)
    out_path = Path(out_path)
    io.save_nifti(pred.labels, img.affine, out_path, header=img.header, dtype=np.uint8)
    classes = classes_of(members[0].module)
    row: dict[str, Any] = {"subject": _stem(Path(image_path)).name, "mask": out_path}
    if soft:
        for name, prob in class_probabilities(pred.probs, classes).items():
            io.save_nifti(prob, img.affine, soft_path(out_path, name), header=img.header, dtype=np.float32)
    summary = None
    if uncertainty:
        io.save_nifti(pred.entropy, img.affine, entropy_path(out_path), header=img.header, dtype=np.float32)
        if pred.variance is not None:
            io.save_nifti(pred.variance, img.affine, variance_path(out_path), header=img.header, dtype=np.float32)
        summary = summarise(pred, affine)
        row.update(summary)
    from lightning_modules.volume import inference_rule

    hp = members[0].module.hparams
    record = combination_record(members, tta)
    sidecar = {
        "GeneratedBy": [{"Name": "cordbench", "Version": __version__, **m} for m in record["members"]],
        "Ensemble": {k: v for k, v in record.items() if k != "members"} | {"passes": pred.passes},
        "Task": hp.get("task"),
        "Classes": hp.get("classes"),
        "InferenceRule": sorted({inference_rule(m.module.hparams) for m in members}),
        "Source": str(image_path),
        "SoftMaps": {name: str(soft_path(out_path, name).name) for name in classes} if soft else None,
        "Uncertainty": summary,
    }
    io.write_json(sidecar_path(out_path), sidecar)
    return row
