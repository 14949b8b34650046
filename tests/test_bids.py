"""BIDS indexer: real spine-generic file list (independent counts) and small on-disk trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.errors import InputError
from data_modules.bids import BidsIndex

IMAGE_CONTRASTS = [
    "T1w",
    "T2w",
    "T2star",
    "flip-1_mt-on_MTS",
    "flip-1_mt-off_MTS",
    "flip-2_mt-off_MTS",
    "dwi",
    "acq-b0_dwi",
    "rec-average_dwi",
]
# (contrast, derivative tail after "<image stem>_", label, desc, suffix, folder)
LABEL_KINDS = [
    ("T1w", "label-SC_seg", "SC", None, "seg", "labels"),
    ("T2w", "label-SC_seg", "SC", None, "seg", "labels"),
    ("T2star", "label-SC_seg", "SC", None, "seg", "labels"),
    ("T2star", "label-GM_seg", "GM", None, "seg", "labels"),
    ("flip-1_mt-on_MTS", "label-SC_seg", "SC", None, "seg", "labels"),
    ("flip-2_mt-off_MTS", "label-SC_seg", "SC", None, "seg", "labels"),
    ("rec-average_dwi", "label-SC_seg", "SC", None, "seg", "labels"),
    ("T1w", "label-canal_seg", "canal", None, "seg", "labels"),
    ("T2w", "label-canal_seg", "canal", None, "seg", "labels"),
    ("T2star", "label-canal_seg", "canal", None, "seg", "labels"),
    ("T1w", "label-discs_dlabel", "discs", None, "dlabel", "labels"),
    ("T2w", "label-discs_dlabel", "discs", None, "dlabel", "labels"),
    ("T2star", "label-discs_desc-warp_dlabel", "discs", "warp", "dlabel", "labels"),
    ("rec-average_dwi", "label-discs_desc-warp_dlabel", "discs", "warp", "dlabel", "labels"),
    ("T2w", "label-spine_dseg", "spine", None, "dseg", "labels"),
    ("T2w", "label-rootlets_dseg", "rootlets", None, "dseg", "labels"),
    ("T2w", "desc-rater1_label-rootlets_dseg", "rootlets", "rater1", "dseg", "labels"),
    ("T2w", "desc-staple_label-rootlets_dseg", "rootlets", "staple", "dseg", "labels"),
    ("T2w", "label-SC_softseg", "SC", None, "softseg", "labels_softseg"),
    ("T2star", "desc-softseg_label-SC_seg", "SC", "softseg", "seg", "labels_softseg_bin"),
]


@pytest.fixture(scope="module")
def real(spine_generic: Path):
    lines = [ln.strip() for ln in (spine_generic / "FILELIST.txt").read_text().splitlines() if ln.strip()]
    return lines, BidsIndex.from_filelist(spine_generic / "FILELIST.txt")


def _subject_of(relpath: str) -> str:
    name = relpath.rsplit("/", 1)[1]
    return name[: name.index("_")]


def test_image_counts_match_file_list(real):
    lines, idx = real
    for contrast in IMAGE_CONTRASTS:
        dt = "dwi" if contrast.endswith("dwi") else "anat"
        expected = sum(
            1
            for ln in lines
            if ln.startswith("sub-")
            and f"/{dt}/" in ln
            and ln.endswith(f"_{contrast}.nii.gz")
            and ln.rsplit("/", 1)[1] == f"{_subject_of(ln)}_{contrast}.nii.gz"
        )
        got = sum(1 for im in idx.images if im.contrast == contrast and im.exists)
        assert got == expected > 0, contrast
    assert len(idx.subjects()) == sum(1 for ln in (lines) if ln.endswith("_T2w.nii.gz") and ln.startswith("sub-"))
    assert not idx.unparsed


@pytest.mark.parametrize("contrast,tail,label,desc,suffix,folder", LABEL_KINDS)
def test_label_counts_and_pairing(real, contrast, tail, label, desc, suffix, folder):
    lines, idx = real
    listed = set(lines)
    dt = "dwi" if contrast.endswith("dwi") else "anat"
    # independent: label files in the list whose image (same subject, same stem) is also in the list
    expected = set()
    for ln in lines:
        if ln.startswith(f"derivatives/{folder}/sub-") and ln.endswith(f"_{contrast}_{tail}.nii.gz"):
            sub = _subject_of(ln)
            if (
                ln.rsplit("/", 1)[1] == f"{sub}_{contrast}_{tail}.nii.gz"
                and f"{sub}/{dt}/{sub}_{contrast}.nii.gz" in listed
            ):
                expected.add(sub)
    assert expected, "the file list should hold this label kind"
    got = {}
    for im in idx.images:
        if im.contrast != contrast:
            continue
        for lf in im.labels:
            if (lf.label, lf.desc, lf.suffix, lf.source) == (label, desc, suffix, f"derivatives/{folder}"):
                # pairing: the label belongs to this image's subject and stem
                assert lf.path.name == f"{im.stem}_{tail}.nii.gz"
                assert lf.path.parent.name == im.datatype and lf.path.parent.parent.name == im.subject
                got[im.subject] = got.get(im.subject, 0) + 1
    assert set(got) == expected
    assert all(n == 1 for n in got.values())


def test_select_and_label_preference(real):
    lines, idx = real
    gm = idx.select("T2star", "GM")
    assert len(gm) == sum(1 for ln in lines if ln.endswith("_T2star_label-GM_seg.nii.gz"))
    # manual binary seg (derivatives/labels) wins over the binarised soft seg
    im = idx.image("sub-amu01", "T2w")
    assert im.label("SC").source == "derivatives/labels" and im.label("SC").desc is None
    assert im.label("SC", suffix="softseg").source == "derivatives/labels_softseg"
    assert im.label("GM") is None
    # rater files carry their rater number
    rater_imgs = [im for im in idx.images if im.raters("rootlets")]
    assert len(rater_imgs) == 3
    assert [lf.rater for lf in rater_imgs[0].raters("rootlets")] == [1, 2, 3, 4]
    assert len(idx.select("T2w", "rootlets", desc="staple")) == 3
    # DWI sidecars pair with the image, the mean DWI has none
    dwi = idx.image("sub-amu01", "dwi")
    assert dwi.bval.name == "sub-amu01_dwi.bval" and dwi.bvec.name == "sub-amu01_dwi.bvec"
    assert idx.image("sub-amu01", "rec-average_dwi").bval is None


def test_participants_from_real_table(real):
    _, idx = real
    p = idx.participants
    assert p is not None and len(p) == len(idx.subjects())
    assert set(p["participant_id"]) == set(idx.subjects())
    row = idx.participant("sub-amu01")
    assert row["institution_id"] == "amu" and row["manufacturer"] == "Siemens" and row["age"] == "28"


# --------------------------------------------------------------------------- on-disk trees
def _touch(root: Path, rel: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"")
    return p


def _participants(root: Path, ids, extra: str = "") -> None:
    rows = "".join(f"{s}\tF\t30\t{s[4:7]}\n" for s in ids)
    (root / "participants.tsv").write_text("participant_id\tsex\tage\tinstitution_id\n" + rows + extra)


def test_from_dir_phantom_old_and_new_names(tmp_path: Path):
    r = tmp_path
    for rel in [
        "sub-abc01/anat/sub-abc01_T2w.nii.gz",
        "sub-abc01/anat/sub-abc01_T2star.nii.gz",
        "sub-abc01/dwi/sub-abc01_dwi.nii.gz",
        "sub-abc01/dwi/sub-abc01_dwi.bval",
        "sub-abc01/dwi/sub-abc01_dwi.bvec",
        "derivatives/labels/sub-abc01/anat/sub-abc01_T2w_label-SC_seg.nii.gz",
        "derivatives/labels/sub-abc01/anat/sub-abc01_T2w_label-SC_desc-levels_dseg.nii.gz",
        "derivatives/labels/sub-abc01/anat/sub-abc01_T2w_label-discs_dlabel.nii.gz",
        "derivatives/labels/sub-abc01/anat/sub-abc01_T2star_label-GM_seg.nii.gz",
        "derivatives/labels/sub-abc01/dwi/sub-abc01_rec-average_dwi_label-SC_seg.nii.gz",
        # pre-2024 names on a second subject, with a session folder
        "sub-old02/ses-01/anat/sub-old02_ses-01_T1w.nii",
        "derivatives/labels/sub-old02/ses-01/anat/sub-old02_ses-01_T1w_seg-manual.nii.gz",
        "derivatives/labels/sub-old02/ses-01/anat/sub-old02_ses-01_T1w_labels-disc-manual.nii.gz",
        "derivatives/labels/sub-old02/ses-01/anat/sub-old02_ses-01_T1w_gmseg-manual.nii.gz",
        "derivatives/labels/sub-old02/ses-01/anat/sub-old02_ses-01_T1w_seg-manual_labeled.nii.gz",
        "derivatives/labels/sub-old02/ses-01/anat/sub-old02_ses-01_T1w_RPI_r_seg-manual.nii.gz",
    ]:
        _touch(r, rel)
    _participants(r, ["sub-abc01", "sub-old02"])
    idx = BidsIndex.from_dir(r)
    t2 = idx.image("sub-abc01", "T2w")
    assert t2.label("SC").path.name == "sub-abc01_T2w_label-SC_seg.nii.gz"
    lv = t2.label("SC", desc="levels")
    assert lv.suffix == "dseg" and lv.path.name.endswith("_desc-levels_dseg.nii.gz")
    assert t2.label("discs").suffix == "dlabel"
    # label of an image that is not there: indexed under the image stem, not selectable by default
    avg = idx.image("sub-abc01", "rec-average_dwi")
    assert avg is not None and not avg.exists
    assert avg.path == r / "sub-abc01/dwi/sub-abc01_rec-average_dwi.nii.gz"
    assert idx.select("rec-average_dwi", "SC") == []
    assert idx.select("rec-average_dwi", "SC", include_missing=True) == [avg]
    dwi = idx.image("sub-abc01", "dwi")
    assert dwi.bval == r / "sub-abc01/dwi/sub-abc01_dwi.bval"
    old = idx.image("sub-old02", "T1w", session="ses-01")
    assert old.path.name.endswith(".nii")
    kinds = {(lf.label, lf.suffix, lf.desc) for lf in old.labels}
    assert kinds == {
        ("SC", "seg", "manual"),
        ("discs", "dlabel", "manual"),
        ("GM", "seg", "manual"),
        ("SC", "dseg", "levels"),
    }
    assert [p.name for p in idx.unparsed] == ["sub-old02_ses-01_T1w_RPI_r_seg-manual.nii.gz"]
    assert idx.subjects() == ["sub-abc01", "sub-old02"]
    assert idx.select("T2star", "GM")[0].subject == "sub-abc01"


def test_gm_challenge_bids_rater_masks(tmp_path: Path):
    for n in (1, 2, 3, 4):
        for lab in ("SC", "GM", "WM"):
            _touch(
                tmp_path,
                f"derivatives/labels/sub-site1001/anat/sub-site1001_T2star_label-{lab}_desc-manual_mask{n}.nii.gz",
            )
    _touch(tmp_path, "sub-site1001/anat/sub-site1001_T2star.nii.gz")
    _participants(tmp_path, ["sub-site1001"])
    im = BidsIndex.from_dir(tmp_path).image("sub-site1001", "T2star")
    assert [lf.rater for lf in im.raters("GM")] == [1, 2, 3, 4]
    assert all(lf.suffix == "mask" and lf.desc == "manual" for lf in im.labels)


def test_annex_placeholder_is_not_an_existing_image(tmp_path: Path):
    _touch(tmp_path, "sub-a01/anat/sub-a01_T2w.nii.gz")
    (tmp_path / "sub-a01/anat").mkdir(parents=True, exist_ok=True)
    os.symlink(tmp_path / ".git/annex/objects/XX/missing", tmp_path / "sub-a01/anat/sub-a01_T1w.nii.gz")
    _touch(tmp_path, "derivatives/labels/sub-a01/anat/sub-a01_T1w_label-SC_seg.nii.gz")
    _participants(tmp_path, ["sub-a01"])
    idx = BidsIndex.from_dir(tmp_path)
    t1 = idx.image("sub-a01", "T1w")
    assert t1 is not None and not t1.exists and t1.label("SC") is not None
    assert idx.select("T1w", "SC") == []


@pytest.mark.parametrize(
    "case",
    [
        "no_images",
        "duplicate_image",
        "duplicate_participant",
        "missing_tsv",
        "unlisted_subject",
        "bad_tsv",
        "malformed_tsv",
    ],
)
def test_bad_inputs_name_the_file(tmp_path: Path, case: str):
    _touch(tmp_path, "sub-a01/anat/sub-a01_T2w.nii.gz")
    _participants(tmp_path, ["sub-a01"])
    expect = tmp_path / "participants.tsv"
    if case == "no_images":
        (tmp_path / "sub-b02/anat").mkdir(parents=True)
        _touch(tmp_path, "sub-b02/anat/sub-b02_T2w.json")
        _participants(tmp_path, ["sub-a01", "sub-b02"])
        expect = tmp_path / "sub-b02"
    elif case == "duplicate_image":
        _touch(tmp_path, "sub-a01/anat/sub-a01_T2w.nii")
        expect = tmp_path / "sub-a01/anat"
    elif case == "duplicate_participant":
        _participants(tmp_path, ["sub-a01", "sub-a01"])
    elif case == "missing_tsv":
        (tmp_path / "participants.tsv").unlink()
    elif case == "unlisted_subject":
        _touch(tmp_path, "sub-c03/anat/sub-c03_T2w.nii.gz")
    elif case == "bad_tsv":
        (tmp_path / "participants.tsv").write_bytes(b"subject\tage\nsub-a01\t3\n")
    elif case == "malformed_tsv":
        (tmp_path / "participants.tsv").write_bytes(b"participant_id\tage\nsub-a01\t3\t4\t5\n\xff\xfe\x00")
    with pytest.raises(InputError) as err:
        BidsIndex.from_dir(tmp_path)
    assert str(expect) in str(err.value)
    if case in ("no_images", "unlisted_subject", "duplicate_image"):
        BidsIndex.from_dir(tmp_path, strict=False)  # tolerated (logged) when not strict


def test_exclude_yml(tmp_path: Path):
    _touch(tmp_path, "sub-a01/anat/sub-a01_T2w.nii.gz")
    _participants(tmp_path, ["sub-a01"])
    (tmp_path / "exclude.yml").write_text("FA:\n- sub-a01_dwi.nii.gz\ncsa_t2:\n")
    assert BidsIndex.from_dir(tmp_path).exclude == {"FA": ["sub-a01_dwi.nii.gz"], "csa_t2": []}
    (tmp_path / "exclude.yml").write_text("- just a list\n")
    with pytest.raises(InputError, match="exclude"):
        BidsIndex.from_dir(tmp_path)
