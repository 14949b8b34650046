"""The GM-challenge Lightning data module (``data.name: gmchallenge``) and its random-rater transform.

Indexing, rater fusion and the task targets are in :mod:`data_modules.gmchallenge` (no torch
needed there); this module is the part that needs torch / torchio / Lightning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchio as tio

from core import io
from core.errors import ConfigError, InputError
from data_modules.base import SegmentationDataModule, SubjectSpec
from data_modules.gmchallenge import RATER_MODES, fuse_raters, index_gmchallenge, load_rater_mask, to_task_target


class RandomRater(tio.Transform):
    """Put one randomly drawn rater's map (``rater<N>`` images) in ``label``; drop the others."""

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        names = sorted(n for n in subject.get_images_names() if n.startswith("rater"))
        if not names:
            return subject
        pick = names[int(torch.randint(len(names), (1,)).item())]
        subject["label"].set_data(subject[pick].data.clone())
        for n in names:
            subject.remove_image(n)
        return subject


class GMChallengeDataModule(SegmentationDataModule):
    """Labelled challenge subjects (sc01–sc10 of each site); raters fused per ``data.raters``.

    ``data.raters: random`` trains on one rater drawn per sample and evaluates on the majority
    vote. Subject metadata carries ``site`` for leave-site-out splits. ``data.preset: perone``
    applies Perone et al. 2018's preprocessing (``data_modules.preprocessing.PRESETS``).
    """

    registry_name = "gmchallenge"

    def __init__(self, cfg: dict[str, Any]):
        super().__init__(cfg)
        self.rater_mode = str(cfg.get("raters") or "majority")
        if self.rater_mode not in RATER_MODES:
            raise ConfigError(
                f"key 'data.raters': unknown rater fusion {self.rater_mode!r}; choose {', '.join(RATER_MODES)}"
            )
        self._rater_maps: dict[str, tuple[np.ndarray, list[np.ndarray]]] = {}

    def root(self) -> Path:
        if not self.cfg.get("root"):
            raise ConfigError("key 'data.root' must name the GM challenge folder")
        return Path(self.cfg["root"])

    def index_subjects(self) -> list[SubjectSpec]:
        specs = []
        for s in index_gmchallenge(self.root()):
            if not s.labelled:
                continue
            files = [s.raters[r] for r in sorted(s.raters)]
            specs.append(SubjectSpec(s.subject, s.image, {"raters": files}, {"site": s.site, "institution_id": s.site}))
        return specs

    def build_label(self, spec: SubjectSpec, image: Any) -> np.ndarray:
        raters = [load_rater_mask(f, image, spec.image) for f in spec.labels["raters"]]
        fuse = "majority" if self.rater_mode == "random" else self.rater_mode
        fused = fuse_raters(raters, fuse)
        if self.rater_mode == "random":
            self._rater_maps[spec.subject] = (
                np.asarray(image.affine, float),
                [to_task_target(r, self.task.name) for r in raters],
            )
        return to_task_target(fused, self.task.name)

    def load_subject(self, spec: SubjectSpec, stage: str = "eval") -> tio.Subject:
        subject = self.raw_subject(spec)
        maps = self._rater_maps.pop(spec.subject, None)
        if stage == "train" and maps is not None:  # raters ride along for training only
            affine, targets = maps
            for i, m in enumerate(targets):
                subject.add_image(
                    tio.LabelMap(tensor=torch.from_numpy(m[None].astype(np.int16)), affine=affine), f"rater{i + 1}"
                )
        return self.preprocess(stage)(subject)

    def native_targets(self, subject_id: str) -> tuple[Any, dict[str, np.ndarray]]:
        """Fused target (``""``) and each rater's (``rater<N>``) on the native grid."""
        spec = next((s for s in self.specs if s.subject == subject_id), None)
        if spec is None:
            raise InputError(f"subject {subject_id!r} is not in this data set", self.cfg.get("root"))
        img = io.load_nifti(spec.image, ndim=3, kind="T2star image")
        raters = [load_rater_mask(f, img, spec.image) for f in spec.labels["raters"]]
        fuse = "majority" if self.rater_mode == "random" else self.rater_mode
        out = {"": to_task_target(fuse_raters(raters, fuse), self.task.name)}
        out.update({f"rater{i + 1}": to_task_target(r, self.task.name) for i, r in enumerate(raters)})
        return img, out

    def augment(self) -> tio.Transform | None:
        base = super().augment()
        if self.rater_mode != "random":
            return base
        return tio.Compose([RandomRater()] + ([base] if base is not None else []))

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["raters"] = self.rater_mode
        return out
