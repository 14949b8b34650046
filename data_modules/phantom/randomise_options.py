"""Options of the phantom's domain randomisation (``cordbench phantom --randomise``, ``data.phantom.randomise``).

Plain data with declared ranges (:data:`RANGES`, also in :data:`runs.config.RANGES` under
``data.phantom.randomise.<key>``); the draws themselves are in :mod:`data_modules.phantom.randomise`.
Off by default: a cohort generated without it is byte-identical to one from before it existed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from core.errors import ConfigError
from core.ranges import Range, check_value

_PROB = Range(0, 1)

#: Declared range of every numeric randomisation option.
RANGES: dict[str, Range] = {
    "intensity_jitter": Range(0, 2),        # log-SD of each tissue's value around its contrast's template
    "free_contrast": _PROB,                  # share of images with fully random tissue values (SynthSeg)
    "contrast_mix": _PROB,                   # share of images drawn from the other anatomical contrast
    "inplane_min": Range(0.2, 4),            # mm, in-plane voxel size, uniform in [min, max]
    "inplane_max": Range(0.2, 4),
    "thickness_min": Range(0.2, 12),         # mm, slice thickness, uniform in [min, max]
    "thickness_max": Range(0.2, 12),
    "axial_prob": _PROB,                     # share of axial acquisitions (thick axis S-I); else sagittal
    "fov_min": Range(20, 200),               # mm, in-plane field of view around the cord
    "fov_max": Range(20, 200),
    "offset_max": Range(0, 0.4),             # FOV centre offset from the cord, share of the FOV
    "oblique_max": Range(0, 45),             # deg, grid rotation about a random axis
    "snr_min": Range(1, 1000),               # Rician SNR on the cord's white matter
    "snr_max": Range(1, 1000),
    "bias_max": Range(0, 1),                 # log-amplitude of the bias field, uniform in [0, max]
    "texture": Range(0, 1),                  # amplitude of the smooth texture of soft tissue and muscle
    "ghosting_prob": _PROB,
    "motion_prob": _PROB,
    "gibbs_prob": _PROB,
    "canal_shift_max": Range(0, 0.8),        # cord off the canal's centre: U(±max)·(B − b) along A-P
    "max_voxels": Range(100_000, 50_000_000, integer=True),  # coarser grid (same shape ratio) above this
}


@dataclass(frozen=True)
class RandomiseOptions:
    """Ranges of the per-image draws; see docs/phantom.md for what each one changes."""

    intensity_jitter: float = 0.35
    free_contrast: float = 0.2
    contrast_mix: float = 0.5
    inplane_min: float = 0.4
    inplane_max: float = 1.2
    thickness_min: float = 0.5
    thickness_max: float = 8.0
    axial_prob: float = 0.5
    fov_min: float = 24.0
    fov_max: float = 80.0
    offset_max: float = 0.15
    oblique_max: float = 15.0
    snr_min: float = 8.0
    snr_max: float = 60.0
    bias_max: float = 0.5
    texture: float = 0.3
    ghosting_prob: float = 0.2
    motion_prob: float = 0.15
    gibbs_prob: float = 0.3
    canal_shift_max: float = 0.6
    max_voxels: int = 2_000_000

    def __post_init__(self) -> None:
        for name, rng in RANGES.items():
            check_value(getattr(self, name), rng, f"key 'data.phantom.randomise.{name}'")
        for lo, hi in (("inplane_min", "inplane_max"), ("thickness_min", "thickness_max"),
                       ("fov_min", "fov_max"), ("snr_min", "snr_max")):
            if getattr(self, lo) > getattr(self, hi):
                raise ConfigError(f"key 'data.phantom.randomise.{lo}' = {getattr(self, lo)} is above "
                                  f"'{hi}' = {getattr(self, hi)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (recorded in cohort.json)."""
        return asdict(self)

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> "RandomiseOptions":
        """From a mapping of option names (an ``enabled`` key is ignored); unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k != "enabled"}
        bad = sorted(set(kw) - names)
        if bad:
            raise ConfigError(f"unknown key(s) {bad} in 'data.phantom.randomise'; known: {sorted(names)}")
        return cls(**kw)


def config_defaults() -> dict[str, Any]:
    """The ``data.phantom.randomise`` block of the config defaults: off, with the default ranges."""
    return {"enabled": False, **RandomiseOptions().to_dict()}


def from_config(block: Mapping[str, Any] | None) -> RandomiseOptions | None:
    """The options of an enabled ``data.phantom.randomise`` block, else None."""
    if not block or not block.get("enabled"):
        return None
    return RandomiseOptions.from_mapping(block)


__all__ = ["RandomiseOptions", "RANGES", "config_defaults", "from_config"]
