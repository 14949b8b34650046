"""Where a sweep lives: a local folder or a URI (``s3://``, ``gs://``, … through ``pyarrow.fs``).

Local paths are used directly (atomic writes through :mod:`core.io`); URIs go through
the same ``pyarrow`` filesystem layer Ray Tune uses for its own storage, so the settings a
user gives Ray (``AWS_ENDPOINT_URL`` for MinIO/Ceph/moto, ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``GOOGLE_APPLICATION_CREDENTIALS``, or
query options such as ``s3://bucket/x?endpoint_override=…``) reach both.

Object stores have no rename, and ``pyarrow``'s output stream *completes* an upload when it
is closed, also after an exception: a failed write would leave a half-written object that
looks whole. Every write here therefore goes to a hidden temporary object
(``.<name>.<hex>.part``) that is moved onto its name only once fully written (write, then
rename); folder uploads write their completion marker (``last=``) after everything else.
Readers skip the temporary objects (:func:`is_partial`).

Problems reaching the storage raise :class:`StorageError`: one line naming the URI and the
problem (endpoint unreachable, access denied / bad credentials, no such bucket).
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from core import io
from core.errors import CordbenchError
from sweeps.config import is_uri

CHUNK = 8 << 20
_PARTIAL = re.compile(r"^\..+\.[A-Za-z0-9_]{6,32}\.part[^/]*$")
PROBE = ".cordbench-write-check"


class StorageError(CordbenchError):
    """The sweep storage (a URI) cannot be read or written: network, credentials, bucket."""


def join(base: str, *parts: str) -> str:
    """Join path parts for a local folder or a URI."""
    if is_uri(base):
        return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts if p.strip("/")]])
    return str(Path(base, *parts))


def is_partial(name: str) -> bool:
    """A temporary object/file of an unfinished write (this module's or :mod:`core.io`'s)."""
    return bool(_PARTIAL.match(Path(name).name))


# --------------------------------------------------------------------------------- errors
def problem(exc: BaseException) -> str:
    """One-line description of a ``pyarrow`` filesystem error."""
    text = " ".join(str(exc).split())
    m = re.search(r"AWS Error ([A-Z_]+) during (\w+) operation: ?(.*?)(?: \(Request ID:.*)?$", text)
    code, detail = (m.group(1), m.group(3)) if m else ("", text)
    detail = re.sub(r";? ?Details: ", " - ", detail).strip(" .")
    if code == "NETWORK_CONNECTION" or "Could not connect" in text or "Couldn't connect" in text:
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3") or "the default"
        return f"cannot reach the storage endpoint ({endpoint}; AWS_ENDPOINT_URL): {detail}"
    if (
        code
        in (
            "ACCESS_DENIED",
            "INVALID_ACCESS_KEY_ID",
            "SIGNATURE_DOES_NOT_MATCH",
            "EXPIRED_TOKEN",
            "INVALID_TOKEN",
            "MISSING_AUTHENTICATION_TOKEN",
            "UNRECOGNIZED_CLIENT",
        )
        or "403" in code
    ):
        return (
            f"access denied ({code.lower()}: {detail or 'no detail'}): check the credentials "
            "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the node's role) and the bucket policy"
        )
    if code == "NO_SUCH_BUCKET":
        return f"the bucket does not exist ({detail})"
    if code:
        return f"{code.lower()}: {detail}"
    return detail


@contextlib.contextmanager
def translated(uri: str, action: str) -> Iterator[None]:
    """Turn ``pyarrow`` OS errors (not a missing file) into a one-line :class:`StorageError`."""
    try:
        yield
    except (FileNotFoundError, StorageError):
        raise
    except OSError as exc:
        raise StorageError(f"cannot {action}: {problem(exc)}", uri) from None


def filesystem(uri: str):
    """``(pyarrow filesystem, path inside it)`` of a URI."""
    import pyarrow.fs

    with translated(uri, "open the storage"):
        try:
            return pyarrow.fs.FileSystem.from_uri(uri)
        except (ValueError, TypeError) as exc:  # unknown scheme, bad query options
            raise StorageError(f"not a usable storage URI ({exc})", uri) from None


# ---------------------------------------------------------------------------------- reading
def exists(path: str) -> bool:
    """Whether a file or folder exists."""
    if not is_uri(path):
        return os.path.exists(path)
    import pyarrow.fs

    fs, p = filesystem(path)
    with translated(path, "read"):
        return fs.get_file_info(p).type != pyarrow.fs.FileType.NotFound


def read_bytes(path: str) -> bytes:
    """Content of a file (``FileNotFoundError`` if there is none)."""
    if not is_uri(path):
        return Path(path).read_bytes()
    fs, p = filesystem(path)
    with translated(path, "read"), fs.open_input_stream(p) as f:
        return f.read()


def read_text(path: str) -> str:
    """Text of a file (``FileNotFoundError`` if there is none)."""
    return read_bytes(path).decode()


def read_text_or_none(path: str) -> str | None:
    """Text of a file, or None when it does not exist (one request on object stores)."""
    try:
        return read_text(path)
    except (FileNotFoundError, IsADirectoryError):
        return None


def list_files(uri: str) -> list[str]:
    """Files below a folder (relative paths, sorted); temporary objects of unfinished writes skipped."""
    if not is_uri(uri):
        root = Path(uri)
        return (
            sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not is_partial(p.name))
            if root.is_dir()
            else []
        )
    _, base, files = _bucket_files(uri)
    return sorted(p[len(base) + 1 :] for p in files if not is_partial(p.rpartition("/")[2]))


def _bucket_files(uri: str) -> tuple[Any, str, list[str]]:
    """``(filesystem, base path, paths of every file below it)`` of a bucket folder, temporary objects included."""
    import pyarrow.fs

    fs, base = filesystem(uri)
    with translated(uri, "list"):
        infos = fs.get_file_info(pyarrow.fs.FileSelector(base, recursive=True, allow_not_found=True))
    return fs, base.rstrip("/"), [i.path for i in infos if i.type == pyarrow.fs.FileType.File]


def download_dir(uri: str, local: str | Path, keep: Callable[[str], bool] | None = None) -> list[str]:
    """Copy the files below ``uri`` (those ``keep(relative path)`` accepts) into ``local``."""
    import pyarrow.fs

    rels = [r for r in list_files(uri) if keep is None or keep(r)]
    fs, base = filesystem(uri) if is_uri(uri) else (pyarrow.fs.LocalFileSystem(), str(Path(uri).resolve()))
    for rel in rels:
        dest = Path(local, rel)
        with (
            translated(uri, f"download {rel}"),
            fs.open_input_stream(f"{base.rstrip('/')}/{rel}") as src,
            io.atomic_path(dest) as tmp,
            open(tmp, "wb") as out,
        ):
            while chunk := src.read(CHUNK):
                out.write(chunk)
    return rels


# ---------------------------------------------------------------------------------- writing
def _tmp_key(p: str) -> str:
    head, _, name = p.rpartition("/")
    return f"{head}/.{name}.{uuid.uuid4().hex[:16]}.part"


def _put(uri: str, chunks: Iterable[bytes]) -> None:
    """Write ``chunks`` to a temporary object, then move it onto ``uri`` (write-then-rename)."""
    fs, p = filesystem(uri)
    tmp = _tmp_key(p)
    with translated(uri, "write"):
        try:
            with fs.open_output_stream(tmp) as f:
                for c in chunks:
                    f.write(c)
            fs.move(tmp, p)
        except BaseException as exc:
            # best effort: a half-written temporary object is never read (is_partial), and with the
            # network down a cleanup request would only wait through the retries again
            if not (isinstance(exc, OSError) and problem(exc).startswith("cannot reach")):
                with contextlib.suppress(OSError):
                    fs.delete_file(tmp)
            raise


def write_bytes(path: str, data: bytes) -> None:
    """Write a file: atomically when local, write-then-rename on object stores."""
    if not is_uri(path):
        with io.atomic_path(path) as tmp:
            Path(tmp).write_bytes(data)
        return
    _put(path, [data])


def write_text(path: str, text: str) -> None:
    """Write a text file (atomic, see :func:`write_bytes`)."""
    if not is_uri(path):
        io.write_text(path, text)
        return
    _put(path, [text.encode()])


def _file_chunks(local: Path) -> Iterator[bytes]:
    with open(local, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def upload_file(local: str | Path, dest: str) -> None:
    """Copy one local file to ``dest`` (a URI or a local path), atomically."""
    if not is_uri(dest):
        import shutil

        with io.atomic_path(dest) as tmp:
            shutil.copy2(local, tmp)
        return
    _put(dest, _file_chunks(Path(local)))


def upload_dir(
    local: str | Path,
    dest: str,
    last: Iterable[str] = (),
    only: Iterable[str] | None = None,
    skip: Callable[[str], bool] | None = None,
) -> list[str]:
    """Copy a local folder's files (relative paths ``only``, else all) to ``dest``; returns them.

    Files named in ``last`` (completion markers) are written after every other file, so a
    reader that sees the marker sees the whole folder. A local ``dest`` equal to ``local`` is a no-op.
    """
    local = Path(local)
    if not is_uri(dest) and local.resolve() == Path(dest).resolve():
        return []
    rels = sorted(only) if only is not None else list_files(str(local))
    rels = [r for r in rels if not is_partial(r) and (skip is None or not skip(r))]
    marks = [r for r in rels if r in set(last)]
    for rel in [r for r in rels if r not in marks] + marks:
        upload_file(local / rel, join(dest, rel))
    return rels


def delete_partials(uri: str) -> list[str]:
    """Delete the temporary objects of unfinished writes below ``uri`` (a writer killed between its
    write and its move leaves one); returns their relative paths. Only when no writer is alive, e.g.
    before a dead driver's sweep is resumed."""
    fs, base, files = _bucket_files(uri)
    stale = [p for p in files if is_partial(p.rpartition("/")[2])]
    for path in stale:
        with translated(uri, "delete"), contextlib.suppress(FileNotFoundError):
            fs.delete_file(path)
    return [p[len(base) + 1 :] for p in stale]


def delete_dir(uri: str) -> None:
    """Delete a folder and everything below it (missing: nothing to do)."""
    if not is_uri(uri):
        import shutil

        shutil.rmtree(uri, ignore_errors=True)
        return
    fs, p = filesystem(uri)
    with translated(uri, "delete"), contextlib.suppress(FileNotFoundError):
        fs.delete_dir(p)


def check_access(uri: str, write: bool = True) -> None:
    """Fail early, in one line naming ``uri``, when it cannot be listed (and written: a probe
    object is written and deleted) — before Ray starts trials that could not save anything."""
    import pyarrow.fs

    if not is_uri(uri):
        return
    fs, base = filesystem(uri)
    with translated(uri, "list"):
        fs.get_file_info(pyarrow.fs.FileSelector(base, allow_not_found=True))
    if write:
        probe = f"{base.rstrip('/')}/{PROBE}-{uuid.uuid4().hex[:8]}"
        with translated(uri, "write"):
            with fs.open_output_stream(probe) as f:
                f.write(b"ok\n")
            fs.delete_file(probe)
