"""Quality control: the seed-003 panel per subject (PNG) and one sortable HTML report.

Panel (left to right, composed pixel-exactly with NumPy, no plotting library): the selected
axial slice with the crop box, the cropped region, the predicted mask, and the prediction over
the image with the manual outline when one exists. Slices are shown in RAS after canonical
reorientation, radiological convention: anterior at the top, the patient's right on the left.
The returned :class:`PanelGeometry` maps PNG pixels back to voxels.

The report (``index.html``) lists subjects with their metrics, sorts by any column on a click
(or from the URL: ``index.html#sort=<column>:<asc|desc>``), links each subject's PNG, and takes a
reviewer's Pass / Fail / Artefact decision per subject, exported as ``exclude.yml``
(:mod:`core.qc_decisions`). It is
self-contained (no network): inline CSS and JS, relative links. The table and its sorting are
:mod:`core.html`'s, shared with the leaderboard and the cohort analysis reports.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import html, io, qc_decisions
from core.errors import InputError

PANEL_HEIGHT = 240  # px, every panel is scaled by an integer factor towards this height
GAP = 4  # px between panels
CLASS_COLOURS = {1: (255, 40, 40), 2: (40, 120, 255), 3: (255, 200, 0), 4: (200, 0, 255)}
OUTLINE = (0, 255, 0)
BOX = (255, 255, 0)
ALPHA = 0.5


@dataclass
class PanelGeometry:
    """Where things are in a panel PNG (all in pixels / canonical voxel indices)."""

    slice_index: int  # axial slice (canonical RAS z index)
    crop: tuple[int, int, int, int]  # display rows r0:r1, cols c0:c1 of the slice, in display space
    offsets: tuple[int, int, int, int]  # left column of each of the 4 panels in the PNG
    scales: tuple[int, int, int, int]  # integer zoom of each panel
    slice_shape: tuple[int, int]  # display shape (rows, cols) of the full slice

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def to_display(a2d: np.ndarray) -> np.ndarray:
    """Canonical (x=R, y=A) slice → display rows/cols: anterior up, patient right on the left."""
    return np.asarray(a2d).T[::-1, ::-1]


def _canonical(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    import nibabel as nib

    return np.asanyarray(nib.as_closest_canonical(nib.Nifti1Image(data, affine)).dataobj)


def select_slice(mask: np.ndarray) -> int:
    """Axial slice (last axis) with the largest mask area; the middle slice if the mask is empty."""
    area = (np.asarray(mask) > 0).reshape(-1, mask.shape[-1]).sum(axis=0)
    return int(np.argmax(area)) if area.any() else mask.shape[-1] // 2


def crop_box(mask2d: np.ndarray, margin: int) -> tuple[int, int, int, int]:
    """Bounding box (r0, r1, c0, c1) of a display-space mask with ``margin``; whole slice if empty."""
    rows, cols = np.nonzero(mask2d)
    if rows.size == 0:
        return 0, mask2d.shape[0], 0, mask2d.shape[1]
    return (
        max(0, rows.min() - margin),
        min(mask2d.shape[0], rows.max() + margin + 1),
        max(0, cols.min() - margin),
        min(mask2d.shape[1], cols.max() + margin + 1),
    )


def _grey(img2d: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(img2d, [1, 99]) if img2d.size else (0.0, 1.0)
    g = np.clip((img2d - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    return np.repeat((g * 255).astype(np.uint8)[..., None], 3, axis=2)


def _colour(labels2d: np.ndarray) -> np.ndarray:
    out = np.zeros((*labels2d.shape, 3), np.uint8)
    for v in np.unique(labels2d):
        if v > 0:
            out[labels2d == v] = CLASS_COLOURS.get(int(v), (255, 255, 255))
    return out


def _outline(mask2d: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    m = mask2d > 0
    return m & ~ndimage.binary_erosion(m)


def _zoom(rgb: np.ndarray, s: int) -> np.ndarray:
    return np.repeat(np.repeat(rgb, s, axis=0), s, axis=1)


def render_panel(
    image: np.ndarray,
    pred: np.ndarray,
    affine: np.ndarray,
    manual: np.ndarray | None = None,
    slice_index: int | None = None,
    margin_mm: float = 8.0,
) -> tuple[np.ndarray, PanelGeometry]:
    """Compose the 4-panel RGB array for one subject; returns ``(rgb uint8, geometry)``.

    ``image``, ``pred`` and ``manual`` share the grid given by ``affine`` (any orientation).
    The slice is the one with the largest predicted (else manual) area unless given.
    """
    import nibabel as nib

    image, pred = np.asarray(image), np.asarray(pred)
    if image.shape[:3] != pred.shape[:3] or (manual is not None and np.asarray(manual).shape != pred.shape):
        raise ValueError(f"image {image.shape}, prediction {pred.shape} and manual mask must share a grid")
    img_c = _canonical(image.astype(np.float32), affine)
    pred_c = _canonical(pred.astype(np.int16), affine)
    man_c = _canonical(np.asarray(manual).astype(np.int16), affine) if manual is not None else None
    if slice_index is None:
        slice_index = select_slice(pred_c if pred_c.any() or man_c is None else man_c)
    z = int(slice_index)
    im2 = to_display(img_c[:, :, z])
    pr2 = to_display(pred_c[:, :, z])
    mn2 = to_display(man_c[:, :, z]) if man_c is not None else None
    zooms = nib.affines.voxel_sizes(nib.as_closest_canonical(nib.Nifti1Image(pred_c, affine)).affine)
    margin = int(np.ceil(margin_mm / max(float(min(zooms[:2])), 1e-6)))
    union = (pr2 > 0) | (mn2 > 0 if mn2 is not None else False)
    r0, r1, c0, c1 = crop_box(union, margin)

    full = _grey(im2)
    full[r0, c0:c1] = full[r1 - 1, c0:c1] = BOX
    full[r0:r1, c0] = full[r0:r1, c1 - 1] = BOX
    crop_grey = _grey(im2[r0:r1, c0:c1])
    crop_pred = _colour(pr2[r0:r1, c0:c1])
    over = crop_grey.astype(np.float32)
    fg = pr2[r0:r1, c0:c1] > 0
    over[fg] = (1 - ALPHA) * over[fg] + ALPHA * crop_pred[fg]
    over = over.astype(np.uint8)

    panels = [full, crop_grey, crop_pred, over]
    scales = [max(1, PANEL_HEIGHT // p.shape[0]) for p in panels]
    zoomed = [_zoom(p, s) for p, s in zip(panels, scales)]
    if mn2 is not None:  # outline drawn at display resolution so it stays one pixel thick
        s = scales[3]
        edge = _outline(_zoom(mn2[r0:r1, c0:c1, None].astype(np.uint8), s)[..., 0])
        zoomed[3][edge] = OUTLINE
    height = max(p.shape[0] for p in zoomed)
    width = sum(p.shape[1] for p in zoomed) + GAP * (len(zoomed) - 1)
    canvas = np.zeros((height, width, 3), np.uint8)
    offsets, x = [], 0
    for p in zoomed:
        canvas[: p.shape[0], x : x + p.shape[1]] = p
        offsets.append(x)
        x += p.shape[1] + GAP
    geom = PanelGeometry(z, (int(r0), int(r1), int(c0), int(c1)), tuple(offsets), tuple(scales), tuple(im2.shape))
    return canvas, geom


def write_png(rgb: np.ndarray, path: str | Path) -> Path:
    """Atomically write an RGB uint8 array as PNG."""
    from PIL import Image

    path = Path(path)
    with io.atomic_path(path) as tmp:
        Image.fromarray(rgb, "RGB").save(tmp, format="PNG")
    return path


def qc_subject(
    image_path: str | Path,
    pred_path: str | Path,
    out_png: str | Path,
    manual_path: str | Path | None = None,
    slice_index: int | None = None,
) -> PanelGeometry:
    """Load image / prediction / manual mask (checked to share the grid) and write the panel PNG."""
    img = io.load_nifti(image_path, ndim=3, kind="image")
    pred_img, pred = io.load_label(pred_path, kind="prediction")
    io.check_same_grid(img, pred_img, image_path, pred_path)
    manual = None
    if manual_path is not None:
        man_img, manual = io.load_label(manual_path, kind="manual label")
        io.check_same_grid(img, man_img, image_path, manual_path)
    rgb, geom = render_panel(np.asanyarray(img.dataobj), pred, np.asarray(img.affine), manual, slice_index)
    write_png(rgb, out_png)
    return geom


# ------------------------------------------------------------------------------------ HTML report
_CSS = """body{font-family:sans-serif;margin:16px;background:#fafafa}
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#eee}td.s{text-align:left}img{height:120px;display:block}"""


def write_report(
    rows: Sequence[dict[str, Any]], out_html: str | Path, title: str = "cordbench QC", png_key: str = "png"
) -> Path:
    """Write the sortable HTML report; each row needs ``subject`` and may hold metrics and ``png``.

    PNG paths are linked relative to the report's folder. Missing values show as empty cells.
    """
    out_html = Path(out_html)
    if not rows:
        raise InputError("no subject to report", out_html)
    keys: list[str] = ["subject"]
    for r in rows:
        if "subject" not in r:
            raise InputError(f"QC row without 'subject': {r}", out_html)
        keys += [k for k in r if k not in keys and k != png_key]
    row_cells = []
    for r in rows:
        cells = []
        for k in keys:
            v = r.get(k)
            if v is None or (isinstance(v, float) and not np.isfinite(v)):
                cells.append(html.cell("", None))
            elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
                cells.append(html.cell(f"{float(v):.4g}", float(v)))
            else:
                cells.append(html.cell(v, cls="s"))
        png = r.get(png_key)
        if png:
            rel = (
                os.path.relpath(Path(png).resolve(), out_html.parent.resolve()) if Path(png).is_absolute() else str(png)
            )
            href = html.escape(Path(rel).as_posix())
            panel = html.cell(
                f'<a href="{href}"><img src="{href}" alt="{html.escape(str(r["subject"]))}"></a>', "", markup=True
            )
        else:
            panel = html.cell("", "")
        decision = qc_decisions.decision_cell(str(r["subject"]))
        # the panel next to the subject; the decision last, so `#sort=<index>` keeps its columns
        row_cells.append([cells[0], panel, *cells[1:], decision])
    heads = [keys[0], "panel", *keys[1:], "decision"]
    table = html.table(heads, row_cells, table_id="qc", keys=heads)
    doc = (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}{html.SORT_CSS}{qc_decisions.QC_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{len(rows)} subject(s). Click a column to sort. Panels: slice with crop box, crop, "
        "prediction, overlay (manual outline in green). Anterior up, patient right on the left. "
        "Mark each subject Pass / Fail / Artefact (kept in this browser) and export the decisions as "
        "<code>exclude.yml</code> for <code>cordbench analyze --exclude</code>.</p>"
        f"{qc_decisions.toolbar(title)}{table}{html.SORT_SCRIPT}{qc_decisions.QC_SCRIPT}"
        "</body></html>\n"
    )
    return io.write_text(out_html, doc)
