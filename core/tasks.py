"""Segmentation tasks: which label files make the target and which classes are scored."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TaskSpec:
    """A task: default contrast, how label files combine, class names scored.

    ``labels`` lists (label name, desc, value) applied in order onto a zero map; ``value``
    None copies the label file's own values (vertebral level maps). ``classes`` maps a
    scored class name to the target values forming it.
    """

    name: str
    contrast: str
    labels: tuple[tuple[str, str | None, int | None], ...]
    classes: dict[str, tuple[int, ...]]
    num_classes: int
    label_values: dict[str, tuple[int, ...]] = field(default_factory=dict)  # allowed values per label file


TASKS: dict[str, TaskSpec] = {
    "sc": TaskSpec("sc", "T2w", (("SC", None, 1),), {"sc": (1,)}, 2, {"SC": (0, 1)}),
    "gm": TaskSpec(
        "gm",
        "T2star",
        (("SC", None, 1), ("GM", None, 2)),
        {"sc": (1, 2), "wm": (1,), "gm": (2,)},
        3,
        {"SC": (0, 1), "GM": (0, 1)},
    ),
    "canal": TaskSpec("canal", "T2w", (("canal", None, 1),), {"canal": (1,)}, 2, {"canal": (0, 1)}),
    "levels": TaskSpec(
        "levels", "T2w", (("SC", "levels", None),), {f"C{i}": (i,) for i in range(1, 8)}, 8, {"SC": tuple(range(8))}
    ),
}

#: The task names (``data.task`` choices), in this order in messages and help.
TASK_NAMES: tuple[str, ...] = tuple(TASKS)
