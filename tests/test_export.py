"""``cordbench export`` and ``cordbench predict --model``: an exported network predicts what its checkpoint does.

Each of the five networks (tiny preset, a 48×48 crop contract) is exported once to ONNX; on the real
t2s image of sct_testing_data the onnxruntime logits must equal PyTorch's to 1e-4, and ``predict
--model`` must write the mask ``predict --ckpt`` writes (the differing voxels are counted and must
stay ≤ 0.1 % of the mask). The weights are random but made to give a partial mask (``_checkpoint``): an
empty or full mask would make the comparison trivial.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from cordbench.cli import main

MODELS = ("unet", "dilated_cnn", "transunet", "swinunet", "sattisunet")


def _checkpoint(name: str, path: Path, image: Path) -> Path:
    """A tiny ``name`` checkpoint (seed 0) whose mask of ``image`` is about half of the 48x48 crop.

    Random weights give near-constant logits; where the network ends in a bias, the foreground logit is
    shifted by the median logit difference over the image's slices, so the mask boundary runs through the
    densest part of the distribution: where a 1e-6 difference between runtimes could flip voxels.
    """
    import torch

    from data_modules.preprocessing import Preprocessing
    from lightning_modules.module import SegmentationModule

    pre = Preprocessing(
        task="sc", classes=(("sc", (1,)),), num_classes=2, crop=(48, 48), min_shape=(32, 32, 1)
    ).to_dict()
    torch.manual_seed(0)
    m = SegmentationModule(
        network=name,
        preset="tiny",
        num_classes=2,
        classes={"sc": [1]},
        patch_size=[32, 32],
        log_images=False,
        task="sc",
        preprocessing=pre,
    ).eval()
    last_name, last = list(m.net.named_parameters())[-1]
    if last_name.endswith("bias") and tuple(last.shape) == (2,):
        with torch.no_grad():
            logits = m(_slices(m, image))
            last[1] -= torch.median(logits[:, 1] - logits[:, 0])
    torch.save({"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams)}, path)
    return path


@pytest.fixture(scope="module")
def t2s(sct_data: Path) -> Path:
    return sct_data / "t2s" / "t2s.nii.gz"


@pytest.fixture(scope="module")
def exported(tmp_path_factory, t2s: Path) -> dict[str, tuple[Path, Path]]:
    """name -> (checkpoint, ONNX export folder), each model exported once."""
    root = tmp_path_factory.mktemp("export")
    out = {}
    for name in MODELS:
        ckpt = _checkpoint(name, root / f"{name}.ckpt", t2s)
        assert main(["export", "--ckpt", str(ckpt), "--format", "onnx", "-o", str(root / name)]) == 0
        out[name] = (ckpt, root / name)
    return out


def _slices(module, image: Path):
    """The preprocessed axial slices of ``image`` (Z, 1, X, Y), through the checkpoint's own contract."""
    import torch
    import torchio as tio

    from data_modules.preprocessing import Preprocessing, build_transform

    pre = build_transform(Preprocessing.from_hparams(module.hparams), "eval")(tio.Subject(image=tio.ScalarImage(image)))
    return pre["image"]["data"][None].float()[0].permute(3, 0, 1, 2).contiguous().to(torch.float32)


@pytest.mark.parametrize("name", MODELS)
def test_onnxruntime_logits_equal_pytorch_on_a_real_image(exported, t2s: Path, name: str):
    import json

    import torch

    from evaluation.exported import ExportedModel
    from runs.checkpoints import load_module

    ckpt, folder = exported[name]
    module = load_module(ckpt)
    model = ExportedModel(folder)
    x = _slices(module, t2s)
    with torch.no_grad():
        want = module(x).numpy()
    got = model.forward(x).numpy()
    assert got.shape == want.shape == (x.shape[0], 2, *x.shape[2:])
    assert np.max(np.abs(got - want)) <= 1e-4
    meta = json.loads((folder / "model.json").read_text())
    assert meta["opset"] == 17 and meta["max_abs_diff"] <= 1e-4
    if name in ("swinunet", "sattisunet"):  # window geometry fixed when traced: the export says which size
        assert meta["input"] == {"dynamic": False, "shape": [48, 48], "why": meta["input"]["why"]}
        assert "window" in meta["input"]["why"]
    assert {p.name for p in folder.iterdir()} >= {
        "model.onnx",
        "model.json",
        "preprocessing.json",
        "classes.json",
        "MODEL_CARD.md",
        "provenance.json",
    }


@pytest.mark.parametrize("name", MODELS)
def test_predict_model_writes_the_checkpoint_mask(exported, t2s: Path, tmp_path: Path, name: str, capsys):
    ckpt, folder = exported[name]
    a, b = tmp_path / "ckpt.nii.gz", tmp_path / "model.nii.gz"
    assert main(["predict", "--ckpt", str(ckpt), "-i", str(t2s), "-o", str(a)]) == 0
    assert main(["predict", "--model", str(folder), "-i", str(t2s), "-o", str(b)]) == 0
    want, got = nib.load(a), nib.load(b)
    np.testing.assert_array_equal(got.affine, want.affine)
    want, got = np.asanyarray(want.dataobj), np.asanyarray(got.dataobj)
    differing = int((want != got).sum())
    print(f"{name}: {differing} of {int(want.sum())} mask voxels differ")
    assert 0.2 < want.sum() / (48 * 48 * want.shape[2]) < 0.8  # a partial mask: the comparison means something
    assert differing <= 0.001 * want.sum()


def test_torchscript_export_predicts_the_checkpoint_mask(exported, t2s: Path, tmp_path: Path):
    ckpt = exported["unet"][0]
    folder = tmp_path / "ts"
    assert main(["export", "--ckpt", str(ckpt), "--format", "torchscript", "-o", str(folder)]) == 0
    a, b = tmp_path / "ckpt.nii.gz", tmp_path / "ts.nii.gz"
    assert main(["predict", "--ckpt", str(ckpt), "-i", str(t2s), "-o", str(a)]) == 0
    assert main(["predict", "--model", str(folder), "-i", str(t2s), "-o", str(b)]) == 0
    np.testing.assert_array_equal(np.asanyarray(nib.load(a).dataobj), np.asanyarray(nib.load(b).dataobj))


def test_export_errors_are_one_line(exported, tmp_path: Path, capsys):
    ckpt = exported["unet"][0]
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(ckpt.read_bytes()[:2000])
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cases = [
        (["--ckpt", str(damaged), "-o", str(tmp_path / "x")], [str(damaged), "corrupted checkpoint"]),
        (["--ckpt", str(ckpt), "--format", "tflite", "-o", str(tmp_path / "y")], ["unknown export format 'tflite'"]),
        (["--ckpt", str(ckpt), "-o", str(blocker / "sub")], [str(blocker / "sub"), "is a file, not a folder"]),
        (["--ckpt", str(ckpt), "-o", "/proc/cordbench-export"], ["/proc/cordbench-export", "cannot write here"]),
    ]
    for args, words in cases:
        assert main(["export", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and all(w in err for w in words), err


def test_fixed_size_export_refuses_another_size(exported):
    import torch

    from core.errors import InputError
    from evaluation.exported import ExportedModel

    model = ExportedModel(exported["swinunet"][1])
    with pytest.raises(InputError, match=r"accepts only inputs of 48x48 voxels .*gives 64x48"):
        model.forward(torch.zeros(1, 1, 64, 48))
