"""Dotted keys (``model.lr``) into nested config mappings: the one walk config checks and recipes share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def get(cfg: Mapping[str, Any], dotted: str) -> Any:
    """The value at ``dotted`` (``None`` where a level is missing or not a mapping)."""
    node: Any = cfg
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def put(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``dotted`` in ``cfg`` in place, copying each parent mapping on the way (callers' dicts stay as they were)."""
    *parents, key = dotted.split(".")
    node = cfg
    for part in parents:
        node[part] = dict(node.get(part) or {})
        node = node[part]
    node[key] = value
