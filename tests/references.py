"""Independent reference computations shared by tests (and the phantom benchmark).

Written without the project's analysis code so that they can check it: plain numpy/scipy/nibabel.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy.ndimage import map_coordinates


def centerline(truth: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arc length, world points and tangents of a phantom truth file's centerline samples."""
    cl = truth["centerline"]
    return np.array(cl["s_mm"]), np.array(cl["world_mm"]), np.array(cl["tangent"])


def perpendicular_area(
    mask: np.ndarray, affine: np.ndarray, truth: dict, s0: float, half: float = 16.0, step: float = 0.1
) -> float:
    """Area (mm²) of ``mask`` in the plane perpendicular to the centerline at arc length ``s0``.

    The plane is sampled on a fine grid and the mask read with nearest-neighbour interpolation.
    """
    s, p, t = centerline(truth)
    c = np.array([np.interp(s0, s, p[:, i]) for i in range(3)])
    n = np.array([np.interp(s0, s, t[:, i]) for i in range(3)])
    n /= np.linalg.norm(n)
    e1 = np.cross(n, [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    g = np.arange(-half, half, step) + step / 2
    a, b = np.meshgrid(g, g)
    pts = c[:, None] + e1[:, None] * a.ravel() + e2[:, None] * b.ravel()
    inv = np.linalg.inv(affine)
    ijk = inv[:3, :3] @ pts + inv[:3, 3:4]
    vals = map_coordinates(mask.astype(np.float32), ijk, order=0, mode="constant", cval=0.0)
    return float(vals.sum() * step * step)


def independent_csa(mask: np.ndarray, levels: np.ndarray, affine: np.ndarray) -> dict[int, float]:
    """Per-level CSA: canonical orientation, mm centroids, cubic polyfit centerline, count × pixel area × cos."""
    m_img = nib.as_closest_canonical(nib.Nifti1Image(mask.astype(np.uint8), affine))
    l_img = nib.as_closest_canonical(nib.Nifti1Image(levels.astype(np.int16), affine))
    m = np.asarray(m_img.dataobj) > 0
    lv = np.asarray(l_img.dataobj).astype(float)
    zooms = np.array(m_img.header.get_zooms()[:3], float)
    ks = np.flatnonzero(m.any(axis=(0, 1)))
    cx = np.array([np.argwhere(m[:, :, k]).mean(axis=0) for k in ks]) * zooms[:2]
    z = ks * zooms[2]
    dx = np.polyval(np.polyder(np.polyfit(z, cx[:, 0], 3)), z)
    dy = np.polyval(np.polyder(np.polyfit(z, cx[:, 1], 3)), z)
    area = np.array([m[:, :, k].sum() for k in ks]) * zooms[0] * zooms[1] / np.sqrt(1 + dx**2 + dy**2)
    slice_lv = np.array(
        [np.round(lv[:, :, k][lv[:, :, k] > 0].mean()) if (lv[:, :, k] > 0).any() else np.nan for k in ks]
    )
    return {
        int(L): float(area[slice_lv == L].mean()) for L in np.unique(slice_lv[np.isfinite(slice_lv)]) if 1 <= L <= 7
    }


def assert_subject_matches_files(
    subject, label: np.ndarray, affine: np.ndarray, image: np.ndarray | None = None
) -> None:
    """A preprocessed torchio subject (no resampling) holds ``label`` — an array on the native grid
    ``affine`` — voxel for voxel, reoriented by nibabel's closest canonical (RAS) orientation, and
    placed where its affine says (zero padding allowed around it, nothing else). With ``image``,
    the subject's image is the same window of the canonical image up to an intensity scaling
    (z-score): correlation > 0.9999.

    Catches a target mirrored or shifted against its image, which voxel sums and value sets miss.
    """
    ras = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(label).astype(np.int16), affine))
    want = np.asarray(ras.dataobj)
    got = subject["label"].data[0].numpy()
    got_aff = np.asarray(subject["label"].affine, float)
    np.testing.assert_allclose(np.asarray(subject["image"].affine, float), got_aff, atol=1e-6)
    # the canonical label's grid inside the subject's grid: the same axes, an integer offset
    m = np.linalg.inv(got_aff) @ np.asarray(ras.affine, float)
    np.testing.assert_allclose(m[:3, :3], np.eye(3), atol=1e-4, err_msg="subject grid is not the canonical one")
    off = np.round(m[:3, 3]).astype(int)
    np.testing.assert_allclose(m[:3, 3], off, atol=1e-4, err_msg="subject grid is shifted by a fraction of a voxel")
    assert (off >= 0).all() and all(o + w <= g for o, w, g in zip(off, want.shape, got.shape)), (
        off,
        want.shape,
        got.shape,
    )
    window = tuple(slice(o, o + w) for o, w in zip(off, want.shape))
    np.testing.assert_array_equal(got[window], want)
    outside = got.copy()
    outside[window] = 0
    assert not outside.any(), "label voxels in the padding"
    if image is not None:
        ras_img = np.asarray(nib.as_closest_canonical(nib.Nifti1Image(np.asarray(image, np.float32), affine)).dataobj)
        x = subject["image"].data[0].numpy()[window].ravel().astype(np.float64)
        r = np.corrcoef(x, ras_img.ravel().astype(np.float64))[0, 1]
        assert r > 0.9999, f"image does not match the canonical input (r = {r:.4f})"
