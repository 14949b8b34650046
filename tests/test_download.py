"""``cordbench download``: instructions (never fetched in tests) and layout verification."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from cordbench.cli import main
from cordbench.commands.download import spine_generic_commands


def test_spine_generic_instructions(tmp_path: Path, capsys, spine_generic: Path):
    rc = main(["download", "spine-generic", str(tmp_path / "sg"), "--subjects", "sub-amu01"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "git clone https://github.com/spine-generic/data-multi-subject" in out
    assert "annex init" in out and "annex get participants.tsv sub-amu01/ derivatives/labels/sub-amu01/" in out
    assert "nothing to verify" in out
    # the commands follow the data set's own README
    readme = (spine_generic / "README.md").read_text()
    assert "git annex init" in readme and "git annex get ." in readme and "data-multi-subject" in readme
    assert spine_generic_commands(Path("d"))[-1][-1] == "."


def test_gmchallenge_instructions(tmp_path: Path, capsys):
    assert main(["download", "gmchallenge", str(tmp_path / "gm")]) == 0
    out = capsys.readouterr().out
    assert "site<S>-sc<NN>-image.nii.gz" in out and "niftyweb.cs.ucl.ac.uk" in out


def _tiny_tree(root: Path, with_labels: bool = True) -> None:
    aff = np.eye(4)
    for sid in ("sub-aa01", "sub-bb01"):
        (root / sid / "anat").mkdir(parents=True)
        nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), aff), root / sid / "anat" / f"{sid}_T2w.nii.gz")
        if with_labels:
            d = root / "derivatives" / "labels" / sid / "anat"
            d.mkdir(parents=True)
            nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), aff), d / f"{sid}_T2w_label-SC_seg.nii.gz")
    (root / "participants.tsv").write_text("participant_id\tinstitution_id\nsub-aa01\taa\nsub-bb01\tbb\n")


def test_verify_spine_generic_tree(tmp_path: Path, capsys):
    _tiny_tree(tmp_path)
    fl = tmp_path / "FILELIST.txt"
    fl.write_text("participants.tsv\nsub-aa01/anat/sub-aa01_T2w.nii.gz\nsub-cc01/anat/sub-cc01_T2w.nii.gz\n")
    assert main(["download", "spine-generic", str(tmp_path), "--filelist", str(fl)]) == 0
    out = capsys.readouterr().out
    assert "layout OK" in out and "2 subjects, 2 images present" in out
    assert "T2w/SC=2" in out and "2/3 files" in out and "sub-cc01_T2w" in out


def test_verify_spine_generic_rejects_broken(tmp_path: Path, capsys):
    _tiny_tree(tmp_path)
    (tmp_path / "sub-cc01" / "anat").mkdir(parents=True)  # subject without images
    assert main(["download", "spine-generic", str(tmp_path)]) == 2
    assert "sub-cc01" in capsys.readouterr().err


def test_verify_gmchallenge_fixture(tmp_path: Path, capsys, sct_data: Path):
    from tests.support.gmchallenge import make_fixture

    make_fixture(tmp_path, sct_data / "t2s", sites=(1, 2), per_site=1, test_subjects=1)
    assert main(["download", "gmchallenge", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "4 subjects (2 with rater masks) over 2 sites" in out
    assert "full challenge has 40 labelled subjects" in out
