"""Preset names every registered network offers and the keys of a preset's training recipe (torch-free: the CLI and config checks import it).

Both come from the config schema (:mod:`core.schema`): ``model.preset``'s choices, and the keys that
declare a ``recipe`` name.
"""

from __future__ import annotations

from core import schema
from core.schema import RunConfig

#: ``tiny`` for tests, ``small`` for laptops, ``paper`` for GPUs (the paper's size).
PRESET_NAMES: tuple[str, ...] = tuple(schema.get(RunConfig, "model.preset").choices)  # type: ignore[arg-type]

#: Keys a preset's training recipe may set, and the dotted run-config key each fills (runs.recipes).
RECIPE_KEYS: dict[str, str] = {k.recipe: d for d, k in schema.leaves(RunConfig).items() if k.recipe}
