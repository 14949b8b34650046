"""Which subjects each DDP rank trains on and evaluates (one owner for every data pipeline).

Lightning is told not to wrap the loaders (``use_distributed_sampler=False``, set by
``runs.runner.build_trainer``): the data modules shard subjects themselves, with these
helpers, so a pipeline (the torchio queue of :mod:`data_modules.base`, a cached-slice pipeline)
only asks for its rank's share:

* **training** — :func:`train_subject_sampler`: a ``DistributedSampler`` over the training
  subjects (shuffled with ``seed + epoch``, identical on every rank, padded by repeats so every
  rank gets ``ceil(N / W)`` subjects). Every rank therefore draws ``ceil(N / W) *
  samples_per_volume`` patches per epoch and runs the same number of steps (ranks stay in
  step), and within an epoch no two ranks draw from the same subject unless ``N`` is not a
  multiple of ``W`` (then the padding repeats ``W * ceil(N / W) - N`` subjects). Lightning calls
  ``set_epoch`` on the loader's sampler each epoch; :class:`QueueEpochSampler` forwards it to the
  subject sampler inside a ``tio.Queue``.
* **validation / test** — :func:`eval_indices`: rank ``r`` gets items ``r, r + W, …`` padded to
  ``ceil(N / W)`` (``DistributedSampler(shuffle=False)`` order), and
  :func:`core.distributed.gather_records` restores the full, single-process list.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized
from typing import Any

from torch.utils.data import DistributedSampler, Sampler


def shard_info(trainer: Any = None) -> tuple[int, int]:
    """``(rank, world size)`` of the attached Trainer, else of the process group / launcher."""
    if trainer is not None:
        try:
            return int(trainer.global_rank), int(trainer.world_size)
        except (AttributeError, RuntimeError):  # a data module used without a Trainer
            pass
    from core.distributed import rank_and_world

    return rank_and_world()


def train_subject_sampler(dataset: Sized, rank: int, world: int, seed: int = 0) -> DistributedSampler:
    """Shuffled, rank-disjoint subject indices for training (see module docstring)."""
    return DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=int(seed), drop_last=False)


def train_shards(n_subjects: int, world: int, seed: int = 0, epoch: int = 0) -> list[list[int]]:
    """The training subject indices of every rank for one epoch (what :func:`train_subject_sampler` yields)."""
    out = []
    for rank in range(world):
        s = train_subject_sampler(range(n_subjects), rank, world, seed)
        s.set_epoch(epoch)
        out.append(list(s))
    return out


def eval_indices(n: int, rank: int, world: int) -> list[int]:
    """Rank ``rank``'s evaluation items, padded by repeats to ``ceil(n / world)`` (never empty if ``n``)."""
    if world <= 1:
        return list(range(n))
    if n == 0:
        return []
    per = math.ceil(n / world)
    padded = [i % n for i in range(per * world)]
    return padded[rank::world]


def real_items(n: int, rank: int, world: int) -> int:
    """How many of rank ``rank``'s :func:`eval_indices` are its own subjects (the rest, at the end, are padding)."""
    return n if world <= 1 else len(range(rank, n, world))


def eval_dataset(dataset: Any, n: int, rank: int, world: int) -> Any:
    """Mark an evaluation shard with its number of real items (read by :func:`is_padding`)."""
    dataset.shard_real_items = real_items(n, rank, world)
    return dataset


def is_padding(dataloader: Any, batch_idx: int) -> bool:
    """Whether evaluation batch ``batch_idx`` (batch size 1) repeats a subject another rank scores:
    a writer of per-subject files skips it, so every file has one writer."""
    if isinstance(dataloader, (list, tuple)):  # Lightning gives a list when there are several loaders
        dataloader = dataloader[0] if dataloader else None
    real = getattr(getattr(dataloader, "dataset", None), "shard_real_items", None)
    return real is not None and batch_idx >= real


class QueueEpochSampler(Sampler[int]):
    """Sequential sampler over a ``tio.Queue`` whose ``set_epoch`` reaches the queue's subject sampler."""

    def __init__(self, queue: Any):
        self.queue = queue

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.queue)))

    def __len__(self) -> int:
        return len(self.queue)

    def set_epoch(self, epoch: int) -> None:
        sampler = getattr(self.queue, "subject_sampler", None)
        if sampler is not None and hasattr(sampler, "set_epoch"):
            sampler.set_epoch(int(epoch))
