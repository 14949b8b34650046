"""Figures of docs/phantom.md: randomised phantom subjects beside the real t2 and t2s.

``python benchmarks/phantom_figures.py [--subjects 6] [--seed 3] [--out docs/img]`` generates a small
randomised cohort in a temporary folder (``data_modules.phantom``, ``randomise=True``), then writes
``phantom_randomised_axial.png`` (one axial slice per image through the cord, canonical RAS, the cord
label outlined) and ``phantom_randomised_sagittal.png`` (the mid-sagittal plane of the same images).
The real images are read from ``../shared/data/sct_testing_data`` (``$CORDBENCH_DATA``) when present.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def _canonical(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    import nibabel as nib

    img = nib.as_closest_canonical(nib.load(str(path)))
    return np.asarray(img.dataobj, dtype=np.float32), tuple(float(z) for z in img.header.get_zooms()[:3])


def _panels(root: Path, n: int) -> list[tuple[str, Path, Path]]:
    from core.paths import shared_data_dir

    out = []
    real = shared_data_dir() / "sct_testing_data"
    if (real / "t2").is_dir():
        out.append(("real t2", real / "t2" / "t2.nii.gz", real / "t2" / "t2_seg-manual.nii.gz"))
        out.append(("real t2s", real / "t2s" / "t2s.nii.gz", real / "t2s" / "t2s_seg-deepseg.nii.gz"))
    for i in range(1, n + 1):
        for c in ("T2w", "T2star"):
            sub = f"sub-{i:03d}"
            out.append(
                (
                    f"{sub} {c}",
                    root / sub / "anat" / f"{sub}_{c}.nii.gz",
                    root / "derivatives" / "labels" / sub / "anat" / f"{sub}_{c}_label-SC_seg.nii.gz",
                )
            )
    return out


def _axial(ax, img: np.ndarray, seg: np.ndarray, zooms, title: str) -> None:
    counts = seg.sum(axis=(0, 1))
    z = int(np.flatnonzero(counts)[len(np.flatnonzero(counts)) // 2]) if counts.any() else img.shape[2] // 2
    sl, ms = img[:, :, z].T, seg[:, :, z].T
    ext = (0, sl.shape[1] * zooms[0], 0, sl.shape[0] * zooms[1])
    ax.imshow(sl, cmap="gray", origin="lower", extent=ext, vmin=np.percentile(sl, 0.5), vmax=np.percentile(sl, 99.5))
    ax.contour(ms, levels=[0.5], colors="r", linewidths=0.6, origin="lower", extent=ext)
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def _sagittal(ax, img: np.ndarray, seg: np.ndarray, zooms, title: str) -> None:
    x = int(round(np.argwhere(seg)[:, 0].mean())) if seg.any() else img.shape[0] // 2
    sl = img[x].T
    ext = (0, sl.shape[1] * zooms[1], 0, sl.shape[0] * zooms[2])
    ax.imshow(sl, cmap="gray", origin="lower", extent=ext, vmin=np.percentile(sl, 0.5), vmax=np.percentile(sl, 99.5))
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def main(argv: list[str] | None = None) -> int:
    """Generate the cohort and write the two PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from data_modules.phantom import generate_cohort

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, default=5)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--out", default="docs/img")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = generate_cohort(Path(tmp) / "ph", n_subjects=a.subjects, seed=a.seed, dwi=False, randomise=True)
        panels = _panels(root, a.subjects)
        for name, draw in (("axial", _axial), ("sagittal", _sagittal)):
            cols = 6
            rows = int(np.ceil(len(panels) / cols))
            fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.75), dpi=80)
            for ax in axes.ravel():
                ax.axis("off")
            for ax, (title, ip, lp) in zip(axes.ravel(), panels):
                img, zooms = _canonical(ip)
                seg, _ = _canonical(lp)
                draw(ax, img, seg > 0, zooms, title)
            fig.tight_layout(pad=0.3)
            fig.savefig(out / f"phantom_randomised_{name}.png")
            plt.close(fig)
            print(out / f"phantom_randomised_{name}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
