"""Post-processing (largest connected foreground component): hand cases, scipy as the reference,
the config key, and the predict path (``evaluation.inference.predict_array``)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from evaluation.postprocess import POSTPROCESS, TASK_DEFAULT, apply, labels_of, resolve


def _scipy_largest(labels: np.ndarray) -> np.ndarray:
    """Independent reference: scipy's 26-connected labelling of the foreground, largest by voxel count."""
    comp, n = ndimage.label(labels > 0, structure=np.ones((3,) * labels.ndim))
    if n == 0:
        return labels
    sizes = ndimage.sum_labels(labels > 0, comp, range(1, n + 1))
    return np.where(comp == 1 + int(np.argmax(sizes)), labels, 0)


def test_hand_case_keeps_the_largest_component_with_its_labels():
    x = np.zeros((12, 12, 10), np.int16)
    x[1:5, 1:5, :] = 1  # the cord: 160 voxels
    x[2:4, 2:4, 3:6] = 2  # a second class inside it stays as predicted
    x[5, 5, 9] = 1  # touches the cord only by a corner: 26-connected, kept
    x[9:11, 9:11, 0:3] = 1  # a 12-voxel blob: removed
    x[0, 11, 9] = 2  # a lone voxel of class 2: removed
    before = x.copy()
    out = apply(x, "largest_component")
    np.testing.assert_array_equal(x, before)  # the input is left as it was
    want = x.copy()
    want[9:11, 9:11, 0:3] = 0
    want[0, 11, 9] = 0
    np.testing.assert_array_equal(out, want)
    assert out.dtype == x.dtype


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_scipy_on_random_maps(seed: int):
    rng = np.random.default_rng(seed)
    x = (rng.random((30, 28, 20)) > 0.85).astype(np.int64) * rng.integers(1, 3, (30, 28, 20))
    np.testing.assert_array_equal(apply(x, "largest_component"), _scipy_largest(x))


def test_2d_empty_none_and_torch():
    import torch

    x2 = np.zeros((8, 8), np.uint8)
    x2[0:3, 0:3] = 1
    x2[6, 6] = 1
    assert apply(x2, "largest_component").sum() == 9
    empty = np.zeros((4, 4, 4), np.int16)
    np.testing.assert_array_equal(apply(empty, "largest_component"), empty)
    assert apply(x2, "none") is x2
    t = torch.from_numpy(x2.astype(np.int64))
    out = apply(t, "largest_component")
    assert type(out) is torch.Tensor and out.dtype == torch.int64 and int(out.sum()) == 9
    probs = torch.stack([1 - t.float(), t.float()])
    assert int(labels_of(probs, "largest_component").sum()) == 9 and int(labels_of(probs, "none").sum()) == 10
    with pytest.raises(ValueError, match="unknown post-processing 'biggest'"):
        apply(x2, "biggest")


def test_task_defaults():
    assert resolve(None, "sc") == resolve(None, "canal") == "largest_component"
    assert resolve(None, "gm") == resolve(None, "levels") == "none"
    assert resolve("none", "sc") == "none" and resolve("largest_component", "gm") == "largest_component"
    from core.tasks import TASK_NAMES

    assert set(TASK_DEFAULT) == set(TASK_NAMES) and set(TASK_DEFAULT.values()) <= set(POSTPROCESS)


def test_config_key_is_checked():
    from core.errors import ConfigError
    from runs.config import load_config

    assert load_config([], [])["model"]["postprocess"] is None
    assert load_config([], ["model.postprocess=none"])["model"]["postprocess"] == "none"
    with pytest.raises(ConfigError, match="key 'model.postprocess' must be null, none or largest_component"):
        load_config([], ["model.postprocess=largest"])


class _TwoBlobs:
    """A 'model' that labels voxels brighter than 1 after z-scoring (the test image holds two bright blobs)."""

    def __init__(self, postprocess: str | None):
        self.hparams = {
            "spacing": None,
            "network": "threshold",
            "preset": None,
            "task": "sc",
            "classes": {"sc": [1]},
            **({"postprocess": postprocess} if postprocess else {}),
        }

    def predict_volume(self, x):
        import torch

        fg = (x[0, 0] > 1).float()
        return torch.stack([1 - fg, fg])[None]


@pytest.mark.parametrize("postprocess, blobs", [("largest_component", 1), ("none", 2), (None, 2)])
def test_predict_array_post_processes_as_the_checkpoint_says(postprocess, blobs):
    """A checkpoint written before the key existed (no ``postprocess``) keeps the raw argmax."""
    from evaluation.inference import predict_array

    img = np.zeros((20, 20, 12), np.float32)
    img[2:8, 2:8, :] = 10.0  # the large blob
    img[14:16, 14:16, 2:4] = 10.0  # the small one
    aff = np.diag([0.5, 0.5, 2.0, 1.0])
    out = predict_array(_TwoBlobs(postprocess), img, aff)
    assert ndimage.label(out > 0, structure=np.ones((3, 3, 3)))[1] == blobs
    assert out[2:8, 2:8, :].all()
