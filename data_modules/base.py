"""The torchio ``LightningDataModule`` every data set shares.

A concrete data module only says where its subjects are (:meth:`index_subjects`) and, if
needed, how its label files become one target (:meth:`build_label`). Everything else is
here: validation of every file before training starts, the deterministic preprocessing of
``data_modules.preprocessing`` (one contract shared with ``predict``), subject-level splits saved beside the run,
torchio augmentation, 2D axial-slice or 3D patch sampling through a label-aware
``tio.Queue``, and whole-subject loaders for validation/test (per-subject metrics).

Preprocessing runs once per subject at :meth:`setup`; its result is cached on disk
(:mod:`data_modules.cache`, keyed by the input files' contents and the settings) and in memory.
2D training uses the fast pipeline by default (``data.pipeline``, :mod:`data_modules.fast2d`:
slices from the cached arrays, whole batches augmented on the training device); 3D patches and
``data.pipeline: torchio`` use the torchio queue with per-volume augmentation. Under DDP
each rank trains on and evaluates its own share of the subjects (:mod:`data_modules.sharding`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torchio as tio

from core import io
from core.errors import ConfigError, InputError
from core.tasks import TASKS, TaskSpec
from data_modules import contrasts
from data_modules.preprocessing import Preprocessing, build_transform
from data_modules.sharding import QueueEpochSampler, eval_dataset, eval_indices, shard_info, train_subject_sampler


@dataclass
class SubjectSpec:
    """One subject's files: an image and the label files the task needs, plus metadata.

    In a multi-contrast run (:mod:`data_modules.contrasts`) a spec is one image of a subject:
    ``subject`` is the image key ``<subject>_<contrast>``, ``group`` the subject it belongs to (what
    splits keep together) and ``meta["contrast"]`` its contrast.
    """

    subject: str
    image: Path
    labels: dict[str, Path | list[Path]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    group: str | None = None

    @property
    def unit(self) -> str:
        """The id splits use: the subject of a multi-contrast image, else the spec's own."""
        return self.group or self.subject


class SegmentationDataModule(pl.LightningDataModule):
    """Base torchio data module (see module docstring). Subclasses implement ``index_subjects``."""

    registry_name = "base"
    #: whether ``data.contrast`` may list several contrasts (data sets whose index knows contrasts)
    multi_contrast = False

    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        self.cfg = cfg
        self.task: TaskSpec = TASKS[cfg["task"]]
        #: the listed contrasts of a multi-contrast run (``("all",)`` for every one); None: single-contrast
        self.contrasts: tuple[str, ...] | None = contrasts.selection(cfg.get("contrast"))
        if self.contrasts is not None and not self.multi_contrast:
            raise ConfigError(
                f"key 'data.contrast': data set {self.registry_name!r} has one contrast; a list or 'all' "
                "needs a BIDS data set (phantom, spine_generic)"
            )
        #: the run's contrast: the single one, or the listed ones joined with ``+``
        self.contrast: str = contrasts.label(cfg.get("contrast"), self.task.contrast)
        self.spatial_dims: int = int(cfg["spatial_dims"])
        self.patch_size: list[int] = list(cfg["patch_size"])
        self.split: dict[str, list[str]] = {}
        self.subjects: dict[str, list[tio.Subject]] = {}
        self._specs: list[SubjectSpec] | None = None

    # ------------------------------------------------------------------ to implement per data set
    def index_subjects(self) -> list[SubjectSpec]:
        """All labelled subjects of the data set for this task and contrast."""
        raise NotImplementedError

    def build_label(self, spec: SubjectSpec, image: Any) -> np.ndarray:
        """Combine the subject's label files into one integer target on the image grid."""
        target = np.zeros(image.shape[:3], dtype=np.int16)
        for name, desc, value in self.task.labels:
            key = name if desc is None else f"{name}:{desc}"
            path = spec.labels.get(key)
            if path is None:
                raise InputError(f"missing {key} label for task {self.task.name!r}", spec.image)
            allowed = self.task.label_values.get(name)
            lbl_img, lbl = io.load_label(path, allowed=allowed, kind=f"{key} label")
            io.check_same_grid(image, lbl_img, spec.image, path)
            if not (lbl > 0).any():
                raise InputError(f"{key} label is empty (no voxel > 0)", path)
            if value is None:
                target = np.where(lbl > 0, lbl, target).astype(np.int16)
            else:
                target[lbl > 0] = value
        return target

    # ------------------------------------------------------------------------------- properties
    @property
    def num_classes(self) -> int:
        return self.task.num_classes

    @property
    def class_map(self) -> dict[str, tuple[int, ...]]:
        return dict(self.task.classes)

    @property
    def specs(self) -> list[SubjectSpec]:
        if self._specs is None:
            specs = self.index_subjects()
            if not specs:
                raise InputError(
                    f"no subject with a {self.contrast} image and the labels of task {self.task.name!r}",
                    self.cfg.get("root"),
                )
            ids = [s.subject for s in specs]
            dup = sorted({i for i in ids if ids.count(i) > 1})
            if dup:
                raise InputError(f"duplicated subjects {dup}", self.cfg.get("root"))
            found = {str(s.meta.get("contrast")) for s in specs}
            for name in (n for n in self.contrasts or () if n != contrasts.ALL):
                if not any(contrasts.matches([name], c) for c in found):
                    raise InputError(
                        f"key 'data.contrast' lists {name!r} but no subject has a {name} image with the labels "
                        f"of task {self.task.name!r} (found: {', '.join(sorted(found))})",
                        self.cfg.get("root"),
                    )
            self._specs = specs
        return self._specs

    # ----------------------------------------------------------------------------- preprocessing
    @property
    def preprocessing(self) -> Preprocessing:
        """The run's preprocessing contract (saved in the checkpoint and ``data.json``)."""
        return Preprocessing.from_config(self.cfg, self.task)

    def preprocess(self, stage: str = "eval") -> tio.Transform:
        """The deterministic chain of :attr:`preprocessing` (``data_modules.preprocessing``)."""
        return build_transform(self.preprocessing, stage)

    def augment(self) -> tio.Transform | None:
        """Random torchio augmentation (training only); probabilities scaled by ``strength``."""
        a = self.cfg["augment"]
        k = float(a["strength"])
        if k <= 0:
            return None
        p = lambda name: min(1.0, float(a[name]) * k)  # noqa: E731
        in_plane = self.spatial_dims == 2
        steps = []
        if p("affine") > 0:
            steps.append(
                tio.RandomAffine(
                    scales=0.1 * k, degrees=(0, 0, 10 * k) if in_plane else 10 * k, translation=0, p=p("affine")
                )
            )
        if p("elastic") > 0:
            steps.append(tio.RandomElasticDeformation(max_displacement=(2, 2, 0) if in_plane else 2, p=p("elastic")))
        if p("bias_field") > 0:
            steps.append(tio.RandomBiasField(coefficients=0.3 * k, p=p("bias_field")))
        if p("gamma") > 0:
            steps.append(tio.RandomGamma(log_gamma=0.2 * k, p=p("gamma")))
        if p("noise") > 0:
            steps.append(tio.RandomNoise(std=(0, 0.1 * k), p=p("noise")))
        return tio.Compose(steps) if steps else None

    def raw_subject(self, spec: SubjectSpec) -> tio.Subject:
        """Read and check one subject's files on their own grid: ``image`` and the ``label`` target."""
        kind = f"{spec.meta.get('contrast', self.contrast)} image"
        img = io.load_nifti(spec.image, ndim=3, kind=kind)
        data = np.asanyarray(img.dataobj).astype(np.float32)
        io.check_image_values(data, spec.image, kind=kind)
        target = self.build_label(spec, img)
        affine = np.asarray(img.affine, dtype=np.float64)
        return tio.Subject(
            image=tio.ScalarImage(tensor=torch.from_numpy(data[None]), affine=affine),
            label=tio.LabelMap(tensor=torch.from_numpy(target[None].astype(np.int16)), affine=affine),
            subject_id=spec.subject,
            image_path=str(spec.image),
            **{k: v for k, v in spec.meta.items() if isinstance(v, (str, int, float))},
        )

    def load_subject(self, spec: SubjectSpec, stage: str = "eval") -> tio.Subject:
        """:meth:`raw_subject` through the preprocessing chain of ``stage`` (train | eval)."""
        return self.preprocess(stage)(self.raw_subject(spec))

    def native_targets(self, subject_id: str) -> tuple[Any, dict[str, np.ndarray]]:
        """The subject's image header and its target(s) on the native grid, for native-grid scoring.

        Returns ``(nibabel image, {"": target})``; data sets with several raters add one entry
        per rater (``"rater1"``...), the ``""`` entry being the fused target the run trains on.
        """
        spec = next((s for s in self.specs if s.subject == subject_id), None)
        if spec is None:
            raise InputError(f"subject {subject_id!r} is not in this data set", self.cfg.get("root"))
        img = io.load_nifti(spec.image, ndim=3, kind=f"{spec.meta.get('contrast', self.contrast)} image")
        return img, {"": self.build_label(spec, img)}

    # ------------------------------------------------------------------------------------ splits
    def make_split(self, specs: list[SubjectSpec]) -> dict[str, list[str]]:
        """Subject-level train/val/test split from the config (see ``data_modules.splits``).

        A multi-contrast run splits its subjects (one representative spec per :attr:`SubjectSpec.unit`),
        so every image of a subject lands in the same part, and the split is the one a single-contrast
        run on the same subjects draws."""
        from data_modules import splits

        units: dict[str, SubjectSpec] = {}
        for s in specs:
            units.setdefault(s.unit, SubjectSpec(s.unit, s.image, meta=s.meta))
        return splits.make_split(list(units.values()), self.cfg["split"])

    def setup(self, stage: str | None = None) -> None:
        if self.subjects:
            return
        from data_modules.cache import load_subjects

        specs = self.specs
        self.split = self.make_split(specs)
        by_unit: dict[str, list[SubjectSpec]] = {}
        for s in specs:  # sorted by image key: a subject's images in contrast order
            by_unit.setdefault(s.unit, []).append(s)
        # load every subject once (or read its cached arrays), validating all files before any training starts
        self.subjects = {
            part: load_subjects(
                self,
                [s for i in self.split.get(part, []) for s in by_unit[i]],
                "train" if part == "train" else "eval",
            )
            for part in ("train", "val", "test")
        }

    # ------------------------------------------------------------------------------- dataloaders
    def _patch(self) -> tuple[int, int, int]:
        return (*self.patch_size, 1) if self.spatial_dims == 2 else tuple(self.patch_size)  # type: ignore[return-value]

    @property
    def pipeline(self) -> str:
        """``data.pipeline``: ``fast`` (default for 2D) or ``torchio`` (always for 3D)."""
        return str(self.cfg.get("pipeline") or ("fast" if self.spatial_dims == 2 else "torchio"))

    def label_probabilities(self) -> dict[int, float]:
        """Label-aware sampling: ``1 - fg`` for background, ``fg`` shared by the task's label values."""
        fg = float(self.cfg["foreground_probability"])
        values = sorted({v for vs in self.task.classes.values() for v in vs})
        return {0: 1.0 - fg, **{v: fg / len(values) for v in values}}

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        if self.pipeline == "fast":
            from data_modules.fast2d import train_loader

            return train_loader(self)
        ds = tio.SubjectsDataset(self.subjects["train"], transform=self.augment())
        probs = self.label_probabilities()
        sampler = tio.LabelSampler(self._patch(), label_name="label", label_probabilities=probs)
        rank, world = shard_info(self.trainer)
        subject_sampler = (
            None if world == 1 else train_subject_sampler(ds, rank, world, int(self.cfg["split"].get("seed") or 0))
        )
        queue = tio.Queue(
            ds,
            max_length=int(self.cfg["queue_length"]),
            samples_per_volume=int(self.cfg["samples_per_volume"]),
            sampler=sampler,
            num_workers=int(self.cfg["num_workers"]),
            shuffle_subjects=subject_sampler is None,
            shuffle_patches=True,
            subject_sampler=subject_sampler,
        )
        return tio.SubjectsLoader(
            queue, batch_size=int(self.cfg["batch_size"]), num_workers=0, sampler=QueueEpochSampler(queue)
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Fast pipeline: augment the training batch on its device (other batches unchanged)."""
        from data_modules.fast2d import after_transfer

        return after_transfer(getattr(self, "batch_augment", None), batch)

    def _whole(self, part: str) -> torch.utils.data.DataLoader:
        """Whole subjects, one per batch; under DDP this rank's equal share (see ``data_modules.sharding``)."""
        rank, world = shard_info(self.trainer)
        n = len(self.subjects[part])
        subjects = [self.subjects[part][i] for i in eval_indices(n, rank, world)]
        return tio.SubjectsLoader(
            eval_dataset(tio.SubjectsDataset(subjects), n, rank, world), batch_size=1, num_workers=0
        )

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return self._whole("val")

    def test_dataloader(self) -> torch.utils.data.DataLoader:
        return self._whole("test")

    # ----------------------------------------------------------------------------------- outputs
    def describe(self) -> dict[str, Any]:
        """What a run records about its data: data set, task, split, class map."""
        return {
            "data": self.registry_name,
            "task": self.task.name,
            "contrast": self.contrast,
            **({"contrasts": sorted({str(s.meta.get("contrast")) for s in self.specs})} if self.contrasts else {}),
            "root": str(self.cfg.get("root")),
            "split": self.split,
            "classes": {k: list(v) for k, v in self.task.classes.items()},
            "preprocessing": self.preprocessing.to_dict(),
        }
