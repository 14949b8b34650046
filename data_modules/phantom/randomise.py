"""Domain randomisation of a phantom image: its grid, tissue intensities and artefacts.

Per subject and per anatomical contrast (T2w, T2*), from :class:`RandomiseOptions` ranges and the
image's own random stream (so the same seed gives the same image):

* **grid** — in-plane voxel size U(inplane), slice thickness U(thickness), axial (thick axis S-I)
  or sagittal (thick axis R-L) acquisition, a random voxel-axis orientation (any of the 48 codes),
  a rotation about a random axis by U(±oblique_max) deg, an in-plane field of view U(fov) (aspect
  U(0.85, 1.15)) whose centre is offset from the cord by up to ``offset_max`` of it — or, for a
  share ``wide_fov_prob`` of the images, a whole-neck field (axial: U(fov_axial) mm; sagittal: A-P
  U(fov_sagittal) mm) with its centre up to ``wide_offset_max`` of it from the cord. The grid
  covers the whole C1–C7 cord, so every level stays measurable; above ``max_voxels`` all voxel
  sizes are scaled up by the same factor. The image is rendered on that grid directly: the
  analytic partial-volume fractions of :meth:`Anatomy.classify` for that voxel box (thick slices
  average across their thickness), and the labels are the area-preserving binarisation of the
  same fractions on the same grid (:mod:`labels`) — nothing is resampled.
* **intensities** — per tissue (:data:`surroundings.TISSUES`): the contrast's template (with
  probability ``contrast_mix`` the other contrast's, or with ``templates`` one of those drawn
  uniformly), with probability ``blend_prob`` blended log-linearly with a second template at a weight
  U(0, 1) (the continuum between T1-like and T2-like contrast: CSF from darker to brighter than the
  cord), times ``exp(N(0, intensity_jitter))``, or with probability ``free_contrast`` U(0.02, 1) each
  (SynthSeg), times a global scale U(300, 2000); surrounding anatomy from :mod:`surroundings`.
* **EPI** — an image of the ``EPI`` or ``DWI`` template is also drawn as an echo-planar one: the
  anatomy is displaced along an in-plane phase axis by ``d·sin(2π z/λ + φ)`` (d U(1, 4) mm, λ U(20, 60)
  mm, z along the slice axis: a rigid in-plane shift per slice, so every slice's and level's cord area
  and volume stay exact and the labels move with the image), the image (not the labels) is blurred
  in-plane to a resolution of U(1.5, 3) mm (FWHM) and loses signal in 0–2 Gaussian drop-outs (radius
  U(3, 8) mm, depth U(0.3, 0.9)) near the cord, as susceptibility does.
* **artefacts** — k-space truncation (Gibbs ringing) with probability ``gibbs_prob``, ghosting
  (``tio.Ghosting``) and motion (``tio.Motion``) with theirs, a multiplicative bias field of
  log-amplitude U(0, bias_max) (wavelengths 60–300 mm), Rician noise at U(snr) on the white matter.

The anatomy, hence every value of the truth JSON, is untouched; the draws are recorded per image
in the truth JSON (``images.<contrast>.randomise``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from data_modules.phantom.anatomy import WM, Anatomy
from data_modules.phantom.contrast import BiasField, rician
from data_modules.phantom.geometry import Grid, make_grid, rotation
from data_modules.phantom.randomise_options import RandomiseOptions
from data_modules.phantom.surroundings import N_TISSUES, TISSUES, Surroundings, paint

# relative tissue values (scaled to a maximum of 1 when drawn) in TISSUES order: muscle, bone, disc, csf,
# wm, gm, fat, air, arch; from sct_testing_data t2 (cord/CSF ~0.3, dark muscle, bright fat) and t2s
# (GM > WM, bright CSF); T1w: CSF dark, cord brighter, fat and marrow bright; MT-on: WM saturated
# (GM > WM), MT-off: PD-like; EPI (fMRI/b0 mean): bright CSF, fat suppressed; DWI (mean of the
# diffusion-weighted volumes): CSF attenuated below the cord, fat suppressed
TEMPLATES = {
    "T2w": np.array([0.12, 0.30, 0.45, 1.00, 0.30, 0.34, 0.60, 0.02, 0.08]),
    "T2star": np.array([0.30, 0.15, 0.40, 1.00, 0.62, 0.75, 0.55, 0.03, 0.08]),
    "T1w": np.array([0.35, 0.55, 0.40, 0.15, 0.60, 0.52, 1.00, 0.02, 0.45]),
    "MTon": np.array([0.30, 0.25, 0.45, 0.80, 0.35, 0.48, 0.55, 0.03, 0.10]),
    "MToff": np.array([0.45, 0.35, 0.55, 0.85, 0.55, 0.62, 0.80, 0.03, 0.12]),
    "EPI": np.array([0.30, 0.15, 0.40, 1.00, 0.45, 0.50, 0.15, 0.02, 0.08]),
    "DWI": np.array([0.20, 0.10, 0.30, 0.25, 0.70, 0.60, 0.08, 0.02, 0.05]),
}
_OTHER = {"T2w": "T2star", "T2star": "T2w", "T1w": "T2w", "MTon": "MToff", "MToff": "MTon"}
EPI_TEMPLATES = ("EPI", "DWI")
_AXES = (("R", "L"), ("A", "P"), ("S", "I"))


@dataclass
class ImageDraw:
    """The random draws of one image."""

    template: str
    free: bool
    values: np.ndarray
    snr: float
    bias: BiasField
    slice_dir: np.ndarray  # world direction of the thick (slice) axis
    gibbs: float | None = None  # kept share of k-space along the in-plane axes
    ghosting: dict[str, Any] | None = None
    motion: dict[str, Any] | None = None
    grid: dict[str, Any] = field(default_factory=dict)
    blend: dict[str, Any] | None = None  # second template and its weight
    epi: dict[str, Any] | None = None  # echo-planar distortion, blur and drop-outs (EPI/DWI templates)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly record (truth JSON ``images.<contrast>.randomise``)."""
        return {
            "template": self.template,
            "free_contrast": self.free,
            "tissue_values": {n: round(float(x), 4) for n, x in zip(TISSUES, self.values)},
            "snr": round(self.snr, 4),
            "bias_amplitudes": np.round(self.bias.amps, 5).tolist(),
            "gibbs_kspace_share": self.gibbs,
            "ghosting": self.ghosting,
            "motion": self.motion,
            **self.grid,
            **({"blend": self.blend} if self.blend is not None else {}),
            **({"epi": self.epi} if self.epi is not None else {}),
        }


def _orientation(rng: np.random.Generator) -> str:
    perm = rng.permutation(3)
    return "".join(_AXES[a][int(rng.integers(2))] for a in perm)


def _points(
    anat: Anatomy, s_range: tuple[float, float], hw_u: float, hw_v: float, du: float, dv: float, step: float = 2.0
) -> np.ndarray:
    cl = anat.centerline
    s = np.arange(s_range[0], s_range[1] + step, step)
    c, nap, nrl = cl.point(s), cl.normal_ap(s), cl.normal_rl
    return np.concatenate([c + (du + a * hw_u) * nrl + (dv + b * hw_v) * nap[:, :] for a in (-1, 1) for b in (-1, 1)])


def _wide_fov(ro: RandomiseOptions, rng: np.random.Generator, axial: bool, fov_rl: float) -> tuple[float, float]:
    """A whole-neck field (R-L, A-P mm): axial U(fov_axial) (aspect U(0.85, 1.15)); sagittal: A-P
    U(fov_sagittal), R-L (the extent of its slices) the narrow draw ``fov_rl``."""
    if axial:
        fov = float(rng.uniform(ro.fov_axial_min, ro.fov_axial_max))
        return fov, fov * float(rng.uniform(0.85, 1.15))
    return fov_rl, float(rng.uniform(ro.fov_sagittal_min, ro.fov_sagittal_max))


def draw_grid(
    anat: Anatomy, ro: RandomiseOptions, rng: np.random.Generator, s_range: tuple[float, float]
) -> tuple[Grid, np.ndarray, dict[str, Any]]:
    """A random image grid over the cord, the world direction of its slice axis, and its record."""
    ip = float(rng.uniform(ro.inplane_min, ro.inplane_max))
    th = float(rng.uniform(ro.thickness_min, ro.thickness_max))
    axial = bool(rng.random() < ro.axial_prob)
    code = _orientation(rng)
    axis = rng.normal(size=3)
    angle = float(rng.uniform(-ro.oblique_max, ro.oblique_max))
    rot = rotation(axis, angle)
    fov = float(rng.uniform(ro.fov_min, ro.fov_max))
    fov_v = fov * float(rng.uniform(0.85, 1.15))
    du, dv = (float(x) for x in rng.uniform(-ro.offset_max, ro.offset_max, 2) * np.array([fov, fov_v]))
    wide = ro.wide_fov_prob > 0 and bool(rng.random() < ro.wide_fov_prob)  # no draw when off: same stream
    if wide:
        fov, fov_v = _wide_fov(ro, rng, axial, fov)
        du, dv = (float(x) for x in rng.uniform(-ro.wide_offset_max, ro.wide_offset_max, 2) * np.array([fov, fov_v]))
    pts = _points(anat, s_range, fov / 2, fov_v / 2, du, dv)
    spacing = np.array([ip, ip, th]) if axial else np.array([th, ip, ip])
    grid = make_grid(pts, tuple(spacing), code, rot)
    if grid.n_voxels > ro.max_voxels:
        spacing = spacing * (grid.n_voxels / ro.max_voxels) ** (1 / 3)
        grid = make_grid(pts, tuple(spacing), code, rot)
    slice_dir = rot @ (np.array([0.0, 0.0, 1.0]) if axial else np.array([1.0, 0.0, 0.0]))
    record = {
        "acquisition": "axial" if axial else "sagittal",
        "orientation": code,
        "spacing_rl_ap_si_mm": np.round(spacing, 4).tolist(),
        "oblique_deg": round(angle, 4),
        "oblique_axis": np.round(axis / np.linalg.norm(axis), 6).tolist(),
        "fov_mm": [round(fov, 3), round(fov_v, 3)],
        "fov_offset_mm": [round(du, 3), round(dv, 3)],
    }
    if ro.wide_fov_prob > 0:
        record["wide_fov"] = wide
    return grid, slice_dir, record


def _pick(ro: RandomiseOptions, rng: np.random.Generator, contrast: str) -> str:
    """Another template than the contrast's own: one of ``templates``, else its partner (T2w↔T2*)."""
    return _OTHER[contrast] if ro.templates is None else str(ro.templates[int(rng.integers(len(ro.templates)))])


def draw_image(
    contrast: str,
    ro: RandomiseOptions,
    rng: np.random.Generator,
    centre: np.ndarray,
    slice_dir: np.ndarray,
    cord_points: np.ndarray | None = None,
) -> ImageDraw:
    """Tissue values, noise, bias and artefact draws of one image of ``contrast`` (a :data:`TEMPLATES`
    contrast); ``cord_points`` (n, 3): where an EPI image's drop-outs may sit."""
    template = _pick(ro, rng, contrast) if rng.random() < ro.contrast_mix else contrast
    free = bool(rng.random() < ro.free_contrast)
    blend = None
    if free:
        rel = rng.uniform(0.02, 1.0, N_TISSUES)
    else:
        base = TEMPLATES[template]
        if ro.blend_prob > 0 and rng.random() < ro.blend_prob:
            other, w = _pick(ro, rng, contrast), float(rng.uniform(0.0, 1.0))
            base = np.exp((1.0 - w) * np.log(base) + w * np.log(TEMPLATES[other]))
            blend = {"template": other, "weight": round(w, 4)}
        rel = base * np.exp(rng.normal(0.0, ro.intensity_jitter, N_TISSUES))
    values = rel / rel.max() * rng.uniform(300.0, 2000.0)
    snr = float(rng.uniform(ro.snr_min, ro.snr_max))
    n = 3
    dirs = rng.normal(size=(n, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    wl = rng.uniform(60.0, 300.0, n)
    amp = float(rng.uniform(0.0, ro.bias_max))
    bias = BiasField(
        amp * rng.uniform(0.5, 1.0, n) / np.sqrt(n),
        dirs * (2 * np.pi / wl)[:, None],
        rng.uniform(0, 2 * np.pi, n),
        np.asarray(centre, dtype=float),
    )
    d = ImageDraw(template, free, values, snr, bias, np.asarray(slice_dir, dtype=float), blend=blend)
    if rng.random() < ro.gibbs_prob:
        d.gibbs = round(float(rng.uniform(0.5, 0.9)), 4)
    if rng.random() < ro.ghosting_prob:
        d.ghosting = {
            "num_ghosts": int(rng.integers(2, 8)),
            "intensity": round(float(rng.uniform(0.1, 0.6)), 4),
            "restore": 0.02,
            "phase_axis": int(rng.integers(2)),
        }
    if rng.random() < ro.motion_prob:
        k = int(rng.integers(1, 3))
        d.motion = {
            "degrees": np.round(rng.uniform(-3, 3, (k, 3)), 4).tolist(),
            "translation": np.round(rng.uniform(-2, 2, (k, 3)), 4).tolist(),
            "times": np.round(np.sort(rng.uniform(0.3, 0.9, k)), 4).tolist(),
        }
    if template in EPI_TEMPLATES and not free:
        d.epi = _draw_epi(rng, np.asarray(centre, dtype=float)[None] if cord_points is None else cord_points)
    return d


def _draw_epi(rng: np.random.Generator, cord_points: np.ndarray) -> dict[str, Any]:
    """Echo-planar draws (module docstring): phase axis, per-slice shift, in-plane blur, drop-outs."""
    n = int(rng.integers(0, 3))
    at = cord_points[rng.integers(len(cord_points), size=n)] + rng.normal(0.0, 4.0, (n, 3))
    return {
        "phase_axis": int(rng.integers(2)),
        "shift_mm": round(float(rng.uniform(1.0, 4.0)), 4),
        "wavelength_mm": round(float(rng.uniform(20.0, 60.0)), 4),
        "phase": round(float(rng.uniform(0.0, 2 * np.pi)), 4),
        "blur_fwhm_mm": round(float(rng.uniform(1.5, 3.0)), 4),
        "dropouts": [
            {
                "centre_mm": np.round(c, 3).tolist(),
                "radius_mm": round(float(rng.uniform(3.0, 8.0)), 4),
                "depth": round(float(rng.uniform(0.3, 0.9)), 4),
            }
            for c in at
        ],
    }


def epi_shift(draw: ImageDraw, grid: Grid) -> Callable[[np.ndarray], np.ndarray]:
    """``xyz (3, n) -> the anatomy's points imaged there``: the identity, or an EPI image's per-slice shift
    along its phase axis (constant within a slice: a rigid in-plane move, area- and volume-preserving)."""
    if draw.epi is None:
        return lambda xyz: xyz
    e = draw.epi
    phase_dir = grid.directions[:, _inplane_axes(grid, draw.slice_dir)[e["phase_axis"]]]
    k = 2 * np.pi / e["wavelength_mm"]
    origin = draw.bias.centre

    def shifted(xyz: np.ndarray) -> np.ndarray:
        z = (xyz - origin[:, None]).T @ draw.slice_dir
        return xyz - (e["shift_mm"] * np.sin(k * z + e["phase"]))[None, :] * phase_dir[:, None]

    return shifted


def epi_effects(image: np.ndarray, grid: Grid, draw: ImageDraw) -> np.ndarray:
    """An EPI image's in-plane blur (to ``blur_fwhm_mm``) and drop-outs; the image unchanged otherwise."""
    if draw.epi is None:
        return image
    from scipy.ndimage import gaussian_filter1d

    e, img = draw.epi, np.asarray(image, dtype=np.float32)
    for a in _inplane_axes(grid, draw.slice_dir):
        sigma = e["blur_fwhm_mm"] / 2.3548 / float(grid.spacing[a])
        img = gaussian_filter1d(img, sigma, axis=a, mode="nearest")
    if e["dropouts"]:
        xyz = grid.world()
        loss = np.ones(xyz.shape[1], dtype=np.float32)
        for dr in e["dropouts"]:
            r2 = np.sum((xyz - np.asarray(dr["centre_mm"])[:, None]) ** 2, axis=0)
            loss *= 1.0 - dr["depth"] * np.exp(-r2 / (2 * dr["radius_mm"] ** 2))
        img = img * loss.reshape(grid.shape)
    return img.astype(np.float32)


def voxel_fn(
    anat: Anatomy, sur: Surroundings, draw: ImageDraw, grid: Grid, texture: float, with_gm: bool
) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """``fn(world (3, n))``: noise-free biased image, level and canal/cord(/GM) fractions per point."""
    dirs, sp = grid.directions, grid.spacing
    h = float(np.mean(sp))

    moved = epi_shift(draw, grid)

    def fn(xyz: np.ndarray) -> dict[str, np.ndarray]:
        t = anat.classify(moved(xyz), dirs, sp)
        out = {
            "image": paint(anat, sur, t, draw.values, h, texture) * draw.bias(xyz),
            "level": t["level"],
            "f_canal": t["f_canal"].astype(np.float32),
            "f_cord": t["f_cord"].astype(np.float32),
        }
        if with_gm:
            out["f_gm"] = t["f_gm"].astype(np.float32)
        return out

    return fn


def _inplane_axes(grid: Grid, slice_dir: np.ndarray) -> list[int]:
    thick = int(np.argmax(np.abs(grid.directions.T @ slice_dir)))
    return [a for a in range(3) if a != thick]


def artefacts(image: np.ndarray, grid: Grid, draw: ImageDraw, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Gibbs ringing, ghosting, motion, then Rician noise; returns the image and the noise SD."""
    img = epi_effects(np.asarray(image, dtype=np.float32), grid, draw)
    axes = _inplane_axes(grid, draw.slice_dir)
    if draw.gibbs is not None:
        k = np.fft.fftn(img, axes=axes)
        for a in axes:
            f = np.abs(np.fft.fftfreq(img.shape[a]))
            shape = [1, 1, 1]
            shape[a] = -1
            k *= (f <= 0.5 * draw.gibbs).reshape(shape)
        img = np.abs(np.fft.ifftn(k, axes=axes)).astype(np.float32)
    if draw.ghosting is not None or draw.motion is not None:
        import torch
        import torchio as tio

        t = tio.ScalarImage(tensor=torch.from_numpy(img[None].copy()), affine=grid.affine)
        if draw.motion is not None:
            m = draw.motion
            t = tio.Motion(np.array(m["degrees"]), np.array(m["translation"]), np.array(m["times"]), "linear")(t)
        if draw.ghosting is not None:
            g = draw.ghosting
            t = tio.Ghosting(g["num_ghosts"], axes[g["phase_axis"]], g["intensity"], g["restore"])(t)
        img = np.clip(t.data[0].numpy(), 0.0, None).astype(np.float32)
    sigma = float(draw.values[WM] / draw.snr)
    return rician(img, sigma, rng), sigma


__all__ = ["TEMPLATES", "ImageDraw", "draw_grid", "draw_image", "voxel_fn", "artefacts", "epi_shift", "epi_effects"]
