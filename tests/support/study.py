"""A tiny spine-generic-like BIDS set of tilted tubes with known CSA/SAC and a simulated DWI with known FA
(``tests/test_study.py``, ``tests/test_reliability_inputs.py``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

EV = (1.7e-3, 0.3e-3, 0.3e-3)
#: Tilt of the tubes against the slice normal: 20° makes the angle correction cos θ = 0.94, so a CSA
#: (or SAC) measured without it is 6% off, three times the tolerance of the checks against truth.
TILT_DEG = 20.0


def _fa(ev):
    ev = np.asarray(ev, float)
    return float(np.sqrt(0.5 * (((ev[0] - ev[1]) ** 2 + (ev[1] - ev[2]) ** 2 + (ev[2] - ev[0]) ** 2) / (ev**2).sum())))


def _scheme(n=30, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(n, 3))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    return np.r_[0.0, 0.0, np.full(n, 800.0)], np.vstack([[0, 0, 0], [0, 0, 0], g])


def _tube(shape, aff, radius, tilt_deg=TILT_DEG, centre_shift=(0.0, 0.0)):
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    w = idx @ aff[:3, :3].T + aff[:3, 3]
    centre = aff[:3, :3] @ ((np.array(shape) - 1) / 2.0) + aff[:3, 3] + [*centre_shift, 0]
    t = np.radians(tilt_deg)
    d = np.array([np.sin(t), 0.0, np.cos(t)])
    v = w - centre
    perp = v - np.outer(v @ d, d)
    return (np.linalg.norm(perp, axis=1) <= radius).reshape(shape)


def _save(path, arr, aff):
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr, aff), str(path))


def make_bids(root, n=4, radius=(3.5, 4.5), canal_r=6.5, with_dwi=True):
    """A tiny spine-generic-like BIDS set; returns {subject: (csa, sac, sac_csa, fa)} truth."""
    rng = np.random.default_rng(1)
    bvals, bvecs = _scheme()
    truth = {}
    rows = []
    for i in range(n):
        sub = f"sub-{i + 1:02d}"
        r = float(np.linspace(*radius, n)[i])
        aff = np.diag([0.5, 0.5, 1.0, 1.0])
        aff[:3, 3] = [-10, -10, -15]
        shape = (56, 44, 30)  # RL room for the canal (radius 6.5 mm / cos 20°) shifted ±5 mm by the tilt
        cord = _tube(shape, aff, r)
        canal = _tube(shape, aff, canal_r)
        levels = np.zeros(shape, np.int16)
        for k in range(shape[2]):
            levels[:, :, k][cord[:, :, k]] = 2 + k // 10
        la = root / "derivatives" / "labels" / sub / "anat"
        _save(root / sub / "anat" / f"{sub}_T2w.nii.gz", (cord * 100 + canal * 200).astype(np.int16), aff)
        _save(la / f"{sub}_T2w_label-SC_seg.nii.gz", cord.astype(np.uint8), aff)
        _save(la / f"{sub}_T2w_label-canal_seg.nii.gz", canal.astype(np.uint8), aff)
        _save(la / f"{sub}_T2w_label-SC_desc-levels_dseg.nii.gz", levels, aff)
        if with_dwi:
            daff = np.diag([1.0, 1.0, 5.0, 1.0])
            dshape = (16, 16, 6)
            dmask = np.zeros(dshape, bool)
            dmask[6:10, 6:10, :] = True
            dlev = np.where(dmask, (2 + np.arange(6) // 2)[None, None, :], 0).astype(np.int16)
            sig = 700 * np.exp(-bvals * np.einsum("ni,ij,nj->n", bvecs, np.diag(EV), bvecs))
            data = np.broadcast_to(sig, dshape + (len(bvals),)).copy()
            data += rng.normal(0, 700 / 100, data.shape)
            dd = root / sub / "dwi"
            _save(dd / f"{sub}_dwi.nii.gz", data.astype(np.float32), daff)
            _save(dd / f"{sub}_rec-average_dwi.nii.gz", data.mean(-1).astype(np.float32), daff)
            np.savetxt(dd / f"{sub}_dwi.bval", bvals[None], fmt="%g")
            np.savetxt(dd / f"{sub}_dwi.bvec", bvecs.T, fmt="%.6f")
            ld = root / "derivatives" / "labels" / sub / "dwi"
            _save(ld / f"{sub}_rec-average_dwi_label-SC_seg.nii.gz", dmask.astype(np.uint8), daff)
            _save(ld / f"{sub}_rec-average_dwi_label-SC_desc-levels_dseg.nii.gz", dlev, daff)
        truth[sub] = (np.pi * r * r, np.pi * (canal_r**2 - r * r), (canal_r**2 - r * r) / (r * r), _fa(EV))
        rows.append(
            {
                "participant_id": sub,
                "sex": "MF"[i % 2],
                "manufacturer": ["GE", "Siemens"][i // 2 % 2],
                "institution_id": f"site{i % 3}",
            }
        )
    pd.DataFrame(rows).to_csv(root / "participants.tsv", sep="\t", index=False)
    return truth
