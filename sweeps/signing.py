"""Signed sweep state: Ray Tune's pickles in a sweep folder are trusted on resume only when this
user's installation wrote them.

Ray Tune resumes a sweep by unpickling files of the sweep folder (``tuner.pkl``, the cloudpickled
objects inside ``experiment_state-*.json``, the searcher's state ``search_gen_state-*.json`` /
``searcher-state-*.pkl``, cordbench's ``searcher/searcher.pkl``, a failed trial's
``tune_*/error.pkl``), and unpickling runs whatever code the file names. A sweep folder copied from a
colleague or a bucket could therefore run anything on ``cordbench sweep --resume``.

So the driver records, as each such *state file* is written, an HMAC-SHA256 of its path and content
in ``<sweep>/signatures.json`` (the last :data:`KEEP` versions per path: Ray syncs its snapshots to
the sweep folder in the background, so the folder may hold a slightly older one). The HMAC key is a
per-user secret kept outside every sweep folder (:func:`key_path`: ``$XDG_CONFIG_HOME/cordbench/``,
default ``~/.config/cordbench/``, created with mode 0600). ``resume`` checks every state file of the
folder against the record before Ray reads anything (:func:`verify`) and refuses, naming the file,
when one was not written by this user's installation or has changed since (damaged or replaced).
The record itself needs no protection: an entry cannot be made without the key.

Where Ray writes: its experiment snapshot (experiment state, searcher state, failed trials'
``error.pkl``) goes to a local *driver staging* folder and is then synced to the sweep folder;
:class:`~sweeps.sweep_callback.SweepCallback` signs the staging folder's state files while Ray
saves (Tune asks the callback for its state right after writing the snapshot, before the sync),
``tuner.pkl`` is signed once the Tuner has written it, ``searcher/searcher.pkl`` when saved.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from pathlib import Path

from core.errors import ConfigError
from sweeps import storage
from sweeps.config import is_uri
from sweeps.records import SEARCHER_DIR, SIGNATURES_FILE, TUNER_FILE

KEY_FILE = "sweep-signing.key"
#: versions of one state file whose signatures are kept
KEEP = 32
#: top-level files Ray reads with pickle (besides these patterns: any top-level ``.pkl``)
_TOP_PATTERNS = (TUNER_FILE, "experiment_state-", "search_gen_state-", "basic-variant-state-", "callback-states-")


def is_state_file(rel: str) -> bool:
    """Whether a path of the sweep folder (relative, ``/``-separated) is a file Ray or cordbench
    unpickles on resume."""
    parts = rel.split("/")
    name = parts[-1]
    if storage.is_partial(name):
        return False
    if len(parts) == 1:
        return name != SIGNATURES_FILE and (name.endswith(".pkl") or name.startswith(_TOP_PATTERNS))
    if len(parts) == 2 and parts[0] == SEARCHER_DIR:
        return name.endswith(".pkl")
    return len(parts) == 2 and parts[0].startswith("tune_") and name == "error.pkl"


def key_path() -> Path:
    """The per-user signing key: ``$XDG_CONFIG_HOME/cordbench/sweep-signing.key`` (``~/.config`` by default)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "cordbench" / KEY_FILE


def load_key(create: bool) -> bytes | None:
    """The key's bytes; created (0600, in a 0700 folder) when ``create`` and absent, else None when absent.

    A key other users can read or write signs nothing: refused with one line naming it."""
    path = key_path()
    if not path.exists():
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another driver created it meanwhile
            return load_key(create=False)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"the sweep signing key is open to other users (mode {mode:04o}): anyone who can read it can make "
            "a sweep folder run code on resume; make it private (chmod 600) or delete it (a new one is made)",
            path,
        )
    data = path.read_bytes()
    if len(data) < 16:
        raise ConfigError(f"the sweep signing key holds {len(data)} bytes, too few to be a key; delete it", path)
    return data


def signature(key: bytes, rel: str, data: bytes) -> str:
    """HMAC-SHA256 of a state file's relative path and content."""
    return hmac.new(key, rel.encode() + b"\0" + data, hashlib.sha256).hexdigest()


def read_record(sweep_dir: str) -> dict[str, list[str]]:
    """``{relative path: [signatures]}`` of ``<sweep>/signatures.json`` (empty when absent or unreadable)."""
    text = storage.read_text_or_none(storage.join(sweep_dir, SIGNATURES_FILE))
    try:
        files = json.loads(text or "{}").get("files", {})
    except (json.JSONDecodeError, AttributeError):
        return {}
    return {str(k): [str(s) for s in v] for k, v in files.items() if isinstance(v, list)}


class Signer:
    """Signs state files of one sweep folder; keeps ``signatures.json`` up to date."""

    def __init__(self, sweep_dir: str):
        self.sweep_dir = sweep_dir
        self.key = load_key(create=True)
        self.record = read_record(sweep_dir)
        self._seen: dict[str, tuple[int, int]] = {}

    def add(self, rel: str, data: bytes) -> bool:
        """Record the signature of ``data`` as a version of ``rel``; True if it is new."""
        sig = signature(self.key, rel, data)
        versions = self.record.setdefault(rel, [])
        if sig in versions:
            return False
        versions.append(sig)
        del versions[:-KEEP]
        return True

    def save(self) -> None:
        """Write ``signatures.json`` (atomically, or write-then-rename on an object store)."""
        text = json.dumps({"version": 1, "files": self.record}, indent=1, sort_keys=True)
        path = storage.join(self.sweep_dir, SIGNATURES_FILE)
        if is_uri(self.sweep_dir):
            storage.write_text(path, text)
        else:
            from core import io

            io.write_text(path, text)

    def sign(self, rel: str, data: bytes) -> None:
        """Sign one state file's content and save the record."""
        if self.add(rel, data):
            self.save()

    def sign_stored(self, rel: str) -> None:
        """Sign a state file as it now is in the sweep folder (e.g. ``tuner.pkl`` after the Tuner wrote it)."""
        self.sign(rel, storage.read_bytes(storage.join(self.sweep_dir, rel)))

    def sign_folder(self, folder: str | Path) -> None:
        """Sign every state file below a local folder laid out like the sweep folder (Ray's driver
        staging folder) that is new or changed since the last call; save the record once."""
        root = Path(folder)
        if not root.is_dir():
            return
        changed = False
        for p in root.rglob("*"):
            rel = p.relative_to(root).as_posix()
            if not is_state_file(rel) or not p.is_file():
                continue
            st = p.stat()
            if self._seen.get(rel) == (st.st_mtime_ns, st.st_size):
                continue
            self._seen[rel] = (st.st_mtime_ns, st.st_size)
            changed |= self.add(rel, p.read_bytes())
        if changed:
            self.save()


def verify(sweep_dir: str) -> None:
    """Refuse (one line naming the file) to resume a sweep folder holding a state file that this
    user's installation did not write, or that changed since: Ray would unpickle it."""
    # tuner.pkl first: Ray reads it first
    files = sorted(
        (rel for rel in storage.list_files(sweep_dir) if is_state_file(rel)), key=lambda r: (r != TUNER_FILE, r)
    )
    if not files:
        return
    key = load_key(create=False)
    record = read_record(sweep_dir) if key is not None else {}
    for rel in files:
        path = storage.join(sweep_dir, rel)
        if key is not None and signature(key, rel, storage.read_bytes(path)) in record.get(rel, ()):
            continue
        why = (
            "changed since cordbench wrote it (damaged or replaced)"
            if record.get(rel)
            else f"not written by cordbench for this user ({key_path()} signs none of it; a sweep folder from "
            "elsewhere or of an older cordbench)"
        )
        raise ConfigError(
            f"{why}: Ray would unpickle it on resume and a pickle can run any code, so it is not read; "
            "start the sweep again (--overwrite) or resume it where it was written",
            path,
        )
