"""Precision columns on the shared real scans: one checkpoint's masks (and the manual masks) as entries.

Two real layouts, each a BIDS tree:

* ``gm-challenge-data`` (one subject, axial T2* ``run-1`` and ``run-2`` of one session; manual cord mask
  on run 1): scan–rescan — ``cov_session`` of one subject, Bland–Altman on run 1;
* ``sct_t1`` (T1w) + ``sct_testing_data`` (``t2``, ``t2s``): one subject in three contrasts, laid out as
  ``sub-sct`` with symbolic links (nothing is copied): ``cov_contrast`` of one subject, Bland–Altman against
  the manual masks of T1w and T2w (t2s has only ``sct_deepseg_sc``'s mask, an automatic one: no reference).

The checkpoint predicts every image (``cordbench predict``'s path, native grid); ``cordbench score``'s
library call scores the masks; the columns are the leaderboard's (:func:`leaderboard.precision.entry_columns`).
Writes ``benchmarks/results/precision_real.md``::

    python benchmarks/precision_real.py --ckpt outputs/runs/sim2real-unet/checkpoints/best.ckpt
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd

from core.paths import shared_data_dir

RESULTS = Path(__file__).parent / "results" / "precision_real.md"
SHOWN = ("cov_contrast", "cov_session", "icc_session", "cov_site", "ba_bias", "ba_loa_low", "ba_loa_high")


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    os.symlink(src.resolve(), dst)


def sct_view(shared: Path, out: Path) -> Path:
    """``sub-sct`` with T1w, T2w, T2star and the manual cord masks (links into the shared data)."""
    anat, lab = out / "sub-sct" / "anat", out / "derivatives" / "labels" / "sub-sct" / "anat"
    t = shared / "sct_testing_data"
    _link(shared / "sct_t1" / "t1w.nii.gz", anat / "sub-sct_T1w.nii.gz")
    _link(t / "t2" / "t2.nii.gz", anat / "sub-sct_T2w.nii.gz")
    _link(t / "t2s" / "t2s.nii.gz", anat / "sub-sct_T2star.nii.gz")
    _link(shared / "sct_t1" / "t1w_seg-manual.nii.gz", lab / "sub-sct_T1w_label-SC_seg.nii.gz")
    _link(t / "t2" / "t2_seg-manual.nii.gz", lab / "sub-sct_T2w_label-SC_seg.nii.gz")
    _link(t / "t2" / "t2_seg-manual_labeled.nii.gz", lab / "sub-sct_T2w_label-SC_desc-levels_dseg.nii.gz")
    return out


def predict_all(ckpt: Path, root: Path, pred: Path) -> None:
    """The checkpoint's cord mask of every anatomical image of ``root``, named ``<stem>_label-SC_seg``."""
    from evaluation.inference import predict_file
    from leaderboard.precision_images import index_images
    from runs.checkpoints import load_module

    module = load_module(ckpt, expect={"task": "sc"})
    for im in index_images(root):
        predict_file(module, im.path, pred / f"{im.stem}_label-SC_seg.nii.gz", ckpt=ckpt)


def manual_masks(root: Path, pred: Path) -> None:
    """The reference masks themselves as an entry (links)."""
    from leaderboard.precision_images import index_images

    for im in index_images(root):
        if im.cord is not None:
            _link(im.cord, pred / f"{im.stem}_label-SC_seg.nii.gz")


def columns(scored: Path, n_boot: int) -> dict:
    from leaderboard.precision import entry_columns, pooled_images, read_cache
    from leaderboard.precision_images import participants_sites

    summary_root = Path(pd.read_csv(scored / "precision.csv")["data_root"].iloc[0])
    sites = pd.Series(participants_sites(summary_root), dtype=object)
    col, _ = entry_columns(scored.name, pooled_images([read_cache(scored / "precision.csv")]), sites, n_boot, 0)
    return col


def main() -> None:
    from leaderboard.external import score_folder

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("outputs/precision_real"))
    ap.add_argument("--n-boot", type=int, default=2000)
    args = ap.parse_args()
    shared = shared_data_dir()
    roots = {
        "gm-challenge-data": shared / "gm-challenge-data",
        "sct (t1 + t2 + t2s)": sct_view(shared, args.out / "sct"),
    }
    lines = [
        "# Precision columns on the shared real scans",
        "",
        f"Checkpoint `{args.ckpt}`; `python benchmarks/precision_real.py --ckpt …`. One subject per set: every",
        "figure is a case report (a CI over one subject has zero width; ICC needs ≥ 2 subjects, site CoV ≥ 2 sites).",
        "",
    ]
    for name, root in roots.items():
        lines += [f"## {name}", "", "| entry | images | " + " | ".join(SHOWN) + " |", "|---" * (len(SHOWN) + 2) + "|"]
        for entry, fill in (("model", lambda p, r=root: predict_all(args.ckpt, r, p)), ("manual", None)):
            pred = args.out / "pred" / name.split()[0] / entry
            pred.mkdir(parents=True, exist_ok=True)
            if fill is None:
                manual_masks(root, pred)
            else:
                fill(pred)
            scored = args.out / "scored" / name.split()[0] / entry
            summary = score_folder(pred, root, scored)
            col = columns(scored, args.n_boot)
            cells = [f"{col.get(k, float('nan')):.2f}" for k in SHOWN]
            lines.append(f"| {entry} | {summary['masks']} | " + " | ".join(cells) + " |")
        lines.append("")
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
