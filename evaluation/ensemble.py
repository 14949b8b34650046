"""Ensembles and test-time augmentation: the one place where several predictions become one.

``cordbench predict --ckpt A --ckpt B … [--tta flips]``, ``cordbench test --ckpt A --ckpt B …`` and the
leaderboard's ``--ensembles`` rows all call :func:`predict_image`, so an ensemble is scored exactly as
it is written.

**Combination rule** (:data:`COMBINATION`): the arithmetic mean of the class probabilities (softmax
outputs) of every *pass* — each member checkpoint, and under TTA each flipped copy of the input of each
member, counts once. Every member predicts through its own preprocessing contract
(``data_modules.preprocessing``). Members that share one contract (the seeds or folds of one sweep) are
averaged on that contract's grid; the label map is then taken there exactly as for one checkpoint
(argmax, the contract's post-processing, nearest-neighbour write-back onto the input grid,
``evaluation.native``), so an ensemble of a checkpoint with itself writes that checkpoint's mask voxel
for voxel. Members with different contracts are each brought back onto the input's own grid by
*linear interpolation of probabilities* (never of labels), averaged there (each group weighted by its
number of passes), and the argmax and post-processing run on the input grid. Members run one after
another and their probabilities are accumulated (a running sum and sum of squares), never stacked, so
memory is bounded by two probability volumes per contract, whatever the number of members.

**TTA** (:data:`TTA_CHOICES`): ``none``, or ``flips`` — the mirror along the R-L axis of the
preprocessed (RAS) grid, the body's plane of symmetry. cordbench's training augmentation
(``data.augment``: affine, elastic, bias field, noise, gamma) mirrors no axis, so no other flip is
an image the networks were trained to see: A-P and S-I mirrors are not used, in 2D or in 3D.
The flipped pass's probabilities are flipped back and averaged in probability space.

**Soft maps**: per class of the class map, the probability of the class (sum over its label values) on
the input's grid, float32 in [0, 1]. Input voxels outside a contract's field of view get probability 1
for background (what the label write-back gives them: label 0), so the class probabilities of every
voxel sum to 1.

**Uncertainty**: the predictive entropy of the averaged probabilities, normalised by ``ln C`` (C =
number of label values) so that it lies in [0, 1]; with more than one pass also the variance across
passes (per voxel, the mean over label values of the variance of that value's probability across all
passes: mean of the squared probabilities minus the squared mean, the means of each contract's grid
linearly resampled). The per-image summary (:func:`summarise`):
``mean_entropy`` — mean normalised entropy over the voxels of the predicted mask (any foreground label;
NaN for an empty mask) — and ``uncertain_volume_mm3`` — the volume of the voxels whose normalised
entropy exceeds :data:`UNCERTAIN_ABOVE` (0.5).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InputError

TTA_CHOICES = ("none", "flips")
COMBINATION = "mean of class probabilities over every pass (member x TTA flip), on each contract's grid"
#: the flip axes of ``--tta flips``: axis index of the preprocessed (RAS) volume and its name
FLIP_AXES: tuple[tuple[int, str], ...] = ((0, "R-L"),)
UNCERTAIN_ABOVE = 0.5


@dataclass
class Member:
    """One checkpoint of an ensemble: its file, the loaded module and the file's SHA-256."""

    path: Path
    module: Any
    sha256: str = ""

    def describe(self) -> dict[str, Any]:
        """The sidecar / test-summary entry of the member."""
        hp = self.module.hparams
        return {
            "Checkpoint": str(self.path),
            "CheckpointSHA256": self.sha256,
            "Model": hp.get("network"),
            "Preset": hp.get("preset"),
        }


@dataclass
class EnsemblePrediction:
    """Everything one image's ensemble prediction gives, on the image's own grid."""

    labels: np.ndarray  # uint8 label map, native shape
    probs: np.ndarray  # float32 (C, *native shape): probability of each label value
    entropy: np.ndarray  # float32 normalised predictive entropy in [0, 1]
    variance: np.ndarray | None  # float32 variance across passes (None with one pass)
    passes: int
    extra: dict[str, Any] = field(default_factory=dict)


def check_tta(tta: str) -> str:
    """``tta`` if it is a known rule, else a one-line error."""
    if tta not in TTA_CHOICES:
        from core.errors import ConfigError

        raise ConfigError(f"--tta must be one of {', '.join(TTA_CHOICES)}, got {tta!r}")
    return tta


def tta_record(tta: str, n_members: int) -> dict[str, Any]:
    """The TTA rule as recorded in a sidecar and a test summary."""
    flips = [name for _, name in FLIP_AXES] if tta == "flips" else []
    return {"rule": tta, "flip_axes": flips, "passes_per_member": 1 + len(flips), "members": n_members}


def combination_record(members: Sequence[Member], tta: str) -> dict[str, Any]:
    """Members (path, SHA-256), combination rule and TTA: what a sidecar and a test summary name."""
    return {
        "members": [m.describe() for m in members],
        "combination": COMBINATION,
        "tta": tta_record(tta, len(members)),
        "uncertainty": f"normalised predictive entropy (ln C); uncertain voxels: entropy > {UNCERTAIN_ABOVE}",
    }


# ------------------------------------------------------------------------------------ checks
def _contract(module: Any) -> dict[str, Any]:
    from data_modules.preprocessing import Preprocessing

    return Preprocessing.from_hparams(module.hparams).to_dict()


def _identity(module: Any) -> dict[str, Any]:
    hp = module.hparams
    classes = {str(k): [int(v) for v in vals] for k, vals in (hp.get("classes") or {}).items()}
    return {
        "task": hp.get("task"),
        "class map": classes,
        "classes": int(hp.get("num_classes", 2)),
        "post-processing": str(hp.get("postprocess") or "none"),
    }


def check_compatible(members: Sequence[Member]) -> None:
    """Refuse members of different tasks, class maps or post-processing: one line naming both files."""
    if not members:
        raise InputError("an ensemble needs at least one checkpoint")
    first = members[0]
    want = _identity(first.module)
    for m in members[1:]:
        got = _identity(m.module)
        for key, value in want.items():
            if got[key] != value:
                raise InputError(
                    f"cannot ensemble checkpoints of different {key}: {first.path} has {value!r}, "
                    f"{m.path} has {got[key]!r}",
                    m.path,
                )


def check_files(paths: Sequence[str | Path]) -> list[Path]:
    """Every checkpoint of the list exists and is a file (checked before anything is predicted)."""
    out = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            why = "is a folder, not a checkpoint file" if path.is_dir() else "checkpoint not found"
            raise InputError(f"{why} (one of {len(paths)} --ckpt files; nothing was predicted)", path)
        out.append(path)
    return out


# ------------------------------------------------------------------------------- one image
def _passes(module: Any, volume: Any, tta: str):
    """The probability volumes ``(C, X, Y, Z)`` of ``module`` on ``volume`` ``(1, 1, X, Y, Z)``, one per pass."""
    import torch

    with torch.no_grad():
        yield module.predict_volume(volume)[0].float().cpu()
        if tta == "flips":
            for axis, _ in FLIP_AXES:
                dim = 2 + axis
                yield torch.flip(module.predict_volume(torch.flip(volume, dims=[dim]))[0], dims=[dim - 1]).float().cpu()


@dataclass
class _Group:
    """Running sums of one contract's passes on its own grid."""

    contract: dict[str, Any]
    postprocess: str
    affine: np.ndarray | None = None
    total: Any = None
    squares: Any = None
    passes: int = 0

    def add(self, probs: Any) -> None:
        self.total = probs.clone() if self.total is None else self.total.add_(probs)
        sq = probs * probs
        self.squares = sq if self.squares is None else self.squares.add_(sq)
        self.passes += 1

    def mean(self) -> Any:
        return self.total / self.passes

    def variance(self) -> Any:
        m = self.mean()
        return (self.squares / self.passes - m * m).clamp_(min=0).mean(0)


def predict_image(
    members: Sequence[Member], data: np.ndarray, affine: np.ndarray, tta: str = "none", with_maps: bool = True
) -> EnsemblePrediction:
    """The ensemble's label map (and, with ``with_maps``, probabilities and uncertainty) on ``data``'s grid.

    See the module docstring for the rule. ``data``/``affine``: the image as read from its NIfTI.
    Segmented across the cord as ``predict`` segments one checkpoint (:func:`evaluation.inference.predict_array`):
    when the ensemble's first mask runs along another voxel axis than the one it was segmented across, the image
    is segmented again with that axis as the slice axis (the same voxels in a rotated world frame). A cord that
    no voxel axis follows within ``ALIGN_LIMIT_DEG`` is not resampled along it (one checkpoint's ``predict``
    does that): an :class:`~evaluation.inference.OrientationWarning` names the angle.
    """
    import warnings

    from core.geometry import angle_deg, cord_direction, cord_frame_affine, nearest_voxel_axis, slice_axis
    from evaluation.inference import ALIGN_LIMIT_DEG, OrientationWarning

    pred = _predict_frame(members, data, affine, tta, with_maps)
    cut = slice_axis(affine)
    d = cord_direction(pred.labels > 0, affine, min_elongation=1.0)
    if d is None:
        return pred
    axis, _ = nearest_voxel_axis(affine, d)
    if axis != cut:  # the slices ran along the cord: segment across the voxel axis nearest it
        again = _predict_frame(members, data, cord_frame_affine(affine, d), tta, with_maps)
        d2 = cord_direction(again.labels > 0, affine)
        if d2 is not None and nearest_voxel_axis(affine, d2)[0] == axis:
            pred, cut = again, axis
    d = cord_direction(pred.labels > 0, affine)
    if d is not None and (angle := angle_deg(d, np.asarray(affine, float)[:3, cut])) > ALIGN_LIMIT_DEG:
        warnings.warn(
            f"the cord runs {angle:.0f}° from the closest voxel axis of this grid: an ensemble segments on the "
            "image's own voxel axes (no resampling along the cord), so the mask may be incomplete",
            OrientationWarning,
            stacklevel=2,
        )
    return pred


def _predict_frame(
    members: Sequence[Member], data: np.ndarray, affine: np.ndarray, tta: str, with_maps: bool
) -> EnsemblePrediction:
    """One pass of :func:`predict_image` in the world frame ``affine`` (the module docstring's rule)."""
    import torch
    import torchio as tio

    from data_modules.preprocessing import Preprocessing, build_transform
    from evaluation.native import probabilities_to_native, to_native
    from evaluation.postprocess import apply, labels_of

    check_tta(tta)
    native_shape = tuple(int(s) for s in data.shape[:3])
    native_affine = np.asarray(affine, float)
    image = tio.ScalarImage(tensor=torch.from_numpy(np.asarray(data, np.float32)[None]), affine=native_affine)
    groups: dict[str, _Group] = {}
    for m in members:  # one after another; each group keeps running sums only
        contract = _contract(m.module)
        key = json.dumps(contract, sort_keys=True)
        if key not in groups:
            groups[key] = _Group(contract, str(m.module.hparams.get("postprocess") or "none"))
        g = groups[key]
        pre = build_transform(Preprocessing.from_dict(contract), "eval")(tio.Subject(image=image))
        g.affine = np.asarray(pre["image"].affine)
        volume = pre["image"]["data"][None].float()
        for probs in _passes(m.module, volume, tta):
            g.add(probs)
    postprocess = next(iter(groups.values())).postprocess
    n_passes = sum(g.passes for g in groups.values())
    if len(groups) == 1:
        g = next(iter(groups.values()))
        mean = g.mean()
        pre_labels = labels_of(mean, postprocess).numpy().astype(np.int16)
        labels = to_native(pre_labels, g.affine, native_shape, native_affine, mode="nearest").astype(np.uint8)
        if not with_maps:
            return EnsemblePrediction(labels, np.empty(0, np.float32), np.empty(0, np.float32), None, n_passes)
        probs = probabilities_to_native(mean.numpy(), g.affine, native_shape, native_affine)
        variance = _resample(g.variance().numpy(), g.affine, native_shape, native_affine) if n_passes > 1 else None
    else:
        probs = np.zeros((0,), np.float32)
        second = np.zeros((0,), np.float32)  # running sum of every pass's squared probabilities
        for g in groups.values():
            back = probabilities_to_native(g.mean().numpy(), g.affine, native_shape, native_affine)
            probs = back * g.passes if probs.size == 0 else probs + back * g.passes
            sq = probabilities_to_native((g.squares / g.passes).numpy(), g.affine, native_shape, native_affine)
            sq *= g.passes
            second = sq if second.size == 0 else second + sq
        probs = (probs / n_passes).astype(np.float32)
        variance = np.clip(second / n_passes - probs * probs, 0.0, None).mean(0).astype(np.float32)
        variance = variance if n_passes > 1 else None
        labels = np.asarray(apply(probs.argmax(0).astype(np.int16), postprocess)).astype(np.uint8)
    return EnsemblePrediction(labels, probs, normalised_entropy(probs), variance, n_passes)


def _resample(volume: np.ndarray, affine: np.ndarray, shape: Sequence[int], native_affine: np.ndarray) -> np.ndarray:
    from evaluation.native import probabilities_to_native

    return probabilities_to_native(volume[None], affine, shape, native_affine, fill_background=False)[0]


def normalised_entropy(probs: np.ndarray) -> np.ndarray:
    """``-sum_c p_c ln p_c / ln C`` per voxel of ``probs`` (C, ...), in [0, 1] (0·ln 0 = 0)."""
    p = np.clip(np.asarray(probs, np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(0)
    return np.clip(h / np.log(max(p.shape[0], 2)), 0.0, 1.0).astype(np.float32)


def class_probabilities(probs: np.ndarray, classes: Mapping[str, Sequence[int]]) -> dict[str, np.ndarray]:
    """The probability map of each class of ``classes`` (sum over its label values), float32 in [0, 1]."""
    return {
        name: np.clip(probs[[int(v) for v in values]].sum(0), 0.0, 1.0).astype(np.float32)
        for name, values in classes.items()
    }


def summarise(pred: EnsemblePrediction, affine: np.ndarray) -> dict[str, float]:
    """Per-image uncertainty summary: mean normalised entropy inside the predicted mask, uncertain volume."""
    voxel = float(abs(np.linalg.det(np.asarray(affine, float)[:3, :3])))
    inside = pred.labels > 0
    out = {
        "mean_entropy": float(pred.entropy[inside].mean()) if inside.any() else float("nan"),
        "uncertain_volume_mm3": float((pred.entropy > UNCERTAIN_ABOVE).sum() * voxel),
    }
    if pred.variance is not None:
        out["mean_variance"] = float(pred.variance[inside].mean()) if inside.any() else float("nan")
    return out
