"""A trial's run folder on URI storage (``s3://…``): trained in a local staging folder, kept in the bucket.

With a URI storage no node has the sweep folder on disk. A trial trains into a local
staging folder (:func:`staging_dir`) and :class:`RemoteRunFolder` keeps the bucket's copy
``<sweep>/trials/<trial_id>/`` up to date:

* :meth:`RemoteRunFolder.pull` — when an attempt starts: the staging folder is replaced by the
  bucket's copy (metrics of earlier epochs, ``.attempts``, best/last checkpoints, …). A trial
  restored on another node after a node loss therefore continues from what the bucket holds,
  never from files some node happens to have (on one machine all "nodes" share /tmp);
* :meth:`RemoteRunFolder.push` — before every epoch report: the files that changed since the
  last push (each one write-then-rename, :func:`sweeps.storage.upload_file`);
* :meth:`RemoteRunFolder.finish` — at the end: the remaining files, then ``trial.json`` last
  (the folder's completion marker), then the staging folder is deleted.

The Tune checkpoint the trial restarts from is Ray's own (``<sweep>/tune_<id>/checkpoint_*``
in the bucket, read through ``tune.get_checkpoint()``).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sweeps import storage
from sweeps.records import RESUME_DIR, TRIAL_RECORD, TRIALS_DIR, parse_trial_record

#: Not mirrored between the bucket and the staging folder (Tune's checkpoint copy of an attempt).
LOCAL_ONLY = (f"{RESUME_DIR}/",)


def staging_dir(sweep_uri: str, trial_id: str) -> Path:
    """Local staging folder of a trial of the sweep at ``sweep_uri`` (the same on every node)."""
    name = sweep_uri.rstrip("/").rsplit("/", 1)[-1]
    key = hashlib.sha1(sweep_uri.rstrip("/").encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir(), "cordbench-trials", f"{name}-{key}", trial_id)


def _local_only(rel: str) -> bool:
    return rel.startswith(LOCAL_ONLY)


class RemoteRunFolder:
    """The bucket copy ``<sweep>/trials/<id>`` of a trial's run folder and its local staging folder."""

    def __init__(self, sweep_uri: str, trial_id: str, done_file: str = TRIAL_RECORD):
        self.uri = storage.join(sweep_uri, TRIALS_DIR, trial_id)
        self.local = staging_dir(sweep_uri, trial_id)
        self.done_file = done_file
        self._sent: dict[str, tuple[int, int]] = {}

    def _state(self, rel: str) -> tuple[int, int]:
        st = (self.local / rel).stat()
        return st.st_size, st.st_mtime_ns

    def finished_record(self) -> dict[str, Any] | None:
        """The bucket's ``trial.json`` (the trial finished and its folder is complete), else None."""
        return parse_trial_record(storage.read_text_or_none(storage.join(self.uri, self.done_file)))

    def pull(self) -> list[str]:
        """Replace the staging folder by the bucket's copy (nothing there: an empty folder)."""
        if self.local.exists():
            shutil.rmtree(self.local)
        self.local.mkdir(parents=True)
        rels = storage.download_dir(self.uri, self.local, keep=lambda r: not _local_only(r))
        self._sent = {r: self._state(r) for r in rels}
        return rels

    def changed(self) -> list[str]:
        """Staging files new or changed since the last pull/push (``trial.json`` excluded)."""
        out = []
        for rel in storage.list_files(str(self.local)):
            if rel == self.done_file or _local_only(rel):
                continue
            if self._sent.get(rel) != self._state(rel):
                out.append(rel)
        return out

    def push(self) -> list[str]:
        """Upload the changed files; returns their relative paths."""
        rels = self.changed()
        for rel in rels:
            state = self._state(rel)
            storage.upload_file(self.local / rel, storage.join(self.uri, rel))
            self._sent[rel] = state
        return rels

    def finish(self) -> None:
        """Upload what changed, then the completion marker ``trial.json``."""
        self.push()
        storage.upload_file(self.local / self.done_file, storage.join(self.uri, self.done_file))

    def remove_local(self) -> None:
        """Delete the staging folder (the bucket holds the run folder now)."""
        shutil.rmtree(self.local, ignore_errors=True)
