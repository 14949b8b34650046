"""NIfTI and file I/O with early, explicit validation and atomic writes.

Every reader raises :class:`core.errors.InputError` naming the file and the problem;
every writer writes to a temporary name in the destination folder and renames it, so a
killed process never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InputError, OutputError

AFFINE_ATOL_MM = 1e-3  # tolerance on affine entries when comparing image and label grids
_UMASK = os.umask(0o022)  # read the process umask (only way) and restore it at once
os.umask(_UMASK)


# --------------------------------------------------------------------------------------- writes
@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success only."""
    path = Path(path)
    suffix = "".join(path.suffixes) or ".tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{suffix}", dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600: give the result the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:  # disk full, quota, file too large, read-only: one line naming the output
        raise write_error(path, exc) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_error(path: str | Path, exc: OSError) -> OutputError:
    """An OS error while writing ``path`` as one line (the earlier file under that name is kept)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    kept = " (nothing replaced)" if Path(path).exists() else ""
    return OutputError(f"cannot write: {reason}{kept}", path)


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write a text file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write JSON (sorted keys, indented, NaN written as null-safe strings)."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_csv(path: str | Path, frame) -> Path:
    """Atomically write a pandas DataFrame as CSV (no index)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def save_nifti(data: np.ndarray, affine: np.ndarray, path: str | Path, header=None, dtype: Any | None = None) -> Path:
    """Atomically write a NIfTI image; keeps ``header`` (qform/sform codes, pixdim units)."""
    import nibabel as nib

    arr = np.asarray(data if dtype is None else np.asarray(data).astype(dtype))
    hdr = header.copy() if header is not None else None
    img = nib.Nifti1Image(arr, affine, header=hdr)
    if hdr is not None:
        qcode = int(header["qform_code"]) or 1
        scode = int(header["sform_code"]) or 1
        img.set_qform(affine, code=qcode)
        img.set_sform(affine, code=scode)
    img.set_data_dtype(arr.dtype)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return Path(path)


def sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------- reads
def load_nifti(
    path: str | Path, *, ndim: int | Sequence[int] | None = 3, kind: str = "image", allow_nonfinite: bool = False
):
    """Load and check a NIfTI file; returns a ``nibabel.Nifti1Image`` with data checked.

    ``ndim`` is the expected dimensionality (3 for images and labels, 4 for DWI); a 4D
    image whose last axis has length 1 is accepted as 3D. ``kind`` only words messages.
    """
    import nibabel as nib

    path = Path(path)
    if not path.exists():
        raise InputError(f"{kind} file not found", path)
    if path.is_dir():
        raise InputError("expected a NIfTI file, found a directory", path)
    if path.name.endswith(".gz"):
        with open(path, "rb") as f:
            if f.read(2) != b"\x1f\x8b":
                raise InputError("not a gzip file (a .nii.gz must be gzip-compressed)", path)
    check_raw_pixdim(path, kind)
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises several types for bad files
        raise InputError(
            f"not a readable NIfTI file ({type(exc).__name__}: {' '.join(str(exc).split())})", path
        ) from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"not a NIfTI image (read as {type(img).__name__})", path)
    check_header(img, path, kind)
    try:
        data = np.asanyarray(img.dataobj)
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile, ValueError) as exc:
        raise InputError(f"truncated or corrupt NIfTI data ({' '.join(str(exc).split())})", path) from None
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        shape = data.shape
        if len(shape) == 4 and shape[-1] == 1 and 3 in allowed:
            data = data[..., 0]
        if data.ndim not in allowed:
            want = " or ".join(f"{d}D" for d in allowed)
            raise InputError(f"{kind} is {data.ndim}D with shape {tuple(shape)}, expected {want}", path)
    if not allow_nonfinite and np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        n = int((~np.isfinite(data)).sum())
        raise InputError(f"{kind} has {n} NaN/Inf voxels", path)
    out = nib.Nifti1Image(data, img.affine, header=img.header)
    out.set_data_dtype(data.dtype)
    return out


HEADER_ATOL_MM = 1e-2  # qform vs sform, pixdim vs affine: float32 round-off of real headers is ~1e-4


def check_raw_pixdim(path: str | Path, kind: str = "image") -> None:
    """Refuse a spatial ``pixdim`` of 0 (or below) as stored in the file, before nibabel reads it.

    nibabel replaces such a size by 1 mm with a logged warning; the real size is unknown.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb") as f:
            raw = f.read(348)
    except (OSError, EOFError, zlib.error):
        return  # nibabel reports the damaged file
    if len(raw) < 348:
        return
    for order in ("<", ">"):
        if int(np.frombuffer(raw[:4], dtype=f"{order}i4")[0]) == 348:  # NIfTI-1 (NIfTI-2: nibabel's checks)
            ndim = int(np.frombuffer(raw[40:42], dtype=f"{order}i2")[0])
            pix = np.frombuffer(raw[76:108], dtype=f"{order}f4").astype(float)[1 : 1 + min(3, max(ndim, 1))]
            if any(not np.isfinite(v) or v <= 0 for v in pix):
                raise InputError(
                    f"{kind} header has voxel size pixdim[1:{len(pix) + 1}] = "
                    f"{tuple(round(float(v), 6) for v in pix)}: a size of 0 (or below) is unknown, "
                    "not 1 mm; fix the header",
                    path,
                )
            return


def check_header(img, path: str | Path, kind: str = "image") -> None:
    """Refuse headers whose geometry is ambiguous; every millimetre figure depends on it.

    * an axis of length 0 (no voxels);
    * a spatial ``pixdim`` of 0 or below (see :func:`check_raw_pixdim`, called before nibabel reads it);
    * a valid qform and a valid sform that disagree (nibabel uses the sform for the grid while the
      voxel size in ``pixdim`` follows the qform: areas off by the squared ratio);
    * ``pixdim`` voxel sizes that differ from the affine's (what areas and the grid would each use).
    """
    hdr = img.header
    dims = [int(d) for d in hdr["dim"][1 : 1 + int(hdr["dim"][0])]]
    if any(d <= 0 for d in dims):
        raise InputError(
            f"{kind} header has an axis of length 0 (dim = {tuple(dims)}): the image holds no voxels", path
        )
    nsp = min(3, len(dims))
    pix = [float(v) for v in hdr["pixdim"][1 : 1 + nsp]]
    qcode, scode = int(hdr["qform_code"]), int(hdr["sform_code"])
    if qcode > 0 and scode > 0:
        q, s_ = np.asarray(hdr.get_qform(), float), np.asarray(hdr.get_sform(), float)
        diff = float(np.abs(q - s_).max())
        if diff > HEADER_ATOL_MM:
            qz = tuple(round(float(v), 4) for v in np.linalg.norm(q[:3, :3], axis=0))
            sz = tuple(round(float(v), 4) for v in np.linalg.norm(s_[:3, :3], axis=0))
            raise InputError(
                f"{kind} header: qform and sform disagree by {diff:.3g} mm (voxel sizes {qz} vs {sz}); "
                "which grid is right is unknown: make them equal (e.g. fslorient -copyqform2sform)",
                path,
            )
    aff = np.asarray(img.affine, float)
    az = np.linalg.norm(aff[:3, :nsp], axis=0)
    if np.abs(az - np.asarray(pix)).max() > HEADER_ATOL_MM * max(1.0, float(az.max())):
        raise InputError(
            f"{kind} header: voxel size in pixdim {tuple(round(v, 4) for v in pix)} differs from "
            f"the affine's {tuple(round(float(v), 4) for v in az)}; fix the header",
            path,
        )


def check_same_grid(image, label, image_path: str | Path, label_path: str | Path, atol: float = AFFINE_ATOL_MM) -> None:
    """Raise if a label is not on its image's grid (shape, or affine beyond ``atol``)."""
    ishape, lshape = image.shape[:3], label.shape[:3]
    if tuple(ishape) != tuple(lshape):
        raise InputError(f"label shape {tuple(lshape)} != image shape {tuple(ishape)} ({image_path})", label_path)
    diff = float(np.abs(np.asarray(image.affine) - np.asarray(label.affine)).max())
    if diff > atol:
        raise InputError(
            f"label affine differs from image affine by {diff:.3g} mm (tolerance {atol}) ({image_path})", label_path
        )


def load_label(
    path: str | Path, allowed: Sequence[int] | None = None, *, require_nonempty: bool = False, kind: str = "label"
) -> tuple[Any, np.ndarray]:
    """Load an integer label map; checks integrality, allowed values and emptiness.

    Returns ``(nifti_image, int16 array)``. Labels stored as floats are accepted when all
    values are integers (real labels come as uint8/int16/int64/float32/float64).
    """
    img = load_nifti(path, ndim=3, kind=kind)
    data = np.asanyarray(img.dataobj)
    check_not_negative(data, path, kind)
    if np.issubdtype(data.dtype, np.floating):
        if not np.allclose(data, np.round(data), atol=1e-3):
            raise InputError(
                f"{kind} has non-integer values (e.g. {_first_nonint(data)}); expected an integer label map", path
            )
        data = np.round(data)
    arr = data.astype(np.int16)
    if allowed is not None:
        bad = sorted(set(np.unique(arr).tolist()) - set(int(a) for a in allowed))
        if bad:
            raise InputError(f"{kind} has values {bad} outside the expected set {sorted(allowed)}", path)
    if require_nonempty and not (arr > 0).any():
        raise InputError(f"{kind} is empty (no voxel > 0)", path)
    return img, arr


def check_not_negative(data: np.ndarray, path: str | Path, kind: str = "mask") -> None:
    """Refuse a mask or label map holding values below 0, saying which values and the storage type.

    Such a map is not "empty": 255 written into a signed int8 reads back as -1, and every voxel of the
    mask would silently count as background. A mask holds 0 = background and > 0 = foreground.
    """
    arr = np.asarray(data)
    if arr.dtype.kind not in "iuf" or arr.dtype.kind == "u" or not (arr < 0).any():
        return
    neg = np.unique(arr[arr < 0])
    shown = ", ".join(f"{float(v):g}" for v in neg[:5]) + (", ..." if neg.size > 5 else "")
    hint = "; 255 written into int8 reads as -1: store masks as uint8" if arr.dtype == np.int8 else ""
    raise InputError(
        f"{kind} holds negative values ({shown}) in {int((arr < 0).sum())} voxel(s), stored as {arr.dtype}{hint}; "
        "a mask holds 0 = background and > 0 = foreground",
        path,
    )


def _first_nonint(data: np.ndarray) -> float:
    flat = data[np.abs(data - np.round(data)) > 1e-3]
    return float(flat.flat[0]) if flat.size else float("nan")


def check_image_values(data: np.ndarray, path: str | Path, kind: str = "image") -> None:
    """Reject constant images (nothing to segment or normalise)."""
    if data.size and float(np.nanmax(data)) == float(np.nanmin(data)):
        raise InputError(f"{kind} is constant (all voxels = {float(data.flat[0]):g})", path)
