"""On-disk cache of preprocessed subjects: the deterministic chain runs once per subject, ever.

A data module's :meth:`~data_modules.base.SegmentationDataModule.load_subject` (reading, checking,
label fusion, RAS reorientation, resampling, crop/pad, z-score) is the one owner of preprocessing;
this module only stores its result. Every image of the returned ``tio.Subject`` is written as one
``.npy`` array with its affine, and the subject's plain attributes go to ``meta.json``. A sweep of
100 trials, every DDP rank and every resumed trial then read arrays instead of redoing the chain.

**Key.** One entry per subject and settings: SHA-256 over the cache format version, the
preprocessing settings (:func:`settings_of`: the run's preprocessing contract of
:mod:`data_modules.preprocessing`, the train/eval stage, data module class, contrast, rater
fusion), the subject id and metadata, and the BLAKE2b
digest of the *contents* of every input file (image and labels). A changed file or setting
therefore yields another key (a new entry); stale entries are never read.

**Integrity.** ``meta.json`` records each array's shape, dtype and SHA-256. An entry that fails to
load or to match is deleted and rebuilt from the files — never trusted. Entries are written into
a temporary folder renamed into place, so concurrent writers (DDP ranks, parallel trials) never
expose a half-written entry.

Location: ``data.cache_dir``, else ``$CORDBENCH_CACHE``, else ``$XDG_CACHE_HOME/cordbench/preprocessed``
(``~/.cache/cordbench/preprocessed``) — an absolute folder, so sweep trials (which Ray starts in
their own working directories) and DDP ranks on a node share it. ``data.cache: false`` turns the
cache off (preprocessing in memory, as before).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchio as tio

#: Bump when the entry layout or the meaning of a cached array changes.
CACHE_VERSION = 1
_LOG = logging.getLogger(__name__)
_CHUNK = 1 << 20


def cache_root(cfg: dict[str, Any]) -> Path | None:
    """The cache folder of a ``data`` config section, or None when ``data.cache`` is false."""
    if cfg.get("cache") is False:
        return None
    if cfg.get("cache_dir"):
        return Path(cfg["cache_dir"]).expanduser().resolve()
    if os.environ.get("CORDBENCH_CACHE"):
        return Path(os.environ["CORDBENCH_CACHE"]).expanduser().resolve()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base.expanduser().resolve() / "cordbench" / "preprocessed"


def file_digest(path: str | Path) -> str:
    """BLAKE2b of a file's bytes (its content, not its name or time stamp)."""
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def input_files(spec: Any) -> list[tuple[str, Path]]:
    """(role, path) of every file a subject is built from: the image, then each label file.

    ``spec.labels`` values may be paths, lists of them or mappings (e.g. GM-challenge raters).
    """
    files = [("image", Path(spec.image))]

    def walk(role: str, value: Any) -> None:
        if isinstance(value, (str, os.PathLike)):
            files.append((role, Path(value)))
        elif isinstance(value, dict):
            for k in sorted(value):
                walk(f"{role}.{k}", value[k])
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{role}[{i}]", v)

    for role in sorted(spec.labels):
        walk(role, spec.labels[role])
    return files


def settings_of(dm: Any, stage: str = "eval") -> dict[str, Any]:
    """The settings that change a data module's preprocessed subject (part of every key).

    The run's preprocessing contract (``dm.preprocessing``, :mod:`data_modules.preprocessing`: task
    and classes, orientation, spacing, crop and its train/eval rule, normalisation, minimum shape,
    preset), the chain's stage (train subjects are cropped around the label, others not), and what
    else shapes the subject: the data module class, contrast and rater fusion.
    """
    cls = type(dm)
    return {
        "datamodule": f"{cls.__module__}.{cls.__qualname__}",
        "preprocessing": dm.preprocessing.to_dict(),
        "stage": stage,
        "contrast": dm.contrast,
        "raters": dm.cfg.get("raters"),
    }


def subject_key(settings: dict[str, Any], spec: Any) -> str:
    """The entry key of one subject under ``settings`` (see module docstring)."""
    meta = {k: v for k, v in sorted(spec.meta.items()) if isinstance(v, (str, int, float))}
    payload = {
        "version": CACHE_VERSION,
        "settings": settings,
        "subject": spec.subject,
        "meta": meta,
        "files": [(role, str(p), file_digest(p)) for role, p in input_files(spec)],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _array_sha(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


class SubjectCache:
    """Entries ``<root>/<key[:2]>/<key>/`` holding ``meta.json`` and one ``<image name>.npy`` each."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def entry(self, key: str) -> Path:
        return self.root / key[:2] / key

    def load(self, key: str) -> tio.Subject | None:
        """The cached subject, or None when absent; a corrupt entry is deleted (and None returned)."""
        folder = self.entry(key)
        if not folder.is_dir():
            return None
        try:
            meta = json.loads((folder / "meta.json").read_text())
            if meta.get("version") != CACHE_VERSION or meta.get("key") != key:
                raise ValueError("version or key mismatch")
            images: dict[str, tio.Image] = {}
            for name, rec in meta["images"].items():
                arr = np.load(folder / f"{name}.npy", allow_pickle=False)
                if (
                    list(arr.shape) != rec["shape"]
                    or str(arr.dtype) != rec["dtype"]
                    or _array_sha(arr) != rec["sha256"]
                ):
                    raise ValueError(f"array {name} does not match its record")
                kind = tio.LabelMap if rec["type"] == "label" else tio.ScalarImage
                images[name] = kind(tensor=torch.from_numpy(arr), affine=np.asarray(rec["affine"], dtype=np.float64))
            return tio.Subject(**images, **meta["attrs"])
        except Exception as exc:  # any damage: never trust the entry
            _LOG.warning("preprocessing cache entry %s is corrupt (%s): rebuilding it", folder, exc)
            shutil.rmtree(folder, ignore_errors=True)
            return None

    def store(self, key: str, subject: tio.Subject) -> Path:
        """Write ``subject`` atomically (temporary folder renamed into place); first writer wins."""
        folder = self.entry(key)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.parent / f".{key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            images = {}
            for name in subject.get_images_names():
                img = subject[name]
                arr = img.data.numpy()
                np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
                images[name] = {
                    "type": "label" if isinstance(img, tio.LabelMap) else "scalar",
                    "shape": list(arr.shape),
                    "dtype": str(arr.dtype),
                    "sha256": _array_sha(arr),
                    "affine": np.asarray(img.affine, dtype=float).tolist(),
                }
            attrs = {
                k: v
                for k, v in subject.items()
                if not isinstance(v, tio.Image) and isinstance(v, (str, int, float, bool, type(None)))
            }
            (tmp / "meta.json").write_text(
                json.dumps({"version": CACHE_VERSION, "key": key, "images": images, "attrs": attrs}, indent=1)
            )
            try:
                os.rename(tmp, folder)
            except OSError:  # another process stored it first (or a stale folder is in the way)
                if self.load(key) is None:
                    shutil.rmtree(folder, ignore_errors=True)
                    os.rename(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder

    def get_or_build(self, key: str, build: Callable[[], tio.Subject]) -> tio.Subject:
        """The cached subject, else ``build()`` stored then returned (as read back from the arrays)."""
        cached = self.load(key)
        if cached is not None:
            return cached
        subject = build()
        try:
            self.store(key, subject)
        except OSError as exc:  # a read-only or full disk must not stop training
            _LOG.warning("could not write the preprocessing cache under %s (%s)", self.root, exc)
        return subject


def load_subjects(dm: Any, specs: Iterable[Any], stage: str = "eval") -> list[tio.Subject]:
    """``dm.load_subject(spec, stage)`` for each spec, through the cache of ``dm.cfg`` (when enabled).

    Runs with torch's CPU generator forked and restored: torchio draws from it even for
    deterministic transforms, so without this a run that builds the cache and one that reads it
    would start training from different random states (same seed, different metrics).
    """
    root = cache_root(dm.cfg)
    with torch.random.fork_rng(devices=[]):
        if root is None:
            return [dm.load_subject(s, stage) for s in specs]
        cache = SubjectCache(root)
        settings = settings_of(dm, stage)
        return [cache.get_or_build(subject_key(settings, s), lambda s=s: dm.load_subject(s, stage)) for s in specs]
