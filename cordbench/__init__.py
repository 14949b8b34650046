"""The ``cordbench`` command: the CLI on top of every layer, imported by nothing of the project."""

from core import __version__

__all__ = ["__version__"]
