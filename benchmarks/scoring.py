"""Cost of native-grid scoring and of SCT's skeleton metrics, against references measured in the same run.

On the real t2s of sct_testing_data (LAS, 0.5 × 0.5 × 7.5 mm, 49 × 54 × 9) with its manual GM mask
and the mask dilated by one in-plane pixel as the "prediction":

* one subject scored on the native grid (write-back from Perone's 200 × 200 grid + metrics, the
  ``cordbench test`` default) vs on the preprocessed grid (``data.scoring: preprocessed``);
* Zhang–Suen thinning (``evaluation.metrics.zhang_suen``, SCT's) vs
  ``skimage.morphology.skeletonize`` on the same slices (the reference: a compiled thinning).

Run: ``python benchmarks/scoring.py`` (prints figures and ratios; no assertion).
"""

from __future__ import annotations

import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torchio as tio
from scipy import ndimage

from benchmarks._reference import describe_machine
from core.paths import shared_data_dir


def best_of(fn, repeats: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


class _DM:
    def __init__(self, img, target):
        self.img, self.target = img, target

    def native_targets(self, subject):
        return self.img, {"": self.target}


def main() -> None:
    from skimage.morphology import skeletonize

    from data_modules.gmchallenge import perone_preprocess
    from evaluation.metrics import zhang_suen
    from evaluation.scoring import score_subject

    t2s = Path(shared_data_dir()) / "sct_testing_data" / "t2s"
    img = nib.load(t2s / "t2s.nii.gz")
    gm = (np.asanyarray(nib.load(t2s / "t2s_gmseg_manual.nii.gz").dataobj) > 0).astype(np.int16)
    plane = np.zeros((3, 3, 3), bool)
    plane[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    pred = ndimage.binary_dilation(gm, plane).astype(np.int16)
    s = tio.Subject(
        image=tio.ScalarImage(
            tensor=torch.from_numpy(np.asanyarray(img.dataobj)[None].astype(np.float32)), affine=img.affine
        ),
        label=tio.LabelMap(tensor=torch.from_numpy(gm[None]), affine=img.affine),
        pred=tio.LabelMap(tensor=torch.from_numpy(pred[None]), affine=img.affine),
    )
    pre = perone_preprocess()(s)
    p_pre, t_pre = pre["pred"].data[0].numpy(), pre["label"].data[0].numpy()
    dm = _DM(img, gm)
    classes = {"gm": [1]}
    native = best_of(lambda: score_subject(p_pre, pre["label"].affine, t_pre, "t2s", classes, dm, "native"))
    prepro = best_of(lambda: score_subject(p_pre, pre["label"].affine, t_pre, "t2s", classes, dm, "preprocessed"))
    slices = [ndimage.zoom(pred[:, :, k], 4, order=0).astype(bool) for k in range(pred.shape[2])]
    zs = best_of(lambda: [zhang_suen(x) for x in slices])
    sk = best_of(lambda: [skeletonize(x) for x in slices])
    print(f"machine: {describe_machine()}")
    print(
        f"score one subject, native grid {gm.shape}: {native * 1e3:.1f} ms; preprocessed grid "
        f"{p_pre.shape}: {prepro * 1e3:.1f} ms; ratio native/preprocessed {native / prepro:.2f}"
    )
    print(
        f"thinning {len(slices)} slices of {slices[0].shape}: Zhang-Suen (SCT) {zs * 1e3:.1f} ms, "
        f"skimage.skeletonize {sk * 1e3:.1f} ms; ratio {zs / sk:.2f}"
    )


if __name__ == "__main__":
    main()
