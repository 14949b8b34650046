"""Options of the phantom's domain randomisation (``cordbench phantom --randomise``, ``data.phantom.randomise``).

Plain data whose fields, defaults and ranges are declared in the config schema
(:class:`core.schema.RandomiseRanges`; :data:`RANGES`, also in :data:`runs.config.RANGES` under
``data.phantom.randomise.<key>``); the draws themselves are in :mod:`data_modules.phantom.randomise`.
Off by default: a cohort generated without it is byte-identical to one from before it existed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from core import schema
from core.errors import ConfigError
from core.ranges import Range, check_value
from core.schema import RandomiseRanges

#: Tissue-value templates of :mod:`data_modules.phantom.randomise` that ``templates`` may name.
TEMPLATE_NAMES = ("T2w", "T2star", "T1w", "MTon", "MToff", "EPI", "DWI")
#: Options added after the first randomised cohorts: left out of :meth:`RandomiseOptions.to_dict` at their
#: defaults, so those cohorts keep their record and cache folder.
LATER_DEFAULTS: dict[str, Any] = {"templates": None, "blend_prob": 0.0}

#: Declared range of every numeric randomisation option (from the schema: :class:`core.schema.RandomiseRanges`).
#: the whole-neck field-of-view options (no effect while ``wide_fov_prob`` is 0)
WIDE_KEYS = (
    "wide_fov_prob",
    "fov_axial_min",
    "fov_axial_max",
    "fov_sagittal_min",
    "fov_sagittal_max",
    "wide_offset_max",
)
RANGES: dict[str, Range] = {k.name: k.range for k in schema.leaves(RandomiseRanges).values() if k.range is not None}


@dataclass(frozen=True)
class RandomiseOptions(RandomiseRanges):
    """Ranges of the per-image draws; see docs/phantom.md for what each one changes (fields, defaults and
    ranges: :class:`core.schema.RandomiseRanges`)."""

    def __post_init__(self) -> None:
        if self.templates is not None:
            names = [self.templates] if isinstance(self.templates, str) else list(self.templates)
            bad = [t for t in names if t not in TEMPLATE_NAMES]
            if bad or not names:
                raise ConfigError(
                    f"key 'data.phantom.randomise.templates': unknown or no template {bad or names}; "
                    f"choose from {', '.join(TEMPLATE_NAMES)}"
                )
            object.__setattr__(self, "templates", tuple(names))
        for name, rng in RANGES.items():
            check_value(getattr(self, name), rng, f"key 'data.phantom.randomise.{name}'")
        for lo, hi in (
            ("inplane_min", "inplane_max"),
            ("thickness_min", "thickness_max"),
            ("fov_min", "fov_max"),
            ("fov_axial_min", "fov_axial_max"),
            ("fov_sagittal_min", "fov_sagittal_max"),
            ("snr_min", "snr_max"),
        ):
            if getattr(self, lo) > getattr(self, hi):
                raise ConfigError(
                    f"key 'data.phantom.randomise.{lo}' = {getattr(self, lo)} is above '{hi}' = {getattr(self, hi)}"
                )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (recorded in cohort.json). Without whole-neck fields (``wide_fov_prob`` 0) their
        keys, which then change nothing, are left out, and later options only when set: such a cohort's record
        (and cache folder) stays as it was."""
        d = asdict(self)
        if not self.wide_fov_prob:
            for k in WIDE_KEYS:
                d.pop(k)
        for name, default in LATER_DEFAULTS.items():
            if d[name] == default:
                del d[name]
        if d.get("templates") is not None:
            d["templates"] = list(d["templates"])
        return d

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> RandomiseOptions:
        """From a mapping of option names (an ``enabled`` key is ignored); unknown keys are an error."""
        return schema.from_mapping(cls, d, "'data.phantom.randomise'", ignore=("enabled",))


def from_config(block: Mapping[str, Any] | None, enabled_by_default: bool = False) -> RandomiseOptions | None:
    """The options of a ``data.phantom.randomise`` block, None when it is off.

    The block's ``enabled`` key switches it (``enabled: false`` is always honoured); a block without
    the key is on only when ``enabled_by_default`` (a ``--randomise-config`` file: naming the file asks
    for randomisation).
    """
    if block is None:
        return None
    enabled = block.get("enabled", enabled_by_default)
    if not isinstance(enabled, bool):
        raise ConfigError(f"key 'data.phantom.randomise.enabled' must be true/false, got {enabled!r}")
    return RandomiseOptions.from_mapping(block) if enabled else None


__all__ = ["RandomiseOptions", "RANGES", "from_config"]
