"""Preset names every registered network offers and the keys of a preset's training recipe (torch-free: the CLI and config checks import it)."""
from __future__ import annotations

#: ``tiny`` for tests, ``small`` for laptops, ``paper`` for GPUs (the paper's size).
PRESET_NAMES: tuple[str, ...] = ("tiny", "small", "paper")

#: Keys a preset's training recipe may set, and the dotted run-config key each fills (runs.recipes).
RECIPE_KEYS: dict[str, str] = {
    "lr": "model.lr",
    "weight_decay": "model.weight_decay",
    "warmup_epochs": "model.warmup_epochs",
    "scheduler": "model.scheduler",
    "max_epochs": "trainer.max_epochs",
}
