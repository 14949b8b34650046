"""Preset names every registered network offers (torch-free: the CLI and config checks import it)."""
from __future__ import annotations

#: ``tiny`` for tests, ``small`` for laptops, ``paper`` for GPUs (the paper's size).
PRESET_NAMES: tuple[str, ...] = ("tiny", "small", "paper")
