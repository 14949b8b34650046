"""Inference on a NIfTI in any orientation, written back on the input's own grid.

The image goes through the model's own preprocessing contract (``data_modules.preprocessing``,
saved in the checkpoint: reorientation, resampling, crop/pad by the label-free rule, normalisation);
the argmax label map is taken on the preprocessed grid, post-processed as the run's test was
(``evaluation.postprocess``), and written back onto the input grid by nearest-neighbour lookup in world coordinates (``evaluation.native``), so the
mask has exactly the input's shape and affine and lines up with it in any viewer. A JSON sidecar names the model and checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core import __version__, io
from core.errors import InputError


def predict_array(module: Any, data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Label map (uint8) on the grid of ``data``/``affine`` predicted by ``module``."""
    import torch
    import torchio as tio

    from data_modules.preprocessing import Preprocessing, build_transform
    from evaluation.postprocess import labels_of, mode_of

    pre_desc = Preprocessing.from_hparams(module.hparams)
    image = tio.ScalarImage(tensor=torch.from_numpy(np.asarray(data, np.float32)[None]), affine=affine)
    pre = build_transform(pre_desc, "eval")(tio.Subject(image=image))
    with torch.no_grad():
        probs = module.predict_volume(pre["image"]["data"][None].float())[0]
    labels = labels_of(probs.cpu(), mode_of(module)).numpy().astype(np.int16)
    from evaluation.native import to_native

    return to_native(
        labels, np.asarray(pre["image"].affine), data.shape[:3], np.asarray(affine), mode="nearest"
    ).astype(np.uint8)


class EmptyPredictionWarning(UserWarning):
    """A prediction without any foreground voxel (printed by ``cordbench predict``)."""


MIN_AXIAL_VOXELS = 8  # an axial cross-section narrower than this cannot hold a cord to segment


def check_axial_extent(shape: tuple[int, ...], affine: np.ndarray, path: str | Path) -> None:
    """Refuse images whose axial planes are (almost) lines: a single sagittal or coronal slice."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine)
    ras = [0, 0, 0]
    for i, (axis, _) in enumerate(ornt[:3]):
        ras[int(axis)] = int(shape[i])
    thin = [f"{n} voxel(s) along {axis}" for axis, n in zip(("R-L", "A-P"), ras[:2]) if n < MIN_AXIAL_VOXELS]
    if thin:
        raise InputError(
            f"input image has only {' and '.join(thin)} (shape {tuple(shape)}, "
            f"{''.join(nib.aff2axcodes(affine))}): a single sagittal or coronal slice? cordbench "
            f"segments axial slices of at least {MIN_AXIAL_VOXELS}x{MIN_AXIAL_VOXELS} voxels",
            path,
        )


def predict_file(module: Any, image_path: str | Path, out_path: str | Path, ckpt: str | Path | None = None) -> Path:
    """Predict one NIfTI and write the mask (+ JSON sidecar) on the input's grid."""
    img = io.load_nifti(image_path, ndim=3, kind="input image")
    data = np.asanyarray(img.dataobj).astype(np.float32)
    io.check_image_values(data, image_path)
    check_axial_extent(data.shape[:3], np.asarray(img.affine), image_path)
    labels = predict_array(module, data, np.asarray(img.affine))
    if not labels.any():
        import warnings

        warnings.warn(f"{image_path}: the model found no foreground: the mask is empty", EmptyPredictionWarning)
    out_path = Path(out_path)
    io.save_nifti(labels, img.affine, out_path, header=img.header, dtype=np.uint8)
    hp = module.hparams
    sidecar = {
        "GeneratedBy": [
            {
                "Name": "cordbench",
                "Version": __version__,
                "Model": hp.get("network"),
                "Preset": hp.get("preset"),
                "Checkpoint": str(ckpt) if ckpt else None,
                "CheckpointSHA256": io.sha256(ckpt) if ckpt else None,
            }
        ],
        "Task": hp.get("task"),
        "Classes": hp.get("classes"),
        "Source": str(image_path),
    }
    io.write_json(sidecar_path(out_path), sidecar)
    return out_path


def sidecar_path(path: Path) -> Path:
    """The JSON sidecar of a mask (``x.nii.gz`` → ``x.json``)."""
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return path.with_name(name[: -len(ext)] + ".json")
    return path.with_suffix(".json")


def predict_bids(
    module: Any,
    root: str | Path,
    contrast: str,
    task: str,
    ckpt: str | Path | None = None,
    out_root: str | Path | None = None,
    subjects: Sequence[str] | None = None,
) -> list[Path]:
    """Predict every existing ``contrast`` image of a BIDS tree into ``derivatives/cordbench``.

    Uses :func:`predict_file` (mask on the input grid + JSON sidecar), one file per image at
    :func:`evaluation.native.prediction_path`.
    """
    from core.errors import InputError
    from data_modules.bids import BidsIndex
    from evaluation.native import prediction_path

    index = BidsIndex.from_dir(root, strict=False)
    recs = [
        r for r in index.images if r.exists and r.contrast == contrast and (subjects is None or r.subject in subjects)
    ]
    if not recs:
        raise InputError(f"no {contrast} image to predict", root)
    return [predict_file(module, r.path, prediction_path(out_root or root, r, task), ckpt=ckpt) for r in recs]


def predict_class_mask(module: Any, image: str | Path, cls: str) -> np.ndarray:
    """Boolean mask of class ``cls`` (its label values in the module's ``classes``; ``[1]`` when the
    module names none) predicted on the native grid of the NIfTI ``image``."""
    return predict_class_masks(module, image, (cls,))[cls]


def predict_class_masks(module: Any, image: str | Path, classes: tuple[str, ...]) -> dict[str, np.ndarray]:
    """:func:`predict_class_mask` of several classes from one prediction."""
    img = io.load_nifti(image, ndim=3, kind="input image")
    data = np.asanyarray(img.dataobj).astype(np.float32)
    io.check_image_values(data, image)
    labels = predict_array(module, data, np.asarray(img.affine))
    named = module.hparams.get("classes") or {}
    return {cls: np.isin(labels, list(named.get(cls) or [1])) for cls in classes}
