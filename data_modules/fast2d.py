"""The fast 2D training pipeline (``data.pipeline: fast``): slices from preprocessed arrays, whole
batches augmented on the training device.

The torchio path augments a whole 3D volume to feed ``samples_per_volume`` slices, in the process
that trains. Here the preprocessed training subjects (:mod:`data_modules.cache`) stay as arrays;
an epoch is a *plan* of slice positions drawn up front, and a batch is a stack of plain array
windows, so loader workers only copy memory. Augmentation (:mod:`data_modules.augment_gpu`) runs
on the batch after it reaches the training device (the data module's ``on_after_batch_transfer``).

Same science as the torchio path:

- **label-aware sampling** as ``tio.LabelSampler`` with ``{0: 1 - fg, v: fg / n_values}``
  (``data.foreground_probability``): over the slice positions where a patch fits, a class is
  drawn with its probability and a voxel of that class uniformly;
- **epoch**: ``samples_per_volume`` slices from every training subject, shuffled, in batches of
  ``batch_size`` (last one partial), as the ``tio.Queue`` loader;
- GM challenge ``data.raters: random``: each slice is drawn from one rater's map, picked uniformly.

Determinism: the plan depends only on (seed, epoch, rank) — the seed is ``torch.initial_seed()``
when the loader is built (``seed_everything``) — so it is the same for 0, 1 or N loader workers.
The subjects' split between ranks uses ``data.split.seed`` instead, identical on every rank even
when a launcher did not seed the processes alike (as the torchio path's sharding).
DDP: ranks split the training subjects with :mod:`data_modules.sharding` (the torchio path's
``DistributedSampler``: shuffled per epoch with the shared seed, padded to equal shares), so ranks
draw different subjects and have the same number of batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from data_modules.augment_gpu import BatchAugment, window_margin
from data_modules.sharding import shard_info, train_subject_sampler

_MIN_U = float(np.finfo(np.float32).tiny)


class SliceSource:
    """One training subject: padded arrays and the label-aware distribution of slice positions."""

    def __init__(
        self,
        image: np.ndarray,
        labels: Sequence[np.ndarray],
        spacing: Sequence[float],
        patch: tuple[int, int],
        margin: int,
        probabilities: dict[int, float],
        name: str = "",
    ):
        self.shape = np.asarray(image.shape, dtype=np.int64)  # (X, Y, Z)
        self.spacing = np.asarray(spacing[:2], dtype=np.float32)
        self.patch, self.margin, self.name = patch, margin, name
        pad = ((margin, margin), (margin, margin), (0, 0))
        self.image = np.pad(image.astype(np.float32), pad, constant_values=float(image.min()))
        self.labels = [np.pad(lab.astype(np.int16), pad, constant_values=0) for lab in labels]
        lo = (patch[0] // 2, patch[1] // 2)
        hi = (int(self.shape[0]) - (patch[0] - 1) // 2, int(self.shape[1]) - (patch[1] - 1) // 2)
        if hi[0] <= lo[0] or hi[1] <= lo[1]:
            raise ValueError(f"subject {name}: patch {patch} larger than its slices {tuple(self.shape[:2])}")
        self.lo = lo
        self.region = (hi[0] - lo[0], hi[1] - lo[1], int(self.shape[2]))
        self.cdfs = [self._cdf(lab[lo[0] : hi[0], lo[1] : hi[1], :], probabilities) for lab in labels]

    @staticmethod
    def _cdf(region: np.ndarray, probabilities: dict[int, float]) -> np.ndarray:
        """torchio's LabelSampler map: each class's probability spread evenly over its voxels."""
        weights = np.zeros(region.shape, dtype=np.float64)
        total = sum(probabilities.values())
        for value, prob in probabilities.items():
            mask = region == value
            count = int(mask.sum())
            if count:
                weights[mask] = prob / total / count
        if weights.sum() <= 0:
            raise ValueError("no voxel of a sampled class where a patch fits")
        return np.cumsum(weights.ravel())

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` rows (variant, x, y, z): slice centres in volume voxels."""
        variants = rng.integers(len(self.labels), size=n) if len(self.labels) > 1 else np.zeros(n, np.int64)
        out = np.empty((n, 4), dtype=np.int64)
        out[:, 0] = variants
        for v in np.unique(variants):
            rows = np.flatnonzero(variants == v)
            cdf = self.cdfs[int(v)]
            u = np.maximum(rng.random(rows.size), _MIN_U) * cdf[-1]
            flat = np.minimum(np.searchsorted(cdf, u), cdf.size - 1)
            i, j, k = np.unravel_index(flat, self.region)
            out[rows, 1], out[rows, 2], out[rows, 3] = i + self.lo[0], j + self.lo[1], k
        return out


def rank_subjects(n: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[int]:
    """This rank's training subjects for ``epoch`` (:func:`data_modules.sharding.train_subject_sampler`)."""
    sampler = train_subject_sampler(range(n), rank, world, seed)
    sampler.set_epoch(epoch)
    return list(sampler)


class FastSliceDataset(IterableDataset):
    """Yields ready batches of windows for one epoch (``epoch`` is set by :class:`EpochLoader`)."""

    def __init__(
        self,
        sources: Sequence[SliceSource],
        samples_per_volume: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        subject_seed: int = 0,
    ):
        self.sources = list(sources)
        self.spv, self.batch_size = int(samples_per_volume), int(batch_size)
        self.seed, self.rank, self.world = int(seed), int(rank), int(world)
        self.subject_seed = int(subject_seed)  # must be the same on every rank (the shards must not overlap)
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(math.ceil(len(self.sources) / self.world) * self.spv / self.batch_size)

    def plan(self, epoch: int) -> list[np.ndarray]:
        """The epoch's batches: rows (subject, variant, x, y, z)."""
        rng = np.random.default_rng([self.seed, epoch, self.rank])
        rows = []
        for s in rank_subjects(len(self.sources), self.subject_seed, epoch, self.rank, self.world):
            drawn = self.sources[s].draw(rng, self.spv)
            rows.append(np.concatenate([np.full((self.spv, 1), s, dtype=np.int64), drawn], axis=1))
        table = np.concatenate(rows)[rng.permutation(len(rows) * self.spv)]
        return [table[i : i + self.batch_size] for i in range(0, len(table), self.batch_size)]

    def make_batch(self, rows: np.ndarray) -> dict[str, Any]:
        """Stack the windows of ``rows``; ``fast2d`` tells the augmentation where each one lies."""
        src0 = self.sources[int(rows[0, 0])]
        w0, w1 = src0.patch[0] + 2 * src0.margin, src0.patch[1] + 2 * src0.margin
        b = len(rows)
        image = np.empty((b, 1, w0, w1), dtype=np.float32)
        label = np.empty((b, 1, w0, w1), dtype=np.int16)
        origin = np.empty((b, 2), dtype=np.int64)
        shape = np.empty((b, 3), dtype=np.int64)
        spacing = np.empty((b, 2), dtype=np.float32)
        for n, (s, v, x, y, z) in enumerate(rows):
            src = self.sources[int(s)]
            x0, y0 = int(x) - src.patch[0] // 2, int(y) - src.patch[1] // 2  # patch origin (volume voxels)
            image[n, 0] = src.image[x0 : x0 + w0, y0 : y0 + w1, z]  # padded arrays: window origin is x0 - margin
            label[n, 0] = src.labels[int(v)][x0 : x0 + w0, y0 : y0 + w1, z]
            origin[n] = (x0 - src.margin, y0 - src.margin)
            shape[n], spacing[n] = src.shape, src.spacing
        return {
            "image": {"data": torch.from_numpy(image)},
            "label": {"data": torch.from_numpy(label)},
            "subject_id": [self.sources[int(s)].name for s in rows[:, 0]],
            "fast2d": {
                "origin": torch.from_numpy(origin),
                "z": torch.from_numpy(rows[:, 4].copy()),
                "shape": torch.from_numpy(shape),
                "spacing": torch.from_numpy(spacing),
            },
        }

    def __iter__(self):
        info = get_worker_info()
        for b, rows in enumerate(self.plan(self.epoch)):
            if info is None or b % info.num_workers == info.id:
                yield self.make_batch(rows)


class EpochLoader(DataLoader):
    """A ``DataLoader`` that tells its dataset the epoch (the trainer's, when known) before each pass."""

    def __init__(self, dataset: FastSliceDataset, epoch_fn: Callable[[], int | None] | None = None, **kwargs: Any):
        super().__init__(dataset, batch_size=None, **kwargs)
        self._epoch_fn = epoch_fn
        self._passes = 0

    def __iter__(self):
        epoch = self._epoch_fn() if self._epoch_fn is not None else None
        self.dataset.epoch = self._passes if epoch is None else int(epoch)
        self._passes += 1
        return super().__iter__()


def build_sources(
    subjects: Sequence[Any], patch: tuple[int, int], margin: int, probabilities: dict[int, float]
) -> list[SliceSource]:
    """:class:`SliceSource` of each preprocessed ``tio.Subject`` (raters ``rater<N>`` as variants)."""
    out = []
    for subj in subjects:
        raters = sorted(n for n in subj.get_images_names() if n.startswith("rater"))
        labels = [subj[n].data[0].numpy() for n in (raters or ["label"])]
        out.append(
            SliceSource(
                subj["image"].data[0].numpy(),
                labels,
                subj["image"].spacing,
                patch,
                margin,
                probabilities,
                str(subj.get("subject_id", "")),
            )
        )
    return out


def train_loader(dm: Any) -> EpochLoader:
    """The fast training loader of a 2D data module; sets ``dm.batch_augment`` for the device side."""
    cfg = dm.cfg
    patch = (int(dm.patch_size[0]), int(dm.patch_size[1]))
    subjects = dm.subjects["train"]
    min_spacing = min(float(min(s["image"].spacing[:2])) for s in subjects)
    margin = window_margin(patch, cfg["augment"], min_spacing)
    sources = build_sources(subjects, patch, margin, dm.label_probabilities())
    trainer = getattr(dm, "trainer", None)
    rank, world = shard_info(trainer)
    ds = FastSliceDataset(
        sources,
        cfg["samples_per_volume"],
        cfg["batch_size"],
        torch.initial_seed() % 2**31,
        rank,
        world,
        subject_seed=int(cfg["split"].get("seed") or 0),
    )
    dm.batch_augment = BatchAugment(cfg["augment"], patch, dm.num_classes)
    workers = int(cfg["num_workers"])
    epoch_fn = (lambda: int(dm.trainer.current_epoch)) if trainer is not None else None
    return EpochLoader(
        ds, epoch_fn=epoch_fn, num_workers=workers, pin_memory=torch.cuda.is_available(), persistent_workers=False
    )


def after_transfer(augment: BatchAugment | None, batch: Any) -> Any:
    """Augment a fast-path training batch on its device; other batches pass through unchanged."""
    if augment is None or not isinstance(batch, dict) or "fast2d" not in batch:
        return batch
    image, label = augment(batch["image"]["data"], batch["label"]["data"], batch["fast2d"])
    return {
        "image": {"data": image[..., None]},
        "label": {"data": label[..., None]},
        "subject_id": batch.get("subject_id"),
    }
