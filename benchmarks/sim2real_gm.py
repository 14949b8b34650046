"""Grey matter of a phantom-only model on real T2*, beside SCT's ``sct_deepseg_gm`` (its real output, SCT 7.4).

    python benchmarks/sim2real_gm.py --ckpt outputs/runs/sim2real-gm-unet/checkpoints/best.ckpt [--out FILE.json]

For each real axial T2* with a manual GM mask — ``sct_testing_data/t2s/t2s``, ``t2s_uncropped`` and the
gm-challenge subject's run 1 — the checkpoint predicts through ``cordbench predict``'s path
(:func:`evaluation.inference.predict_file`: the checkpoint's own preprocessing contract and label-free rule) and
the GM (label 2 of the gm task) is scored against the manual GM on the image's native grid: Dice over the whole
volume (masks > 0), as ``sct_reference/deepseg_gm/scores.csv`` scores ``sct_deepseg_gm``. Then ``t2s_uncropped``
and the gm-challenge scan are moved so the cord sits 25 mm from the centre of the field of view (an integer-voxel
shift of the same voxels, :func:`tests.support.offcentre.place_cord`) and scored again: the robustness check where
``sct_deepseg_gm``, which looks at a fixed 50 x 50 mm window around the centre, fails (Dice 0.24 on such a scan).
Prints one table; ``--out`` writes it as JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: name -> (image, manual GM mask, the reference case of scores.csv), paths under the shared data folder
CASES = {
    "t2s": ("sct_testing_data/t2s/t2s.nii.gz", "sct_testing_data/t2s/t2s_gmseg_manual.nii.gz", "t2s"),
    "t2s_uncropped": (
        "sct_testing_data/t2s/t2s_uncropped.nii.gz",
        "sct_testing_data/t2s/t2s_uncropped_gmseg_manual.nii.gz",
        "t2s_uncropped",
    ),
    "gmc_run1": (
        "gm-challenge-data/sub-9418/anat/sub-9418_run-1_T2starw.nii.gz",
        "gm-challenge-data/derivatives/labels/sub-9418/anat/sub-9418_run-1_T2starw_gmseg-manual.nii.gz",
        "gmc_sub-9418",
    ),
}
#: the cases moved off-centre, and where the cord's centroid goes (R-L, A-P mm from the FOV centre)
OFF_CENTRE = {"t2s_uncropped": (25.0, 0.0), "gmc_run1": (0.0, 25.0)}


def deepseg_scores(data: Path) -> dict[str, float]:
    """``sct_deepseg_gm``'s (default ``large`` model) whole-volume GM Dice per case."""
    with open(data / "sct_reference" / "deepseg_gm" / "scores.csv") as f:
        return {r["case"]: float(r["dice_3d"]) for r in csv.DictReader(f) if r["model"] == "sct_deepseg_gm-large"}


def gm_dice(module, image: Path, gm: np.ndarray, work: Path) -> float:
    """GM Dice of the module's prediction on ``image`` against ``gm`` (on the image's grid)."""
    from evaluation.inference import predict_file
    from evaluation.metrics import dice

    out = predict_file(module, image, work / (image.name.split(".")[0] + "_pred.nii.gz"))
    pred = np.asarray(nib.load(str(out)).dataobj) == 2
    return dice(pred, gm)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True, type=Path)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)

    from runs.checkpoints import load_module
    from tests.support.offcentre import centred, place_cord

    module = load_module(a.ckpt)
    ref = deepseg_scores(a.data)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, (img, gm_path, case) in CASES.items():
            image, gm_file = a.data / img, a.data / gm_path
            gm = np.asarray(nib.load(str(gm_file)).dataobj) > 0
            rows.append(
                {
                    "scan": name,
                    "placement": "original",
                    "dice_gm": gm_dice(module, image, gm, work),
                    "sct_deepseg_gm": ref.get(case),
                }
            )
            if name in OFF_CENTRE:
                for placed, stem in (
                    (centred(image, gm_file), f"{name}_ras"),
                    (place_cord(image, gm_file, OFF_CENTRE[name]), f"{name}_off25"),
                ):
                    path, _ = placed.save(work, stem)
                    d = gm_dice(module, path, np.asarray(placed.mask.dataobj) > 0, work)
                    where = "RAS, as acquired" if stem.endswith("_ras") else "cord 25 mm off-centre"
                    rows.append(
                        {
                            "scan": name,
                            "placement": where,
                            "dice_gm": d,
                            "offset_mm": [round(v, 1) for v in placed.offset_mm],
                            "sct_deepseg_gm": None,
                        }
                    )
    print(f"{'scan':<16}{'placement':<24}{'GM Dice':>9}{'sct_deepseg_gm':>16}")
    for r in rows:
        ds = "" if r["sct_deepseg_gm"] is None else f"{r['sct_deepseg_gm']:.3f}"
        print(f"{r['scan']:<16}{r['placement']:<24}{r['dice_gm']:>9.3f}{ds:>16}")
    if a.out:
        a.out.write_text(json.dumps({"ckpt": str(a.ckpt), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
