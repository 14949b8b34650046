"""Image intensities: tissue values per contrast, vendor mappings, bias field, Rician noise.

An image value is the partial-volume mix of tissue values (fractions from
:meth:`Anatomy.classify`), mapped through the vendor's intensity curve
``scale · (value · gain_tissue)^gamma``, multiplied by a smooth bias field, then given Rician
noise ``|S + sigma·(n1 + i·n2)|`` with ``sigma`` = (vendor-mapped white-matter value) / SNR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_modules.phantom.anatomy import BONE, CSF, DISC, GM, SOFT, TISSUES, WM

# tissue values (relative, Siemens-like) per contrast: soft, bone, disc, csf, wm, gm
TISSUE_VALUES = {
    "T2w": np.array([0.18, 0.22, 0.55, 1.00, 0.30, 0.34]),
    "T2star": np.array([0.20, 0.15, 0.40, 0.85, 0.35, 0.60]),
    "dwi_b0": np.array([0.15, 0.10, 0.35, 1.00, 0.42, 0.48]),
    # T1w (MPRAGE-like): CSF dark, cord brighter than CSF, fatty soft tissue and marrow bright
    "T1w": np.array([0.55, 0.60, 0.35, 0.12, 0.62, 0.55]),
    # MT-on (PD-weighted GRE with an MT pulse): myelinated WM saturated most, so GM > WM; CSF brighter than cord
    "MTon": np.array([0.25, 0.20, 0.40, 0.70, 0.28, 0.38]),
    # MT-off (the same GRE without the pulse): PD-weighted, little GM/WM contrast
    "MToff": np.array([0.35, 0.30, 0.55, 0.80, 0.50, 0.55]),
}


@dataclass(frozen=True)
class Vendor:
    """A vendor's intensity mapping."""

    gamma: float
    scale: float
    csf_gain: float  # CSF brightness relative to the Siemens-like reference


VENDOR_CONTRAST = {
    "Siemens": Vendor(1.00, 1000.0, 1.00),
    "GE": Vendor(0.85, 2200.0, 0.92),
    "Philips": Vendor(1.15, 1600.0, 1.06),
}


def vendor_values(contrast: str, vendor: str) -> np.ndarray:
    """Vendor-mapped tissue values (index by tissue class)."""
    vd = VENDOR_CONTRAST[vendor]
    vals = TISSUE_VALUES[contrast].copy()
    vals[CSF] *= vd.csf_gain
    return vd.scale * vals**vd.gamma


def mix(values: np.ndarray, tissue: dict[str, np.ndarray]) -> np.ndarray:
    """Partial-volume image value from fractions ``f_canal ≥ f_cord ≥ f_gm`` and ``f_body``.

    Outside the canal: vertebral body (disc within a disc zone, else bone) mixed with soft tissue.
    """
    f_canal, f_cord, f_gm, f_body = tissue["f_canal"], tissue["f_cord"], tissue["f_gm"], tissue["f_body"]
    body_val = np.where(tissue["disc_zone"], values[DISC], values[BONE])
    outside = f_body * body_val + (1.0 - f_body) * values[SOFT]
    return (
        f_gm * values[GM] + (f_cord - f_gm) * values[WM] + (f_canal - f_cord) * values[CSF] + (1.0 - f_canal) * outside
    )


@dataclass(frozen=True)
class BiasField:
    """Smooth multiplicative field ``exp(sum_j amp_j · cos(k_j · (x − c) + phase_j))`` in world mm."""

    amps: np.ndarray
    wavevectors: np.ndarray  # (n, 3) rad/mm
    phases: np.ndarray
    centre: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, amplitude: float, centre: np.ndarray, n: int = 3) -> BiasField:
        """Random low-frequency field (wavelengths 150–400 mm) with log-amplitude ~ ``amplitude``."""
        dirs = rng.normal(size=(n, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        wl = rng.uniform(150.0, 400.0, n)
        return cls(
            amplitude * rng.uniform(0.5, 1.0, n) / np.sqrt(n),
            dirs * (2 * np.pi / wl)[:, None],
            rng.uniform(0, 2 * np.pi, n),
            np.asarray(centre, dtype=float),
        )

    def __call__(self, xyz: np.ndarray) -> np.ndarray:
        """Field at world points ``(3, n)``."""
        x = np.asarray(xyz, dtype=float)
        total = np.zeros(x.shape[1])
        for amp, k, ph in zip(self.amps, self.wavevectors, self.phases):
            arg = (x[0] - self.centre[0]) * k[0] + (x[1] - self.centre[1]) * k[1] + (x[2] - self.centre[2]) * k[2]
            total += amp * np.cos(arg + ph)
        return np.exp(total)


def rician(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise of SD ``sigma`` per channel."""
    if sigma <= 0:
        return signal
    sig = np.asarray(signal, dtype=np.float32)
    n1 = rng.standard_normal(sig.shape, dtype=np.float32)
    n1 *= np.float32(sigma)
    n1 += sig
    n2 = rng.standard_normal(sig.shape, dtype=np.float32)
    n2 *= np.float32(sigma)
    return np.hypot(n1, n2)


def noise_sigma(contrast: str, vendor: str, snr: float) -> float:
    """Noise SD giving ``snr`` on white matter (0 when noise-free)."""
    if snr == 0 or np.isinf(snr):
        return 0.0
    return float(vendor_values(contrast, vendor)[WM] / snr)


def to_dtype(data: np.ndarray, dtype: str) -> np.ndarray:
    """Store as int16 (rounded, clipped) or float32."""
    if dtype == "int16":
        return np.clip(np.rint(data), -32768, 32767).astype(np.int16)
    return data.astype(np.float32)


__all__ = ["TISSUES", "vendor_values", "mix", "BiasField", "rician", "noise_sigma", "to_dtype", "VENDOR_CONTRAST"]
