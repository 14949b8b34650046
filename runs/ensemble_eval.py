"""Ensembles in the runs layer: load the member checkpoints, and ``cordbench test --ckpt A --ckpt B …``.

:func:`load_members` checks that every file exists before loading any (a missing file is refused
before anything is predicted or written), loads each with :func:`runs.checkpoints.load_module`
(weights only) and refuses members of different tasks, class maps or post-processing
(:func:`evaluation.ensemble.check_compatible`).

:func:`evaluate_ensemble` scores an ensemble on the held-out subjects of a config's split exactly as
``cordbench predict`` writes it: each subject's native image goes through
:func:`evaluation.ensemble.predict_image` (the function ``predict`` calls) and the native label map is
scored against the native target(s) (:func:`evaluation.scoring.score_native`, the native mode of
every test). The run folder gets ``test_metrics.csv``, ``test_summary.json`` — which names every
member with its SHA-256, the combination and the TTA rule — the scored predictions and the QC report.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core import io
from evaluation.ensemble import Member, check_compatible, check_files, combination_record, predict_image


def load_members(paths: Sequence[str | Path], expect: dict[str, Any] | None = None) -> list[Member]:
    """The ensemble's members, checked (see the module docstring)."""
    from runs.checkpoints import load_module

    files = check_files(paths)
    members = [Member(p, load_module(p, expect=expect), io.sha256(p)) for p in files]
    check_compatible(members)
    return members


def evaluate_ensemble(cfg: dict[str, Any], ckpts: Sequence[str | Path], tta: str = "none"):
    """Test the ensemble of ``ckpts`` on the configured split's held-out subjects; a :class:`RunResult`."""
    import numpy as np

    from core.errors import ConfigError
    from core.tasks import TASKS
    from evaluation.ensemble import check_tta
    from evaluation.scoring import score_native
    from runs.runner import RunResult, prepare, quiet, write_test_outputs, write_test_qc
    from runs.subject_outputs import prediction_file, qc_png, write_panel

    quiet()
    check_tta(tta)
    t0 = time.perf_counter()
    task = TASKS[cfg["data"]["task"]]
    members = load_members(ckpts, expect={"num_classes": task.num_classes, "task": task.name})
    if cfg["data"].get("scoring", "native") != "native":
        raise ConfigError("an ensemble is scored on each subject's native grid: data.scoring must be native")
    out, dm = prepare(cfg, keep_records=True)
    classes = {k: list(v) for k, v in dm.class_map.items()}
    records = []
    for subject in dm.split.get("test", []):
        img, targets = dm.native_targets(subject)
        data = np.asanyarray(img.dataobj).astype(np.float32)
        pred = predict_image(members, data, np.asarray(img.affine), tta, with_maps=False)
        records.append(score_native(pred.labels, np.asarray(img.affine), targets, subject, classes))
        io.save_nifti(pred.labels, img.affine, prediction_file(out, subject), header=img.header, dtype=np.uint8)
        write_panel(img, pred.labels.astype(np.int16), qc_png(out, subject), targets.get(""))
    record = combination_record(members, tta)
    summary = write_test_outputs(
        out,
        records,
        {
            "checkpoint": " + ".join(str(m.path) for m in members),
            "checkpoints": [str(m.path) for m in members],
            "ensemble": {k: v for k, v in record.items() if k != "uncertainty"},
            "scoring": "native",
            "postprocess": str(members[0].module.hparams.get("postprocess") or "none"),
            "task": task.name,
        },
    )
    write_test_qc(out, records)
    return RunResult(
        out=out,
        best_ckpt=str(members[0].path),
        test_records=records,
        test_summary=summary,
        seconds=time.perf_counter() - t0,
    )
