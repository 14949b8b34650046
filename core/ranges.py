"""Declared ranges of numeric command options and config keys, and the one check of them.

A :class:`Range` sits next to the option it bounds (``add_number`` in each command's
``add_arguments``) or next to the config key (:data:`runs.config.RANGES`). A value outside
it — negative where meaningless, zero where meaningless, too large to finish, NaN, infinite — is
refused before anything runs with one line naming the option or key, the value and the range::

    error: option --smooth: -5.0 is out of range: must be a number >= 0
    error: config: key 'trainer.max_epochs' = -1 is out of range: must be an integer in [1, 1000000]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.errors import ConfigError

SEED_MAX = 2**32 - 1  # numpy / Lightning seeds are unsigned 32-bit


@dataclass(frozen=True)
class Range:
    """A closed (or half-open) interval of numbers; ``integer`` also requires whole numbers."""

    lo: float | None = None
    hi: float | None = None
    integer: bool = False
    lo_open: bool = False
    hi_open: bool = False
    allow_inf: bool = False  # +inf accepted although above ``hi`` is None (e.g. "no noise")

    def describe(self) -> str:
        """``"an integer in [1, 100]"``, ``"a number > 0"``, …"""
        kind = "an integer" if self.integer else "a number"
        lo, hi = _fmt(self.lo), _fmt(self.hi)
        if self.lo is not None and self.hi is not None:
            text = f"{kind} in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
        elif self.lo is not None:
            text = f"{kind} {'>' if self.lo_open else '>='} {lo}"
        elif self.hi is not None:
            text = f"{kind} {'<' if self.hi_open else '<='} {hi}"
        else:
            text = f"a finite {'integer' if self.integer else 'number'}"
        return text + (" (or inf)" if self.allow_inf else "")

    def contains(self, value: Any) -> bool:
        """Whether ``value`` (a real number, not a bool) lies in the range."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if isinstance(value, float) and math.isnan(value):
            return False
        if isinstance(value, float) and math.isinf(value):
            return self.allow_inf and value > 0
        if self.integer and not float(value).is_integer():
            return False
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return False
        if self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)):
            return False
        return True


def _fmt(v: float | None) -> str:
    if v is None:
        return ""
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def check_value(value: Any, rng: Range, what: str, source: str | None = None) -> Any:
    """Return ``value`` if it is in ``rng`` (each element for a list), else raise one line naming ``what``."""
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if v is None:
            continue
        if not rng.contains(v):
            shown = f"{value!r}" if isinstance(value, (list, tuple)) else f"{v!r}"
            each = "each value " if isinstance(value, (list, tuple)) else ""
            raise ConfigError(f"{what} = {shown} is out of range: {each}must be {rng.describe()}", source)
    return value


class _NumberType:
    """argparse ``type=``: parse an int/float and check its range (errors are one line, not usage)."""

    def __init__(self, kind: Callable[[str], Any], rng: Range, option: str, parse: Callable[[str], Any] | None):
        self.kind, self.rng, self.option, self.parse = kind, rng, option, parse
        self.__name__ = kind.__name__  # argparse names the type in its own messages

    def __call__(self, text: str) -> Any:
        try:
            value = self.parse(text) if self.parse else self.kind(text)
        except (TypeError, ValueError):
            raise ConfigError(
                f"option {self.option}: {text!r} is not {'an integer' if self.kind is int else 'a number'} "
                f"(must be {self.rng.describe()})"
            ) from None
        check_value(value, self.rng, f"option {self.option}")
        return value


def add_number(
    p: argparse.ArgumentParser,
    *flags: str,
    kind: Callable[[str], Any] = float,
    range: Range,
    parse: Callable[[str], Any] | None = None,
    **kwargs: Any,
) -> argparse.Action:
    """``p.add_argument`` for a number whose range is declared here (and shown in ``--help``)."""
    option = max(flags, key=len)
    rng = Range(**{**range.__dict__, "integer": True}) if kind is int else range
    if "help" in kwargs and kwargs["help"] is not argparse.SUPPRESS:
        kwargs["help"] = f"{kwargs['help']} ({rng.describe()})"
    action = p.add_argument(*flags, type=_NumberType(kind, rng, option, parse), **kwargs)
    action.range = rng  # type: ignore[attr-defined]  (read by tests and docs)
    return action
