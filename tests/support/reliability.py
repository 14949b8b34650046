"""The reliability catalogue's builders: a tiny BIDS tree, a one-tensor DWI, and CLI error checks.

The tree (4 subjects, 40×40×12 voxels, spine-generic naming) and :func:`fit_args` (tiny U-Net, one
short CPU epoch) are used by every ``tests/test_reliability_*.py`` module.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

AFFINE = np.diag([0.8, 0.8, 2.0, 1.0])
SHAPE = (40, 40, 12)
PREVIOUS = {"config.yaml": "name: previous-run\n", "test_metrics.csv": "subject,sc/dice\nsub-01,0.9\n"}


def cord_mask(shape=SHAPE, radius=5.0, shift=(0.0, 0.0)) -> np.ndarray:
    """A straight cylindrical 'cord' along the slice axis."""
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    c = ((shape[0] - 1) / 2 + shift[0], (shape[1] - 1) / 2 + shift[1])
    disc = (x - c[0]) ** 2 + (y - c[1]) ** 2 <= radius**2
    return np.repeat(disc[:, :, None], shape[2], axis=2)


def save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def make_bids(root: Path, n: int = 4, seed: int = 0) -> Path:
    """``n`` subjects with a T2w image, its SC label and a participants.tsv (two sites)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(1, n + 1):
        sub = f"sub-{i:02d}"
        cord = cord_mask(radius=4.0 + 0.5 * i, shift=(i - 2, 2 - i))
        img = (100 + 300 * cord + rng.normal(0, 20, SHAPE)).astype(np.float32)
        save(root / sub / "anat" / f"{sub}_T2w.nii.gz", img)
        save(root / "derivatives" / "labels" / sub / "anat" / f"{sub}_T2w_label-SC_seg.nii.gz", cord.astype(np.uint8))
        rows.append(
            {
                "participant_id": sub,
                "sex": "MF"[i % 2],
                "age": 30 + i,
                "institution_id": f"site{i % 2}",
                "manufacturer": "Siemens",
            }
        )
    pd.DataFrame(rows).to_csv(root / "participants.tsv", sep="\t", index=False)
    return root


def fit_args(root: Path, out: Path, *extra: str, data: str = "spine_generic") -> list[str]:
    """``cordbench fit`` on the tiny tree: tiny U-Net, one short CPU epoch, no wandb."""
    return [
        "fit",
        "--data",
        data,
        "--root",
        str(root),
        "--model",
        "unet",
        "--preset",
        "tiny",
        "-o",
        str(out),
        "--data.patch_size=[32,32]",
        "--data.batch_size=4",
        "--data.samples_per_volume=4",
        "--data.queue_length=16",
        "--data.split.val_fraction=0.25",
        "--data.split.test_fraction=0.25",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.enable_progress_bar=false",
        "--logger.wandb.enabled=false",
        *extra,
    ]


def cli_error(capsys, argv: list[str]) -> str:
    """Run the CLI in-process; assert exit 2 and exactly one stderr line ``error: …``; return it."""
    from cordbench.cli import main

    capsys.readouterr()
    code = main(argv)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2, (code, err)
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in err[0]
    if os.environ.get("RELIABILITY_MESSAGES"):  # collect the messages for docs/reliability.md
        with open(os.environ["RELIABILITY_MESSAGES"], "a") as f:
            f.write(f"{os.environ.get('PYTEST_CURRENT_TEST', '').split(' ')[0]}\t{err[0]}\n")
    return err[0]


def previous_run(out: Path) -> dict[str, bytes]:
    """Files of an earlier run in ``out`` (to check a failed command leaves them intact)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in PREVIOUS.items():
        (out / name).write_text(text)
    return {name: (out / name).read_bytes() for name in PREVIOUS}


def assert_intact(out: Path, before: dict[str, bytes]) -> None:
    assert sorted(p.name for p in out.iterdir()) == sorted(before), list(out.iterdir())
    for name, data in before.items():
        assert (out / name).read_bytes() == data, name


# ---------------------------------------------------------------------------------------- DWI
DW_AFF = np.diag([1.0, 1.0, 5.0, 1.0])
DW_SHAPE = (10, 10, 4)


def dwi_scheme() -> tuple[np.ndarray, np.ndarray]:
    """b-values (2 × b0, 12 × b800) and unit b-vectors of :func:`make_dwi`."""
    rng = np.random.default_rng(0)
    g = rng.normal(size=(12, 3))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    return np.r_[0.0, 0.0, np.full(12, 800.0)], np.vstack([[0, 0, 0], [0, 0, 0], g])


def make_dwi(d: Path) -> dict[str, Path]:
    """A 4D DWI of one tensor (FA ≈ 0.8) with a cord mask and a level map; returns the paths."""
    bvals, bvecs = dwi_scheme()
    ev = np.diag([1.7e-3, 0.3e-3, 0.3e-3])
    sig = 700 * np.exp(-bvals * np.einsum("ni,ij,nj->n", bvecs, ev, bvecs))
    data = np.broadcast_to(sig, DW_SHAPE + (len(bvals),)).astype(np.float32).copy()
    mask = np.zeros(DW_SHAPE, np.uint8)
    mask[3:7, 3:7, :] = 1
    levels = (mask * (2 + np.arange(4) // 2)[None, None, :]).astype(np.int16)
    np.savetxt(d / "dwi.bval", bvals[None], fmt="%g")
    np.savetxt(d / "dwi.bvec", bvecs.T, fmt="%.6f")
    return {
        "dwi": save(d / "dwi.nii.gz", data, DW_AFF),
        "mask": save(d / "mask.nii.gz", mask, DW_AFF),
        "levels": save(d / "levels.nii.gz", levels, DW_AFF),
        "bval": d / "dwi.bval",
        "bvec": d / "dwi.bvec",
    }


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its SHA-256: equal before and after = the folder is untouched."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def copy_run(run: Path, tmp_path: Path) -> Path:
    """A copy of the run folder ``run`` at ``tmp_path/run`` (for a test that changes it)."""
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out
