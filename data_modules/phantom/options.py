"""Generation options of the phantom cohort, their validation, and the planted-correlation spec."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from core import schema
from core.errors import ConfigError
from data_modules.phantom.randomise_options import RandomiseOptions, from_config

SEXES = ("M", "F")
VENDORS = ("Siemens", "GE", "Philips")
ORIENTATION_LETTERS = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}
DEFAULT_CORR = "M=0.6,F=0.1"
MAX_SESSIONS = 20
#: anatomical contrasts the phantom can write (``contrasts``), in writing order
ANAT_CONTRASTS = ("T2w", "T2star", "T1w", "MTon", "MToff")
DEFAULT_CONTRASTS = ("T2w", "T2star")


@dataclass(frozen=True)
class PhantomOptions:
    """Everything that shapes a cohort besides the seed and the number of subjects.

    Orientation codes are nibabel's (``nib.aff2axcodes``): the direction each voxel axis points
    *to*, e.g. ``LAS`` (= SCT's "RPI"), ``PSR`` (sct_testing_data ``t2``), ``RPI``, ``LPI``.
    """

    snr: float = 30.0  # Rician noise: WM signal (b0 for DWI) / sigma; 0 or inf = no noise
    tilt_min: float = 0.0  # per-subject tilt (deg) of the cord's mid tangent to S-I, uniform
    tilt_max: float = 10.0
    orientation: str = "LAS"  # voxel-axis orientation of every image (nibabel codes)
    oblique: float = 0.0  # rotate every image grid by this angle (deg), anatomy unchanged
    corr: str = DEFAULT_CORR  # planted Pearson r of FA vs SAC/CSA per group (see parse_corr)
    dwi: bool = True  # write DWI (4D + bval/bvec + rec-average)
    stenosis_prob: float = 0.5  # share of subjects with a stenosis (at one of C3..C6)
    stenosis_depth: float = 0.3  # SAC/CSA drop at the stenotic level for severity 1
    bias: float = 0.15  # amplitude of the smooth multiplicative bias field (log scale)
    dtype: str = "int16"  # stored image type: int16 (scanner-like) or float32
    t2w_fov: float = 56.0  # in-plane field of view (mm) around the cord, T2w and T2*
    dwi_fov: float = 36.0  # in-plane field of view (mm) around the cord, DWI
    truth_only: bool = False  # write participants + truth JSON only, no images
    randomise: RandomiseOptions | None = None  # domain randomisation of T2w/T2* (randomise.py); None = off
    sessions: int = 1  # acquisitions of the same anatomy (ses-01..); 1 = no session folders
    pmj: bool = False  # a PMJ label above C1 on the T2w grid, and its truth (pmj.py)
    layout: str = "cordbench"  # cordbench (every label, truth level maps) | spine-generic (the real set's kinds)
    dwi_shift: float = 0.0  # mm: the subject moved this far superiorly between the T2w and the DWI
    dwi_rotation: float = 0.0  # deg: and rotated this much about the R-L axis through the cord's middle
    exclude: str = ""  # exclude.yml entries to write, KEY=SUB[,KEY=SUB] (e.g. dti_fa=sub-002)
    contrasts: tuple[str, ...] = DEFAULT_CONTRASTS  # anatomical images written (ANAT_CONTRASTS); DWI: ``dwi``

    def __post_init__(self) -> None:
        _check(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (snr=inf written as the string "inf")."""
        d = asdict(self)
        if math.isinf(d["snr"]):
            d["snr"] = "inf"
        if self.randomise is None:
            del d["randomise"]  # cohorts without randomisation record exactly what they did before it
        else:
            d["randomise"] = self.randomise.to_dict()
        if self.sessions == 1:
            del d["sessions"]  # likewise cohorts without sessions
        if not self.pmj:
            del d["pmj"]  # and without a PMJ label
        for key, default in NEW_DEFAULTS.items():
            if d[key] == default:
                del d[key]  # and cohorts in the cordbench layout without DWI motion or exclusions
        if tuple(self.contrasts) == DEFAULT_CONTRASTS:
            del d["contrasts"]  # and cohorts of the default contrasts
        else:
            d["contrasts"] = list(self.contrasts)
        return d

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> PhantomOptions:
        """Build from keyword arguments; unknown keys are a :class:`ConfigError`."""
        kw = dict(kwargs)
        r = kw.get("randomise")
        if r is True:
            kw["randomise"] = RandomiseOptions()
        elif r is False:
            kw["randomise"] = None
        elif isinstance(r, Mapping):
            kw["randomise"] = from_config(r, enabled_by_default=True)
        elif r is not None and not isinstance(r, RandomiseOptions):
            raise ConfigError(f"phantom option randomise must be a mapping, true/false or RandomiseOptions, got {r!r}")
        if kw.get("contrasts") is None:
            kw.pop("contrasts", None)
        else:
            kw["contrasts"] = parse_contrasts(kw["contrasts"])
        return schema.from_mapping(cls, kw, "phantom options")

    @property
    def noise_free(self) -> bool:
        """True when no noise is added (snr 0 or inf)."""
        return self.snr == 0 or math.isinf(self.snr)


LAYOUTS = ("cordbench", "spine-generic")
NEW_DEFAULTS = {"layout": "cordbench", "dwi_shift": 0.0, "dwi_rotation": 0.0, "exclude": ""}
_EXCLUDE_ITEM = re.compile(r"^(?P<key>[A-Za-z0-9_]+)=(?P<sub>sub-[A-Za-z0-9]+)$")


def parse_exclude(spec: str) -> list[tuple[str, str]]:
    """``"dti_fa=sub-002,csa_t2=sub-003"`` → ``[(key, subject), ...]`` (spine-generic exclude.yml keys)."""
    out = []
    for part in (p.strip() for p in str(spec).split(",")):
        if not part:
            continue
        m = _EXCLUDE_ITEM.match(part)
        if not m:
            raise ConfigError(
                f"phantom option exclude: cannot parse {part!r} (expected KEY=SUBJECT, e.g. dti_fa=sub-002 or csa_t2=sub-001)"
            )
        out.append((m["key"], m["sub"]))
    return out


def _check(o: PhantomOptions) -> None:
    if o.layout not in LAYOUTS:
        raise ConfigError(f"phantom option layout must be one of {', '.join(LAYOUTS)}, got {o.layout!r}")
    if not (-30 <= o.dwi_shift <= 30) or not (-10 <= o.dwi_rotation <= 10):
        raise ConfigError(
            f"phantom DWI motion out of range (dwi_shift -30..30 mm, dwi_rotation -10..10 deg): "
            f"{o.dwi_shift}, {o.dwi_rotation}"
        )
    if (o.dwi_shift or o.dwi_rotation or o.exclude) and o.layout != "spine-generic":
        raise ConfigError("phantom options dwi_shift, dwi_rotation and exclude need layout spine-generic")
    parse_exclude(o.exclude)
    if not (o.snr >= 0):
        raise ConfigError(f"phantom option snr must be >= 0 (0 or inf = no noise), got {o.snr}")
    if not (0 <= o.tilt_min <= o.tilt_max <= 45):
        raise ConfigError(
            f"phantom tilt range must satisfy 0 <= tilt_min <= tilt_max <= 45 deg, got {o.tilt_min}..{o.tilt_max}"
        )
    orientation_axes(o.orientation)
    if not (-60 <= o.oblique <= 60):
        raise ConfigError(f"phantom option oblique must be within [-60, 60] deg, got {o.oblique}")
    parse_corr(o.corr)
    if not (0 <= o.stenosis_prob <= 1):
        raise ConfigError(f"phantom option stenosis_prob must be in [0, 1], got {o.stenosis_prob}")
    if not (0 <= o.stenosis_depth <= 0.7):
        raise ConfigError(f"phantom option stenosis_depth must be in [0, 0.7], got {o.stenosis_depth}")
    if not (0 <= o.bias <= 0.5):
        raise ConfigError(f"phantom option bias must be in [0, 0.5], got {o.bias}")
    if o.dtype not in ("int16", "float32"):
        raise ConfigError(f"phantom option dtype must be int16 or float32, got {o.dtype!r}")
    if o.pmj and "T2w" not in o.contrasts:
        raise ConfigError(f"phantom option pmj labels the T2w image, which contrasts {list(o.contrasts)} leaves out")
    if tuple(o.contrasts) != parse_contrasts(o.contrasts):
        raise ConfigError(f"phantom option contrasts must be distinct, in the order {ANAT_CONTRASTS}: {o.contrasts!r}")
    if not (isinstance(o.sessions, int) and 1 <= o.sessions <= MAX_SESSIONS):
        raise ConfigError(f"phantom option sessions must be an integer in [1, {MAX_SESSIONS}], got {o.sessions!r}")
    if not (32 <= o.t2w_fov <= 160) or not (24 <= o.dwi_fov <= 160):
        raise ConfigError(
            f"phantom fields of view out of range (t2w_fov 32..160, dwi_fov 24..160 mm): {o.t2w_fov}, {o.dwi_fov}"
        )


def parse_contrasts(value: Any) -> tuple[str, ...]:
    """The anatomical contrasts of ``value`` (a list or ``"T1w,T2w"``), in writing order (:data:`ANAT_CONTRASTS`)."""
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v) for v in value]
    unknown = [v for v in items if v not in ANAT_CONTRASTS]
    if unknown or not items:
        raise ConfigError(
            f"phantom option contrasts: unknown or no contrast {unknown or items}; choose from {', '.join(ANAT_CONTRASTS)}"
        )
    return tuple(c for c in ANAT_CONTRASTS if c in items)


def orientation_axes(code: str) -> tuple[str, str, str]:
    """Validate a 3-letter nibabel orientation code; returns its letters."""
    letters = tuple(str(code).upper())
    if (
        len(letters) != 3
        or any(c not in ORIENTATION_LETTERS for c in letters)
        or sorted(ORIENTATION_LETTERS[c] for c in letters) != [0, 1, 2]
    ):
        raise ConfigError(
            f"phantom option orientation {code!r} is not a 3-letter code with one of R/L, "
            "A/P, S/I each (nibabel convention, e.g. LAS, PSR, RPI)"
        )
    return letters  # type: ignore[return-value]


_CORR_ITEM = re.compile(r"^\s*(?P<key>\*|[A-Za-z]+(?::[A-Za-z]+)?)\s*=\s*(?P<r>[-+0-9.eE]+)\s*$")


def parse_corr(spec: str | Mapping[str, float] | None) -> dict[str, float]:
    """Parse ``"M=0.6,F=0.1"``-style specs into ``{key: r}``.

    Keys: ``*`` (everyone), a sex (``M``/``F``), a vendor (``Siemens``/``GE``/``Philips``) or
    ``SEX:VENDOR`` (``M:GE``). A subject's r is the most specific matching key, in the order
    SEX:VENDOR > SEX > VENDOR > ``*``; no match means r = 0. Each r must lie in [-0.95, 0.95].
    """
    if spec is None or spec == "":
        return {}
    items: dict[str, float]
    if isinstance(spec, Mapping):
        items = {str(k): float(v) for k, v in spec.items()}
    else:
        items = {}
        for part in str(spec).split(","):
            if not part.strip():
                continue
            m = _CORR_ITEM.match(part)
            if not m:
                raise ConfigError(
                    f"phantom option corr: cannot parse {part.strip()!r} "
                    "(expected KEY=R, e.g. 'M=0.6,F=0.1' or 'GE=0.3' or 'M:Siemens=0.5')"
                )
            try:
                items[m["key"]] = float(m["r"])
            except ValueError:
                raise ConfigError(f"phantom option corr: {m['r']!r} is not a number") from None
    out: dict[str, float] = {}
    for key, r in items.items():
        canon = _canonical_key(key)
        if not (-0.95 <= r <= 0.95):
            raise ConfigError(f"phantom option corr: r for {key!r} must be within [-0.95, 0.95], got {r}")
        out[canon] = r
    return out


def _canonical_key(key: str) -> str:
    vendors = {v.lower(): v for v in VENDORS}
    if key == "*":
        return key
    parts = key.split(":")
    if len(parts) == 1:
        k = parts[0]
        if k.upper() in SEXES:
            return k.upper()
        if k.lower() in vendors:
            return vendors[k.lower()]
    elif len(parts) == 2 and parts[0].upper() in SEXES and parts[1].lower() in vendors:
        return f"{parts[0].upper()}:{vendors[parts[1].lower()]}"
    raise ConfigError(f"phantom option corr: unknown group {key!r}; use *, M, F, {', '.join(VENDORS)} or SEX:VENDOR")


def group_r(corr: Mapping[str, float], sex: str, vendor: str) -> tuple[float, str]:
    """The planted r of a subject and the key it came from (``"none"`` when nothing matches)."""
    for key in (f"{sex}:{vendor}", sex, vendor, "*"):
        if key in corr:
            return float(corr[key]), key
    return 0.0, "none"


def cohort_options_dict(options: PhantomOptions) -> dict[str, Any]:
    """Options as recorded in cohort.json (with the parsed correlation spec)."""
    d = options.to_dict()
    d["corr_parsed"] = parse_corr(options.corr)
    return d


__all__ = ["PhantomOptions", "parse_corr", "group_r", "orientation_axes", "SEXES", "VENDORS", "cohort_options_dict"]
