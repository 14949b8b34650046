"""DTI: maps equal dipy's, FA recovers a planted tensor at SNR 30 with the spine-generic scheme,
gradient-file handling (orientation, counts, b=0, norms), scheme and signal warnings, CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.dti import (
    GradientWarning,
    SchemeWarning,
    SignalWarning,
    fit_tensor,
    load_gradients,
    per_level_means,
    run_dti,
    scheme_report,
)
from core.errors import InputError


def _fa(ev):
    ev = np.asarray(ev, float)
    return np.sqrt(0.5 * (((ev[0] - ev[1]) ** 2 + (ev[1] - ev[2]) ** 2 + (ev[2] - ev[0]) ** 2) / (ev**2).sum()))


def _sg_scheme(spine_generic):
    d = spine_generic / "sub-amu01" / "dwi"
    return d / "sub-amu01_dwi.bval", d / "sub-amu01_dwi.bvec"


def _simulate(bvals, bvecs, shape=(12, 12, 8), snr=30.0, seed=0, ev=(1.7e-3, 0.3e-3, 0.3e-3)):
    """Cord-like tensor along the slice axis in a central block; Rician noise at the given b=0 SNR."""
    rng = np.random.default_rng(seed)
    s0 = 800.0
    d = np.diag(ev)
    sig = s0 * np.exp(-bvals * np.einsum("ni,ij,nj->n", bvecs, d, bvecs))
    clean = np.broadcast_to(sig, shape + (len(bvals),)).copy()
    sd = s0 / snr
    noisy = np.sqrt((clean + rng.normal(0, sd, clean.shape)) ** 2 + rng.normal(0, sd, clean.shape) ** 2)
    mask = np.zeros(shape, bool)
    mask[3:9, 3:9, :] = True
    levels = np.zeros(shape, np.int16)
    for k in range(shape[2]):
        levels[:, :, k][mask[:, :, k]] = 2 + k // 4
    return noisy.astype(np.float32), mask, levels


def _save(tmp_path, data, mask, levels, bvals, bvecs, bvec_rows=True, aff=None):
    import nibabel as nib

    aff = np.diag([0.9, 0.9, 5.0, 1.0]) if aff is None else aff
    img = nib.Nifti1Image(data, aff)
    img.header.set_qform(aff, code=1)
    img.header.set_sform(aff, code=2)
    nib.save(img, str(tmp_path / "dwi.nii.gz"))
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), aff), str(tmp_path / "mask.nii.gz"))
    nib.save(nib.Nifti1Image(levels, aff), str(tmp_path / "levels.nii.gz"))
    np.savetxt(tmp_path / "dwi.bval", bvals[None, :], fmt="%g")
    np.savetxt(tmp_path / "dwi.bvec", bvecs.T if bvec_rows else bvecs, fmt="%.8f")
    return tmp_path / "dwi.nii.gz", tmp_path / "dwi.bval", tmp_path / "dwi.bvec"


@pytest.fixture
def sg(spine_generic):
    bval_p, bvec_p = _sg_scheme(spine_generic)
    bvals = np.loadtxt(bval_p)
    return bvals, load_gradients(bval_p, bvec_p, bvals.size)[1]


@pytest.mark.parametrize("method", ["WLS", "OLS"])
def test_maps_equal_dipy_and_fa_within_002_at_snr30(tmp_path, sg, method):
    import nibabel as nib
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel

    bvals, bvecs = sg
    data, mask, levels = _simulate(bvals, bvecs)
    dwi, bval, bvec = _save(tmp_path, data, mask, levels, bvals, bvecs)
    res = run_dti(
        dwi,
        bval,
        bvec,
        tmp_path / "mask.nii.gz",
        tmp_path / "levels.nii.gz",
        fit_method=method,
        maps_dir=tmp_path / "maps",
    )
    fit = TensorModel(gradient_table(bvals, bvecs=bvecs), fit_method=method).fit(data, mask=mask)
    for name, ref in (("FA", fit.fa), ("MD", fit.md), ("RD", fit.rd), ("AD", fit.ad)):
        on_disk = np.asarray(nib.load(str(res.map_paths[name])).dataobj, dtype=float)
        assert np.abs(on_disk[mask] - ref[mask]).max() < 1e-6
        assert np.abs(res.maps[name][mask] - ref[mask]).max() < 1e-8  # bvecs round-trip through text
        assert (on_disk[~mask] == 0).all()
    truth = _fa((1.7e-3, 0.3e-3, 0.3e-3))
    assert (np.abs(res.table["MEAN(FA)"] - truth) < 0.02).all()
    assert list(res.table["VertLevel"]) == ["2", "3"]
    assert not res.scheme.degenerate and res.scheme.cond_b < 2


def test_bvec_orientation_detected_and_equal(tmp_path, sg):
    bvals, bvecs = sg
    data, mask, levels = _simulate(bvals, bvecs, shape=(6, 6, 4))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    r1 = run_dti(*_save(tmp_path / "a", data, mask, levels, bvals, bvecs, bvec_rows=True), tmp_path / "a/mask.nii.gz")
    r2 = run_dti(*_save(tmp_path / "b", data, mask, levels, bvals, bvecs, bvec_rows=False), tmp_path / "b/mask.nii.gz")
    assert np.array_equal(r1.maps["FA"], r2.maps["FA"])


def test_gradient_file_errors(tmp_path):
    b = np.array([0, 1000, 1000, 1000, 1000, 1000, 1000.0])
    g = np.vstack([[0, 0, 0], np.eye(3), np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1]]) / np.sqrt(2)])
    np.savetxt(tmp_path / "ok.bval", b[None])
    np.savetxt(tmp_path / "ok.bvec", g.T)
    with pytest.raises(InputError, match=r"ok\.bval.*7 values but the DWI has 8"):
        load_gradients(tmp_path / "ok.bval", tmp_path / "ok.bvec", 8)
    np.savetxt(tmp_path / "short.bvec", g[:6].T)
    with pytest.raises(InputError, match=r"short\.bvec.*6 vectors but the DWI has 7"):
        load_gradients(tmp_path / "ok.bval", tmp_path / "short.bvec", 7)
    np.savetxt(tmp_path / "nob0.bval", (b + 1000)[None])
    with pytest.raises(InputError, match=r"nob0\.bval.*no b=0"):
        load_gradients(tmp_path / "nob0.bval", tmp_path / "ok.bvec", 7)
    gz = g.copy()
    gz[3] = 0
    np.savetxt(tmp_path / "zero.bvec", gz.T)
    with pytest.raises(InputError, match=r"zero\.bvec.*zero gradient vector.*\[3\]"):
        load_gradients(tmp_path / "ok.bval", tmp_path / "zero.bvec", 7)
    (tmp_path / "text.bval").write_text("0 a b\n")
    with pytest.raises(InputError, match="text.bval"):
        load_gradients(tmp_path / "text.bval", tmp_path / "ok.bvec", 3)
    with pytest.raises(InputError, match="missing.bvec"):
        load_gradients(tmp_path / "ok.bval", tmp_path / "missing.bvec", 7)


def test_non_unit_vectors_normalised_with_warning(tmp_path):
    b = np.array([0, 1000, 1000, 1000, 1000, 1000, 1000.0])
    g = np.vstack([[0, 0, 0], np.eye(3), np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1]]) / np.sqrt(2)])
    np.savetxt(tmp_path / "a.bval", b[None])
    np.savetxt(tmp_path / "a.bvec", (g * 1.7).T)
    with pytest.warns(GradientWarning, match="not unit length"):
        _, out = load_gradients(tmp_path / "a.bval", tmp_path / "a.bvec", 7)
    assert np.allclose(out, g)


def test_scheme_warnings_on_real_sct_dmri_and_coplanar(sct_data, tmp_path):
    d = sct_data / "dmri"
    with pytest.warns(SchemeWarning, match="condition number"):
        res = run_dti(d / "dmri.nii.gz", d / "bvals.txt", d / "bvecs.txt")  # N×3 bvecs, 1 b0 + 6 dirs
    assert res.scheme.n_directions == 6 and res.scheme.cond_b > 10
    # six directions in the xy plane: rank-deficient and coplanar
    ang = np.radians(np.arange(6) * 30)
    g = np.vstack([[0, 0, 0], np.stack([np.cos(ang), np.sin(ang), np.zeros(6)], 1)])
    rep = scheme_report(np.r_[0, [1000] * 6], g)
    assert rep.rank_b < 6 and rep.coplanarity < 0.15 and len(rep.problems) == 2
    # collinear repeats: only 3 distinct directions
    rep = scheme_report(np.r_[0, [1000] * 6], np.vstack([[0, 0, 0], np.eye(3), -np.eye(3)]))
    assert rep.n_directions == 3 and rep.degenerate


def test_nonpositive_signal_warns_and_3d_dwi_rejected(tmp_path, sg):
    import nibabel as nib

    bvals, bvecs = sg
    data, mask, levels = _simulate(bvals, bvecs, shape=(6, 6, 4))
    data[4, 4, 1, 5] = 0.0
    data[3, 3, 2, 7] = -2.0
    with pytest.warns(SignalWarning, match="2 voxel"):
        maps = fit_tensor(data, bvals, bvecs, mask)
    assert np.isfinite(maps["FA"]).all()
    nib.save(nib.Nifti1Image(data[..., 0], np.eye(4)), str(tmp_path / "three.nii.gz"))
    np.savetxt(tmp_path / "x.bval", bvals[None])
    np.savetxt(tmp_path / "x.bvec", bvecs.T)
    with pytest.raises(InputError, match=r"three\.nii\.gz.*3D.*expected 4D"):
        run_dti(tmp_path / "three.nii.gz", tmp_path / "x.bval", tmp_path / "x.bvec")


def test_per_level_means_slice_and_voxel_modes():
    shape = (4, 4, 3)
    fa = np.arange(np.prod(shape), dtype=float).reshape(shape)
    mask = np.zeros(shape, bool)
    mask[1:3, 1:3, :] = True
    levels = np.zeros(shape, np.int16)
    levels[1:3, 1:3, 0] = 2
    levels[1:3, 1:3, 1] = [[2, 2], [2, 3]]  # slice 1: mean 2.25 → level 2; one voxel labelled 3
    levels[1:3, 1:3, 2] = 3
    aff = np.eye(4)
    t = per_level_means({"FA": fa}, aff, mask, levels, "slice")
    # RPI reorientation of an identity (RAS) grid flips axis 0 only: slice indices unchanged
    s2 = fa[:, :, :2][mask[:, :, :2]]
    assert t.loc[0, "VertLevel"] == "2" and t.loc[0, "MEAN(FA)"] == pytest.approx(s2.mean())
    assert t.loc[0, "STD(FA)"] == pytest.approx(s2.std()) and t.loc[0, "Size [vox]"] == 8
    assert t.loc[1, "Slice (I->S)"] == "2"
    v = per_level_means({"FA": fa}, aff, mask, levels, "voxel")
    sel3 = mask & (levels == 3)
    assert v.loc[1, "MEAN(FA)"] == pytest.approx(fa[sel3].mean()) and v.loc[1, "Size [vox]"] == 5


def test_cli_dti_writes_csv_and_maps_keeping_header(tmp_path, sg):
    import nibabel as nib

    from cordbench.cli import main

    bvals, bvecs = sg
    data, mask, levels = _simulate(bvals, bvecs, shape=(8, 8, 8))
    dwi, bval, bvec = _save(tmp_path, data, mask, levels, bvals, bvecs)
    rc = main(
        [
            "dti",
            "--dwi",
            str(dwi),
            "--bval",
            str(bval),
            "--bvec",
            str(bvec),
            "--levels",
            str(tmp_path / "levels.nii.gz"),
            "--maps",
            str(tmp_path / "maps"),
            "-o",
            str(tmp_path / "dti.csv"),
        ]
    )
    assert rc == 0
    df = pd.read_csv(tmp_path / "dti.csv")
    assert {"VertLevel", "MEAN(FA)", "STD(FA)", "MEAN(MD)", "MEAN(RD)", "MEAN(AD)"} <= set(df.columns)
    fa = nib.load(str(tmp_path / "maps" / "FA.nii.gz"))
    src = nib.load(str(dwi))
    assert fa.shape == src.shape[:3] and np.allclose(fa.affine, src.affine)
    assert int(fa.header["sform_code"]) == 2 and int(fa.header["qform_code"]) == 1
    rc = main(
        [
            "dti",
            "--dwi",
            str(dwi),
            "--bval",
            str(bval),
            "--bvec",
            str(tmp_path / "nope.bvec"),
            "-o",
            str(tmp_path / "x.csv"),
        ]
    )
    assert rc == 2


def test_white_matter_region_from_a_wm_mask_or_cord_minus_gm(tmp_path, sg):
    """A WM tensor (FA 0.80) around a GM core (FA 0.30): the cord mean mixes them; the WM mask and
    cord − GM give the planted WM FA at SNR 30, and the CSV says which region was averaged."""
    import nibabel as nib

    from cordbench.cli import main

    bvals, bvecs = sg
    ev_wm, ev_gm = (1.7e-3, 0.3e-3, 0.3e-3), (0.95e-3, 0.6e-3, 0.6e-3)
    wm_data, mask, levels = _simulate(bvals, bvecs, seed=1, ev=ev_wm)
    gm_data, _, _ = _simulate(bvals, bvecs, seed=2, ev=ev_gm)
    gm = np.zeros_like(mask)
    gm[5:7, 5:7, :] = True
    data = np.where(gm[..., None], gm_data, wm_data)
    dwi, bval, bvec = _save(tmp_path, data, mask, levels, bvals, bvecs)
    aff = nib.load(str(dwi)).affine
    nib.save(nib.Nifti1Image(gm.astype(np.uint8), aff), str(tmp_path / "gm.nii.gz"))
    nib.save(nib.Nifti1Image((mask & ~gm).astype(np.uint8), aff), str(tmp_path / "wm.nii.gz"))
    lv = tmp_path / "levels.nii.gz"
    cord = run_dti(dwi, bval, bvec, tmp_path / "mask.nii.gz", lv).table
    wm = run_dti(dwi, bval, bvec, tmp_path / "mask.nii.gz", lv, wm_mask=tmp_path / "wm.nii.gz").table
    diff = run_dti(dwi, bval, bvec, tmp_path / "mask.nii.gz", lv, gm_mask=tmp_path / "gm.nii.gz").table
    assert set(cord["Label"]) == {"cord"} and set(cord["Region"]) == {"cord mask"}
    assert set(wm["Label"]) == {"WM"} and set(wm["Region"]) == {"WM mask"}
    assert set(diff["Label"]) == {"WM"} and set(diff["Region"]) == {"cord minus GM"}
    fa_wm, fa_gm = _fa(ev_wm), _fa(ev_gm)
    assert np.abs(wm["MEAN(FA)"] - fa_wm).max() < 0.02
    assert np.allclose(diff["MEAN(FA)"], wm["MEAN(FA)"]) and (diff["Size [vox]"] == wm["Size [vox]"]).all()
    n_gm = gm[mask].mean()
    assert np.abs(cord["MEAN(FA)"] - ((1 - n_gm) * fa_wm + n_gm * fa_gm)).max() < 0.03
    assert (wm["MEAN(FA)"] - cord["MEAN(FA)"]).min() > 0.04
    out = tmp_path / "dti_wm.csv"
    assert (
        main(
            [
                "dti",
                "--dwi",
                str(dwi),
                "--bval",
                str(bval),
                "--bvec",
                str(bvec),
                "--mask",
                str(tmp_path / "mask.nii.gz"),
                "--levels",
                str(lv),
                "--wm-mask",
                str(tmp_path / "wm.nii.gz"),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert set(pd.read_csv(out)["Label"]) == {"WM"}
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), aff), str(tmp_path / "allgm.nii.gz"))
    with pytest.raises(InputError, match="cord minus GM"):
        run_dti(dwi, bval, bvec, tmp_path / "mask.nii.gz", lv, gm_mask=tmp_path / "allgm.nii.gz")
