"""Reliability beyond the catalogue, results: bad data that used to give a wrong, empty or NaN result
with exit 0 is now refused (one line naming the file) or warned about with the output saying what was
assumed; computation errors and misleading messages of the issue are one clear line.

In-process through ``cordbench.cli.main`` on tiny synthetic files (and the real t2 of
``sct_testing_data`` for the morphometrics header cases).
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from cordbench.cli import main
from tests.support.reliability import cli_error, cord_mask, make_bids, make_dwi, save


def raw_nifti(path: Path, data: np.ndarray, edit=None, zooms=(0.8, 0.8, 2.0)) -> Path:
    """Write header + data bytes ourselves: nibabel would 'repair' the header fields under test on save."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(data.shape)
    hdr.set_data_dtype(data.dtype)
    hdr.set_zooms(zooms[: data.ndim])
    aff = np.diag([*zooms, 1.0])
    hdr.set_sform(aff, code=1)
    hdr.set_qform(aff, code=1)
    hdr["vox_offset"] = 352
    if edit is not None:
        edit(hdr)
    path.write_bytes(gzip.compress(hdr.binaryblock + b"\0" * 4 + data.tobytes(order="F")))
    return path


def sha(*paths: Path) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


# ------------------------------------------------------------------------- D: headers and levels
def _qform_twice(h):
    h.set_qform(np.diag([1.6, 1.6, 2.0, 1.0]), code=1)  # pixdim follows the qform: CSA x4


def _zero_pixdim(h):
    h["pixdim"][1] = 0.0


def _zero_axis(h):
    h["dim"][2] = 0


@pytest.mark.parametrize(
    "case,words",
    [
        (
            "qform_sform",
            "segmentation header: qform and sform disagree by 0.8 mm (voxel sizes (1.6, 1.6, 2.0) vs "
            "(0.8, 0.8, 2.0)); which grid is right is unknown",
        ),
        (
            "zero_pixdim",
            "segmentation header has voxel size pixdim[1:4] = (0.0, 0.8, 2.0): a size of 0 (or below) is "
            "unknown, not 1 mm",
        ),
        ("zero_axis", "segmentation header has an axis of length 0 (dim = (40, 0, 12)): the image holds no voxels"),
    ],
)
def test_ambiguous_or_empty_header_refused(case, words, tmp_path, capsys):
    """A qform/sform mismatch gave a CSA 4x too large; a zero pixdim was silently taken as 1 mm;
    a (60, 0, 52) image was called '1D with shape (0,)'."""
    edit = {"qform_sform": _qform_twice, "zero_pixdim": _zero_pixdim, "zero_axis": _zero_axis}[case]
    data = cord_mask().astype(np.uint8) if case != "zero_axis" else np.zeros((40, 1, 12), np.uint8)
    seg = raw_nifti(tmp_path / "seg.nii.gz", data, edit)
    out = tmp_path / "m.csv"
    err = cli_error(capsys, ["morphometrics", "--seg", str(seg), "-o", str(out)])
    assert err == f"error: {seg}: {words}" or err.startswith(f"error: {seg}: {words}"), err
    assert not out.exists()


def test_consistent_raw_header_accepted_and_real_headers_pass(tmp_path, sct_data, capsys):
    """The checks refuse only the ambiguous: the same raw writer with a sane header, and every real file, pass."""
    from core.io import load_nifti

    seg = raw_nifti(tmp_path / "seg.nii.gz", cord_mask().astype(np.uint8))
    assert main(["morphometrics", "--seg", str(seg), "-o", str(tmp_path / "m.csv")]) == 0
    area = pd.read_csv(tmp_path / "m.csv")["MEAN(area)"].iloc[0]
    assert abs(area - (cord_mask()[:, :, 0].sum() * 0.64)) < 0.05 * area  # mm² with 0.8 mm voxels
    for f in sorted(sct_data.rglob("*.nii.gz")):  # real qform/sform differ by 2e-4 mm in dmri: accepted
        load_nifti(f, ndim=None, allow_nonfinite=True)


@pytest.fixture(scope="module")
def real_t2(sct_data):
    return sct_data / "t2" / "t2_seg-manual.nii.gz", sct_data / "t2" / "t2_seg-manual_labeled.nii.gz"


def test_vert_naming_absent_levels(real_t2, tmp_path, capsys):
    """Used to write a header-only CSV with exit 0; part of a range present: a warning, the row says which."""
    seg, lev = real_t2
    out = tmp_path / "m.csv"
    err = cli_error(capsys, ["morphometrics", "--seg", str(seg), "--levels", str(lev), "--vert", "9", "-o", str(out)])
    assert err == "error: --vert 9: none of these levels is where the cord is segmented (levels there: 2:5)"
    assert not out.exists()
    assert main(["morphometrics", "--seg", str(seg), "--levels", str(lev), "--vert", "4:7", "-o", str(out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "warning: --vert 4:7: level(s) 6:7 not where the cord is segmented; the output covers level(s) 4:5 only"
    ]
    assert pd.read_csv(out)["VertLevel"].astype(str).tolist() == ["4:5"]


def test_volume_method_on_a_one_voxel_mask(real_t2, tmp_path, capsys):
    seg, lev = real_t2
    ref = nib.load(str(seg))
    one = np.zeros(ref.shape, np.uint8)
    idx = np.argwhere(np.asanyarray(ref.dataobj) > 0)
    one[tuple(idx[len(idx) // 2])] = 1
    p = tmp_path / "one.nii.gz"
    nib.save(nib.Nifti1Image(one, ref.affine, ref.header), str(p))
    err = cli_error(
        capsys,
        [
            "morphometrics",
            "--seg",
            str(p),
            "--levels",
            str(lev),
            "--level-method",
            "volume",
            "-o",
            str(tmp_path / "m.csv"),
        ],
    )
    assert err.startswith(f"error: {p}: segmentation covers 1 axial slice(s): --level-method volume needs"), err


# --------------------------------------------------------------------------------------- D: DWI
def test_undetermined_dwi_scheme_writes_no_fa(tmp_path, capsys):
    """The code itself called the scheme undetermined, and still wrote FA maps (exit 0)."""
    f = make_dwi(tmp_path)
    bvals = np.r_[0.0, 0.0, np.full(12, 800.0)]
    ang = np.radians(np.arange(12) * 15)  # 12 directions in one plane: B-matrix rank 3
    bvecs = np.vstack([[0, 0, 0], [0, 0, 0], np.stack([np.cos(ang), np.sin(ang), np.zeros(12)], 1)])
    np.savetxt(f["bval"], bvals[None], fmt="%g")
    np.savetxt(f["bvec"], bvecs.T, fmt="%.6f")
    maps, out = tmp_path / "maps", tmp_path / "dti.csv"
    err = cli_error(
        capsys,
        [
            "dti",
            "--dwi",
            str(f["dwi"]),
            "--bval",
            str(f["bval"]),
            "--bvec",
            str(f["bvec"]),
            "--mask",
            str(f["mask"]),
            "--maps",
            str(maps),
            "-o",
            str(out),
        ],
    )
    assert err.startswith(f"error: {f['bvec']}: the diffusion scheme cannot determine a tensor ("), err
    assert "B-matrix rank 3 < 6" in err and err.endswith("): no FA/MD/RD/AD written")
    assert not out.exists() and not (maps.exists() and any(maps.iterdir()))


# ---------------------------------------------------------------------------------- D: predict
def test_predict_single_sagittal_slice_refused(tiny_ckpt, tmp_path, capsys):  # noqa: F811
    """Used to return an empty mask with exit 0."""
    img = save(
        tmp_path / "sag.nii.gz",
        np.random.default_rng(0).normal(100, 20, (1, 64, 40)).astype(np.float32),
        np.diag([1.0, 0.5, 0.5, 1.0]),
    )
    out = tmp_path / "sag_seg.nii.gz"
    err = cli_error(capsys, ["predict", "--ckpt", str(tiny_ckpt), "-i", str(img), "-o", str(out)])
    assert err.startswith(
        f"error: {img}: input image has only 1 voxel(s) along R-L (shape (1, 64, 40), RAS): "
        "a single sagittal or coronal slice?"
    ), err
    assert not out.exists()


def test_predict_empty_mask_is_said(tiny_ckpt, image, tmp_path, capsys, monkeypatch):  # noqa: F811
    import evaluation.inference as inf

    monkeypatch.setattr(inf, "predict_array", lambda module, data, affine: np.zeros(data.shape, np.uint8))
    out = tmp_path / "m.nii.gz"
    assert main(["predict", "--ckpt", str(tiny_ckpt), "-i", str(image), "-o", str(out)]) == 0
    assert capsys.readouterr().err.strip() == f"warning: {image}: the model found no foreground: the mask is empty"
    assert out.exists()


# ------------------------------------------------------------------------------------ D/E: stats
def _table(n: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        [
            {
                "participant_id": f"sub-{i:02d}",
                "VertLevel": lv,
                "FA": rng.random(),
                "SAC_CSA": rng.random(),
                "sex": "MF"[i % 2],
            }
            for i in range(n)
            for lv in (2, 3)
        ]
    )


@pytest.mark.parametrize(
    "case,words",
    [
        ("constant", "column 'FA' is constant (0.5 in all 24 rows): no correlation is defined"),
        (
            "duplicated_rows",
            "24 row(s) repeat an earlier row exactly (e.g. line 26 = line 2): each subject would "
            "count twice; remove the duplicates",
        ),
        (
            "duplicated_subject_level",
            "participant_id sub-00 and VertLevel 2 appear(s) on 2 lines (e.g. lines 2 and 26)",
        ),
        ("non_numeric", "column 'FA' has 1 non-numeric value(s), e.g. 'abc' on line 7"),
        (
            "sex_codings",
            "column 'sex' spells one group several ways: 'M' and 'male' (they would count as separate "
            "groups); use one coding",
        ),
        ("vendor_case", "column 'sex' spells one group several ways: 'F' and 'f '"),
    ],
)
def test_stats_bad_tables_refused(case, words, tmp_path, capsys):
    df = _table()
    if case == "constant":
        df["FA"] = 0.5
    elif case == "duplicated_rows":
        df = pd.concat([df, df])
    elif case == "duplicated_subject_level":
        extra = df.iloc[[0]].copy()
        extra["FA"] = 0.99
        df = pd.concat([df, extra])
    elif case == "non_numeric":
        df = df.astype({"FA": object})
        df.loc[5, "FA"] = "abc"
    elif case == "vendor_case":  # red team: case and spacing made two groups silently
        df.loc[df["participant_id"] == "sub-03", "sex"] = "f "
    else:
        df.loc[df["participant_id"] == "sub-02", "sex"] = "male"
    src = tmp_path / "m.csv"
    df.to_csv(src, index=False)
    out = tmp_path / "st"
    err = cli_error(
        capsys, ["stats", str(src), "--x", "FA", "--y", "SAC_CSA", "--by", "sex", "--no-plots", "-o", str(out)]
    )
    assert err.startswith(f"error: {src}: {words}"), err
    assert not out.exists()


def test_stats_constant_within_a_group_is_noted(tmp_path, capsys):
    """r = NaN with no message before; now a warning and the 'note' column of correlations.csv."""
    df = _table()
    df.loc[df["sex"] == "F", "FA"] = 0.5
    src = tmp_path / "m.csv"
    df.to_csv(src, index=False)
    assert (
        main(
            ["stats", str(src), "--x", "FA", "--y", "SAC_CSA", "--by", "sex", "--no-plots", "-o", str(tmp_path / "st")]
        )
        == 0
    )
    assert capsys.readouterr().err.strip() == (
        f"warning: {src}: 2 correlation(s) undefined (see the note column of correlations.csv), e.g. level 2 "
        "sex=F: x constant: r undefined"
    )
    corr = pd.read_csv(tmp_path / "st" / "correlations.csv", keep_default_na=False)
    f = corr[corr["group"] == "F"]
    assert (f["note"] == "x constant: r undefined").all() and (f["r"] == "").all()
    assert (corr[corr["group"] != "F"]["note"] == "").all()


def test_analyze_sex_coded_two_ways_refused_before_any_subject(tmp_path, capsys):
    root = make_bids(tmp_path / "bids")
    tsv = root / "participants.tsv"
    parts = pd.read_csv(tsv, sep="\t")
    parts.loc[parts["sex"] == "M", "sex"] = ["M", "male"][: int((parts["sex"] == "M").sum())]
    parts.to_csv(tsv, sep="\t", index=False)
    out = tmp_path / "study"
    err = cli_error(capsys, ["analyze", str(root), "-o", str(out), "--workers", "0", "--no-progress"])
    assert err.startswith(f"error: {tsv}: column 'sex' spells one group several ways: 'M' and 'male'"), err
    assert not out.exists()


# ------------------------------------------------------------------------------------ D: leaderboard
def test_leaderboard_half_written_results_row_refused(tmp_path, capsys):
    """pandas padded the cut row with NaN; the trial dropped out of the ranking and '0 failed' was reported."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    header = "trial_id,status,error,model,preset,seed,data,task,val_dice,test_dice,run_dir\n"
    rows = "".join(f"t00{i},TERMINATED,,unet,tiny,{i},phantom,sc,0.9,0.9,trials/t00{i}\n" for i in range(3))
    (sweep / "results.csv").write_text(header + rows + "t003,TERMINATED,,unet,ti")
    before = sha(sweep / "results.csv")
    err = cli_error(capsys, ["leaderboard", str(sweep), "--no-cost", "--no-wandb", "--no-morphometrics"])
    assert err == (
        f"error: {sweep / 'results.csv'}: line 5 has 5 of the header's 11 fields: a half-written row "
        "(interrupted while writing?); rebuild it with `cordbench sweep --resume <sweep>`"
    )
    assert sha(sweep / "results.csv") == before and sorted(p.name for p in sweep.iterdir()) == ["results.csv"]


# --------------------------------------------------------------------------------- E/F: messages
def test_download_messages(tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for dataset in ("spine-generic", "gmchallenge"):  # said "no data yet", exit 0
        err = cli_error(capsys, ["download", dataset, str(a_file)])
        assert err == f"error: {a_file}: exists and is not a folder (give the data set folder)"
    missing = tmp_path / "FILELIST.txt"
    err = cli_error(capsys, ["download", "spine-generic", str(tmp_path), "--filelist", str(missing)])
    assert err == f"error: {missing}: file list not found"


def test_folder_given_as_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.ckpt").write_bytes(b"")
    err = cli_error(capsys, ["predict", "--ckpt", str(run), "-i", "x.nii.gz"])  # was "corrupted checkpoint"
    assert err == (
        f"error: {run}: is a folder, not a checkpoint file (did you mean {run / 'checkpoints' / 'best.ckpt'}?)"
    )
