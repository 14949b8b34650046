"""Diffusion: the spine-generic gradient scheme, per-voxel tensors and the DW signal.

Each DWI voxel holds the tissue at its centre (no partial volume), so its tensor — and the FA a
fit of noise-free data returns — is exactly the planted one. Cord tensors are axially symmetric
with the principal eigenvector along the local centerline tangent: D = RD·I + (AD − RD)·t tᵀ;
CSF, disc, bone and soft tissue are isotropic. ``S = S0·exp(−b gᵀ D g)``.

bvecs follow FSL: unit vectors in the image's voxel axes, with the first axis negated when the
affine has a positive determinant; :func:`world_gradients` turns them into world directions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.errors import InputError
from core.paths import shared_data_dir
from data_modules.phantom.anatomy import BONE, CSF, DISC, GM, SOFT, WM

PKG_DIR = Path(__file__).resolve().parent
EMBEDDED_BVAL = PKG_DIR / "spine_generic_dwi.bval"
EMBEDDED_BVEC = PKG_DIR / "spine_generic_dwi.bvec"
REAL_SCHEME = ("spine-generic", "sub-amu01", "dwi", "sub-amu01_dwi")
ISO_DIFFUSIVITY = {SOFT: 1.4e-3, BONE: 0.3e-3, DISC: 1.6e-3, CSF: 3.0e-3}  # mm²/s


def read_scheme(bval: Path, bvec: Path) -> tuple[np.ndarray, np.ndarray]:
    """FSL bval (N,) and bvec (3, N) files; checks counts and unit norms of non-zero vectors."""
    try:
        bvals = np.loadtxt(bval, ndmin=1).astype(float)
        bvecs = np.loadtxt(bvec, ndmin=2).astype(float)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read gradient scheme ({exc})", bvec) from None
    if bvecs.shape[0] != 3 and bvecs.shape[1] == 3:
        bvecs = bvecs.T
    if bvecs.shape != (3, bvals.size):
        raise InputError(f"bvec shape {bvecs.shape} does not match {bvals.size} b-values", bvec)
    norms = np.linalg.norm(bvecs, axis=0)
    nz = bvals > 0
    if not np.allclose(norms[nz], 1.0, atol=1e-3):
        raise InputError("bvecs of non-zero b-values must be unit vectors", bvec)
    return bvals, bvecs


def scheme_paths() -> tuple[Path, Path, str]:
    """The real spine-generic scheme when the shared data are present, else the embedded copy."""
    base = shared_data_dir().joinpath(*REAL_SCHEME)
    bval, bvec = base.with_name(base.name + ".bval"), base.with_name(base.name + ".bvec")
    if bval.is_file() and bvec.is_file():
        return bval, bvec, str(bval.parent)
    return EMBEDDED_BVAL, EMBEDDED_BVEC, "embedded:data_modules/phantom/spine_generic_dwi.{bval,bvec}"


def world_gradients(bvecs: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """FSL bvecs (3, N) of an image with ``affine`` → unit world directions (N, 3)."""
    g = np.array(bvecs, dtype=float).T.copy()
    rot = np.asarray(affine, dtype=float)[:3, :3]
    rot = rot / np.linalg.norm(rot, axis=0)
    if np.linalg.det(rot) > 0:
        g[:, 0] = -g[:, 0]
    return g @ rot.T


def dw_signal(
    s0: np.ndarray,
    cls: np.ndarray,
    tangent: np.ndarray,
    level_idx: np.ndarray,
    tensors: dict[str, np.ndarray],
    bvals: np.ndarray,
    gdirs: np.ndarray,
) -> np.ndarray:
    """Noise-free signals (n_voxels, N) for voxels of class ``cls`` with cord tangents ``tangent``.

    ``tensors`` holds per-level arrays ``ad_wm, rd_wm, ad_gm, rd_gm`` (indexed by ``level_idx``).
    """
    n = s0.shape[0]
    adc = np.empty((n, bvals.size))
    iso = np.zeros(n)
    for c, d in ISO_DIFFUSIVITY.items():
        iso[cls == c] = d
    adc[:] = iso[:, None]
    for tissue, c in (("wm", WM), ("gm", GM)):
        sel = cls == c
        if not sel.any():
            continue
        ad = tensors[f"ad_{tissue}"][level_idx[sel]]
        rd = tensors[f"rd_{tissue}"][level_idx[sel]]
        cos2 = (tangent[sel] @ gdirs.T) ** 2
        adc[sel] = rd[:, None] + (ad - rd)[:, None] * cos2
    return s0[:, None] * np.exp(-bvals[None, :] * adc)


def fa_of(ad: np.ndarray, rd: np.ndarray) -> np.ndarray:
    """FA of an axially symmetric tensor."""
    md = (ad + 2 * rd) / 3
    num = np.sqrt((ad - md) ** 2 + 2 * (rd - md) ** 2)
    den = np.sqrt(ad**2 + 2 * rd**2)
    return np.sqrt(1.5) * num / den
