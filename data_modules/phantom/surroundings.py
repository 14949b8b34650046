"""What surrounds the canal in a randomised phantom image: fat, bone arch, muscle, neck, airway.

Intensity only. These tissues fill the part of a voxel outside the canal (``1 − f_canal``) and
outside the vertebral body, so they never change the canal, cord or gray-matter fractions the
labels and the ground truth come from. Everything is drawn once per subject (shared by its
contrasts) and defined in the centerline's normal-plane coordinates ``(s, u, v)`` (u toward the
subject's right, v anterior, :mod:`geometry`), painted from the outside in with a linear
partial-volume ramp over the voxel's mean size:

1. air outside an elliptic neck outline, subcutaneous fat inside its border;
2. muscle (with a smooth random texture) everywhere else inside the neck;
3. the airway: an air tube in front of the vertebral bodies;
4. the bony arch (pedicles, laminae, spinous process) behind the canal, absent within
   ``ARCH_GAP`` mm of a disc plane (interlaminar space);
5. epidural fat between the canal and the arch, thicker posteriorly;
6. the vertebral bodies and discs of :mod:`anatomy` (``f_body``) on top.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_modules.phantom.anatomy import BODY_GAP, BODY_RB, BONE, CSF, DISC, GM, SOFT, WM, Anatomy

FAT, AIR, ARCH = 6, 7, 8  # tissue classes beyond anatomy's SOFT(=muscle)..GM
N_TISSUES = 9
TISSUES = ("muscle", "bone", "disc", "csf", "wm", "gm", "fat", "air", "arch")
ARCH_GAP = 3.0  # mm either side of a disc plane without bony arch


@dataclass(frozen=True)
class Surroundings:
    """A subject's surrounding anatomy (mm)."""

    fat_post: float  # epidural fat behind the canal
    fat_lat: float  # ... beside it
    arch_thick: float  # pedicle / lamina thickness
    spinous_len: float  # spinous process length behind the laminae
    neck_a: float  # neck outline semi-axes (R-L, A-P) and centre (v, anterior of the cord)
    neck_b: float
    neck_v: float
    subq: float  # subcutaneous fat thickness
    airway_r: float  # airway radius and gap in front of the vertebral bodies
    airway_gap: float
    texture_k: np.ndarray  # (n, 3) wavevectors (rad/mm) of the muscle texture, in (s, u, v)
    texture_phase: np.ndarray

    def to_dict(self) -> dict[str, float]:
        """The scalar parameters (recorded in the truth JSON)."""
        return {
            k: round(float(getattr(self, k)), 4)
            for k in (
                "fat_post",
                "fat_lat",
                "arch_thick",
                "spinous_len",
                "neck_a",
                "neck_b",
                "neck_v",
                "subq",
                "airway_r",
                "airway_gap",
            )
        }


def draw_surroundings(rng: np.random.Generator, n_waves: int = 6) -> Surroundings:
    """Random surrounding anatomy of one subject."""
    u = rng.uniform
    dirs = rng.normal(size=(n_waves, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    wavelength = u(4.0, 25.0, n_waves)
    return Surroundings(
        fat_post=u(0.8, 4.0),
        fat_lat=u(0.2, 1.5),
        arch_thick=u(2.0, 5.0),
        spinous_len=u(8.0, 25.0),
        neck_a=u(45.0, 70.0),
        neck_b=u(40.0, 60.0),
        neck_v=u(5.0, 20.0),
        subq=u(2.0, 10.0),
        airway_r=u(6.0, 10.0),
        airway_gap=u(8.0, 20.0),
        texture_k=dirs * (2 * np.pi / wavelength)[:, None],
        texture_phase=u(0, 2 * np.pi, n_waves),
    )


def _inside(r: np.ndarray, scale: np.ndarray | float, h: float) -> np.ndarray:
    """PV share inside ``r <= 1`` of an ellipse whose normalised radius is ``r`` (size ``scale`` mm)."""
    return np.clip(0.5 - (r - 1.0) * scale / h, 0.0, 1.0)


def _ellipse(u: np.ndarray, v: np.ndarray, a, b, h: float, v0: float | np.ndarray = 0.0) -> np.ndarray:
    r = np.sqrt((u / a) ** 2 + ((v - v0) / b) ** 2)
    return _inside(r, np.minimum(a, b), h)


def paint(
    anat: Anatomy, sur: Surroundings, t: dict[str, np.ndarray], values: np.ndarray, h: float, texture: float
) -> np.ndarray:
    """Image value of each point from :meth:`Anatomy.classify`'s fractions and ``(s, u, v)``.

    ``values`` (N_TISSUES,) are the tissue intensities; ``h`` the voxel size (mm) of the ramps;
    ``texture`` the relative amplitude of the muscle texture.
    """
    s, u, v = t["s"], t["u"], t["v_canal"]  # v from the canal's centre
    p = anat.profiles(s)
    A, B = p["A"], p["B"]
    val = np.full(s.shape, values[AIR], dtype=float)

    def lay(frac: np.ndarray, value: np.ndarray | float) -> None:
        val[:] = val + frac * (value - val)

    lay(_ellipse(u, v, sur.neck_a, sur.neck_b, h, sur.neck_v), values[FAT])
    wave = np.zeros(s.shape)
    for k, ph in zip(sur.texture_k, sur.texture_phase):
        wave += np.cos(k[0] * s + k[1] * u + k[2] * v + ph)
    muscle = values[SOFT] * np.clip(1.0 + texture * wave / np.sqrt(len(sur.texture_phase)), 0.05, None)
    lay(_ellipse(u, v, sur.neck_a - sur.subq, sur.neck_b - sur.subq, h, sur.neck_v), muscle)
    front = B + BODY_GAP + 2 * BODY_RB + sur.airway_gap + sur.airway_r
    lay(_ellipse(u, v, sur.airway_r, sur.airway_r, h, front), values[AIR])
    # bony arch: a ring around the epidural space (behind the bodies' front), plus the spinous process
    fa, fp = 0.3, sur.fat_post
    epi_a, epi_b, epi_v = A + sur.fat_lat, B + 0.5 * (fa + fp), -0.5 * (fp - fa)
    t_a = sur.arch_thick
    ring = _ellipse(u, v, epi_a + t_a, epi_b + t_a, h, epi_v) * (v < B + BODY_GAP + BODY_RB)
    spine_v0 = epi_v - epi_b - t_a - 0.5 * sur.spinous_len
    spinous = _ellipse(u, v, 1.5, 0.5 * sur.spinous_len, h, spine_v0)
    d_disc = np.min(np.abs(s[:, None] - anat.disc_s[None, :]), axis=1)
    arch = np.maximum(ring, spinous) * (d_disc > ARCH_GAP)
    lay(arch, values[ARCH])
    lay(_ellipse(u, v, epi_a, epi_b, h, epi_v), values[FAT])
    body = np.where(t["disc_zone"], values[DISC], values[BONE])
    lay(t["f_body"], body)
    f_canal, f_cord, f_gm = t["f_canal"], t["f_cord"], t["f_gm"]
    return f_gm * values[GM] + (f_cord - f_gm) * values[WM] + (f_canal - f_cord) * values[CSF] + (1.0 - f_canal) * val


__all__ = ["Surroundings", "draw_surroundings", "paint", "TISSUES", "N_TISSUES", "FAT", "AIR", "ARCH"]
