"""A tiny U-Net overfit in seconds on the real scans of :mod:`tests.support.offcentre`: a network that finds the
cord in those scans, to test the inference rules (where the network looks), not to measure a model.

Training images: each scan centred and placed at *other* offsets and fields of view than the tests use
(:data:`TRAIN_PLACEMENTS`), through the contract's chain without crop (RAS, 1 mm in-plane, z-score of the
whole image); patches of ``PATCH`` voxels, ``FOREGROUND`` of them centred on a random cord voxel, the others
anywhere (background far from the cord). Adam, ``STEPS`` steps of ``BATCH``, seeded: the same weights every run
on one machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tests.support.offcentre import SCANS, Placed, centred, place_cord

PATCH = 32
CROP = (48, 48)
STEPS = 120
BATCH = 16
FOREGROUND = 0.6
#: per scan: ((offset R-L, A-P mm), in-plane shape or None) of the training copies (not the tests' placements)
TRAIN_PLACEMENTS = {
    "t2": [((None, -40.0), (None, 160))],
    "t1w": [((None, 40.0), (None, 160))],
    "t2s_uncropped": [((-12.0, -10.0), None)],
    "gm_run1": [((10.0, -14.0), None)],
}


def contract(rule: str) -> dict[str, Any]:
    """The fixture's preprocessing contract with the label-free rule ``rule``."""
    from core.tasks import TASKS
    from data_modules.preprocessing import Preprocessing

    cfg = {"spacing": [1.0, 1.0, None], "crop": list(CROP), "patch_size": [PATCH, PATCH], "spatial_dims": 2}
    return Preprocessing.from_config({**cfg, "inference": rule}, TASKS["sc"]).to_dict()


def _slices(placed: Placed) -> tuple[np.ndarray, np.ndarray]:
    """Z-scored image and label slices (Z, X, Y) of ``placed`` on the contract's whole-image grid."""
    import torch
    import torchio as tio

    from data_modules.preprocessing import Preprocessing, build_transform

    img = placed.image
    subject = tio.Subject(
        image=tio.ScalarImage(
            tensor=torch.from_numpy(np.ascontiguousarray(img.dataobj, np.float32)[None]), affine=img.affine
        ),
        label=tio.LabelMap(
            tensor=torch.from_numpy(np.ascontiguousarray(placed.mask.dataobj, np.int16)[None]), affine=img.affine
        ),
    )
    out = build_transform(Preprocessing.from_dict(contract("sliding")), "eval")(subject)
    return out["image"].data[0].permute(2, 0, 1).numpy(), out["label"].data[0].permute(2, 0, 1).numpy() > 0


def training_slices(root: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, label) slice stacks of every training copy of every scan."""
    stacks = []
    for name, (img, seg) in SCANS.items():
        stacks.append(_slices(centred(root / img, root / seg)))
        for offset, shape in TRAIN_PLACEMENTS[name]:
            stacks.append(_slices(place_cord(root / img, root / seg, offset, shape or (None, None))))
    return stacks


def _batch(stacks: list[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator) -> tuple[Any, Any]:
    import torch

    xs, ys = [], []
    h = PATCH // 2
    for _ in range(BATCH):
        image, label = stacks[int(rng.integers(len(stacks)))]
        cord = np.argwhere(label)
        if rng.random() < FOREGROUND and len(cord):
            z, cx, cy = cord[int(rng.integers(len(cord)))]
            cx, cy = cx + int(rng.integers(-8, 9)), cy + int(rng.integers(-8, 9))
        else:
            z = int(rng.integers(image.shape[0]))
            cx, cy = int(rng.integers(image.shape[1])), int(rng.integers(image.shape[2]))
        pad = ((h, h), (h, h))
        x0, y0 = int(np.clip(cx, 0, image.shape[1] - 1)), int(np.clip(cy, 0, image.shape[2] - 1))
        xs.append(np.pad(image[z], pad)[x0 : x0 + PATCH, y0 : y0 + PATCH])
        ys.append(np.pad(label[z], pad)[x0 : x0 + PATCH, y0 : y0 + PATCH])
    return torch.from_numpy(np.stack(xs)[:, None]).float(), torch.from_numpy(np.stack(ys).astype(np.int64))


def train_module(root: Path, rule: str, seed: int = 0) -> Any:
    """The overfit tiny U-Net (eval mode) whose contract records ``rule``."""
    import torch

    from lightning_modules.module import SegmentationModule

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    module = SegmentationModule(
        network="unet",
        preset="tiny",
        num_classes=2,
        classes={"sc": [1]},
        patch_size=[PATCH, PATCH],
        log_images=False,
        task="sc",
        preprocessing=contract(rule),
    )
    stacks = training_slices(root)
    opt = torch.optim.Adam(module.parameters(), lr=3e-3)
    weight = torch.tensor([1.0, 3.0])
    module.train()
    for _ in range(STEPS):
        x, y = _batch(stacks, rng)
        loss = torch.nn.functional.cross_entropy(module(x), y, weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return module.eval()


def with_rule(module: Any, rule: str) -> Any:
    """``module`` with its contract's label-free rule set to ``rule`` (same weights)."""
    module.hparams["preprocessing"] = {**module.hparams["preprocessing"], "inference": rule}
    return module
