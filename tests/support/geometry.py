"""Phantom cords on rotated grids, with the phantom's exact per-level truth.

Two ways of rotating a grid by an angle about a scanner axis (L-R, A-P or S-I):

* ``resampled=True``: the anatomy stays where it is and is voxelised on a grid rotated about it
  (an oblique acquisition; exact, the phantom is analytic, so no interpolation error);
* ``resampled=False``: the voxels of the unrotated grid are kept and only the affine is rotated
  (the cord then lies at that angle in the scanner frame).

Either way the truth (per-level CSA, arc-length means of the analytic section) is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

AXES = {"L-R": (1.0, 0.0, 0.0), "A-P": (0.0, 1.0, 0.0), "S-I": (0.0, 0.0, 1.0)}


@dataclass
class RotatedPhantom:
    """Label maps of one phantom cord on one grid, and the per-level truth."""

    affine: np.ndarray
    cord: np.ndarray
    levels: np.ndarray
    canal: np.ndarray
    image: np.ndarray
    csa: dict[int, float]

    def save(self, folder: Path, stem: str = "rot") -> dict[str, Path]:
        """Write ``cord``, ``levels``, ``canal`` (uint8) and ``image`` (float32) as NIfTI."""
        from core import io

        folder.mkdir(parents=True, exist_ok=True)
        out = {}
        for name in ("cord", "levels", "canal", "image"):
            arr = getattr(self, name)
            dtype = np.float32 if name == "image" else np.uint8
            out[name] = folder / f"{stem}_{name}.nii.gz"
            io.save_nifti(arr.astype(dtype), self.affine, out[name], dtype=dtype)
        return out


def phantom_anatomy(seed: int = 0, index: int = 0):
    """A phantom subject's anatomy without tilt or stenosis (lordosis kept)."""
    from data_modules.phantom.anatomy import build_anatomy
    from data_modules.phantom.options import PhantomOptions
    from data_modules.phantom.population import draw_subject, load_sites
    from data_modules.phantom.subject import STREAM_ANATOMY, STREAM_DEMOGRAPHICS, subject_rng

    opts = PhantomOptions(tilt_max=0.0, stenosis_prob=0.0, dwi=False, truth_only=True)
    sites, _ = load_sites()
    draw = draw_subject(
        subject_rng(seed, index, STREAM_DEMOGRAPHICS), subject_rng(seed, index, STREAM_ANATOMY), index, sites, opts
    )
    return build_anatomy(draw.anatomy)


def rotated_phantom(
    anat,
    axis: str | tuple[float, float, float],
    deg: float,
    resampled: bool = True,
    levels: tuple[int, int] = (3, 4),
    spacing: float = 0.8,
    margin_mm: float = 10.0,
    half_width_mm: float = 9.0,
) -> RotatedPhantom:
    """The cord of ``levels`` (C3–C4 by default, plus ``margin_mm`` of its neighbours) on a grid
    rotated by ``deg`` about ``axis`` (a name of ``AXES`` or a vector; module docstring); masks are the
    phantom's area-preserving ones, the image a noise-free cord (600) in CSF (300) in tissue (100)."""
    from data_modules.phantom.geometry import make_grid, rotation, tube_points
    from data_modules.phantom.labels import nested_masks, si_axis

    rot = rotation(AXES[axis] if isinstance(axis, str) else axis, deg)
    cl = anat.centerline
    s0, s1 = anat.disc_s[levels[0] - 1] - margin_mm, anat.disc_s[levels[1]] + margin_mm
    grid = make_grid(tube_points(cl, (s0, s1), half_width_mm), (spacing,) * 3, "LAS", rot if resampled else np.eye(3))
    t = anat.classify(grid.world(), grid.directions, grid.spacing)
    shape = grid.shape
    canal, cord, _ = nested_masks(t["f_canal"].reshape(shape), t["f_cord"].reshape(shape), None, si_axis(grid.affine))
    lv = np.where(cord, t["level"].reshape(shape), 0)
    image = 100.0 + 200.0 * t["f_canal"].reshape(shape) + 500.0 * t["f_cord"].reshape(shape)
    affine = grid.affine
    if not resampled:
        r4 = np.eye(4)
        r4[:3, :3] = rot
        affine = r4 @ affine
    truth = anat.level_truth()
    csa = {v["level"]: v["csa_mm2"] for v in truth.values()}
    return RotatedPhantom(affine, cord, lv, canal, image.astype(np.float32), csa)


def noisy(image: np.ndarray, seed: int = 0, sigma: float = 20.0) -> np.ndarray:
    """``image`` plus Gaussian noise (float32)."""
    return (image + np.random.default_rng(seed).normal(0.0, sigma, image.shape)).astype(np.float32)


def train_tiny_checkpoint(path: Path, ph: RotatedPhantom, steps: int = 40, seed: int = 0) -> Path:
    """A tiny 2D U-Net trained on ``ph``'s axial slices (its own preprocessing: z-score, a 32×32
    in-plane crop centred on the field of view), saved as a cordbench checkpoint at ``path``."""
    import torch
    import torchio as tio

    from data_modules.preprocessing import Preprocessing, build_transform
    from lightning_modules.module import SegmentationModule

    torch.manual_seed(seed)
    pre = Preprocessing(classes=(("sc", (1,)),), crop=(32, 32), min_shape=(32, 32, 1))
    module = SegmentationModule(
        network="unet",
        preset="tiny",
        num_classes=2,
        classes={"sc": [1]},
        patch_size=[32, 32],
        spatial_dims=2,
        log_images=False,
        task="sc",
        preprocessing=pre.to_dict(),
    )
    subject = tio.Subject(
        image=tio.ScalarImage(tensor=torch.from_numpy(noisy(ph.image, seed)[None]), affine=ph.affine),
        label=tio.LabelMap(tensor=torch.from_numpy(ph.cord[None].astype(np.int16)), affine=ph.affine),
    )
    prepared = build_transform(pre, "eval")(subject)
    x = prepared["image"].data[0].permute(2, 0, 1)[:, None].float()
    y = prepared["label"].data[0].permute(2, 0, 1)[:, None].long()
    opt = torch.optim.Adam(module.net.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (8,), generator=gen)
        loss = module.loss_fn(module.net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two masks (> 0)."""
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))
