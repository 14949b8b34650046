"""Reliability beyond the catalogue, outputs: every output path is checked before any work, a write
failure is one line naming the path, and no command overwrites one of its own inputs.

In-process through ``cordbench.cli.main`` (one stderr line, exit 2, inputs byte-identical); the
disk-full case runs as a subprocess under ``RLIMIT_FSIZE`` (a real failing ``write``, ``EFBIG``).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.reliability import cli_error, cord_mask, make_dwi, save

REPO = Path(__file__).resolve().parents[1]
READ_ONLY = Path("/sys/cordbench-cannot-write-here")  # sysfs refuses new files, for root too


def digest(*paths: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}


@pytest.fixture(scope="module")
def seg(tmp_path_factory) -> Path:
    return save(tmp_path_factory.mktemp("seg") / "seg.nii.gz", cord_mask().astype(np.uint8))


# ------------------------------------------------------------------------------- A: wrong kind / place
def test_morphometrics_output_that_is_a_folder_refused_before_work(seg, tmp_path, capsys):
    folder = tmp_path / "out"
    folder.mkdir()
    err = cli_error(capsys, ["morphometrics", "--seg", str(seg), "-o", str(folder)])
    assert err == f"error: {folder}: output is a folder; give a file name"
    assert list(folder.iterdir()) == []


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs a Linux sysfs (a file system refusing new files)")
@pytest.mark.parametrize("command", ["morphometrics", "dti-maps", "stats", "fit", "phantom"])
def test_output_on_a_file_system_refusing_writes_one_line(command, seg, tmp_path, capsys):
    if command == "morphometrics":
        argv = ["morphometrics", "--seg", str(seg), "-o", str(READ_ONLY / "m.csv")]
    elif command == "dti-maps":
        argv = [
            "dti",
            "--dwi",
            "d.nii.gz",
            "--bval",
            "b",
            "--bvec",
            "v",
            "--maps",
            str(READ_ONLY),
            "-o",
            str(tmp_path / "dti.csv"),
        ]
    elif command == "stats":
        argv = ["stats", str(tmp_path / "m.csv"), "--x", "FA", "--y", "CSA", "-o", str(READ_ONLY)]
    elif command == "phantom":  # was a PermissionError traceback
        argv = ["phantom", "-o", str(READ_ONLY / "ph"), "-n", "1", "--truth-only"]
    else:
        argv = ["fit", "-o", str(READ_ONLY / "run"), "--logger.wandb.enabled=false"]
    err = cli_error(capsys, argv)
    assert "cannot write here (" in err and str(READ_ONLY) in err, err
    assert list(tmp_path.iterdir()) == []  # nothing else was written either


def test_dti_maps_folder_that_is_a_file_refused(tmp_path, capsys):
    maps = tmp_path / "maps"
    maps.write_text("not a folder")
    err = cli_error(
        capsys,
        [
            "dti",
            "--dwi",
            "d.nii.gz",
            "--bval",
            "b",
            "--bvec",
            "v",
            "--maps",
            str(maps),
            "-o",
            str(tmp_path / "dti.csv"),
        ],
    )
    assert err == f"error: {maps}: --maps folder exists and is not a folder"
    assert maps.read_text() == "not a folder" and sorted(p.name for p in tmp_path.iterdir()) == ["maps"]


@pytest.mark.parametrize("case", ["png", "newdir/", "several_to_file"])
def test_predict_output_checked_before_inference(case, tiny_ckpt, image, tmp_path, capsys):
    inputs = [str(image)]
    if case == "png":
        out, want = tmp_path / "out.png", "mask (-o) must end in .nii.gz or .nii"
    elif case == "newdir/":  # a trailing separator names a folder: created, the mask inside
        out = str(tmp_path / "newdir") + "/"
        assert (
            __import__("cordbench.cli").cli.main(["predict", "--ckpt", str(tiny_ckpt), "-i", str(image), "-o", out])
            == 0
        )
        assert (tmp_path / "newdir" / "T2w_label-sc_seg.nii.gz").is_file()
        return
    else:
        out = tmp_path / "existing.nii.gz"
        out.write_bytes(b"earlier result")
        inputs = [str(image), str(image.with_name("other.nii.gz"))]
        want = "2 inputs need -o to be a folder"
    err = cli_error(capsys, ["predict", "--ckpt", str(tiny_ckpt), "-i", *inputs, "-o", str(out)])
    assert err.startswith(f"error: {out}: {want}"), err
    if case == "several_to_file":
        assert Path(out).read_bytes() == b"earlier result"
    assert [p.name for p in tmp_path.iterdir()] == ([] if case == "png" else ["existing.nii.gz"])


# ------------------------------------------------------------------------------------ B: inputs kept
def test_morphometrics_output_equal_to_its_input_refused(seg, capsys):
    before = digest(seg)
    err = cli_error(capsys, ["morphometrics", "--seg", str(seg), "-o", str(seg)])
    assert err == (f"error: {seg}: output is also the input --seg: it would be overwritten; choose another output path")
    assert digest(seg) == before


def test_predict_output_equal_to_its_input_refused(tiny_ckpt, image, capsys):
    before = digest(image, tiny_ckpt)
    err = cli_error(capsys, ["predict", "--ckpt", str(tiny_ckpt), "-i", str(image), "-o", str(image)])
    assert err.startswith(f"error: {image}: output is also the input -i {image}")
    link = image.with_name("alias.nii.gz")  # the same file under another name (a symlink)
    link.symlink_to(image)
    err = cli_error(capsys, ["predict", "--ckpt", str(tiny_ckpt), "-i", str(image), "-o", str(link)])
    assert "output is also the input" in err
    link.unlink()
    assert digest(image, tiny_ckpt) == before


def test_stats_output_folder_holding_its_input_under_an_output_name_refused(tmp_path, capsys):
    table = tmp_path / "correlations.csv"
    table.write_text("FA,CSA\n0.1,70\n0.2,71\n0.3,72\n0.4,74\n")
    before = digest(table)
    err = cli_error(capsys, ["stats", str(table), "--x", "FA", "--y", "CSA", "--no-levels", "-o", str(tmp_path)])
    assert err.startswith(f"error: {table}: output is also the input metrics")
    assert digest(table) == before and [p.name for p in tmp_path.iterdir()] == ["correlations.csv"]


# ------------------------------------------------------------------------------- A: write failures
@pytest.mark.subprocess
def test_disk_full_during_the_csv_write_is_one_line_and_keeps_the_earlier_file(seg, tmp_path):
    """``RLIMIT_FSIZE`` makes the CSV write fail (EFBIG) as a full disk would (ENOSPC): same code path."""
    out = tmp_path / "m.csv"
    out.write_text("earlier,result\n")

    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))  # python ignores SIGXFSZ: write() fails

    r = subprocess.run(
        [sys.executable, "-m", "cordbench", "morphometrics", "--seg", str(seg), "-o", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        preexec_fn=limit,
    )
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, r.stderr
    assert lines == [f"error: {out}: cannot write: File too large (nothing replaced)"], r.stderr
    assert out.read_text() == "earlier,result\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv"]  # the temporary is removed


def test_write_error_of_any_writer_names_the_path(tmp_path, monkeypatch):
    """``io.atomic_path`` turns every OS error of a writer (here: ENOSPC from nibabel) into one line."""
    import errno

    import nibabel as nib

    from core import io
    from core.errors import OutputError

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(nib, "save", full)
    with pytest.raises(OutputError, match=r"x\.nii\.gz: cannot write: No space left on device$"):
        io.save_nifti(np.zeros((2, 2, 2), np.uint8), np.eye(4), tmp_path / "x.nii.gz")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------- red team
def test_predict_two_inputs_of_one_name_into_one_folder_refused(tiny_ckpt, image, tmp_path, capsys):
    """Both masks would be ``T2w_label-sc_seg.nii.gz``: the second silently replaced the first."""
    other = tmp_path / "b" / "T2w.nii.gz"
    other.parent.mkdir()
    other.write_bytes(image.read_bytes())
    out = tmp_path / "masks"
    err = cli_error(capsys, ["predict", "--ckpt", str(tiny_ckpt), "-i", str(image), str(other), "-o", str(out) + "/"])
    assert err == f"error: {out / 'T2w_label-sc_seg.nii.gz'}: inputs {image} and {other} would both write this mask"
    assert not out.exists() or list(out.iterdir()) == []


def test_dti_map_that_would_replace_an_input_refused(tmp_path, capsys):
    f = make_dwi(tmp_path)
    maps = tmp_path / "maps"
    maps.mkdir()
    mask = maps / "FA.nii.gz"
    mask.write_bytes(f["mask"].read_bytes())
    before = digest(mask)
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
            str(mask),
            "--maps",
            str(maps),
            "-o",
            str(tmp_path / "dti.csv"),
        ],
    )
    assert err == f"error: {mask}: output is also the input --mask: it would be overwritten; choose another output path"
    assert digest(mask) == before and not (tmp_path / "dti.csv").exists()


def test_output_under_a_path_that_is_a_file(seg, tmp_path, capsys):
    """``-o notes.txt/m.csv``: was a FileExistsError traceback after the computation."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    err = cli_error(capsys, ["morphometrics", "--seg", str(seg), "-o", str(notes / "m.csv")])
    assert err == f"error: {notes / 'm.csv'}: cannot create the output: {notes} is a file, not a folder"
    assert notes.read_text() == "mine"
