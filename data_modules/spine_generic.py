"""spine-generic (BIDS) data module: images and ``derivatives/labels`` via the BIDS indexer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import ConfigError, InputError
from data_modules import contrasts
from data_modules.base import SegmentationDataModule, SubjectSpec


class SpineGenericDataModule(SegmentationDataModule):
    """Subjects of a spine-generic-style BIDS tree that have the task's labels for the contrast.

    Metadata from ``participants.tsv`` (sex, age, institution_id, manufacturer) rides along
    with each subject, for leave-site-out splits and per-group statistics. With several contrasts
    (``data.contrast`` a list or ``all``) each image is one spec with its *own* contrast's labels
    (spine-generic segments every contrast separately): no mask is carried across contrasts.
    """

    registry_name = "spine_generic"
    multi_contrast = True

    def root(self) -> Path:
        if not self.cfg.get("root"):
            raise ConfigError("key 'data.root' must name the BIDS folder of the spine-generic data set")
        from core.paths import require_dir

        return require_dir(self.cfg["root"], "data set folder")

    def index_subjects(self) -> list[SubjectSpec]:
        from data_modules.bids import BidsIndex

        index = BidsIndex.from_dir(self.root())
        self._check_site_column(index)
        meta = self._participants(index)
        specs = []
        for rec in index.images:
            if not (
                rec.contrast == self.contrast
                if self.contrasts is None
                else contrasts.matches(self.contrasts, rec.contrast)
            ):
                continue
            labels: dict[str, Any] = {}
            for name, desc, _ in self.task.labels:
                found = rec.label(name, desc=desc)
                if found is not None:
                    labels[name if desc is None else f"{name}:{desc}"] = found.path
            if self.task.name == "levels" and "SC:levels" not in labels:
                # real spine-generic has no level-labelled cord: build it from SC + disc labels
                sc, discs = rec.label("SC"), rec.label("discs")
                if sc is not None and discs is not None:
                    labels = {"SC": sc.path, "discs": discs.path}
            if len(labels) < len(self.task.labels):
                continue
            sid = rec.subject if rec.session is None else f"{rec.subject}_{rec.session}"
            if self.contrasts is None:
                specs.append(SubjectSpec(sid, rec.path, labels, meta.get(rec.subject, {})))
            else:
                info = {**meta.get(rec.subject, {}), "contrast": rec.contrast}
                specs.append(SubjectSpec(f"{sid}_{rec.contrast}", rec.path, labels, info, group=sid))
        return sorted(specs, key=lambda s: s.subject)

    def _check_site_column(self, index: Any) -> None:
        """A leave-site-out split needs ``institution_id`` for every subject of participants.tsv."""
        if (self.cfg.get("split") or {}).get("method") != "site":
            return
        df = index.participants
        tsv = index.root / "participants.tsv"
        if df is None or "institution_id" not in df.columns:
            raise InputError("no institution_id column, needed by data.split.method=site (leave-site-out)", tsv)
        empty = sorted(df.loc[df["institution_id"].isna(), "participant_id"])
        if empty:
            raise InputError(f"empty institution_id for {', '.join(empty[:5])}, needed by data.split.method=site", tsv)

    def build_label(self, spec: SubjectSpec, image: Any):
        """Levels task from SC + disc labels when no level-labelled cord exists; else the base."""
        if self.task.name == "levels" and "discs" in spec.labels:
            from data_modules.levels import levels_target

            target = levels_target(spec.labels["SC"], spec.labels["discs"], image, spec.image)
            if not (target > 0).any():
                raise InputError(
                    "no vertebral level C1-C7 where the cord is segmented (discs bound none of "
                    f"its slices; cord {Path(spec.labels['SC']).name})",
                    spec.labels["discs"],
                )
            return target
        return super().build_label(spec, image)

    @staticmethod
    def _participants(index: Any) -> dict[str, dict[str, Any]]:
        df = getattr(index, "participants", None)
        if df is None:
            return {}
        cols = [c for c in ("sex", "age", "institution_id", "manufacturer") if c in df.columns]
        return {str(r["participant_id"]): {c: r[c] for c in cols} for _, r in df.iterrows()}
