"""``SubjectEvaluator``: how a Lightning module's whole-subject output becomes a label map and a test record.

The runs layer gives every :class:`~lightning_modules.module.SegmentationModule` it builds or loads
one of these (``module.evaluator``), so the module itself holds no evaluation code: validation and
test take the label map from :meth:`labels` (argmax and the run's post-processing, as ``predict``)
and the test record from :meth:`score` (native-grid scoring by default, :mod:`evaluation.scoring`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from evaluation.postprocess import labels_of
from evaluation.scoring import SCORING_MODES, NativePrediction, score_subject


class SubjectEvaluator:
    """Label maps and per-subject records; ``scoring`` is ``native`` (default) or ``preprocessed``."""

    def __init__(self, scoring: str = "native"):
        if scoring not in SCORING_MODES:
            raise ValueError(f"scoring mode must be one of {SCORING_MODES}, got {scoring!r}")
        self.scoring = scoring

    def labels(self, probs: Any, postprocess: str) -> Any:
        """Label map of class probabilities ``(C, *spatial)`` after the ``postprocess`` rule."""
        return labels_of(probs, postprocess)

    def score(
        self,
        pred: np.ndarray,
        affine: np.ndarray,
        target: np.ndarray,
        subject: str,
        classes: Mapping[str, list[int]],
        datamodule: Any = None,
    ) -> tuple[dict[str, Any], NativePrediction | None]:
        """``(record, native prediction)`` of one subject (:func:`evaluation.scoring.score_subject`)."""
        return score_subject(pred, affine, target, subject, classes, datamodule, self.scoring)
