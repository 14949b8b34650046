"""QC panels (pixel placement checked against world coordinates) and the HTML report in Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from evaluation.qc import CLASS_COLOURS, OUTLINE, qc_subject, render_panel, write_report
from tests.support.cdp import chromium


def _overlay_pixels(png: np.ndarray, geom) -> np.ndarray:
    """Boolean map (display crop resolution) of overlay-panel pixels that differ from the plain crop."""
    (r0, r1, c0, c1), s2, s4 = geom.crop, geom.scales[1], geom.scales[3]
    h, w = r1 - r0, c1 - c0
    plain = png[: h * s2, geom.offsets[1] : geom.offsets[1] + w * s2][::s2, ::s2].astype(int)
    over = png[: h * s4, geom.offsets[3] : geom.offsets[3] + w * s4][::s4, ::s4].astype(int)
    return np.abs(over - plain).sum(axis=2) > 0


@pytest.mark.parametrize("codes", [("R", "A", "S"), ("L", "P", "I"), ("P", "S", "R")])
def test_overlay_lands_on_mask_in_world_orientation(tmp_path: Path, codes):
    """A big blob anterior-right and a small one posterior-left must show top-left / bottom-right."""
    shape = (40, 40, 5)
    img = np.random.default_rng(0).normal(100, 10, shape).astype(np.float32)
    mask = np.zeros(shape, np.uint8)
    mask[28:34, 26:34, 2] = 1  # RAS: large x = patient right, large y = anterior → big blob anterior-right
    mask[8:11, 6:9, 2] = 1  # small blob posterior-left
    aff = np.diag([0.5, 0.5, 2.0, 1.0])
    ornt = nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt(("R", "A", "S")), nib.orientations.axcodes2ornt(codes)
    )
    im2 = nib.Nifti1Image(img, aff).as_reoriented(ornt)
    mk2 = nib.Nifti1Image(mask, aff).as_reoriented(ornt)
    assert nib.aff2axcodes(im2.affine) == codes
    nib.save(im2, tmp_path / "img.nii.gz")
    nib.save(mk2, tmp_path / "pred.nii.gz")
    geom = qc_subject(tmp_path / "img.nii.gz", tmp_path / "pred.nii.gz", tmp_path / "p.png")
    png = np.asarray(Image.open(tmp_path / "p.png").convert("RGB"))
    ov = _overlay_pixels(png, geom)
    assert ov.sum() == mask.sum()  # one coloured display pixel per mask voxel of the slice
    from scipy import ndimage

    lab, n = ndimage.label(ov)
    assert n == 2
    sizes = ndimage.sum(ov, lab, [1, 2])
    cb = ndimage.center_of_mass(ov, lab, int(np.argmax(sizes)) + 1)
    cs = ndimage.center_of_mass(ov, lab, int(np.argmin(sizes)) + 1)
    assert cb[0] < cs[0], "anterior blob must be above the posterior one"
    assert cb[1] < cs[1], "patient-right blob must be left of the patient-left one (radiological)"
    assert geom.slice_index == 2


def test_real_t2s_panel_colours_and_outline(sct_data: Path, tmp_path: Path):
    t2s = sct_data / "t2s"
    geom = qc_subject(
        t2s / "t2s.nii.gz",
        t2s / "t2s_gmseg_manual.nii.gz",
        tmp_path / "q.png",
        manual_path=t2s / "t2s_seg-deepseg.nii.gz",
    )
    png = np.asarray(Image.open(tmp_path / "q.png").convert("RGB"))
    gm = np.asanyarray(nib.load(t2s / "t2s_gmseg_manual.nii.gz").dataobj) > 0
    # slice chosen = largest GM area; canonical RAS of LAS keeps the slice axis order
    assert geom.slice_index == int(np.argmax(gm.sum(axis=(0, 1))))
    s, x3 = geom.scales[2], geom.offsets[2]
    (r0, r1, c0, c1) = geom.crop
    pred_panel = png[: (r1 - r0) * s, x3 : x3 + (c1 - c0) * s]
    red = np.all(pred_panel == CLASS_COLOURS[1], axis=2)
    assert red.sum() == gm[:, :, geom.slice_index].sum() * s * s
    over = png[:, geom.offsets[3] :]
    assert np.all(over == OUTLINE, axis=2).sum() > 20  # manual (cord) outline drawn


def test_panel_rejects_other_grid():
    with pytest.raises(ValueError):
        render_panel(np.zeros((4, 4, 4)), np.zeros((4, 4, 3)), np.eye(4))


# ------------------------------------------------------------------------------------ report
def _run_chromium(exe: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp / 'chromium-profile'}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def report(tmp_path: Path, sct_data: Path) -> Path:
    t2s = sct_data / "t2s"
    rows = []
    for i, dice in enumerate([0.71, 0.93, 0.85]):
        png = tmp_path / "png" / f"sub-{i:02d}.png"
        qc_subject(t2s / "t2s.nii.gz", t2s / "t2s_gmseg_manual.nii.gz", png, t2s / "t2s_seg-deepseg.nii.gz")
        rows.append({"subject": f"sub-{i:02d}", "site": "abc"[i], "dice": dice, "hd95_mm": 1.0 + i, "png": png})
    rows.append({"subject": "sub-03", "site": "d", "dice": float("nan"), "hd95_mm": None})
    return write_report(rows, tmp_path / "index.html")


def test_report_lists_and_links(report: Path):
    text = report.read_text()
    assert text.count("<tr>") == 5  # header + 4 subjects
    for i in range(3):
        assert f'href="png/sub-{i:02d}.png"' in text
        assert (report.parent / "png" / f"sub-{i:02d}.png").exists()


@pytest.mark.services
def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path):
    exe = chromium()
    shot = tmp_path / "shot.png"
    r = _run_chromium(
        exe,
        tmp_path,
        f"--screenshot={shot}",
        "--window-size=1200,900",
        "--allow-file-access-from-files",
        report.as_uri(),
    )
    assert shot.exists(), r.stderr[-2000:]
    pix = np.asarray(Image.open(shot).convert("RGB"))
    assert pix.shape[:2] == (900, 1200)
    # the PNG thumbnails were loaded: the prediction colour and the outline colour appear on screen
    assert np.all(pix == CLASS_COLOURS[1], axis=2).sum() > 50
    p = pix.astype(int)  # thumbnails are scaled down: the 1-px outline blends, look for greenish pixels
    assert ((p[..., 1] > 150) & (p[..., 0] < 100) & (p[..., 2] < 100)).sum() > 10


@pytest.mark.services
def test_report_sorts_in_chromium(report: Path, tmp_path: Path):
    exe = chromium()
    for spec, expected in (
        ("dice:desc", ["sub-01", "sub-02", "sub-00", "sub-03"]),
        ("dice:asc", ["sub-03", "sub-00", "sub-02", "sub-01"]),
        ("site:desc", ["sub-03", "sub-02", "sub-01", "sub-00"]),
    ):
        r = _run_chromium(exe, tmp_path, "--dump-dom", report.as_uri() + f"#sort={spec}")
        order = re.findall(r'<tr><td class="s">(sub-\d\d)</td>', r.stdout)
        assert order == expected, (spec, r.stderr[-1000:])


# ------------------------------------------------------------------------------------ from the CLI
def _screenshot_shows_panels(exe: str, index: Path, tmp: Path, n: int, outline: bool) -> None:
    shot = tmp / "cli-shot.png"
    r = _run_chromium(
        exe, tmp, f"--screenshot={shot}", "--window-size=1200,900", "--allow-file-access-from-files", index.as_uri()
    )
    assert shot.exists(), r.stderr[-2000:]
    p = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    # the thumbnails loaded: the yellow crop box of each panel (scaled down: yellowish pixels) is on screen
    from scipy import ndimage

    yellow = (p[..., 0] > 150) & (p[..., 1] > 150) & (p[..., 2] < 100)
    rows = np.unique(ndimage.find_objects(ndimage.label(yellow.any(axis=1))[0]))
    assert yellow.sum() > 40 * n and len(rows) >= n, (yellow.sum(), len(rows))
    if outline:  # the manual outline (green) in the overlay panel
        assert ((p[..., 1] > 150) & (p[..., 0] < 100) & (p[..., 2] < 100)).sum() > 10


@pytest.mark.services
@pytest.mark.slow
def test_cordbench_test_writes_qc_report(gm_fixture, gm_perone_run: Path, tmp_path: Path):
    """``cordbench test`` writes <run>/qc/index.html and one panel per test subject, linked with its metrics."""
    import json

    from cordbench.cli import main
    from tests.support.gmchallenge import GM_FIT_ARGS

    out = tmp_path / "test-run"
    args = [a for a in GM_FIT_ARGS if a not in ("--max-epochs", "1")]
    assert main(
        [
            "test",
            *args,
            "--root",
            str(gm_fixture[0]),
            "-o",
            str(out),
            "--ckpt",
            str(gm_perone_run / "checkpoints" / "best.ckpt"),
        ]
    ) in (0, None)
    test_subjects = json.loads((out / "split.json").read_text())["test"]
    assert test_subjects
    pngs = sorted(p.stem for p in (out / "qc").glob("*.png"))
    assert pngs == sorted(test_subjects)
    index = (out / "qc" / "index.html").read_text()
    assert index.count("<tr>") == len(test_subjects) + 1
    for sid in test_subjects:
        assert f'href="{sid}.png"' in index
    import pandas as pd

    dice = pd.read_csv(out / "test_metrics.csv").set_index("subject")["gm/dice"]
    assert f'data-v="{float(dice[test_subjects[0]])!r}"' in index  # the report shows the scored metric
    _screenshot_shows_panels(chromium(), out / "qc" / "index.html", tmp_path, len(test_subjects), outline=True)


@pytest.mark.services
@pytest.mark.slow
def test_cordbench_predict_qc(gm_fixture, gm_perone_run: Path, tmp_path: Path):
    from cordbench.cli import main

    root = gm_fixture[0]
    images = sorted(root.glob("site1-sc0*-image.nii.gz"))[:2]
    assert main(
        [
            "predict",
            "--ckpt",
            str(gm_perone_run / "checkpoints" / "best.ckpt"),
            "-i",
            *map(str, images),
            "-o",
            str(tmp_path),
            "--qc",
            str(tmp_path / "qc"),
        ]
    ) in (0, None)
    assert sorted(p.name for p in (tmp_path / "qc").glob("*.png")) == sorted(
        i.name.replace("-image.nii.gz", "-image_label-gm_seg.png") for i in images
    )
    index = (tmp_path / "qc" / "index.html").read_text()
    assert index.count("<tr>") == 3 and "gm/volume_mm3" in index
    _screenshot_shows_panels(chromium(), tmp_path / "qc" / "index.html", tmp_path, 2, outline=False)


@pytest.mark.slow
def test_cordbench_predict_bids_qc(gm_fixture, gm_perone_run: Path, tmp_path: Path):
    """``predict --bids ROOT --qc DIR``: one panel per derivative mask, named after it, in the report."""
    from cordbench.cli import main

    image = sorted(gm_fixture[0].glob("site1-sc01-image.nii.gz"))[0]
    bids = tmp_path / "bids"
    for sid in ("sub-01", "sub-02"):
        (bids / sid / "anat").mkdir(parents=True)
        shutil.copy(image, bids / sid / "anat" / f"{sid}_T2star.nii.gz")
    assert main(
        [
            "predict",
            "--ckpt",
            str(gm_perone_run / "checkpoints" / "best.ckpt"),
            "--bids",
            str(bids),
            "--qc",
            str(tmp_path / "qc"),
        ]
    ) in (0, None)
    masks = sorted((bids / "derivatives" / "cordbench").rglob("*_seg.nii.gz"))
    assert len(masks) == 2
    assert sorted(p.name for p in (tmp_path / "qc").glob("*.png")) == sorted(m.name[:-7] + ".png" for m in masks)
    index = (tmp_path / "qc" / "index.html").read_text()
    assert "sub-01_T2star" in index and "sub-02_T2star" in index
