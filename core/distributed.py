"""Distributed (DDP) bookkeeping shared by the runner, the module and the data modules.

Contract (see docs/sweeps.md, "Several processes per run"):

* **Which process am I** — :func:`rank_and_world` reads ``torch.distributed`` once a process group
  exists, else the launcher's environment (Lightning's ``LOCAL_RANK`` / ``NODE_RANK`` /
  ``WORLD_SIZE``, torchrun's and Ray Train's ``RANK``, SLURM's ``SLURM_PROCID``), so a child process
  knows it is not rank 0 before the Trainer exists.
* **One writer** — only global rank 0 writes the run folder (:func:`is_global_zero`); the one
  exception is ``failure.json``, written by whichever rank failed first (:func:`write_first`), since
  Lightning kills the other processes the moment one fails.
* **Every subject scored once** — validation and test loaders give each rank an equal share of
  the subjects (``DistributedSampler(shuffle=False)`` order, padded by repeating the first
  subjects so every rank runs as many steps); :func:`gather_records` collects the per-subject
  records of all ranks, restores the single-process order and drops the padding repeats
  (records are keyed by subject id, unique within a split).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RANK_VARS = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")


def _dist():
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch without distributed
        return None
    return dist if dist.is_available() and dist.is_initialized() else None


def rank_and_world() -> tuple[int, int]:
    """``(global rank, world size)``: the process group if there is one, else the launcher's environment."""
    dist = _dist()
    if dist is not None:
        return int(dist.get_rank()), int(dist.get_world_size())
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").strip().isdigit():
            return int(os.environ[var]), world
    local = os.environ.get("LOCAL_RANK", "").strip()
    if local.isdigit() and os.environ.get("NODE_RANK", "0").strip() in ("", "0"):
        return int(local), world  # Lightning's launcher on one node (child processes get LOCAL_RANK)
    return (0 if is_global_zero() else 1), world  # another node before the process group: "not 0"


def is_global_zero() -> bool:
    """False in every DDP process but global rank 0 (process group first, then launcher variables)."""
    dist = _dist()
    if dist is not None:
        return int(dist.get_rank()) == 0
    for var in RANK_VARS:
        value = os.environ.get(var)
        if value not in (None, "") and value.strip() != "0":
            return False
    return True


def merge_shards(shards: Sequence[Sequence[dict[str, Any]]], key: str = "subject") -> list[dict[str, Any]]:
    """Records of all ranks in single-process order, each ``key`` once.

    ``shards[r]`` holds rank ``r``'s records in its loader order; rank ``r`` was given items
    ``r, r + W, r + 2W, …`` of the split (W ranks), padded at the end by repeats, so reading the
    shards column by column restores the split order and the first occurrence of a key is kept.
    """
    out: list[dict[str, Any]] = []
    seen: set[Any] = set()
    for i in range(max((len(s) for s in shards), default=0)):
        for shard in shards:
            if i < len(shard) and shard[i][key] not in seen:
                seen.add(shard[i][key])
                out.append(shard[i])
    return out


def gather_records(records: list[dict[str, Any]], key: str = "subject") -> list[dict[str, Any]]:
    """Every rank's per-subject records on every rank (see :func:`merge_shards`); a no-op in one process.

    A collective call: every rank must call it the same number of times.
    """
    dist = _dist()
    if dist is None or dist.get_world_size() == 1:
        return merge_shards([records], key)
    shards: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(shards, list(records))
    return merge_shards(shards, key)


def write_first(path: str | Path, text: str) -> bool:
    """Create ``path`` with ``text`` atomically unless it already exists (the first writer wins).

    Used for ``failure.json`` under DDP: a rank that fails writes its reason; a rank that fails
    only because a peer died (a broken collective) must not replace it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)  # fails if the file exists: never a half-written or replaced record
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
