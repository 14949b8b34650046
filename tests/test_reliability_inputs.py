"""Reliability catalogue, files and measurements: ``cordbench morphometrics`` and ``cordbench dti``.

File-format cases run as real subprocesses (``python -m cordbench``: exit code, the whole stderr,
no traceback; ``--debug`` shows it); the others call ``cordbench.cli.main`` in-process. Every
case passes an output that already exists and checks it is left byte-for-byte intact.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tests.support.reliability import cli_error, cord_mask, dwi_scheme, make_dwi, save

REPO = Path(__file__).resolve().parents[1]
OLD_CSV = "VertLevel,MEAN(area)\n2,80.0\n"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cordbench", *args], capture_output=True, text=True, cwd=REPO, timeout=300
    )


def _old_output(tmp_path: Path) -> Path:
    out = tmp_path / "results.csv"
    out.write_text(OLD_CSV)
    return out


# ------------------------------------------------------------------------------ NIfTI file formats
def _bad_file(tmp_path: Path, case: str) -> Path:
    p = tmp_path / "seg.nii.gz"
    seg = cord_mask().astype(np.uint8)
    if case == "missing":
        return tmp_path / "nope_seg.nii.gz"
    if case == "not_gzip":
        p.write_bytes(b"this is plain text, not gzip")
    elif case == "truncated_gzip":
        save(p, seg)
        p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    elif case == "truncated_data":
        save(p, np.random.default_rng(0).random((40, 40, 12)).astype(np.float32))
        raw = gzip.decompress(p.read_bytes())
        p.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    elif case == "not_nifti":
        p = tmp_path / "seg.nii"
        p.write_bytes(b"\0" * 400)
    elif case == "4d_where_3d":
        save(p, np.stack([seg, seg], -1))
    return p


FORMAT_CASES = {
    "missing": "segmentation file not found",
    "not_gzip": "not a gzip file",
    "truncated_gzip": "truncated or corrupt NIfTI data",
    "truncated_data": "truncated or corrupt NIfTI data",
    "not_nifti": "not a readable NIfTI file",
    "4d_where_3d": "segmentation is 4D with shape (40, 40, 12, 2), expected 3D",
}


@pytest.mark.subprocess
@pytest.mark.parametrize("case", sorted(FORMAT_CASES))
def test_file_format_one_line_subprocess(case, tmp_path):
    bad = _bad_file(tmp_path, case)
    out = _old_output(tmp_path)
    r = run_cli("morphometrics", "--seg", str(bad), "-o", str(out))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r
    assert lines == [lines[0]] and lines[0].startswith(f"error: {bad}: "), r.stderr
    assert FORMAT_CASES[case] in lines[0], lines[0]
    assert out.read_text() == OLD_CSV
    if case == "not_gzip":  # the traceback only with --debug
        d = run_cli("--debug", "morphometrics", "--seg", str(bad), "-o", str(out))
        assert d.returncode != 0 and "Traceback" in d.stderr and "InputError" in d.stderr


# --------------------------------------------------------------------------------- morphometrics
def _levels(shape=(40, 40, 12), z=slice(0, 12)) -> np.ndarray:
    lv = np.zeros(shape, np.int16)
    cord = cord_mask(shape)
    for k in range(shape[2]):
        lv[:, :, k][cord[:, :, k]] = 2 + k // 4
    out = np.zeros_like(lv)
    out[:, :, z] = lv[:, :, z]
    return out


@pytest.mark.parametrize("method", ["slice", "volume"])
def test_levels_missing_where_cord_is_segmented(method, tmp_path, capsys):
    seg = cord_mask()
    seg[:, :, 8:] = False  # cord in slices 0-7, levels only in 9-11
    save(tmp_path / "seg.nii.gz", seg.astype(np.uint8))
    save(tmp_path / "levels.nii.gz", _levels(z=slice(9, 12)))
    out = _old_output(tmp_path)
    line = cli_error(
        capsys,
        [
            "morphometrics",
            "--seg",
            str(tmp_path / "seg.nii.gz"),
            "--levels",
            str(tmp_path / "levels.nii.gz"),
            "--level-method",
            method,
            "-o",
            str(out),
        ],
    )
    assert line.startswith(f"error: {tmp_path / 'levels.nii.gz'}: no vertebral level where the cord is segmented")
    assert out.read_text() == OLD_CSV
    # partial coverage is normal (cord beyond the labelled discs): accepted, unlabelled slices get no level
    save(tmp_path / "levels.nii.gz", _levels(z=slice(4, 12)))
    assert main_ok(
        [
            "morphometrics",
            "--seg",
            str(tmp_path / "seg.nii.gz"),
            "--levels",
            str(tmp_path / "levels.nii.gz"),
            "--level-method",
            method,
            "-o",
            str(out),
        ]
    )
    got = pd.read_csv(out)
    assert sorted(got["VertLevel"].dropna().astype(int)) == [3]


def main_ok(argv: list[str]) -> bool:
    from cordbench.cli import main

    return main(argv) == 0


@pytest.mark.parametrize("case", ["non_integer_levels", "empty_segmentation", "levels_shape"])
def test_morphometrics_label_errors(case, tmp_path, capsys):
    seg = cord_mask().astype(np.uint8)
    lv = _levels().astype(np.float32)
    if case == "non_integer_levels":
        lv[lv == 3] = 2.5
        words, bad = "vertebral levels has non-integer values (e.g. 2.5)", "levels"
    elif case == "empty_segmentation":
        seg[:] = 0
        words, bad = "segmentation is empty", "seg"
    else:
        lv = lv[:, :, :-1]
        words, bad = "label shape (40, 40, 11) != image shape (40, 40, 12)", "levels"
    save(tmp_path / "seg.nii.gz", seg)
    save(tmp_path / "levels.nii.gz", lv)
    out = _old_output(tmp_path)
    line = cli_error(
        capsys,
        [
            "morphometrics",
            "--seg",
            str(tmp_path / "seg.nii.gz"),
            "--levels",
            str(tmp_path / "levels.nii.gz"),
            "-o",
            str(out),
        ],
    )
    assert line.startswith(f"error: {tmp_path / (bad + '.nii.gz')}: ") and words in line, line
    assert out.read_text() == OLD_CSV


# ------------------------------------------------------------------------------------------- DWI
def _dti_args(f: dict[str, Path], out: Path) -> list[str]:
    return [
        "dti",
        "--dwi",
        str(f["dwi"]),
        "--bval",
        str(f["bval"]),
        "--bvec",
        str(f["bvec"]),
        "--mask",
        str(f["mask"]),
        "--levels",
        str(f["levels"]),
        "--maps",
        str(out.parent / "maps"),
        "-o",
        str(out),
    ]


def _edit_nifti(path: Path, fn) -> None:
    img = nib.load(str(path))
    data, aff = fn(np.asanyarray(img.dataobj).copy(), img.affine.copy())
    save(path, data, aff)


def _dwi_case(case: str, f: dict[str, Path]) -> tuple[str, str]:
    """Apply one bad input; return (key of the file to be named, words expected)."""
    bvals, bvecs = dwi_scheme()
    if case == "3d_where_dwi":
        _edit_nifti(f["dwi"], lambda d, a: (d[..., 0], a))
        return "dwi", "DWI is 3D with shape (10, 10, 4), expected 4D"
    if case == "bval_count":
        np.savetxt(f["bval"], bvals[None, :-1], fmt="%g")
        return "bval", "bval file has 13 values but the DWI has 14 volumes"
    if case == "bvec_count":
        np.savetxt(f["bvec"], bvecs[:-2].T, fmt="%.6f")
        return "bvec", "bvec file has 12 vectors but the DWI has 14 volumes"
    if case == "bvec_not_unit":
        g = bvecs.copy()
        g[2:8] *= 0.5  # lengths 0.5 and 1: a b-value encoded in the length, not a scale slip
        np.savetxt(f["bvec"], g.T, fmt="%.6f")
        return "bvec", "non-unit vectors of varying length (0.5–1)"
    if case == "no_b0":
        np.savetxt(f["bval"], (bvals + 800)[None], fmt="%g")
        return "bval", "no b=0 volume"
    if case == "nonpositive_b0_in_mask":
        _edit_nifti(
            f["dwi"],
            lambda d, a: (
                np.where(np.arange(14) < 2, np.where(np.arange(10)[:, None, None, None] == 4, 0.0, d), d).astype(
                    np.float32
                ),
                a,
            ),
        )
        return "dwi", "non-positive b=0 signal in 16 of 64 mask voxels"
    if case == "nan_voxel":

        def nan(d, a):
            d[5, 5, 1, 7] = np.nan
            d[0, 0, 0, 0] = np.inf
            return d, a

        _edit_nifti(f["dwi"], nan)
        return "dwi", "DWI has 2 NaN/Inf voxels"
    if case == "empty_mask":
        _edit_nifti(f["mask"], lambda d, a: (np.zeros_like(d), a))
        return "mask", "cord mask is empty"
    if case == "mask_affine":

        def shift(d, a):
            a[1, 3] += 0.01
            return d, a

        _edit_nifti(f["mask"], shift)
        return "mask", "label affine differs from image affine by 0.01 mm (tolerance 0.001)"
    if case == "mask_shape":
        _edit_nifti(f["mask"], lambda d, a: (d[:, :-1], a))
        return "mask", "label shape (10, 9, 4) != image shape (10, 10, 4)"
    if case == "levels_not_on_cord":
        _edit_nifti(f["mask"], lambda d, a: (np.where(np.arange(4) < 2, d, 0).astype(np.uint8), a))
        _edit_nifti(f["levels"], lambda d, a: (np.where(np.arange(4) >= 2, d, 0).astype(np.int16), a))
        return "levels", "no vertebral level where the cord mask is"
    raise AssertionError(case)


DWI_CASES = [
    "3d_where_dwi",
    "bval_count",
    "bvec_count",
    "bvec_not_unit",
    "no_b0",
    "nonpositive_b0_in_mask",
    "nan_voxel",
    "empty_mask",
    "mask_affine",
    "mask_shape",
    "levels_not_on_cord",
]


@pytest.mark.parametrize("case", DWI_CASES)
def test_dti_bad_inputs(case, tmp_path, capsys):
    f = make_dwi(tmp_path)
    key, words = _dwi_case(case, f)
    out = _old_output(tmp_path)
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "FA.nii.gz").write_bytes(b"previous map")
    line = cli_error(capsys, _dti_args(f, out))
    assert line.startswith(f"error: {f[key]}: ") and words in line, line
    assert out.read_text() == OLD_CSV
    assert [p.name for p in (tmp_path / "maps").iterdir()] == ["FA.nii.gz"]
    assert (tmp_path / "maps" / "FA.nii.gz").read_bytes() == b"previous map"


def test_dti_accepts_what_it_should(tmp_path, capsys):
    """The controls of the cases above: a clean set, a within-tolerance affine, vectors all scaled alike
    (normalised with one warning line), a few non-positive DW voxels (clipped with a warning)."""
    from cordbench.cli import main

    f = make_dwi(tmp_path)
    out = tmp_path / "dti.csv"
    assert main(_dti_args(f, out)) == 0
    fa = pd.read_csv(out)["MEAN(FA)"]
    ev = np.array([1.7, 0.3, 0.3])
    want = np.sqrt(0.5 * ((ev[0] - ev[1]) ** 2 + (ev[1] - ev[2]) ** 2 + (ev[2] - ev[0]) ** 2) / (ev**2).sum())
    assert np.allclose(fa, want, atol=1e-3)

    def tiny_shift(d, a):
        a[1, 3] += 1e-4
        return d, a

    _edit_nifti(f["mask"], tiny_shift)
    _, bvecs = dwi_scheme()
    np.savetxt(f["bvec"], (bvecs * 1.5).T, fmt="%.6f")
    _edit_nifti(
        f["dwi"],
        lambda d, a: (
            np.where((np.arange(14) == 9) & (np.arange(10)[:, None, None, None] == 5), 0.0, d).astype(np.float32),
            a,
        ),
    )
    capsys.readouterr()
    assert main(_dti_args(f, out)) == 0
    err = capsys.readouterr().err
    assert "not unit length" in err and "normalised" in err and "non-positive signal" in err
    assert np.allclose(pd.read_csv(out)["MEAN(FA)"].iloc[0], want, atol=0.05)


# ------------------------------------------------------------------------------ analyze (cohort)
def test_analyze_reports_a_malformed_subject_and_finishes_the_others(tmp_path, capsys):
    """sub-02's disc labels bound none of its cord slices: it fails with the file named, the cohort goes on.

    (A subject whose Ray worker dies: ``tests/test_study.py::test_analyze_with_ray_survives_a_crashing_worker``.)
    """
    import nibabel as nib

    from cordbench.cli import main
    from tests.support.study import make_bids as make_study_bids

    root = tmp_path / "bids"
    make_study_bids(root, n=3, with_dwi=False)
    lab = root / "derivatives" / "labels" / "sub-02" / "anat"
    (lab / "sub-02_T2w_label-SC_desc-levels_dseg.nii.gz").unlink()
    seg = nib.load(str(lab / "sub-02_T2w_label-SC_seg.nii.gz"))
    discs = np.zeros(seg.shape, np.uint8)
    discs[22, 22, 15] = 3  # one disc: no level between two discs anywhere
    save(lab / "sub-02_T2w_label-discs_dlabel.nii.gz", discs, seg.affine)
    out = tmp_path / "study"
    capsys.readouterr()
    assert main(["analyze", str(root), "-o", str(out), "--workers", "0", "--no-progress", "--by", "sex"]) == 0
    printed = capsys.readouterr().out
    subjects = pd.read_csv(out / "subjects.csv").set_index("participant_id")
    assert subjects.loc["sub-02", "status"] == "failed"
    reason = subjects.loc["sub-02", "reasons"]
    assert "no vertebral level where the T2w cord mask is segmented" in reason
    assert str(lab / "sub-02_T2w_label-discs_dlabel.nii.gz") in reason
    assert "sub-02" in printed and "no vertebral level" in printed
    metrics = pd.read_csv(out / "metrics.csv")
    assert sorted(metrics["participant_id"].unique()) == ["sub-01", "sub-03"]
    assert set(metrics["VertLevel"]) == {2, 3, 4}
    assert "no vertebral level" in (out / "report.html").read_text()


@pytest.mark.subprocess
def test_analyze_unknown_grouping_column_named(tmp_path):
    """A typo in ``--by`` is an error naming participants.tsv, not a silently dropped group."""
    import subprocess
    import sys

    from data_modules.phantom import generate_cohort

    root = generate_cohort(tmp_path / "ph", n_subjects=2, seed=0, dwi=False)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cordbench",
            "analyze",
            str(root),
            "-o",
            str(tmp_path / "out"),
            "--by",
            "sex,manufacturrer",
            "--workers",
            "0",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "participants.tsv" in lines[0] and "manufacturrer" in lines[0], r.stderr
