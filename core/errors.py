"""One exception type for every user-facing problem.

The CLI prints ``error: <message>`` on one line and exits non-zero (traceback only with
``--debug``). Messages name the file or config key and the problem.
"""

from __future__ import annotations

from pathlib import Path


class CordbenchError(Exception):
    """A problem with the user's input (file, config key, data set) rather than a bug."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = str(path) if path is not None else None
        super().__init__(f"{self.path}: {message}" if self.path else message)


class InputError(CordbenchError):
    """A bad input file (missing, unreadable, wrong shape/affine, bad values)."""


class ConfigError(CordbenchError):
    """A bad configuration (unknown key, bad type, impossible combination)."""


class OutputError(CordbenchError):
    """An output path that cannot or must not be written (a folder, an input, read-only, disk full)."""


class RunInterrupted(CordbenchError):
    """A run stopped by Ctrl-C / SIGINT; recorded in its folder, resumable (exit status 130)."""

    exit_code = 130
