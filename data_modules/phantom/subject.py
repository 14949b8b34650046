"""One phantom subject: draw, voxelise on each image grid, write images, labels and truth."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from core import io
from data_modules.phantom import layout
from data_modules.phantom import randomise as rnd
from data_modules.phantom.anatomy import BODY_GAP, DISC_LABELS, GM, LEVEL_NAMES, WM, Anatomy, build_anatomy
from data_modules.phantom.contrast import BiasField, mix, noise_sigma, rician, to_dtype, vendor_values
from data_modules.phantom.dwi import dw_signal, read_scheme, scheme_paths, world_gradients
from data_modules.phantom.geometry import Grid, make_grid, oblique_rotation, tube_points
from data_modules.phantom.labels import nested_masks, si_axis
from data_modules.phantom.motion import motion_matrix, motion_record, moved_grid
from data_modules.phantom.options import PhantomOptions
from data_modules.phantom.pmj import extra_top_mm, pmj_label
from data_modules.phantom.population import MD_CSF, SubjectDraw, draw_subject, load_sites, tensor_params
from data_modules.phantom.surroundings import Surroundings, draw_surroundings

FOV_MARGIN_MM = 6.0  # image coverage beyond the top of C1 and the C7/T1 disc (arc length)
T2W_SPACING = (0.8, 0.8, 0.8)
T2STAR_SPACING = (0.5, 0.5, 5.0)
DWI_SPACING = (0.9, 0.9, 5.0)
T1W_SPACING = (1.0, 1.0, 1.0)
MTS_SPACING = (0.9, 0.9, 5.0)
CHUNK = 262144  # voxels per vectorised block
# independent random streams of a subject (SeedSequence spawn keys)
STREAM_DEMOGRAPHICS, STREAM_ANATOMY, STREAM_BIAS, STREAM_T2W, STREAM_T2STAR, STREAM_DWI = range(6)
STREAM_SURROUNDINGS, STREAM_RANDOMISE, STREAM_CANAL = 6, {"T2w": 7, "T2star": 8}, 9  # --randomise only
STREAM_REPOSITION = 10  # --sessions: the repositioning of sessions 2..N
STREAM_EXTRA = {"T1w": 11, "MTon": 12, "MToff": 13}  # noise of the contrasts beyond T2w/T2* (``contrasts``)
STREAM_RANDOMISE.update({"T1w": 14, "MTon": 15, "MToff": 16})
# the new acquisition of session 2..N: grid rotation (deg, random axis), translation (mm per axis),
# voxel-size factor per axis
REPOSITION_ROTATION_DEG, REPOSITION_SHIFT_MM, REPOSITION_SCALE = 5.0, 3.0, (0.85, 1.15)


def session_rng(seed: int, index: int, stream: int, session: int = 1) -> np.random.Generator:
    """Generator of one purpose of one session: session 1 is the subject's own stream (the cohort
    without sessions), session ``s`` ≥ 2 a stream of its own (spawn key ``(index, stream, s)``)."""
    if session <= 1:
        return subject_rng(seed, index, stream)
    return np.random.default_rng(
        np.random.SeedSequence(entropy=int(seed), spawn_key=(int(index), stream, int(session)))
    )


@dataclasses.dataclass(frozen=True)
class Reposition:
    """A session's new placement of every grid: rotation about the grid's centre of the anatomy, shift, voxel sizes."""

    rotation: np.ndarray  # 3×3
    shift: np.ndarray  # mm, world
    scale: np.ndarray  # voxel-size factors along the (rotated) R-L, A-P, S-I axes

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Reposition:
        """Rotation by U(±5)° about a random axis, shift U(±3) mm per axis, voxel sizes × U(0.85, 1.15)."""
        from data_modules.phantom.geometry import rotation

        axis = rng.normal(size=3)
        angle = float(rng.uniform(-REPOSITION_ROTATION_DEG, REPOSITION_ROTATION_DEG))
        shift = rng.uniform(-REPOSITION_SHIFT_MM, REPOSITION_SHIFT_MM, 3)
        scale = rng.uniform(*REPOSITION_SCALE, 3)
        return cls(rotation(axis, angle), shift, scale)

    def to_dict(self) -> dict[str, Any]:
        """JSON record (truth ``sessions.<ses>.reposition``)."""
        return {
            "rotation": np.round(self.rotation, 9).tolist(),
            "shift_mm": np.round(self.shift, 6).tolist(),
            "voxel_scale": np.round(self.scale, 6).tolist(),
        }


def subject_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """Generator of one purpose of one subject: independent of the cohort size and of workers."""
    return np.random.default_rng(np.random.SeedSequence(entropy=int(seed), spawn_key=(int(index), stream)))


def _over_grid(grid: Grid, fn: Callable[[np.ndarray], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Apply ``fn(world (3, n)) -> {name: per-voxel array}`` over slabs of the grid; reshape to the grid."""
    parts: dict[str, list[np.ndarray]] = {}
    rows = max(1, CHUNK // (grid.shape[1] * grid.shape[2]))
    for i0 in range(0, grid.shape[0], rows):
        res = fn(grid.world(i0, min(i0 + rows, grid.shape[0])))
        for k, v in res.items():
            parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v, axis=0).reshape(grid.shape + v[0].shape[1:]) for k, v in parts.items()}


def _nifti_header(pixdim4: float | None = None):
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_xyzt_units("mm", "sec")
    hdr["qform_code"] = 1
    hdr["sform_code"] = 1
    if pixdim4 is not None:
        hdr["pixdim"][4] = pixdim4
    return hdr


def _save(data: np.ndarray, grid: Grid, path: Path, pixdim4: float | None = None) -> None:
    io.save_nifti(np.asarray(data), grid.affine, path, header=_nifti_header(pixdim4))


def _save_labels(labels: dict[str, tuple[np.ndarray, str]], grid: Grid, paths: dict[str, Path]) -> None:
    """Save each label map (``key: (data, description)``) as uint8 on ``grid`` with its BIDS sidecar
    (the layout's, ``paths``: a key it has no path for is not written)."""
    for key, (data, desc) in labels.items():
        if key not in paths:
            continue
        _save(data.astype(np.uint8), grid, paths[key])
        io.write_json(layout.sidecar(paths[key]), layout.label_sidecar(desc))


def _cord_levels(arr: dict[str, np.ndarray]) -> np.ndarray:
    """Cord voxels labelled with their vertebral level, 0 elsewhere."""
    return np.where(arr["cord"], arr["level"], 0)


def _grids(anat: Anatomy, options: PhantomOptions, repos: Reposition | None = None) -> dict[str, Grid]:
    cl = anat.centerline
    s_range = (-FOV_MARGIN_MM - extra_top_mm(options.pmj), cl.length + FOV_MARGIN_MM)
    rot = oblique_rotation(options.oblique)
    big = tube_points(cl, s_range, options.t2w_fov / 2.0)
    small = tube_points(cl, s_range, options.dwi_fov / 2.0)
    spacings = {"T2w": T2W_SPACING, "T2star": T2STAR_SPACING, "dwi": DWI_SPACING}
    spacings.update(
        {c: T1W_SPACING if c == "T1w" else MTS_SPACING for c in options.contrasts if c in layout.EXTRA_CONTRASTS}
    )
    if repos is None:
        return {k: make_grid(big if k != "dwi" else small, sp, options.orientation, rot) for k, sp in spacings.items()}
    out = {}
    for k, sp in spacings.items():
        # the grid covering the anatomy moved by -shift, then shifted: same coverage, a new voxel lattice
        pts = (big if k != "dwi" else small) - repos.shift
        g = make_grid(pts, tuple(np.asarray(sp) * repos.scale), options.orientation, repos.rotation @ rot)
        affine = g.affine.copy()
        affine[:3, 3] += repos.shift
        out[k] = Grid(g.shape, affine)
    return out


def _anat_image(
    anat: Anatomy, grid: Grid, contrast: str, vendor: str, bias: BiasField, with_gm: bool
) -> dict[str, np.ndarray]:
    """Noise-free image, level at voxel centres, and area-preserving canal/cord(/GM) masks."""
    values = vendor_values(contrast, vendor)
    dirs, sp = grid.directions, grid.spacing

    def fn(xyz: np.ndarray) -> dict[str, np.ndarray]:
        t = anat.classify(xyz, dirs, sp)
        out = {
            "image": mix(values, t) * bias(xyz),
            "level": t["level"],
            "f_canal": t["f_canal"].astype(np.float32),
            "f_cord": t["f_cord"].astype(np.float32),
        }
        if with_gm:
            out["f_gm"] = t["f_gm"].astype(np.float32)
        return out

    arr = _over_grid(grid, fn)
    canal, cord, gm = nested_masks(arr.pop("f_canal"), arr.pop("f_cord"), arr.pop("f_gm", None), si_axis(grid.affine))
    arr.update(canal=canal, cord=cord)
    if gm is not None:
        arr["gm"] = gm
    return arr


def _dwi_arrays(
    anat: Anatomy,
    grid: Grid,
    vendor: str,
    bias: BiasField,
    tensors: dict[str, np.ndarray],
    bvals: np.ndarray,
    gdirs: np.ndarray,
) -> dict[str, np.ndarray]:
    s0_values = vendor_values("dwi_b0", vendor)

    def fn(xyz: np.ndarray) -> dict[str, np.ndarray]:
        t = anat.classify(xyz)
        cls = t["cls"]
        tangent = anat.centerline.tangent(t["s"])
        lvl = anat.level_param_index(t["s"])
        s0 = s0_values[cls] * bias(xyz)
        sig = dw_signal(s0, cls, tangent, lvl, tensors, bvals, gdirs)
        return {"signal": sig, "cls": cls, "cord": t["cord"], "level": t["level"], "lvl": lvl}

    return _over_grid(grid, fn)


def _tensor_truth(draw: SubjectDraw, level_truth: dict[str, dict[str, float]]) -> dict[str, np.ndarray]:
    gm_frac = np.array([level_truth[n]["gm_fraction"] for n in LEVEL_NAMES])
    tens = tensor_params(draw.fa_cord, gm_frac)
    for m in ("md", "ad", "rd"):
        tens[f"{m}_cord"] = (1 - gm_frac) * tens[f"{m}_wm"] + gm_frac * tens[f"{m}_gm"]
    tens["fa_cord"] = (1 - gm_frac) * tens["fa_wm"] + gm_frac * tens["fa_gm"]
    return tens


def generate_subject(
    out: str | Path,
    index: int = 0,
    seed: int = 0,
    options: PhantomOptions | None = None,
    sites: list[dict[str, Any]] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Write subject ``index`` (``sub-{index+1:03d}``) of the cohort with ``seed`` under ``out``.

    Returns ``{"participant": participants.tsv row, "truth": the truth JSON dict}``. The subject
    is the same as in :func:`generate_cohort` with the same seed and options, whatever the
    cohort size. ``kwargs`` are :class:`PhantomOptions` fields (when ``options`` is None).
    """
    out = Path(out)
    options = options or PhantomOptions.from_kwargs(kwargs)
    if sites is None:
        sites, _ = load_sites()
    draw = draw_subject(
        subject_rng(seed, index, STREAM_DEMOGRAPHICS), subject_rng(seed, index, STREAM_ANATOMY), index, sites, options
    )
    anat = build_anatomy(draw.anatomy)
    if options.randomise is not None and options.randomise.canal_shift_max > 0:
        shift = float(subject_rng(seed, index, STREAM_CANAL).uniform(-1, 1)) * options.randomise.canal_shift_max
        anat = dataclasses.replace(anat, canal_shift=shift)
    part = draw.participant
    sub, vendor = part["participant_id"], part["manufacturer"]
    paths = layout.subject_paths(out, sub, kind=options.layout)
    levels = anat.level_truth()
    tens = _tensor_truth(draw, levels)
    for i, name in enumerate(LEVEL_NAMES):
        lv = levels[name]
        for key in ("fa", "md", "ad", "rd"):
            for tissue in ("wm", "gm", "cord"):
                lv[f"{key}_{tissue}"] = float(tens[f"{key}_{tissue}"][i])
        lv.update(
            latent_z=float(draw.latent_z[i]),
            planted_sac_csa=float(draw.anatomy.sac_csa_levels[i]),
            planted_fa_cord=float(draw.fa_cord[i]),
        )
    cl = anat.centerline
    truth: dict[str, Any] = {
        "participant_id": sub,
        "sex": part["sex"],
        "age": part["age"],
        "manufacturer": vendor,
        "institution_id": part["institution_id"],
        "seed": int(seed),
        "index": int(index),
        "snr": "inf" if math.isinf(options.snr) else options.snr,
        "tilt_deg": draw.anatomy.tilt_deg,
        "tilt_azimuth_deg": draw.anatomy.tilt_azimuth_deg,
        "lordosis_radius_mm": float(draw.anatomy.radius),
        "orientation": options.orientation,
        "oblique_deg": options.oblique,
        "stenosis": draw.stenosis,
        "planted_r": draw.corr_r,
        "planted_r_group": draw.corr_key,
        "latent_subject": draw.latent_subject,
        "rho_floor_applied": anat.rho_clipped,
        **({"canal_shift": anat.canal_shift} if anat.canal_shift else {}),
        "disc_labels": {},
        "levels": levels,
        "centerline": _centerline_samples(anat),
        "csf_md": MD_CSF,
        "images": {},
        "definitions": "see derivatives/phantom-truth/cohort.json",
    }
    for k in DISC_LABELS:
        s_k = float(anat.disc_s[k - 1])
        p = anat.profiles(np.array([s_k]))
        tip = cl.point(s_k) + cl.normal_ap(s_k) * (float(p["B"][0]) + BODY_GAP + float(anat.canal_offset(s_k)))
        truth["disc_labels"][str(k)] = {
            "s_mm": s_k,
            "centerline_mm": cl.point(s_k).tolist(),
            "posterior_tip_mm": tip.tolist(),
        }
    if not options.truth_only and options.sessions == 1:
        _write_images(anat, draw, options, paths, truth, tens)
    elif not options.truth_only:
        truth["sessions"] = {}
        for s in range(1, options.sessions + 1):
            ses = f"ses-{s:02d}"
            repos = Reposition.draw(session_rng(seed, index, STREAM_REPOSITION, s)) if s > 1 else None
            images: dict[str, Any] = {}
            _write_images(
                anat, draw, options, layout.subject_paths(out, sub, ses, options.layout), truth, tens, s, repos, images
            )
            truth["sessions"][ses] = {"images": images, **({"reposition": repos.to_dict()} if repos else {})}
        truth["images"] = truth["sessions"]["ses-01"]["images"]
    io.write_json(paths["truth"], truth)
    return {"participant": part, "truth": truth}


def _centerline_samples(anat: Anatomy, step: float = 1.0) -> dict[str, list]:
    cl = anat.centerline
    s = np.arange(-FOV_MARGIN_MM, cl.length + FOV_MARGIN_MM + 1e-9, step)
    return {
        "s_mm": np.round(s, 6).tolist(),
        "world_mm": np.round(cl.point(s), 6).tolist(),
        "tangent": np.round(cl.tangent(s), 8).tolist(),
    }


def _write_images(
    anat: Anatomy,
    draw: SubjectDraw,
    options: PhantomOptions,
    paths: dict[str, Path],
    truth: dict[str, Any],
    tens: dict[str, np.ndarray],
    session: int = 1,
    repos: Reposition | None = None,
    images: dict[str, Any] | None = None,
) -> None:
    """Images and labels of one acquisition (``session`` ≥ 2: repositioned grids, new bias and noise;
    the per-level DWI-mask truth and the disc voxels are recorded for the first one only)."""
    part = draw.participant
    vendor = part["manufacturer"]
    seed, index = truth["seed"], truth["index"]
    images = truth["images"] if images is None else images
    grids = _grids(anat, options, repos)
    bias = BiasField.draw(session_rng(seed, index, STREAM_BIAS, session), options.bias, anat.centerline.origin)
    snr = 0.0 if options.noise_free else options.snr

    sur = draw_surroundings(subject_rng(seed, index, STREAM_SURROUNDINGS)) if options.randomise else None
    if sur is not None:
        truth["surroundings"] = sur.to_dict()

    def write_anat(contrast: str, stream: int, with_gm: bool) -> tuple[Grid, dict[str, np.ndarray]]:
        """Noisy image, sidecar and truth entry of one anatomical contrast; returns its grid and maps."""
        if sur is not None:
            return _write_randomised(anat, sur, options, contrast, with_gm, paths, truth, part, session, images)
        g = grids[contrast]
        arr = _anat_image(anat, g, contrast, vendor, bias, with_gm=with_gm)
        sigma = noise_sigma(contrast, vendor, snr)
        img = rician(arr["image"], sigma, session_rng(seed, index, stream, session))
        _save(to_dtype(img, options.dtype), g, paths[contrast])
        io.write_json(layout.sidecar(paths[contrast]), layout.image_sidecar(part, contrast))
        images[contrast] = _grid_info(g, sigma)
        return g, arr

    # ---- T2w: image, cord, canal, levels, discs
    if "T2w" in options.contrasts:
        g, arr = write_anat("T2w", STREAM_T2W, with_gm=False)
        discs = np.zeros(g.shape, dtype=np.uint8)
        for k, d in truth["disc_labels"].items():
            ijk = g.index_of(np.array(d["posterior_tip_mm"]))
            if np.all(ijk >= 0) and np.all(ijk < np.array(g.shape)):
                discs[tuple(ijk)] = int(k)
                if session == 1:
                    d["t2w_voxel"] = ijk.tolist()
        _save_labels(
            {
                "T2w_SC": (arr["cord"], "spinal cord (area-preserving binarisation of the partial-volume map)"),
                "T2w_canal": (arr["canal"], "spinal canal / thecal sac including the cord"),
                "T2w_discs": (
                    discs,
                    "disc labels, SCT convention: 1 top of C1, 2 C1/C2, 3 C2/C3, ..., 8 C7/T1; "
                    "voxel at the posterior tip of the disc",
                ),
                "T2w_levels": (
                    _cord_levels(arr),
                    "cord voxels labelled with their vertebral level 1..7 (C1..C7), 0 outside C1..C7",
                ),
            },
            g,
            paths,
        )
        if options.pmj:
            label, pmj_truth = pmj_label(anat, g, FOV_MARGIN_MM)
            _save_labels({"T2w_PMJ": (label, "pontomedullary junction: one voxel of value 50")}, g, paths)
            if session == 1:
                truth["pmj"] = pmj_truth
            else:  # a repositioned session: its own voxel and foot point
                images["pmj"] = pmj_truth

    # ---- T2*: image, cord, GM, levels
    if "T2star" in options.contrasts:
        g, arr = write_anat("T2star", STREAM_T2STAR, with_gm=True)
        _save_labels(
            {
                "T2star_SC": (arr["cord"], "spinal cord"),
                "T2star_GM": (arr["gm"], "gray matter (butterfly)"),
                "T2star_canal": (arr["canal"], "spinal canal / thecal sac including the cord"),
                "T2star_levels": (_cord_levels(arr), "cord voxels labelled with their vertebral level 1..7, 0 outside"),
            },
            g,
            paths,
        )

    # ---- T1w, MT-on, MT-off: image, cord, levels (each on its own grid, the same anatomy)
    for contrast in (c for c in options.contrasts if c in layout.EXTRA_CONTRASTS):
        g, arr = write_anat(contrast, STREAM_EXTRA[contrast], with_gm=False)
        _save_labels(
            {
                f"{contrast}_SC": (arr["cord"], "spinal cord"),
                f"{contrast}_levels": (
                    _cord_levels(arr),
                    "cord voxels labelled with their vertebral level 1..7, 0 outside",
                ),
            },
            g,
            paths,
        )

    if not options.dwi:
        return
    # ---- DWI: 4D signal, scheme, mean, cord, levels (simulated on grid g, written on gw: motion.py)
    g = grids["dwi"]
    moved = motion_matrix(options, anat)
    gw = moved_grid(g, moved)
    bval_p, bvec_p, source = scheme_paths()
    bvals, bvecs = read_scheme(bval_p, bvec_p)
    gdirs = world_gradients(bvecs, g.affine)
    arr = _dwi_arrays(anat, g, vendor, bias, tens, bvals, gdirs)
    sigma = float(vendor_values("dwi_b0", vendor)[WM] / snr) if snr > 0 else 0.0
    dwi = rician(arr["signal"], sigma, session_rng(seed, index, STREAM_DWI, session))
    stored = to_dtype(dwi, options.dtype)
    _save(stored, gw, paths["dwi"], pixdim4=0.64)
    io.write_text(paths["bval"], bval_p.read_text())
    io.write_text(paths["bvec"], bvec_p.read_text())
    io.write_json(layout.sidecar(paths["dwi"]), layout.image_sidecar(part, "dwi", GradientScheme=source))
    mean = stored.astype(np.float32).mean(axis=-1)
    _save(mean.astype(np.float32), gw, paths["dwi_mean"])
    io.write_json(
        layout.sidecar(paths["dwi_mean"]),
        layout.image_sidecar(part, "dwi", SeriesDescription="mean of all DWI volumes (phantom)"),
    )
    _save_labels(
        {
            "dwi_SC": (arr["cord"], "spinal cord on the mean DWI grid"),
            "dwi_levels": (_cord_levels(arr), "cord voxels labelled with their vertebral level 1..7, 0 outside"),
            "dwi_WM": (
                arr["cord"] & (arr["cls"] == WM),
                "white matter on the mean DWI grid (truth: the tissue at the "
                "voxel centre; DWI voxels hold one tissue each)",
            ),
            "dwi_GM": (
                arr["cord"] & (arr["cls"] == GM),
                "gray matter on the mean DWI grid (tissue at the voxel centre)",
            ),
        },
        gw,
        paths,
    )
    images["dwi"] = {**_grid_info(gw, sigma), "scheme": source}
    if moved is not None:
        images["dwi"]["motion"] = motion_record(options, moved)
    if "dwi_levels_truth" in paths:
        _save(_cord_levels(arr).astype(np.int16), gw, paths["dwi_levels_truth"])
    if session != 1:
        return
    # what a per-level mean over the DWI cord mask sees on noise-free data (pure voxels)
    cls, cord, level = arr["cls"], arr["cord"], arr["level"]
    for i, name in enumerate(LEVEL_NAMES):
        sel = cord & (level == i + 1)
        n_wm = int(np.count_nonzero(sel & (cls == WM)))
        n_gm = int(np.count_nonzero(sel & (cls == GM)))
        lv = truth["levels"][name]
        lv["dwi_mask_voxels"] = n_wm + n_gm
        for key in ("fa", "md", "ad", "rd"):
            if n_wm + n_gm:
                val = (n_wm * tens[f"{key}_wm"][i] + n_gm * tens[f"{key}_gm"][i]) / (n_wm + n_gm)
                lv[f"{key}_cord_dwi_mask"] = float(val)
            else:
                lv[f"{key}_cord_dwi_mask"] = None


def _write_randomised(
    anat: Anatomy,
    sur: Surroundings,
    options: PhantomOptions,
    contrast: str,
    with_gm: bool,
    paths: dict[str, Path],
    truth: dict[str, Any],
    part: dict[str, Any],
    session: int = 1,
    images: dict[str, Any] | None = None,
) -> tuple[Grid, dict[str, np.ndarray]]:
    """The domain-randomised image of one contrast (:mod:`randomise`) on its own random grid (each
    session draws its own grid, contrast and artefacts)."""
    ro = options.randomise
    assert ro is not None
    images = truth["images"] if images is None else images
    rng = session_rng(truth["seed"], truth["index"], STREAM_RANDOMISE[contrast], session)
    cl = anat.centerline
    s_range = (-FOV_MARGIN_MM - extra_top_mm(options.pmj), cl.length + FOV_MARGIN_MM)
    g, slice_dir, grid_record = rnd.draw_grid(anat, ro, rng, s_range)
    cord = cl.point(np.linspace(0.0, cl.length, 64))
    draw = rnd.draw_image(contrast, ro, rng, cl.origin, slice_dir, cord)
    draw.grid = grid_record
    arr = _over_grid(g, rnd.voxel_fn(anat, sur, draw, g, ro.texture, with_gm))
    canal, cord, gm = nested_masks(arr.pop("f_canal"), arr.pop("f_cord"), arr.pop("f_gm", None), si_axis(g.affine))
    arr.update(canal=canal, cord=cord)
    if gm is not None:
        arr["gm"] = gm
    img, sigma = rnd.artefacts(arr["image"], g, draw, rng)
    _save(to_dtype(img, options.dtype), g, paths[contrast])
    io.write_json(layout.sidecar(paths[contrast]), layout.image_sidecar(part, contrast))
    images[contrast] = {**_grid_info(g, sigma), "randomise": draw.to_dict()}
    return g, arr


def _grid_info(g: Grid, sigma: float) -> dict[str, Any]:
    return {"shape": list(g.shape), "affine": np.round(g.affine, 9).tolist(), "noise_sigma": sigma}
