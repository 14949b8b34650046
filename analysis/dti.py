"""Diffusion tensor fit (dipy) and per-level FA / MD / RD / AD inside the cord.

* Gradients: ``.bval`` one row (or column); ``.bvec`` 3×N (FSL) or N×3 — detected from the
  number of volumes. Count mismatches, missing b=0 volumes and zero vectors at b>0 raise
  :class:`InputError` naming the file; non-unit vectors at b>0 sharing one length are normalised
  with a warning, vectors of varying lengths (a b-value encoded in the length?) are rejected.
* Scheme check: an :class:`InputError` when the tensor is undetermined (fewer than six distinct
  non-collinear directions, a rank-deficient B-matrix: no map is written); a :class:`SchemeWarning`
  when it is poorly determined — an ill-conditioned B-matrix
  (rows ``[gx², gy², gz², 2gxgy, 2gxgz, 2gygz]``; condition number > ``COND_B_WARN``), or nearly
  coplanar directions (smallest/largest singular value of the direction matrix < ``COPLANAR_WARN``).
  Measured: the spine-generic 60-direction scheme has cond(B) ≈ 1.6; ``sct_testing_data/dmri``
  (6 directions) has cond(B) ≈ 39 and is flagged.
* Fit: ``dipy.reconst.dti.TensorModel`` with ``fit_method`` ``"WLS"`` (default, the seed's) or
  ``"OLS"``; diffusion-weighted signals ≤ 0 are clipped by dipy to its ``min_signal`` (a
  :class:`SignalWarning` says how many voxels); a mean b=0 signal ≤ 0 inside the mask is rejected.
  Maps are written on the DWI grid with the DWI header (float32, atomic).
* Per-level means: slices are assigned a level as in :mod:`analysis.morphometrics` (rounded mean
  of the non-zero labels of the slice after RPI reorientation); a level's mean/SD is over the mask
  voxels of its slices (``level_mode="voxel"`` uses each voxel's own label instead).
* Region (:func:`dti_region`): the **white matter** when a WM mask is given (spine-generic and
  SCT report DTI in WM), else WM = cord − GM when both a cord and a GM mask are given, else the
  cord mask (else the labelled voxels, else the whole volume). The tensor is fitted inside the
  cord (or the WM); the table's ``Label`` column says which region was averaged (``WM`` or
  ``cord``) and ``Region`` how it was obtained.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import InputError

B0_THRESHOLD = 50.0
COND_B_WARN = 10.0
COPLANAR_WARN = 0.15
UNIT_TOL = 1e-3
NORM_SPREAD_TOL = 0.01  # relative spread of non-unit gradient lengths above which the file is rejected
DTI_METRICS = ("FA", "MD", "RD", "AD")


class SchemeWarning(UserWarning):
    """The gradient scheme cannot determine a tensor well."""


class SignalWarning(UserWarning):
    """Non-positive DWI signal was clipped before the fit."""


class GradientWarning(UserWarning):
    """Gradient vectors were normalised."""


# ---------------------------------------------------------------------------------- gradients
def _read_numbers(path: str | Path, kind: str) -> np.ndarray:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{kind} file not found", path)
    try:
        arr = np.loadtxt(path, ndmin=2, dtype=float)
    except ValueError as exc:
        raise InputError(f"{kind} file is not a whitespace-separated table of numbers ({exc})", path) from None
    if arr.size == 0:
        raise InputError(f"{kind} file is empty", path)
    if not np.isfinite(arr).all():
        raise InputError(f"{kind} file has NaN/Inf values", path)
    return arr


def read_bvals(path: str | Path) -> np.ndarray:
    """b-values from a one-row or one-column text file."""
    arr = _read_numbers(path, "bval")
    if min(arr.shape) != 1:
        raise InputError(f"bval file has shape {arr.shape}; expected one row or one column", path)
    b = arr.ravel()
    if (b < 0).any():
        raise InputError(f"bval file has negative b-values (min {b.min():g})", path)
    return b


def read_bvecs(path: str | Path, n_volumes: int) -> np.ndarray:
    """Gradient directions as (N, 3); accepts 3×N (FSL) or N×3, detected from ``n_volumes``."""
    arr = _read_numbers(path, "bvec")
    if arr.shape == (3, n_volumes):
        return arr.T.copy()
    if arr.shape == (n_volumes, 3):
        return arr.copy()
    if 3 in arr.shape:
        n = arr.shape[1] if arr.shape[0] == 3 else arr.shape[0]
        raise InputError(f"bvec file has {n} vectors but the DWI has {n_volumes} volumes", path)
    raise InputError(f"bvec file has shape {arr.shape}; expected 3×{n_volumes} (FSL) or {n_volumes}×3", path)


def load_gradients(
    bval_path: str | Path, bvec_path: str | Path, n_volumes: int, b0_threshold: float = B0_THRESHOLD
) -> tuple[np.ndarray, np.ndarray]:
    """Read and check b-values/vectors against the number of DWI volumes; returns ``(bvals, bvecs)``."""
    bvals = read_bvals(bval_path)
    if bvals.size != n_volumes:
        raise InputError(f"bval file has {bvals.size} values but the DWI has {n_volumes} volumes", bval_path)
    bvecs = read_bvecs(bvec_path, n_volumes)
    dw = bvals > b0_threshold
    if not (~dw).any():
        raise InputError(f"no b=0 volume (all b-values > {b0_threshold:g}); a tensor fit needs one", bval_path)
    if not dw.any():
        raise InputError("no diffusion-weighted volume (all b-values are b=0)", bval_path)
    norms = np.linalg.norm(bvecs, axis=1)
    zero = dw & (norms < 1e-6)
    if zero.any():
        raise InputError(
            f"zero gradient vector for diffusion-weighted volume(s) {np.flatnonzero(zero).tolist()}", bvec_path
        )
    off = dw & (np.abs(norms - 1) > UNIT_TOL)
    if off.any() and np.ptp(norms[dw]) > NORM_SPREAD_TOL * float(np.median(norms[dw])):
        # lengths that vary between volumes are not a scale slip: some scanners encode lower b-values
        # by shorter vectors (b_eff = b·|g|²), and normalising them would silently give wrong b-values
        raise InputError(
            f"bvec file has non-unit vectors of varying length ({norms[dw].min():.3g}–"
            f"{norms[dw].max():.3g}) at b>0: if the length encodes the b-value, write b·|g|² in the "
            "bval file and unit vectors in the bvec file",
            bvec_path,
        )
    if off.any():
        warnings.warn(
            f"{bvec_path}: {int(off.sum())} gradient vector(s) are not unit length "
            f"(norms {norms[off].min():.3g}–{norms[off].max():.3g}); normalised",
            GradientWarning,
            stacklevel=2,
        )
    out = np.zeros_like(bvecs)
    out[dw] = bvecs[dw] / norms[dw, None]
    return bvals, out


@dataclass
class SchemeReport:
    """How well a gradient scheme determines the tensor."""

    n_dw: int  # diffusion-weighted volumes
    n_directions: int  # distinct directions (antipodes identified)
    rank_b: int  # rank of the B-matrix
    cond_b: float  # condition number of the B-matrix
    coplanarity: float  # smallest / largest singular value of the direction matrix
    problems: list[str]

    @property
    def degenerate(self) -> bool:
        """True when at least one problem was found."""
        return bool(self.problems)

    @property
    def undetermined(self) -> bool:
        """True when no tensor can be fitted at all (B-matrix rank < 6): FA/MD would be arbitrary."""
        return self.rank_b < 6 or self.n_directions < 6


def b_matrix(dirs: np.ndarray) -> np.ndarray:
    """Rows ``[gx², gy², gz², 2gxgy, 2gxgz, 2gygz]`` of unit directions."""
    g = np.asarray(dirs, float)
    return np.stack(
        [g[:, 0] ** 2, g[:, 1] ** 2, g[:, 2] ** 2, 2 * g[:, 0] * g[:, 1], 2 * g[:, 0] * g[:, 2], 2 * g[:, 1] * g[:, 2]],
        axis=1,
    )


def _distinct_directions(dirs: np.ndarray, tol_deg: float = 1.0) -> np.ndarray:
    keep: list[np.ndarray] = []
    cos_tol = np.cos(np.radians(tol_deg))
    for g in dirs:
        if all(abs(float(g @ k)) < cos_tol for k in keep):
            keep.append(g)
    return np.array(keep).reshape(-1, 3)


def scheme_report(bvals: np.ndarray, bvecs: np.ndarray, b0_threshold: float = B0_THRESHOLD) -> SchemeReport:
    """Diagnose the scheme (see module docstring for the criteria)."""
    dw = bvals > b0_threshold
    dirs = bvecs[dw]
    uniq = _distinct_directions(dirs)
    problems = []
    if len(uniq) < 6:
        problems.append(f"only {len(uniq)} distinct non-collinear directions (a tensor needs 6)")
    bm = b_matrix(dirs)
    sv = np.linalg.svd(bm, compute_uv=False)
    rank = int((sv > sv[0] * 1e-8).sum())
    cond = float(sv[0] / sv[-1]) if sv[-1] > 0 and len(sv) == 6 else float("inf")
    if rank < 6:
        problems.append(f"B-matrix rank {rank} < 6: the tensor is undetermined")
    elif cond > COND_B_WARN:
        problems.append(f"B-matrix condition number {cond:.1f} > {COND_B_WARN:g}: tensor poorly determined")
    dsv = np.linalg.svd(dirs, compute_uv=False)
    copl = float(dsv[-1] / dsv[0]) if len(dsv) == 3 and dsv[0] > 0 else 0.0
    if copl < COPLANAR_WARN:
        problems.append(f"directions nearly coplanar (singular-value ratio {copl:.3f} < {COPLANAR_WARN:g})")
    return SchemeReport(
        n_dw=int(dw.sum()), n_directions=len(uniq), rank_b=rank, cond_b=cond, coplanarity=copl, problems=problems
    )


# ---------------------------------------------------------------------------------------- fit
def fit_tensor(
    data: np.ndarray,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    mask: np.ndarray | None = None,
    fit_method: str = "WLS",
    b0_threshold: float = B0_THRESHOLD,
) -> dict[str, np.ndarray]:
    """Fit the tensor with dipy; returns float64 maps ``FA, MD, RD, AD`` (0 outside ``mask``)."""
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel

    method = fit_method.upper()
    if method not in ("WLS", "OLS"):
        raise InputError(f"fit method {fit_method!r}: expected WLS or OLS")
    data = np.asarray(data)
    if data.ndim != 4:
        raise InputError(f"DWI must be 4D, got {data.ndim}D with shape {data.shape}")
    m = np.ones(data.shape[:3], bool) if mask is None else np.asarray(mask, bool)
    nonpos = int((data[m] <= 0).any(axis=-1).sum())
    if nonpos:
        warnings.warn(
            f"{nonpos} voxel(s) have non-positive signal in some volume; dipy clips them to its "
            f"min_signal before the log-linear fit",
            SignalWarning,
            stacklevel=2,
        )
    gtab = gradient_table(np.asarray(bvals, float), bvecs=np.asarray(bvecs, float), b0_threshold=b0_threshold)
    model = TensorModel(gtab, fit_method=method)
    fit = model.fit(data, mask=m)
    out = {}
    for name, arr in (("FA", fit.fa), ("MD", fit.md), ("RD", fit.rd), ("AD", fit.ad)):
        a = np.nan_to_num(np.asarray(arr, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        a[~m] = 0.0
        out[name] = a
    return out


def write_maps(maps: dict[str, np.ndarray], ref_img, out_dir: str | Path, prefix: str = "") -> dict[str, Path]:
    """Write each map as ``<out_dir>/<prefix>FA.nii.gz`` … on the DWI grid, keeping its header."""
    from core.io import save_nifti

    paths = {}
    for name, arr in maps.items():
        p = Path(out_dir) / f"{prefix}{name}.nii.gz"
        hdr = ref_img.header.copy()
        hdr.set_data_dtype(np.float32)
        hdr.set_slope_inter(1.0, 0.0)
        save_nifti(arr.astype(np.float32), ref_img.affine, p, header=hdr)
        paths[name] = p
    return paths


# ---------------------------------------------------------------------------------- per level
def per_level_means(
    maps: dict[str, np.ndarray],
    affine: np.ndarray,
    mask: np.ndarray,
    levels: np.ndarray | None = None,
    level_mode: str = "slice",
    filename: str = "",
    label: str = "cord",
    region: str = "",
):
    """Per-level MEAN/STD of each map inside ``mask`` (arrays on the DWI grid); one row per level.

    Without ``levels`` one row covers the whole mask (``VertLevel`` empty).
    """
    import pandas as pd

    from analysis.centerline import to_rpi
    from analysis.morphometrics import format_num_list, slice_levels

    m, _ = to_rpi(np.asarray(mask) > 0, affine)
    mp = {k: to_rpi(v, affine)[0] for k, v in maps.items()}
    groups: list[tuple[str, str, np.ndarray]] = []
    if levels is None:
        ks = np.flatnonzero(m.any(axis=(0, 1)))
        groups.append(("", format_num_list(ks), m))
    else:
        lv, _ = to_rpi(np.round(np.asarray(levels, float)), affine)
        if level_mode == "slice":
            sl = slice_levels(lv)
            for L in sorted(np.unique(sl[np.isfinite(sl)])):
                ks = np.flatnonzero(sl == L)
                sel = np.zeros_like(m)
                sel[:, :, ks] = m[:, :, ks]
                groups.append((str(int(L)), format_num_list(ks), sel))
        elif level_mode == "voxel":
            for L in sorted(np.unique(lv[(lv > 0) & m])):
                sel = m & (lv == L)
                groups.append((str(int(L)), format_num_list(np.flatnonzero(sel.any(axis=(0, 1)))), sel))
        else:
            raise ValueError(f"level_mode {level_mode!r}: slice or voxel")
    rows = []
    for level, slices, sel in groups:
        row = {
            "Filename": filename,
            "Slice (I->S)": slices,
            "VertLevel": level,
            "Label": label,
            "Size [vox]": int(sel.sum()),
        }
        for name in maps:
            v = mp[name][sel]
            row[f"MEAN({name})"] = float(v.mean()) if v.size else np.nan
            row[f"STD({name})"] = float(v.std()) if v.size else np.nan
        row["Region"] = region
        rows.append(row)
    return pd.DataFrame(rows)


#: ``Region`` values of :func:`dti_region`
REGION_WM_MASK, REGION_CORD_MINUS_GM, REGION_CORD = "WM mask", "cord minus GM", "cord mask"


def dti_region(
    cord: np.ndarray | None, wm: np.ndarray | None = None, gm: np.ndarray | None = None
) -> tuple[np.ndarray | None, str, str]:
    """The voxels to average and their ``(Label, Region)``: WM mask > cord − GM > cord (module docstring)."""
    if wm is not None:
        return np.asarray(wm, bool), "WM", REGION_WM_MASK
    if gm is not None and cord is not None:
        return np.asarray(cord, bool) & ~np.asarray(gm, bool), "WM", REGION_CORD_MINUS_GM
    return (None if cord is None else np.asarray(cord, bool)), "cord", REGION_CORD


@dataclass
class DTIResult:
    """Output of :func:`run_dti`."""

    table: object  # pandas DataFrame, one row per level
    maps: dict[str, np.ndarray]
    scheme: SchemeReport
    map_paths: dict[str, Path]


def run_dti(
    dwi: str | Path,
    bval: str | Path,
    bvec: str | Path,
    mask: str | Path | None = None,
    levels: str | Path | None = None,
    *,
    fit_method: str = "WLS",
    maps_dir: str | Path | None = None,
    map_prefix: str = "",
    level_mode: str = "slice",
    b0_threshold: float = B0_THRESHOLD,
    wm_mask: str | Path | None = None,
    gm_mask: str | Path | None = None,
) -> DTIResult:
    """Load and check the inputs, warn on a weak scheme, fit, write maps, average per level.

    ``mask`` is the cord mask; ``wm_mask`` (or ``gm_mask`` with ``mask``: WM = cord − GM) makes the
    means white-matter means (:func:`dti_region`).
    """
    from core.io import check_same_grid, load_label, load_nifti

    img = load_nifti(dwi, ndim=4, kind="DWI")
    data = np.asanyarray(img.dataobj)
    bvals, bvecs = load_gradients(bval, bvec, data.shape[3], b0_threshold)
    rep = scheme_report(bvals, bvecs, b0_threshold)
    if rep.undetermined:
        raise InputError(
            "the diffusion scheme cannot determine a tensor (" + "; ".join(rep.problems) + "): no FA/MD/RD/AD written",
            bvec,
        )
    if rep.degenerate:
        warnings.warn(f"{bvec}: weak diffusion scheme — " + "; ".join(rep.problems), SchemeWarning, stacklevel=2)
    ref3 = _first_volume(img)
    m = lv = None
    if mask is not None:
        m_img, m_arr = load_label(mask, kind="cord mask", require_nonempty=True)
        check_same_grid(ref3, m_img, dwi, mask)
        m = m_arr > 0
    if levels is not None:
        l_img, lv = load_label(levels, kind="vertebral levels", require_nonempty=True)
        check_same_grid(ref3, l_img, dwi, levels)
        if m is None:
            m = lv > 0
    wm = gm = None
    for path, kind in ((wm_mask, "white-matter mask"), (gm_mask, "gray-matter mask")):
        if path is not None:
            t_img, t_arr = load_label(path, kind=kind, require_nonempty=kind.startswith("white"))
            check_same_grid(ref3, t_img, dwi, path)
            if kind.startswith("white"):
                wm = t_arr > 0
            else:
                gm = t_arr > 0
    region, label, how = dti_region(m, wm, gm)
    if region is not None and not region.any():
        raise InputError("the white-matter region (cord minus GM) is empty", gm_mask)
    if region is not None and lv is not None and not _levels_meet_mask(lv, region, img.affine, level_mode):
        what = Path(wm_mask or mask or levels).name
        raise InputError(f"no vertebral level where the {label} mask is (no slice of mask {what} has a level)", levels)
    if region is not None:
        check_b0_signal(data, bvals, region, dwi, b0_threshold)
    fit_mask = region if m is None else (m | region)
    maps = fit_tensor(data, bvals, bvecs, fit_mask, fit_method, b0_threshold)
    paths = write_maps(maps, img, maps_dir, map_prefix) if maps_dir is not None else {}
    if region is None:
        region, how = np.ones(data.shape[:3], bool), "whole volume"
    table = per_level_means(maps, img.affine, region, lv, level_mode, filename=Path(dwi).name, label=label, region=how)
    return DTIResult(table=table, maps=maps, scheme=rep, map_paths=paths)


def check_b0_signal(
    data: np.ndarray, bvals: np.ndarray, mask: np.ndarray, path: str | Path, b0_threshold: float = B0_THRESHOLD
) -> None:
    """Reject a DWI whose mean b=0 signal is ≤ 0 in a voxel of ``mask`` (no tensor can be fit there).

    Non-positive diffusion-weighted values in a few voxels are left to :func:`fit_tensor` (clipped,
    with a :class:`SignalWarning`); outside the mask (background) nothing is checked.
    """
    b0 = np.asarray(data)[..., np.asarray(bvals) <= b0_threshold].mean(axis=-1)
    bad = np.asarray(mask, bool) & ~(b0 > 0)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(
            f"non-positive b=0 signal in {int(bad.sum())} of {int(np.asarray(mask, bool).sum())} "
            f"mask voxels (e.g. voxel {first}: {float(b0[first]):g}); check the data scaling and "
            "that the mask is on the cord",
            path,
        )


def _levels_meet_mask(levels: np.ndarray, mask: np.ndarray, affine: np.ndarray, level_mode: str) -> bool:
    """Whether some mask voxel gets a level (its slice's level, or its own label in voxel mode)."""
    from analysis.centerline import to_rpi
    from analysis.morphometrics import slice_levels

    if level_mode == "voxel":
        return bool(((np.asarray(levels) > 0) & np.asarray(mask, bool)).any())
    lv, _ = to_rpi(np.round(np.asarray(levels, float)), affine)
    m, _ = to_rpi(np.asarray(mask, bool), affine)
    sl = slice_levels(lv)
    return bool((m.any(axis=(0, 1)) & np.isfinite(sl)).any())


def _first_volume(img):
    import nibabel as nib

    return nib.Nifti1Image(np.zeros(img.shape[:3], np.uint8), img.affine)
