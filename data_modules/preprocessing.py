"""The preprocessing contract: one plain-data description, one function that builds the chain.

A run's deterministic preprocessing is a :class:`Preprocessing` (orientation, resampling,
crop/pad policy, normalisation, preset, task and class map). The data module derives it from the
config (:meth:`Preprocessing.from_config`); the run saves :meth:`Preprocessing.to_dict` in the
checkpoint's hyper-parameters (``preprocessing``) and in ``data.json``; training, validation,
test, ``cordbench predict`` (files and ``--bids``) and the leaderboard's morphometrics all build
their torchio chain from it with :func:`build_transform`. A checkpoint from before the contract
maps to it through :meth:`Preprocessing.from_hparams` (its ``spacing``; such checkpoints recorded
no crop or preset, so none is applied — exactly what ``predict`` did with them before).

The chain, in order:

1. reorientation to RAS (``tio.ToCanonical``);
2. resampling to ``spacing`` (mm); an axis given as ``None`` keeps the image's own spacing
   (Perone: ``(0.25, 0.25, None)`` = 0.25 mm in-plane, slice spacing kept); linear for images,
   nearest for label maps (torchio);
3. ``normalisation = "zscore"``: z-score of the whole resampled volume, then the crop/pad;
   ``"zscore-after-crop"`` (Perone): crop/pad first (padding 0), then z-score what remains;
4. in-plane crop/pad to ``crop`` = (x, y) voxels (``tio.CropOrPad``, padding 0);
5. zero padding (symmetric) up to ``min_shape`` (the training patch, so whole slices fit it).

**Crop rule without a label.** Training may centre the crop on the label (``train_crop =
"label"``, the ``data.crop`` behaviour: patches around the cord; ``"label-wide"``: a crop twice
``crop`` around it, so that a share of ``1 - data.foreground_probability`` of the training patches are
background up to a crop away from the cord, the negatives a whole-image pass needs). Everything
scored or predicted — validation, test, ``test --real``, ``predict``, ensembles, exported models — uses
the *label-free* rule recorded as ``inference`` (``data.inference``), the same for all, so test
predictions are exactly what ``predict`` writes for the same image:

* ``centre`` — the crop/pad is centred on the field of view of every slice, as Perone et al. 2018 do
  for the GM challenge. It works only when the cord lies near the middle of the image; it is the rule of
  every checkpoint that recorded none (so they keep their numbers).
* ``sliding`` — no crop: the whole resampled slice (padded to at least ``crop``) goes through MONAI's
  ``sliding_window_inference`` with windows of ``crop`` (else the patch), ``inference_overlap`` and
  ``inference_blend`` weighting (:mod:`lightning_modules.volume`).
* ``localise`` (the default of new runs, :data:`DEFAULT_INFERENCE`) — no crop here either: a sliding
  pass finds the cord (the surest of its large connected components thin enough to be one), its centre
  per slice is interpolated and smoothed along the slices (the FOV centre when nothing is found), and
  the network runs again on ``crop`` windows centred on it slice by slice (as training crops around the
  label), z-scored on their own, pasted back into the whole grid; background elsewhere
  (:mod:`lightning_modules.volume`).

With ``normalisation = "zscore-after-crop"`` the two whole-image rules z-score the whole resampled volume
(there is no crop before it).

Every field is plain data: :meth:`Preprocessing.to_dict` round-trips through JSON/YAML and
:meth:`Preprocessing.key` is a stable digest (e.g. for an on-disk cache of preprocessed subjects).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torchio as tio

from core import schema
from core.errors import ConfigError
from data_modules.contrasts import selection

VERSION = 1
NORMALISATIONS = ("zscore", "zscore-after-crop")
TRAIN_CROPS = ("label", "centre", "label-wide")
#: the label-free rule of everything scored or predicted (module docstring)
INFERENCE_RULES = ("centre", "sliding", "localise")
BLENDS = ("gaussian", "constant")
STAGES = ("train", "eval")
PRESETS: dict[str, dict[str, Any]] = {
    # Perone et al. 2018 (GM challenge): 0.25 mm in-plane, slice spacing kept, 200x200 slices, z-score
    "perone": {
        "spacing": (0.25, 0.25, None),
        "crop": (200, 200),
        "train_crop": "centre",
        "normalisation": "zscore-after-crop",
        "inference": "centre",
    },
}
#: the rule of a new run whose config and preset name none (``data.inference: null``): the one that
#: measured best on real scans (docs/pipeline.md, "Where is the cord?")
DEFAULT_INFERENCE = "localise"


def _tuple(v: Any) -> tuple | None:
    return None if v is None else tuple(None if x is None else (float(x) if isinstance(x, float) else x) for x in v)


@dataclass(frozen=True)
class Preprocessing:
    """The full deterministic preprocessing of a run (see the module docstring)."""

    task: str = "sc"
    classes: tuple[tuple[str, tuple[int, ...]], ...] = (("fg", (1,)),)
    num_classes: int = 2
    spatial_dims: int = 2
    orientation: str = "RAS"
    spacing: tuple[float | None, float | None, float | None] | None = None
    crop: tuple[int, int] | None = None
    train_crop: str = "label"
    normalisation: str = "zscore"
    min_shape: tuple[int, ...] = ()
    preset: str | None = None
    version: int = VERSION
    inference: str = "centre"  # not the schema's default: the rule of checkpoints that recorded none
    inference_overlap: float = schema.default("data.inference_overlap")
    inference_blend: str = schema.default("data.inference_blend")
    #: the contrasts a multi-contrast run trained on (``data.contrast``'s list, or ``("all",)``): a record
    #: of the training data, not a step of the chain — ``predict`` applies the same chain to any contrast.
    #: None (single-contrast runs) is left out of :meth:`to_dict`, so their description is unchanged.
    contrasts: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.orientation != "RAS":
            raise ConfigError(f"preprocessing orientation must be RAS, got {self.orientation!r}")
        if self.normalisation not in NORMALISATIONS:
            raise ConfigError(
                f"preprocessing normalisation must be one of {NORMALISATIONS}, got {self.normalisation!r}"
            )
        if self.train_crop not in TRAIN_CROPS:
            raise ConfigError(f"preprocessing train_crop must be one of {TRAIN_CROPS}, got {self.train_crop!r}")
        if self.inference not in INFERENCE_RULES:
            raise ConfigError(f"key 'data.inference' must be one of {INFERENCE_RULES}, got {self.inference!r}")
        if self.inference_blend not in BLENDS:
            raise ConfigError(f"key 'data.inference_blend' must be one of {BLENDS}, got {self.inference_blend!r}")
        if not 0 <= float(self.inference_overlap) < 1:
            raise ConfigError(f"key 'data.inference_overlap' must be in [0, 1), got {self.inference_overlap!r}")
        if self.spacing is not None and len(self.spacing) != 3:
            raise ConfigError(f"key 'data.spacing' needs 3 values (mm, null keeps an axis), got {self.spacing!r}")
        if self.crop is not None and len(self.crop) != 2:
            raise ConfigError(f"key 'data.crop' must be [x, y] in voxels, got {self.crop!r}")

    # ------------------------------------------------------------------------------ building
    @classmethod
    def from_config(cls, cfg_data: Mapping[str, Any], task: Any) -> Preprocessing:
        """From a resolved ``data`` section and its :class:`~core.tasks.TaskSpec`.

        ``data.preset`` (``perone``) sets spacing, crop and normalisation; ``data.spacing`` and
        ``data.crop``, when given, override the preset's.
        """
        preset = cfg_data.get("preset")
        base: dict[str, Any] = dict(PRESETS.get(preset, {})) if preset else {}
        if preset and preset not in PRESETS:
            raise ConfigError(f"key 'data.preset' must be null or one of {', '.join(PRESETS)}, got {preset!r}")
        if cfg_data.get("spacing"):
            base["spacing"] = tuple(None if s is None else float(s) for s in cfg_data["spacing"])
        if cfg_data.get("crop"):
            base["crop"] = tuple(int(v) for v in cfg_data["crop"])
            base.setdefault("train_crop", "label")
        if cfg_data.get("train_crop"):
            base["train_crop"] = str(cfg_data["train_crop"])
        base["inference"] = cfg_data.get("inference") or base.get("inference") or DEFAULT_INFERENCE
        for k in ("inference_overlap", "inference_blend"):
            if cfg_data.get(k) is not None:
                base[k] = cfg_data[k]
        dims = int(cfg_data["spatial_dims"])
        patch = [int(p) for p in cfg_data["patch_size"]]
        return cls(
            task=task.name,
            classes=tuple((k, tuple(int(x) for x in v)) for k, v in task.classes.items()),
            num_classes=int(task.num_classes),
            spatial_dims=dims,
            min_shape=tuple(patch + [1]) if dims == 2 else tuple(patch),
            preset=preset,
            contrasts=selection(cfg_data.get("contrast")),
            **base,
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preprocessing:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        kw = dict(d)
        if "classes" in kw:
            cl = kw["classes"]
            items = cl.items() if isinstance(cl, Mapping) else cl
            kw["classes"] = tuple((str(k), tuple(int(x) for x in v)) for k, v in items)
        for key in ("spacing", "crop", "min_shape"):
            if key in kw and kw[key] is not None:
                kw[key] = _tuple(kw[key])
        if kw.get("min_shape") is None:
            kw["min_shape"] = ()
        if kw.get("contrasts") is not None:
            kw["contrasts"] = tuple(str(c) for c in kw["contrasts"])
        return schema.from_mapping(cls, kw, "the preprocessing description")

    @classmethod
    def from_hparams(cls, hp: Mapping[str, Any]) -> Preprocessing:
        """The description saved in a checkpoint, or the one an older checkpoint implies."""
        if hp.get("preprocessing"):
            return cls.from_dict(hp["preprocessing"])
        classes = hp.get("classes") or {"fg": list(range(1, int(hp.get("num_classes", 2))))}
        spacing = hp.get("spacing")
        return cls(
            task=str(hp.get("task", "sc")),
            classes=tuple((k, tuple(v)) for k, v in classes.items()),
            num_classes=int(hp.get("num_classes", 2)),
            spatial_dims=int(hp.get("spatial_dims", 2)),
            spacing=tuple(float(s) for s in spacing) if spacing else None,
        )

    # --------------------------------------------------------------------------- serialising
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-able dict (lists, a class-name → values mapping)."""
        d = asdict(self)
        d["classes"] = {k: list(v) for k, v in self.classes}
        for key in ("spacing", "crop", "min_shape"):
            d[key] = None if d[key] is None else list(d[key])
        if self.contrasts is None:
            del d["contrasts"]
        else:
            d["contrasts"] = list(self.contrasts)
        return d

    def key(self) -> str:
        """Stable SHA-256 hex digest of :meth:`to_dict` (sorted JSON)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    @property
    def class_map(self) -> dict[str, list[int]]:
        return {k: list(v) for k, v in self.classes}


def build_transform(pre: Preprocessing, stage: str = "eval"):
    """The torchio chain of ``pre``; ``stage="train"`` may centre the crop on the ``label`` image.

    Every other stage (validation, test, predict) uses the label-free rule ``pre.inference``: the
    FOV-centred crop (``centre``), or the whole slice padded to at least ``crop`` (``sliding``,
    ``localise``: the network then runs over it, :mod:`lightning_modules.volume`).
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    steps: list[Any] = [tio.ToCanonical()]
    if pre.spacing is not None:
        steps.append(ResampleKeeping(pre.spacing))
    crop = None
    if pre.crop is not None and stage == "train":
        wide = pre.train_crop == "label-wide"
        size = tuple(2 * c for c in pre.crop) if wide else pre.crop
        crop = InPlaneCropOrPad(size, on_label=pre.train_crop in ("label", "label-wide"))
    elif pre.crop is not None and pre.inference == "centre":
        crop = InPlaneCropOrPad(pre.crop)
    elif pre.crop is not None:
        crop = PadTo(pre.crop)
    if pre.normalisation == "zscore":
        steps.append(tio.ZNormalization())
        steps += [crop] if crop is not None else []
    else:
        steps += [crop] if crop is not None else []
        steps.append(tio.ZNormalization())
    if pre.min_shape:
        steps.append(PadTo(pre.min_shape))
    return tio.Compose(steps)


class ResampleKeeping(tio.Transform):
    """Resample to ``spacing`` (mm); a ``None`` axis keeps the subject's own spacing on it."""

    def __init__(self, spacing: Sequence[float | None], **kwargs: Any):
        super().__init__(**kwargs)
        self.spacing = tuple(spacing)
        self.args_names = ["spacing"]

    def apply_transform(self, subject):
        own = subject.spacing
        target = tuple(float(own[i]) if s is None else float(s) for i, s in enumerate(self.spacing))
        return tio.Resample(target)(subject)


class InPlaneCropOrPad(tio.Transform):
    """Crop/pad every slice to ``size`` = (x, y) voxels; centred on the FOV, or on ``label``."""

    def __init__(self, size: Sequence[int], on_label: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.size = tuple(int(s) for s in size)
        self.on_label = bool(on_label)
        self.args_names = ["size", "on_label"]

    def apply_transform(self, subject):
        shape = (*self.size, subject.spatial_shape[2])
        use_label = self.on_label and "label" in subject and bool(subject["label"].data.any())
        return tio.CropOrPad(shape, mask_name="label" if use_label else None)(subject)


class PadTo(tio.Transform):
    """Zero-pad (symmetrically, extra voxel after) to at least ``shape`` along each axis given."""

    def __init__(self, shape: Sequence[int], **kwargs: Any):
        super().__init__(**kwargs)
        self.shape = tuple(int(s) for s in shape)
        self.args_names = ["shape"]

    def apply_transform(self, subject):
        have = subject.spatial_shape
        pad = [max(0, w - s) for s, w in zip(have, self.shape)] + [0] * (3 - len(self.shape))
        if not any(pad):
            return subject
        bounds: list[int] = []
        for p in pad:
            bounds += [p // 2, p - p // 2]
        return tio.Pad(bounds, padding_mode=0)(subject)
