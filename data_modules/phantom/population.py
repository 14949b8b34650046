"""Who the phantom subjects are: demographics, sites, anatomy draws and the planted correlation.

Sites (institution_id, institution, manufacturer, model, coil, software) are drawn with the
frequencies of the real ``spine-generic/participants.tsv`` (read from the shared data when
present, else from the embedded ``spine_generic_sites.tsv`` derived from it). Sex is 50/50, age
uniform 20–60.

Planted correlation (per level, within a group): a subject's SAC/CSA at level k is
``x = mu_k + SIGMA_SUBJECT·z + SIGMA_LEVEL·z_k − depth·severity·w_k`` with latents
``z, z_k ~ N(0,1)`` (clipped at ±3.5; ``z`` shared by the subject's levels so the canal varies
smoothly along the cord) and ``w_k`` the stenosis weights (1 at the stenotic level, 0.25 at its
neighbours); the anatomy meets x exactly. The cord FA of that level is
``F_k + SIGMA_FA·(r·x̂ + sqrt(1−r²)·e_k)``, with ``x̂`` = x standardised by its exact population
mean and SD and ``e_k ~ N(0,1)`` independent, so the population Pearson correlation of FA and
SAC/CSA at each level is exactly ``r`` of the subject's group (see :func:`options.group_r`).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InputError
from core.paths import shared_data_dir
from data_modules.phantom.anatomy import N_LEVELS, AnatomyDraw
from data_modules.phantom.options import PhantomOptions, group_r, parse_corr

PKG_DIR = Path(__file__).resolve().parent
EMBEDDED_SITES = PKG_DIR / "spine_generic_sites.tsv"
SITE_COLUMNS = (
    "institution_id",
    "institution",
    "manufacturer",
    "manufacturers_model_name",
    "receive_coil_name",
    "software_versions",
)
PARTICIPANT_COLUMNS = (
    "participant_id",
    "sex",
    "age",
    "height",
    "weight",
    "date_of_scan",
    "institution_id",
    "institution",
    "manufacturer",
    "manufacturers_model_name",
    "receive_coil_name",
    "software_versions",
    "researcher",
    "pathology",
    "notes",
)

# level-wise population parameters, C1..C7
LEVEL_LENGTH_MM = np.array([16.0, 17.5, 16.0, 16.0, 16.5, 16.5, 17.0])
CSA_MM2 = np.array([70.0, 71.0, 73.0, 78.0, 82.0, 79.0, 68.0])  # cervical enlargement C5-C6
ASPECT = np.array([1.45, 1.50, 1.55, 1.65, 1.72, 1.70, 1.55])  # R-L / A-P cord diameters
GM_SCALE = np.array([0.85, 0.88, 0.93, 1.00, 1.06, 1.05, 0.95])
SAC_CSA_MU = np.array([2.0, 1.75, 1.52, 1.38, 1.32, 1.35, 1.45])
SIGMA_SUBJECT = 0.17  # SAC/CSA: subject-level latent (shared by the levels)
SIGMA_LEVEL = 0.08  # SAC/CSA: level-specific latent
STENOSIS_LEVELS = (3, 4, 5, 6)
STENOSIS_SPREAD = 0.4  # stenosis weight on the two neighbouring levels
FA_CORD_MU = np.array([0.66, 0.67, 0.66, 0.65, 0.64, 0.64, 0.63])
SIGMA_FA = 0.03
FA_WM_GM_GAP = 0.30  # FA_WM − FA_GM
MD_WM, MD_GM, MD_CSF = 1.0e-3, 1.1e-3, 3.0e-3  # mm²/s
Z_CLIP = 3.5


# ------------------------------------------------------------------------------------ sites
def sites_from_participants(path: Path) -> list[dict[str, Any]]:
    """Site table (one row per distinct site tuple, with its subject ``count``) of a participants.tsv."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = [c for c in SITE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"participants.tsv lacks columns {missing}", path)
        counts: dict[tuple[str, ...], int] = {}
        for row in reader:
            key = tuple(row[c] for c in SITE_COLUMNS)
            counts[key] = counts.get(key, 0) + 1
    return [dict(zip(SITE_COLUMNS, k), count=n) for k, n in sorted(counts.items())]


def read_site_table(path: Path) -> list[dict[str, Any]]:
    """Read the embedded site table."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return sorted(
        ({**{c: r[c] for c in SITE_COLUMNS}, "count": int(r["count"])} for r in rows),
        key=lambda r: tuple(r[c] for c in SITE_COLUMNS),
    )


def load_sites() -> tuple[list[dict[str, Any]], str]:
    """Site table and its source: the real participants.tsv when present, else the embedded copy."""
    real = shared_data_dir() / "spine-generic" / "participants.tsv"
    if real.is_file():
        return sites_from_participants(real), str(real)
    return read_site_table(EMBEDDED_SITES), f"embedded:{EMBEDDED_SITES.name}"


# ------------------------------------------------------------------------------- draws
def clipped_normal_var(c: float = Z_CLIP) -> float:
    """Variance of a standard normal clipped (not truncated) at ±c."""
    phi = math.exp(-c * c / 2) / math.sqrt(2 * math.pi)
    tail = 0.5 * math.erfc(c / math.sqrt(2))
    return (1 - 2 * tail) - 2 * c * phi + 2 * c * c * tail


def stenosis_weights(level: int) -> np.ndarray:
    """Weights (7,) of a stenosis centred at ``level`` (1..7) on the levels' SAC/CSA."""
    w = np.zeros(N_LEVELS)
    w[level - 1] = 1.0
    for nb in (level - 2, level):
        if 0 <= nb < N_LEVELS:
            w[nb] = STENOSIS_SPREAD
    return w


def sac_csa_moments(options: PhantomOptions) -> tuple[np.ndarray, np.ndarray]:
    """Exact population mean and SD of each level's SAC/CSA under the generation model."""
    p, depth = options.stenosis_prob, options.stenosis_depth
    q = 1.0 / len(STENOSIS_LEVELS)
    w1 = sum(q * stenosis_weights(k) for k in STENOSIS_LEVELS)  # E_K[w_k]
    w2 = sum(q * stenosis_weights(k) ** 2 for k in STENOSIS_LEVELS)  # E_K[w_k²]
    ew = p * w1 / 2.0  # E[B·severity·w], severity ~ U(0, 1), B ~ Bernoulli(p)
    ew2 = p * w2 / 3.0
    mean = SAC_CSA_MU - depth * ew
    var = (SIGMA_SUBJECT**2 + SIGMA_LEVEL**2) * clipped_normal_var() + depth**2 * (ew2 - ew**2)
    return mean, np.sqrt(var)


@dataclass
class SubjectDraw:
    """Everything random about one subject except image noise and bias."""

    participant: dict[str, Any]
    anatomy: AnatomyDraw
    stenosis: dict[str, Any]
    latent_z: np.ndarray  # (7,) level-specific latent
    latent_subject: float  # subject-level latent
    fa_cord: np.ndarray  # (7,) planted cord-average FA per level
    corr_r: float
    corr_key: str


def draw_subject(
    rng_demo: np.random.Generator,
    rng_anat: np.random.Generator,
    index: int,
    sites: list[dict[str, Any]],
    options: PhantomOptions,
) -> SubjectDraw:
    """Draw a subject's demographics, site, anatomy, stenosis and planted FA."""
    sex = "M" if rng_demo.random() < 0.5 else "F"
    age = int(rng_demo.integers(20, 61))
    height = float(np.clip(rng_demo.normal(178 if sex == "M" else 165, 7.0), 150, 200))
    weight = float(np.clip(rng_demo.normal(78 if sex == "M" else 62, 9.0), 45, 120))
    counts = np.array([s["count"] for s in sites], dtype=float)
    site = sites[int(rng_demo.choice(len(sites), p=counts / counts.sum()))]
    pid = f"sub-{index + 1:03d}"

    # anatomy
    scale_len = float(np.clip(rng_anat.normal(1.0 + 0.004 * (height - 171.0), 0.03), 0.9, 1.1))
    lengths = np.clip(LEVEL_LENGTH_MM * scale_len * rng_anat.normal(1.0, 0.03, N_LEVELS), 14.5, 19.0)
    kappa = float(np.clip(rng_anat.normal(1.0, 0.06), 0.88, 1.12))
    csa = CSA_MM2 * kappa * np.clip(rng_anat.normal(1.0, 0.02, N_LEVELS), 0.95, 1.05)
    aspect = ASPECT * np.clip(rng_anat.normal(1.0, 0.04, N_LEVELS), 0.9, 1.1)
    gm_scale = GM_SCALE * np.clip(rng_anat.normal(1.0, 0.02), 0.95, 1.05)
    total = float(lengths.sum())
    lordosis = float(rng_anat.uniform(0.25, 0.6))  # radians of lordotic bend over C1..C7
    tilt = float(rng_anat.uniform(options.tilt_min, options.tilt_max))
    azimuth = float(rng_anat.normal(0.0, 20.0) + (180.0 if rng_anat.random() < 0.5 else 0.0))
    origin = np.array([rng_anat.normal(0, 3), rng_anat.normal(20, 5), rng_anat.normal(-60, 10)])

    # stenosis and planted SAC/CSA ~ FA
    has_sten = rng_anat.random() < options.stenosis_prob
    sten_level = int(rng_anat.choice(STENOSIS_LEVELS))
    severity = float(rng_anat.uniform(0.0, 1.0)) if has_sten else 0.0
    z_subject = float(np.clip(rng_anat.standard_normal(), -Z_CLIP, Z_CLIP))
    z = np.clip(rng_anat.standard_normal(N_LEVELS), -Z_CLIP, Z_CLIP)
    e = rng_anat.standard_normal(N_LEVELS)
    x = SAC_CSA_MU + SIGMA_SUBJECT * z_subject + SIGMA_LEVEL * z
    x -= options.stenosis_depth * severity * stenosis_weights(sten_level)
    mean, sd = sac_csa_moments(options)
    xhat = (x - mean) / sd
    r, key = group_r(parse_corr(options.corr), sex, site["manufacturer"])
    fa_cord = np.clip(FA_CORD_MU + SIGMA_FA * (r * xhat + math.sqrt(1 - r * r) * e), 0.3, 0.85)

    participant = {
        "participant_id": pid,
        "sex": sex,
        "age": age,
        "height": int(round(height)),
        "weight": int(round(weight)),
        "date_of_scan": "n/a",
        **{c: site[c] for c in SITE_COLUMNS},
        "researcher": "n/a",
        "pathology": "HC",
        "notes": (f"phantom; stenosis C{sten_level} severity {severity:.2f}" if has_sten else "phantom"),
    }
    anat = AnatomyDraw(lengths, csa, aspect, gm_scale, x, total / lordosis, tilt, azimuth, origin)
    sten = {
        "present": bool(has_sten),
        "level": f"C{sten_level}" if has_sten else None,
        "severity": severity,
        "sac_csa_drop": options.stenosis_depth * severity,
    }
    return SubjectDraw(participant, anat, sten, z, z_subject, fa_cord, r, key)


def tensor_params(fa_cord: np.ndarray, gm_fraction: np.ndarray) -> dict[str, np.ndarray]:
    """Per-level WM and GM FA/MD/AD/RD such that the area-weighted cord FA equals ``fa_cord``.

    FA_WM = FA_cord + gap·f_GM and FA_GM = FA_WM − gap, ``f_GM`` the level's gray-matter share.
    Tensors are axially symmetric: AD = MD(1+2k), RD = MD(1−k), k = FA / sqrt(3 − 2 FA²).
    """
    fa_wm = fa_cord + FA_WM_GM_GAP * gm_fraction
    fa_gm = fa_wm - FA_WM_GM_GAP
    out = {"fa_wm": fa_wm, "fa_gm": fa_gm}
    for name, fa, md in (("wm", fa_wm, MD_WM), ("gm", fa_gm, MD_GM)):
        k = fa / np.sqrt(3.0 - 2.0 * fa**2)
        out[f"md_{name}"] = np.full_like(fa, md)
        out[f"ad_{name}"] = md * (1 + 2 * k)
        out[f"rd_{name}"] = md * (1 - k)
    return out
