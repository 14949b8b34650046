"""What ``cordbench test`` (and the test after ``fit``) writes per subject besides its metrics.

* ``<run>/predictions/<subject>_pred.nii.gz``: the prediction that was scored, on the subject's
  native grid with the image's header (what ``cordbench predict`` writes for that image);
* ``<run>/qc/<subject>.png``: the seed-003 QC panel (``evaluation.qc``: selected slice with the
  crop box, crop, predicted mask, overlay with the manual outline);
* ``<run>/qc/index.html``: the sortable report linking every panel with the subject's metrics.

:class:`SubjectOutputWriter` is the Lightning callback writing the first two from what
``SegmentationModule.test_step`` returns; :func:`write_qc_report` writes the report from the
records after the test (on the main process).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl

from core import io
from data_modules.sharding import is_padding
from runs.run_folder import PREDICTIONS as PREDICTIONS_DIR
from runs.run_folder import QC as QC_DIR
from runs.run_folder import QC_INDEX

#: metrics shown in the QC report (per class), in this order, when the records have them
QC_COLUMNS = ("dice", "hd95", "skel_md", "tnr")
#: the per-image uncertainty summary of ``predict --uncertainty`` (evaluation.ensemble.summarise)
UNCERTAINTY_COLUMNS = ("mean_entropy", "uncertain_volume_mm3", "mean_variance")


def prediction_file(out: str | Path, subject: str) -> Path:
    return Path(out) / PREDICTIONS_DIR / f"{subject}_pred.nii.gz"


def qc_png(out: str | Path, subject: str) -> Path:
    return Path(out) / QC_DIR / f"{subject}.png"


def write_panel(image: Any, labels: np.ndarray, png: str | Path, manual: np.ndarray | None = None) -> Path:
    """The seed-003 panel of a nibabel ``image`` and a label map on its grid (+ manual mask)."""
    from evaluation.qc import render_panel, write_png

    rgb, _ = render_panel(np.asanyarray(image.dataobj).astype(np.float32), labels, np.asarray(image.affine), manual)
    return write_png(rgb, png)


class SubjectOutputWriter(pl.Callback):
    """Writes each test subject's native-grid prediction and QC panel into the run folder."""

    def __init__(self, out: str | Path, qc: bool = True):
        self.out = Path(out)
        self.qc = qc

    def on_test_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        native = outputs.get("native_prediction") if isinstance(outputs, dict) else None
        if native is None or is_padding(trainer.test_dataloaders, batch_idx):  # DDP: another rank's subject
            return
        img = native.image
        io.save_nifti(
            native.labels.astype(np.uint8),
            img.affine,
            prediction_file(self.out, native.subject),
            header=img.header,
            dtype=np.uint8,
        )
        if self.qc:
            write_panel(img, native.labels, qc_png(self.out, native.subject), native.target)


def report_rows(records: Sequence[dict[str, Any]], png_of: Any) -> list[dict[str, Any]]:
    """QC rows: subject, the :data:`QC_COLUMNS` of every class (fused target), the PNG if written."""
    rows = []
    for r in records:
        row: dict[str, Any] = {"subject": r["subject"]}
        for key, value in r.items():
            parts = key.split("/")
            if len(parts) == 2 and parts[1] in QC_COLUMNS:
                row[key] = value
        png = Path(png_of(r["subject"]))
        if png.exists():
            row["png"] = png
        rows.append(row)
    return rows


def write_qc_report(out: str | Path, records: Sequence[dict[str, Any]], title: str = "cordbench test QC") -> Path:
    """``<out>/qc/index.html`` for the test records (panels from :class:`SubjectOutputWriter`)."""
    from evaluation.qc import write_report

    return write_report(report_rows(records, lambda s: qc_png(out, s)), Path(out) / QC_DIR / QC_INDEX, title)


def _stem(path: Path) -> str:
    name = Path(path).name
    return name[:-7] if name.endswith(".nii.gz") else Path(name).stem


def distinct_names(paths: Sequence[Path]) -> list[str]:
    """One name per path for files written side by side: the file's stem, preceded by as many of its
    parent folders as it takes to tell the paths apart (``a/t2.nii.gz``, ``b/t2.nii.gz`` → ``a_t2``,
    ``b_t2``); identical paths get ``_2``, ``_3``, … ."""
    absolute = [Path(p).absolute() for p in paths]
    deepest = max((len(p.parent.parts) for p in absolute), default=0)
    for depth in range(deepest + 1):
        names = [
            "_".join([*[x for x in p.parent.parts[len(p.parent.parts) - depth :] if x != p.anchor], _stem(p)])
            for p in absolute
        ]
        if len(set(names)) == len(names):
            return names
    counts: dict[str, int] = {}
    out = []
    for n in (_stem(p) for p in absolute):
        counts[n] = counts.get(n, 0) + 1
        out.append(n if counts[n] == 1 else f"{n}_{counts[n]}")
    return out


def write_predict_qc(
    pairs: Sequence[tuple[Path, Path]],
    qc_dir: str | Path,
    classes: dict[str, list[int]] | None = None,
    uncertainty: dict[Path, dict[str, Any]] | None = None,
) -> Path:
    """``cordbench predict --qc DIR``: a panel per (image, written mask) and ``DIR/index.html``.

    There is no manual mask: the report lists each image's predicted volume per class (mm³).
    ``uncertainty`` (``--uncertainty``: mask path → :func:`evaluation.ensemble.summarise`) adds its
    columns, and the rows come most uncertain first (highest mean entropy inside the mask; empty
    masks last); every column still sorts on a click.
    """
    import nibabel as nib

    from evaluation.qc import qc_subject, write_report

    qc_dir = Path(qc_dir)
    rows = []
    # masks of inputs that share a base name (a/t2.nii.gz, b/t2.nii.gz) get panels of their own
    names = distinct_names([mask for _, mask in pairs])
    for (image, mask), name in zip(pairs, names):
        png = qc_dir / f"{name}.png"
        qc_subject(image, mask, png)
        m = nib.load(str(mask))
        labels = np.asanyarray(m.dataobj)
        voxel = float(abs(np.linalg.det(np.asarray(m.affine)[:3, :3])))
        row: dict[str, Any] = {"subject": _stem(image) if name == _stem(mask) else name}
        for name, values in (classes or {"fg": [1]}).items():
            row[f"{name}/volume_mm3"] = float(np.isin(labels, values).sum() * voxel)
        row["png"] = png
        for key in UNCERTAINTY_COLUMNS:
            if uncertainty is not None and key in uncertainty.get(mask, {}):
                row[key] = float(uncertainty[mask][key])
        rows.append(row)
    if uncertainty is not None:
        rows.sort(key=lambda r: -r["mean_entropy"] if np.isfinite(r.get("mean_entropy", np.nan)) else np.inf)
    return write_report(rows, qc_dir / QC_INDEX, "cordbench predict QC")
