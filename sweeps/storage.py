"""Where a sweep lives: a local folder or a URI (``s3://``, ``gs://``, … through ``pyarrow.fs``).

Local paths are used directly (atomic writes through :mod:`cordbench.io`); URIs go through
the same ``pyarrow`` filesystem layer Ray Tune uses for its own storage.
"""
from __future__ import annotations

import os
from pathlib import Path

from cordbench import io
from sweeps.config import is_uri


def join(base: str, *parts: str) -> str:
    """Join path parts for a local folder or a URI."""
    if is_uri(base):
        return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])
    return str(Path(base, *parts))


def _fs(uri: str):
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(uri)


def exists(path: str) -> bool:
    """Whether a file or folder exists."""
    if not is_uri(path):
        return os.path.exists(path)
    import pyarrow.fs

    fs, p = _fs(path)
    return fs.get_file_info(p).type != pyarrow.fs.FileType.NotFound


def read_text(path: str) -> str:
    """Text of a file."""
    if not is_uri(path):
        return Path(path).read_text()
    fs, p = _fs(path)
    with fs.open_input_stream(p) as f:
        return f.read().decode()


def write_text(path: str, text: str) -> None:
    """Write a text file (atomically when local)."""
    if not is_uri(path):
        io.write_text(path, text)
        return
    fs, p = _fs(path)
    with fs.open_output_stream(p) as f:
        f.write(text.encode())


def upload_dir(local: str | Path, dest: str) -> None:
    """Copy a local folder to ``dest`` (a URI; a local ``dest`` is copied with shutil)."""
    if not is_uri(dest):
        import shutil

        if Path(local).resolve() != Path(dest).resolve():
            shutil.copytree(local, dest, dirs_exist_ok=True)
        return
    import pyarrow.fs

    fs, p = _fs(dest)
    fs.create_dir(p, recursive=True)
    pyarrow.fs.copy_files(str(local), p, source_filesystem=pyarrow.fs.LocalFileSystem(), destination_filesystem=fs)
