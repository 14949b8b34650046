"""Output paths checked before any work: right kind, right extension, writable, not an input.

Every command calls these on each path it will write, before it reads or computes anything, so a
typo in ``-o`` costs nothing and a command can never overwrite one of its own inputs. Each problem
is one :class:`~core.errors.OutputError` line naming the path. Write failures during the work
(disk full, quota) are turned into the same kind of line by :func:`core.io.atomic_path`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from core.errors import OutputError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
CSV_SUFFIXES = (".csv", ".tsv")


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p.parent != p:
        p = p.parent
    return p


def check_writable_dir(folder: str | Path, shown: str | Path | None = None) -> None:
    """Raise unless ``folder`` (or the nearest existing folder above it) accepts new files."""
    folder = Path(folder)
    base = _nearest_existing(folder)
    if not base.is_dir():
        raise OutputError(f"cannot create the output: {base} is a file, not a folder", shown or folder)
    try:  # the only reliable test (os.access is always true for root, false negatives on NFS)
        with tempfile.TemporaryFile(dir=base, prefix=".cordbench-write-test."):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write here ({exc.strerror or exc})", shown or folder) from None


def check_not_input(out: str | Path, inputs: Mapping[str, str | Path | None]) -> None:
    """Raise if ``out`` is one of the ``inputs`` (``{option: path}``): it would be overwritten."""
    out = Path(out)
    for option, src in inputs.items():  # a missing input is reported by its reader ("not found")
        if src is not None and Path(src).exists() and _same(out, Path(src)):
            raise OutputError(
                f"output is also the input {option}: it would be overwritten; choose another output path", out
            )


def _suffix_ok(path: Path, suffixes: Iterable[str]) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in suffixes)


def check_output_file(
    path: str | Path,
    *,
    inputs: Mapping[str, str | Path | None] | None = None,
    suffixes: Iterable[str] = (),
    what: str = "output",
) -> Path:
    """A file the command will (re)write: not a folder, right extension, not an input, writable folder."""
    path = Path(path)
    suffixes = tuple(suffixes)
    if str(path).endswith(os.sep) or path.is_dir():
        raise OutputError(
            f"{what} is a folder; give a file name" + (f" ending in {' or '.join(suffixes)}" if suffixes else ""), path
        )
    if suffixes and not _suffix_ok(path, suffixes):
        raise OutputError(f"{what} must end in {' or '.join(suffixes)}", path)
    check_not_input(path, inputs or {})
    check_writable_dir(path.parent, path)
    return path


def check_output_dir(
    path: str | Path, *, inputs: Mapping[str, str | Path | None] | None = None, what: str = "output folder"
) -> Path:
    """A folder the command will create or add files to: not a file, not an input, writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} exists and is not a folder", path)
    check_not_input(path, inputs or {})
    check_writable_dir(path, path)
    return path
