"""Phantom generation speed (and, with --accuracy, CSA truth vs the written masks).

Prints wall time for a cohort (default: 20 subjects, 2 workers, DWI on), voxels written per
second, and the same machine's numpy element-wise throughput measured in this run as a
reference (ratio = generator voxels/s ÷ numpy exp() elements/s on one core). The budget of the
foundation issue is 20 subjects in <= 60 s on 2 cores.

    .venv/bin/python benchmarks/phantom_speed.py [--subjects 20] [--workers 2] [--no-dwi] [--accuracy]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def numpy_reference(n: int = 4_000_000, repeats: int = 5) -> float:
    """Median elements/s of ``np.exp`` on float64 (one core)."""
    x = np.random.default_rng(0).random(n)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        np.exp(x)
        times.append(time.perf_counter() - t)
    return n / float(np.median(times))


def count_voxels(root: Path) -> tuple[int, int]:
    """(voxels in all written NIfTI images incl. 4D, bytes on disk)."""
    import nibabel as nib

    vox, size = 0, 0
    for p in root.rglob("*.nii.gz"):
        vox += int(np.prod(nib.load(str(p)).shape))
        size += p.stat().st_size
    return vox, size


def _axial_levels(
    seg: np.ndarray, canal: np.ndarray, lev: np.ndarray, affine: np.ndarray, truth: dict
) -> dict[int, np.ndarray]:
    """SCT-style: per slice across the S-I-closest voxel axis, cord and canal area × |cos| of the
    centerline angle to the slice normal; slice level = rounded mean of the level map on the cord."""
    rot = affine[:3, :3]
    axis = int(np.argmax(np.abs(rot[2] / np.linalg.norm(rot, axis=0))))
    normal = rot[:, axis] / np.linalg.norm(rot[:, axis])
    others = [i for i in range(3) if i != axis]
    pix = float(np.prod(np.linalg.norm(rot[:, others], axis=0)))
    cl = truth["centerline"]
    pts, tan = np.array(cl["world_mm"]), np.array(cl["tangent"])
    per: dict[int, list] = {}
    for k in range(seg.shape[axis]):
        c = np.take(seg, k, axis=axis) > 0
        if not c.any():
            continue
        origin = affine[:3, 3] + rot[:, axis] * k
        dist = (pts - origin) @ normal
        j = int(np.argmin(np.abs(dist)))
        cos = abs(float(tan[j] @ normal))
        lvl = int(np.round(np.take(lev, k, axis=axis)[c].mean()))
        area_c = c.sum() * pix * cos
        area_k = (np.take(canal, k, axis=axis) > 0).sum() * pix * cos
        per.setdefault(lvl, []).append((area_c, area_k - area_c))
    return {k: np.mean(v, axis=0) for k, v in per.items()}


def accuracy(tmp: Path) -> None:
    """CSA/SAC truth vs the written masks, several tilts/orientations: (a) mean area of 16 planes per
    level perpendicular to the true centerline; (b) SCT-style angle-corrected axial slices."""
    import nibabel as nib

    from data_modules.phantom import generate_subject
    from data_modules.phantom.layout import subject_paths
    from tests.references import perpendicular_area

    cases = [
        (0, 0, "LAS", 0),
        (1, 10, "RPI", 0),
        (2, 25, "PSR", 0),
        (3, 20, "LPI", 20),
        (4, 25, "PSR", 15),
        (5, 15, "LAS", 30),
        (6, 25, "LAS", 0),
        (7, 5, "PSR", 0),
    ]
    worst = np.zeros(4)
    print(
        "\nCSA / SAC truth vs written masks, per-level relative error "
        "(perpendicular planes | axial slices with angle correction):"
    )
    for idx, tilt, orient, obl in cases:
        root = tmp / f"acc{idx}"
        generate_subject(
            root, index=idx, seed=99, tilt_min=tilt, tilt_max=tilt, orientation=orient, oblique=obl, dwi=False
        )
        p = subject_paths(root, f"sub-{idx + 1:03d}")
        truth = json.loads(p["truth"].read_text())
        img = nib.load(str(p["T2w_SC"]))
        seg = np.asanyarray(img.dataobj).astype(np.float32)
        canal = np.asanyarray(nib.load(str(p["T2w_canal"])).dataobj).astype(np.float32)
        lev = np.asanyarray(nib.load(str(p["T2w_levels"])).dataobj)
        axial = _axial_levels(seg, canal, lev, img.affine, truth)
        errs = []
        for lv in truth["levels"].values():
            nodes = lv["s_start_mm"] + (np.arange(16) + 0.5) / 16 * lv["length_mm"]
            cord = np.mean([perpendicular_area(seg, img.affine, truth, x) for x in nodes])
            can = np.mean([perpendicular_area(canal, img.affine, truth, x) for x in nodes])
            ax_c, ax_s = axial[lv["level"]]
            errs.append(
                [
                    abs(cord / lv["csa_mm2"] - 1),
                    abs((can - cord) / lv["sac_mm2"] - 1),
                    abs(ax_c / lv["csa_mm2"] - 1),
                    abs(ax_s / lv["sac_mm2"] - 1),
                ]
            )
        errs = 100 * np.array(errs)
        worst = np.maximum(worst, errs.max(axis=0))
        print(
            f"  tilt {tilt:4.1f}° {orient} oblique {obl:2d}°: CSA max {errs[:, 0].max():.2f}% | "
            f"{errs[:, 2].max():.2f}%   SAC max {errs[:, 1].max():.2f}% | {errs[:, 3].max():.2f}%"
        )
    print(
        f"  worst: CSA {worst[0]:.2f}% | {worst[2]:.2f}% (target < 2%), "
        f"SAC {worst[1]:.2f}% | {worst[3]:.2f}% (target < 3%)"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-dwi", action="store_true")
    ap.add_argument("--accuracy", action="store_true", help="also measure CSA/SAC truth vs masks")
    ap.add_argument("--no-speed", action="store_true", help="skip the cohort timing (with --accuracy)")
    args = ap.parse_args()

    from data_modules.phantom import generate_cohort

    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        if not args.no_speed:
            ref = numpy_reference()
            t0 = time.perf_counter()
            generate_cohort(tmp / "cohort", n_subjects=args.subjects, seed=0, workers=args.workers, dwi=not args.no_dwi)
            wall = time.perf_counter() - t0
            vox, size = count_voxels(tmp / "cohort")
            rate = vox / wall
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            print(
                f"phantom: {args.subjects} subjects, {args.workers} workers, "
                f"dwi={'off' if args.no_dwi else 'on'}, cpu_count={os.cpu_count()}, load(1 min)={load:.1f}"
            )
            print(
                f"  wall time        {wall:8.1f} s   ({wall / args.subjects:.2f} s/subject; budget 60 s for 20 "
                f"subjects -> {'OK' if wall * 20 / args.subjects <= 60 else 'OVER'})"
            )
            print(f"  voxels written   {vox / 1e6:8.1f} M   ({size / 1e6:.0f} MB gzip)")
            print(f"  generator        {rate / 1e6:8.2f} Mvoxel/s")
            print(
                f"  numpy exp ref    {ref / 1e6:8.1f} Melem/s (1 core, same run); "
                f"ratio generator/ref = {rate / ref:.4f}"
            )
        if args.accuracy:
            accuracy(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
