"""data_modules.real: the real labelled set reader (flat pairs and BIDS, spine-generic old and new names).

Real files only: ``sct_testing_data`` as it is, and BIDS / flat folders built here from its files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.errors import InputError
from data_modules.real import AUTOMATIC, MANUAL, contrast_of, read_real_set


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def _summary(real) -> dict[str, dict[str, tuple[str, str]]]:
    return {im.id: {k: (lf.path.name, lf.reference) for k, lf in im.labels.items()} for im in real.images}


def test_sct_testing_data_pairs_and_ground_truth(sct_data: Path):
    real = read_real_set(sct_data)
    assert real.layout == "flat"
    assert _summary(real) == {
        "t2": {"SC": ("t2_seg-manual.nii.gz", MANUAL)},
        # no manual cord mask for t2s: sct_deepseg_sc's output is kept, as an automatic reference
        "t2s": {"GM": ("t2s_gmseg_manual.nii.gz", MANUAL), "SC": ("t2s_seg-deepseg.nii.gz", AUTOMATIC)},
        "t2s_uncropped": {"GM": ("t2s_uncropped_gmseg_manual.nii.gz", MANUAL)},
    }
    assert {im.id: im.contrast for im in real.images} == {"t2": "T2w", "t2s": "T2star", "t2s_uncropped": "T2star"}
    unpaired = {u["image"]: u["reason"] for u in real.unpaired}
    assert set(unpaired) == {"t2/labels.nii.gz", "dmri/dmri.nii.gz", "dmri/dwi_mean.nii.gz"}
    assert all("no label" in r for r in unpaired.values())
    # derivatives that are no reference (levels) are neither images nor labels
    assert "t2/t2_seg-manual_labeled.nii.gz" not in unpaired
    assert len(real.fingerprint()) == 64 and real.fingerprint() == read_real_set(sct_data).fingerprint()


def test_bids_folder_new_and_old_names(tmp_path: Path, sct_data: Path):
    root = tmp_path / "bids"
    lab = root / "derivatives" / "labels"
    _copy(sct_data / "t2" / "t2.nii.gz", root / "sub-01" / "anat" / "sub-01_T2w.nii.gz")
    _copy(sct_data / "t2" / "t2_seg-manual.nii.gz", lab / "sub-01" / "anat" / "sub-01_T2w_label-SC_seg.nii.gz")
    _copy(sct_data / "t2" / "t2_seg-manual.nii.gz", lab / "sub-01" / "anat" / "sub-01_T2w_label-canal_seg.nii.gz")
    _copy(sct_data / "t2s" / "t2s.nii.gz", root / "sub-02" / "anat" / "sub-02_T2star.nii.gz")
    _copy(sct_data / "t2s" / "t2s_gmseg_manual.nii.gz", lab / "sub-02" / "anat" / "sub-02_T2star_gmseg-manual.nii.gz")
    _copy(sct_data / "t2" / "t2.nii.gz", root / "sub-03" / "ses-01" / "anat" / "sub-03_ses-01_T2w.nii.gz")
    _copy(
        sct_data / "t2" / "t2_seg-manual.nii.gz",
        lab / "sub-03" / "ses-01" / "anat" / "sub-03_ses-01_T2w_seg-manual.nii.gz",
    )
    _copy(sct_data / "t2s" / "t2s.nii.gz", root / "sub-03" / "ses-01" / "anat" / "sub-03_ses-01_T2star.nii.gz")
    # a cordbench prediction (derivatives/cordbench) is never a reference
    pred_dir = root / "derivatives" / "cordbench" / "sub-03" / "ses-01" / "anat"
    _copy(sct_data / "t2s" / "t2s_seg-deepseg.nii.gz", pred_dir / "sub-03_ses-01_T2star_label-SC_seg.nii.gz")
    real = read_real_set(root)
    assert real.layout == "bids"
    assert _summary(real) == {
        "sub-01_T2w": {"SC": ("sub-01_T2w_label-SC_seg.nii.gz", MANUAL)},
        "sub-02_T2star": {"GM": ("sub-02_T2star_gmseg-manual.nii.gz", MANUAL)},
        "sub-03_ses-01_T2w": {"SC": ("sub-03_ses-01_T2w_seg-manual.nii.gz", MANUAL)},
    }
    assert [im.contrast for im in real.images] == ["T2w", "T2star", "T2w"]
    assert real.unpaired == [
        {
            "image": "sub-03/ses-01/anat/sub-03_ses-01_T2star.nii.gz",
            "reason": "no cord or GM mask in derivatives/labels",
        }
    ]


def test_flat_folder_names_and_what_is_no_label(tmp_path: Path, sct_data: Path):
    root = tmp_path / "flat"
    _copy(sct_data / "t2" / "t2.nii.gz", root / "scan_T2w.nii.gz")
    _copy(sct_data / "t2" / "t2_seg-manual.nii.gz", root / "scan_T2w_label-SC_seg.nii.gz")
    # cordbench predict's default output name (lower-case task) is not a label ...
    _copy(sct_data / "t2" / "t2_seg-manual.nii.gz", root / "scan_T2w_label-sc_seg.nii.gz")
    _copy(sct_data / "t2s" / "t2s.nii.gz", root / "a" / "echo.nii.gz")
    _copy(sct_data / "t2s" / "t2s_gmseg_manual.nii.gz", root / "a" / "echo_gmseg-manual.nii.gz")
    # ... nor is a mask whose sidecar says cordbench generated it
    _copy(sct_data / "t2s" / "t2s_seg-deepseg.nii.gz", root / "a" / "echo_label-SC_seg.nii.gz")
    (root / "a" / "echo_label-SC_seg.json").write_text(json.dumps({"GeneratedBy": [{"Name": "cordbench"}]}))
    # the same stem in two folders: ids made unique with the folder
    _copy(sct_data / "t2" / "t2.nii.gz", root / "b" / "echo.nii.gz")
    _copy(sct_data / "t2" / "t2_seg-manual.nii.gz", root / "b" / "echo_seg-manual.nii.gz")
    real = read_real_set(root)
    assert _summary(real) == {
        "a_echo": {"GM": ("echo_gmseg-manual.nii.gz", MANUAL)},
        "b_echo": {"SC": ("echo_seg-manual.nii.gz", MANUAL)},
        "scan_T2w": {"SC": ("scan_T2w_label-SC_seg.nii.gz", MANUAL)},
    }
    assert real.unpaired == [
        {"image": "a/echo_label-SC_seg.nii.gz", "reason": "not a reference: its JSON sidecar says cordbench made it"}
    ]
    assert [im.contrast for im in real.images] == ["unknown", "unknown", "T2w"]


@pytest.mark.parametrize(
    "stem, contrast",
    [
        ("t2", "T2w"),
        ("t2s", "T2star"),
        ("sub-01_T2star", "T2star"),
        ("my_t1_scan", "T1w"),
        ("gre-me", "T2star"),
        ("x", "unknown"),
    ],
)
def test_contrast_from_the_name(stem: str, contrast: str):
    assert contrast_of(stem) == contrast


def test_errors_are_one_line_naming_the_folder_or_files(tmp_path: Path, sct_data: Path):
    with pytest.raises(InputError, match="real data folder not found"):
        read_real_set(tmp_path / "absent")
    empty = tmp_path / "empty"
    _copy(sct_data / "t2" / "t2.nii.gz", empty / "t2.nii.gz")
    with pytest.raises(
        InputError,
        match=r"empty: no real image/label pair \(1 NIfTI image\(s\), none with a usable "
        r"mask; pairing rule: <stem>.nii.gz with <stem>_seg-manual",
    ):
        read_real_set(empty)
    off = tmp_path / "off"
    _copy(sct_data / "t2" / "t2.nii.gz", off / "t2.nii.gz")
    _copy(sct_data / "t2s" / "t2s_gmseg_manual.nii.gz", off / "t2_gmseg_manual.nii.gz")
    with pytest.raises(InputError) as exc:
        read_real_set(off)
    msg = str(exc.value)
    assert "\n" not in msg and "t2_gmseg_manual.nii.gz" in msg and "t2.nii.gz" in msg and "label shape" in msg
    two = tmp_path / "two"
    _copy(sct_data / "t2" / "t2.nii.gz", two / "t2.nii.gz")
    _copy(sct_data / "t2" / "t2_seg-manual.nii.gz", two / "t2_seg-manual.nii.gz")
    _copy(sct_data / "t2" / "t2_seg-manual.nii.gz", two / "t2_label-SC_seg.nii.gz")
    with pytest.raises(InputError, match="two manual SC masks for t2.nii.gz"):
        read_real_set(two)
