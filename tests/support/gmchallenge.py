"""The GM challenge fixture in the challenge's naming, built from the real T2* of sct_testing_data
(LAS, oblique, 0.5×0.5×7.5 mm): four "raters" differ by small in-plane morphological changes of the
real cord (deepseg) and GM (manual) masks."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

PLANE = np.zeros((3, 3, 3), bool)
PLANE[:, :, 1] = ndimage.generate_binary_structure(2, 1)  # in-plane 4-neighbourhood


def rater_masks(sc: np.ndarray, gm: np.ndarray) -> list[np.ndarray]:
    """Four challenge masks (GM 1, WM 2) from one cord/GM pair by small in-plane changes."""
    out = []
    for k in range(4):
        s, g = sc.copy(), gm.copy() & sc
        if k == 1:
            s = ndimage.binary_dilation(s, PLANE)
        elif k == 2:
            g = ndimage.binary_erosion(g, PLANE)
        elif k == 3:
            g = ndimage.binary_dilation(g, PLANE) & s
        m = np.zeros(sc.shape, np.uint8)
        m[s] = 2
        m[g] = 1
        out.append(m)
    return out


def make_fixture(root: Path, t2s_dir: Path, sites=(1, 2, 3), per_site=2, test_subjects=1) -> dict:
    """Write site{S}-sc{NN}-image/-mask-r{1-4}/-levels.txt from the real T2*."""
    img = nib.load(t2s_dir / "t2s.nii.gz")
    data = np.asanyarray(img.dataobj).astype(np.float32)
    sc = np.asanyarray(nib.load(t2s_dir / "t2s_seg-deepseg.nii.gz").dataobj) > 0
    gm = np.asanyarray(nib.load(t2s_dir / "t2s_gmseg_manual.nii.gz").dataobj) > 0
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    masks = rater_masks(sc, gm)
    for site in sites:
        for n in range(1, per_site + test_subjects + 1):
            sid = f"site{site}-sc{n:02d}"
            noisy = data + rng.normal(0, 0.02 * data.std(), data.shape).astype(np.float32)
            nib.save(nib.Nifti1Image(noisy, img.affine, img.header), root / f"{sid}-image.nii.gz")
            if n <= per_site:
                for r, m in enumerate(masks, start=1):
                    hdr = img.header.copy()
                    hdr.set_data_dtype(np.uint8)
                    nib.save(nib.Nifti1Image(m, img.affine, hdr), root / f"{sid}-mask-r{r}.nii.gz")
                (root / f"{sid}-levels.txt").write_text("".join(f"{z},C{3 + z // 3}\n" for z in range(9)))
    return {"masks": masks, "affine": img.affine, "shape": data.shape}


#: one short tiny-U-Net fit on CPU, no wandb, no augmentation (the data set and task are added by the caller)
TINY_FIT_ARGS = [
    "--model",
    "unet",
    "--preset",
    "tiny",
    "--max-epochs",
    "1",
    "--data.patch_size=[48,48]",
    "--data.batch_size=4",
    "--data.samples_per_volume=4",
    "--data.queue_length=16",
    "--trainer.limit_train_batches=3",
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
    "--trainer.enable_progress_bar=false",
    "--logger.wandb.enabled=false",
    "--data.augment.strength=0",
]

#: one short tiny-U-Net fit on ``gm_fixture`` (used by the train = test = predict and QC tests)
GM_FIT_ARGS = [
    *TINY_FIT_ARGS,
    "--data",
    "gmchallenge",
    "--task",
    "gm",
    "--data.preset=perone",
    "--data.split.val_fraction=0.25",
    "--data.split.test_fraction=0.25",
]
