"""Score a checkpoint on real labelled scans, on each image's native grid (``cordbench test --real DIR``).

Each image of a real set (:mod:`data_modules.real`) goes through the run's own preprocessing
contract and back onto its own grid by :func:`evaluation.inference.predict_array` (the chain
``cordbench predict`` uses), and each of the model's classes that has a reference mask is scored
against it by :func:`evaluation.scoring.class_metrics` (the metrics of ``test_metrics.csv``,
native spacing): ``sc`` against the cord mask, ``gm`` against the GM mask, ``wm`` against cord minus
GM (:data:`CLASS_REFERENCES`). An image without a reference for any of the model's classes is listed
as skipped with the reason.

Outputs, named by :mod:`runs.run_folder` (``test_metrics.csv``/``test_summary.json`` are never
touched): ``real_metrics.csv`` — one row per scored image: ``subject`` (the image id), ``image``
(its path in the set), ``contrast``, ``<class>/reference`` (``manual`` | ``automatic``) and every
``<class>/<metric>``; ``real_summary.json`` — ``metrics`` (aggregated over **manual** references only:
the ground truth), ``metrics_automatic`` (agreement with automatic masks, e.g. sct_deepseg_sc's),
``images`` (per image and class: reference and Dice), ``skipped``, the checkpoint and its SHA-256, the
set's folder and fingerprint (:meth:`data_modules.real.RealSet.fingerprint`: the leaderboard's cache
key, :func:`cached_result`); ``real_predictions/<id>_pred.nii.gz`` — the scored masks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import CordbenchError, InputError, OutputError
from data_modules.real import AUTOMATIC, MANUAL, RealImage, RealSet
from evaluation.postprocess import mode_of
from runs.run_folder import CHECKPOINTS, RunFolder

#: scored class -> the mask kinds forming its reference (wm = SC minus GM)
CLASS_REFERENCES: dict[str, tuple[str, ...]] = {"sc": ("SC",), "gm": ("GM",), "wm": ("SC", "GM")}
KIND_NAMES = {"SC": "cord (SC) mask", "GM": "GM mask"}
TABLE_METRICS = ("dice", "hd95", "msd")
GROUND_TRUTH = (
    "ground truth = manual masks only; 'automatic' references (e.g. sct_deepseg_sc's _seg-deepseg) "
    "measure agreement with that tool and are reported apart (metrics_automatic)"
)


@dataclass
class RealResult:
    """What ``cordbench test --real`` wrote (or found cached) in a run folder."""

    out: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    cached: bool = False


def model_classes(module: Any) -> dict[str, list[int]]:
    """The module's scored classes (``{task: [1]}`` when it names none)."""
    hp = module.hparams
    return {str(k): list(v) for k, v in (hp.get("classes") or {str(hp.get("task") or "sc"): [1]}).items()}


def reference_kind(cls: str, image: RealImage) -> str | None:
    """``manual``/``automatic`` reference of class ``cls`` for ``image`` (automatic if any part is), None if none."""
    kinds = CLASS_REFERENCES.get(cls)
    if not kinds or any(k not in image.labels for k in kinds):
        return None
    return AUTOMATIC if any(image.labels[k].reference == AUTOMATIC for k in kinds) else MANUAL


def reference_mask(cls: str, masks: Mapping[str, np.ndarray]) -> np.ndarray:
    """The reference mask of ``cls`` from the image's boolean masks by kind."""
    if cls == "wm":
        return masks["SC"] & ~masks["GM"]
    return masks[CLASS_REFERENCES[cls][0]]


def skip_reason(classes: Mapping[str, Any], image: RealImage) -> str:
    """Why none of the model's classes can be scored on ``image``."""
    has = " and ".join(f"a {KIND_NAMES[k]}" for k in image.labels) or "no mask"
    need = "; ".join(
        f"{c} needs " + " and ".join(f"a {KIND_NAMES[k]}" for k in CLASS_REFERENCES[c])
        if c in CLASS_REFERENCES
        else f"{c} has no real reference"
        for c in classes
    )
    return f"no reference for the model's class(es) {', '.join(classes)} ({need}); it has {has}"


def check_output(out: Path, real_root: Path, ckpt: str | Path) -> Path:
    """The run folder of ``test --real``: writable, not an input, not inside the real set."""
    from core.outputs import check_output_dir

    try:
        Path(out).resolve().relative_to(Path(real_root).resolve())
    except ValueError:
        return check_output_dir(out, inputs={"--real": real_root, "--ckpt": ckpt}, what="run folder")
    raise OutputError(f"run folder is inside the --real folder {real_root}: it would write into an input", out)


def run_folder_of(ckpt: str | Path) -> Path | None:
    """``<run>`` of a checkpoint at ``<run>/checkpoints/<name>.ckpt``, else None."""
    p = Path(ckpt)
    return p.parent.parent if p.parent.name == CHECKPOINTS else None


def _score_image(
    module: Any, image: RealImage, classes: Mapping[str, list[int]], real: RealSet, folder: RunFolder
) -> dict[str, Any]:
    """Predict one image on its native grid, write the mask, score each class with a reference."""
    from core import io
    from evaluation.inference import check_axial_extent, predict_array
    from evaluation.scoring import class_metrics

    img = io.load_nifti(image.path, ndim=3, kind=f"{image.contrast} image")
    data = np.asanyarray(img.dataobj).astype(np.float32)
    io.check_image_values(data, image.path)
    affine = np.asarray(img.affine)
    check_axial_extent(data.shape[:3], affine, image.path)
    labels = predict_array(module, data, affine)
    io.save_nifti(labels, img.affine, folder.real_prediction(image.id, staged=True), header=img.header, dtype=np.uint8)
    masks = {k: io.load_label(lf.path, kind=f"{k} mask")[1] > 0 for k, lf in image.labels.items()}
    record: dict[str, Any] = {"subject": image.id, "image": real.rel(image.path), "contrast": image.contrast}
    for cls, values in classes.items():
        ref = reference_kind(cls, image)
        if ref is None:
            continue
        record[f"{cls}/reference"] = ref
        record.update(class_metrics(np.isin(labels, values), reference_mask(cls, masks), affine, cls))
    return record


def evaluate_real(
    module: Any, real: RealSet, out: str | Path, ckpt: str | Path, log: Callable[[str], None] | None = None
) -> RealResult:
    """Score ``module`` on every image of ``real`` and write the outputs into the run folder ``out``."""
    from core import io

    t0 = time.perf_counter()
    folder = RunFolder(Path(out))
    classes = model_classes(module)
    records: list[dict[str, Any]] = []
    skipped = [dict(u) for u in real.unpaired]
    scoreable = [im for im in real.images if any(reference_kind(c, im) for c in classes)]
    if not scoreable:  # refused before anything of an earlier scoring is touched
        raise InputError(
            f"none of the {len(real.images)} image(s) can be scored by this checkpoint: "
            f"{skip_reason(classes, real.images[0])} (e.g. {real.rel(real.images[0].path)})",
            real.root,
        )
    folder.start_real_outputs()  # masks written aside; the earlier results are swapped out only at the end
    for image in real.images:
        if not any(reference_kind(c, image) for c in classes):
            skipped.append({"image": real.rel(image.path), "reason": skip_reason(classes, image)})
            continue
        try:
            records.append(_score_image(module, image, classes, real, folder))
        except CordbenchError as exc:  # e.g. a single sagittal slice: listed, the others still scored
            skipped.append({"image": real.rel(image.path), "reason": str(exc)})
            continue
        if log is not None:
            log(
                f"real {image.id} ({image.contrast}): "
                + ", ".join(
                    f"{c}/dice {records[-1][f'{c}/dice']:.4f} ({records[-1][f'{c}/reference']})"
                    for c in classes
                    if f"{c}/dice" in records[-1]
                )
            )
    if not records:
        raise InputError(
            f"no image could be scored: all {len(skipped)} skipped, e.g. {skipped[0]['image']}: {skipped[0]['reason']}",
            real.root,
        )
    from lightning_modules.volume import inference_rule

    hp = module.hparams
    summary = {
        "scoring": "native",
        "real_root": str(real.root),
        "layout": real.layout,
        "fingerprint": real.fingerprint(),
        "checkpoint": str(ckpt),
        "checkpoint_sha256": io.sha256(ckpt),
        "model": hp.get("network"),
        "preset": hp.get("preset"),
        "task": hp.get("task"),
        "postprocess": mode_of(module),
        "inference_rule": inference_rule(hp),
        "classes": classes,
        "n_images": len(real.images) + len(real.unpaired),
        "n_subjects": len(records),
        "metrics": _aggregate(records, MANUAL),
        "metrics_automatic": _aggregate(records, AUTOMATIC),
        "images": _image_dice(records, classes),
        "skipped": skipped,
        "ground_truth": GROUND_TRUTH,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    folder.write_real_outputs(records, summary)
    return RealResult(Path(out), records, summary)


def _aggregate(records: list[dict[str, Any]], reference: str) -> dict[str, Any]:
    """``aggregate`` of the metrics of the classes whose reference is ``reference``."""
    from evaluation.metrics import aggregate

    rows = []
    for r in records:
        keep = {c.split("/")[0] for c, v in r.items() if c.endswith("/reference") and v == reference}
        rows.append(
            {k: v for k, v in r.items() if "/" in k and k.split("/")[0] in keep and not k.endswith("/reference")}
        )
    return aggregate([r for r in rows if r])


def _image_dice(records: list[dict[str, Any]], classes: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "subject": r["subject"],
            "contrast": r["contrast"],
            "class": c,
            "reference": r[f"{c}/reference"],
            "dice": r[f"{c}/dice"],
        }
        for r in records
        for c in classes
        if f"{c}/reference" in r
    ]


def cached_result(out: str | Path, ckpt: str | Path, real: RealSet) -> RealResult | None:
    """The run folder's real scores when they are of this checkpoint (SHA-256) and real set (fingerprint)."""
    from core import io

    folder = RunFolder(Path(out))
    summary = folder.read_real_summary()
    if summary is None or not folder.real_metrics.is_file() or not Path(ckpt).is_file():
        return None
    if summary.get("fingerprint") != real.fingerprint() or summary.get("checkpoint_sha256") != io.sha256(ckpt):
        return None
    try:
        frame = folder.read_real_metrics()
    except Exception:  # an unreadable cache is recomputed
        return None
    return RealResult(Path(out), frame.to_dict("records"), summary, cached=True)


def real_table(result: RealResult) -> str:
    """The printed table: one line per image and class, the means over manual references, the skipped."""
    s = result.summary
    classes = list(s.get("classes") or {})
    head = f"{'image':<20}{'contrast':<10}{'class':<7}{'reference':<11}" + "".join(f"{m:>10}" for m in TABLE_METRICS)
    lines = [head, "-" * len(head)]
    for r in result.records:
        for c in classes:
            if isinstance(r.get(f"{c}/reference"), str):
                cells = "".join(f"{float(r.get(f'{c}/{m}', float('nan'))):>10.4f}" for m in TABLE_METRICS)
                lines.append(f"{str(r['subject']):<20}{str(r['contrast']):<10}{c:<7}{r[f'{c}/reference']:<11}{cells}")
    for name, key in (("manual (ground truth)", "metrics"), ("automatic (agreement)", "metrics_automatic")):
        for c in classes:
            m = (s.get(key) or {}).get(f"{c}/dice")
            if m:
                lines.append(f"mean {c}/dice vs {name}: {m['mean']:.4f} (n = {m['n']} image(s))")
    for sk in s.get("skipped") or []:
        lines.append(f"skipped {sk['image']}: {sk['reason']}")
    lines.append(f"(scored on each image's native grid; distances in mm; {GROUND_TRUTH})")
    return "\n".join(lines)
