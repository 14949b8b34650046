"""``cordbench export``: a checkpoint's network as ONNX or TorchScript, with everything needed to run it.

The export folder holds:

* ``model.onnx`` (ONNX opset :data:`OPSET`, which onnxruntime's CPU build runs) or ``model.pt`` (TorchScript);
* ``model.json``: format, opset, the checkpoint's hyper-parameters (preprocessing contract, class map,
  post-processing, spatial dims, patch size), the input sizes the network accepts, the largest
  difference between the exported network and PyTorch measured at export, the checkpoint and its SHA-256;
* ``preprocessing.json`` and ``classes.json``: the preprocessing contract and the class map, for readers
  without cordbench;
* ``MODEL_CARD.md`` and ``provenance.json`` (the run's record when the checkpoint lies in a run folder,
  plus the export's own under ``export``).

Input sizes. The network is traced at a size it will be given: 3D, the training patch (the sliding
window always feeds whole patches); 2D, the preprocessed slice size when the contract fixes it
(``data.crop``, at least the training patch), else the training patch; ``size`` overrides it. The trace
is then run at a second size (one ``multiple`` larger on each axis, ``multiple`` being the network's own
padding unit): if it reproduces the network there, the export accepts any size that is a multiple of
it (the runner pads as the network does); if not (Swin window geometry is fixed when traced), the export
accepts only the traced size and ``model.json`` says so. The batch axis is always free.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from core.errors import ConfigError, InputError

OPSET = 17  # LayerNormalization is native from 17; onnxruntime's CPU build runs opsets up to 21+
FORMATS = ("onnx", "torchscript")
TOLERANCE = 1e-4  # largest |exported − PyTorch| logit difference accepted at export


def trace_size(hp: dict[str, Any], size: list[int] | None = None) -> tuple[int, ...]:
    """The spatial size the network is traced at (see the module docstring)."""
    dims = int(hp.get("spatial_dims", 2))
    if size:
        if len(size) != dims:
            raise ConfigError(f"--size needs {dims} values for this {dims}D model, got {len(size)}")
        return tuple(int(s) for s in size)
    patch = [int(p) for p in (hp.get("patch_size") or ([64, 64] if dims == 2 else [64, 64, 32]))][:dims]
    pre = hp.get("preprocessing") or {}
    if dims == 2 and pre.get("crop"):
        return tuple(max(int(c), p) for c, p in zip(pre["crop"], patch))
    return tuple(patch)


def _trace(net: Any, x: Any) -> Any:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.trace(net, (x,), check_trace=False)


def _generalises(net: Any, traced: Any, x: Any, multiple: int) -> bool:
    """Whether the trace reproduces the network at a second size (each axis + ``multiple``)."""
    import torch

    y = _larger(x, multiple)
    try:
        with torch.no_grad():
            return bool(torch.allclose(traced(y), net(y), atol=TOLERANCE, rtol=0))
    except Exception:  # shapes baked into the trace: the trace fails at another size
        return False


def _onnx(net: Any, x: Any, path: Path, dynamic: bool) -> None:
    import torch

    axes = {0: "batch", **({i: f"d{i}" for i in range(2, x.ndim)} if dynamic else {})}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (x,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            do_constant_folding=False,  # onnxruntime folds constants when it loads the graph; exports ~30 % faster
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": axes, "logits": axes},
        )


def _larger(x: Any, multiple: int) -> Any:
    """A one-image batch one ``multiple`` larger on every spatial axis (zero padded)."""
    import torch.nn.functional as F

    return F.pad(x, [p for _ in x.shape[2:] for p in (0, multiple)])[:1]


def _max_diff(exported: Any, net: Any, x: Any) -> float:
    """Largest |exported − PyTorch| logit at input ``x`` (infinite when the exported network fails)."""
    import numpy as np
    import torch

    try:
        with torch.no_grad():
            return float(np.max(np.abs(exported.forward(x).numpy() - net(x).numpy())))
    except Exception:
        return float("inf")


def _write_network(
    net: Any, traced: Any, x: Any, out: Path, fmt: str, dynamic: bool, multiple: int, hp: dict, ckpt: str | Path
) -> dict[str, Any]:
    """The network file and ``model.json`` (input sizes: any multiple of ``multiple``, or the traced size only)."""
    from core import io
    from evaluation.exported import FORMATS as FILES
    from evaluation.exported import MODEL_JSON

    if fmt == "onnx":  # the module, not the trace: the window masks the trace computed are cached constants now
        _onnx(net, x, out / FILES[fmt], dynamic)
    else:
        traced.save(str(out / FILES[fmt]))
    shape = list(x.shape[2:])
    windows = any(hasattr(m, "window_size") for m in net.modules())
    why = "window geometry and attention masks are fixed when traced" if windows else None
    meta: dict[str, Any] = {
        "format": fmt,
        "opset": OPSET if fmt == "onnx" else None,
        "file": FILES[fmt],
        "input": {"dynamic": True, "multiple": multiple}
        if dynamic
        else {"dynamic": False, "shape": shape, "why": why or "sizes fixed when traced"},
        "hparams": hp,
        "checkpoint": str(ckpt),
        "checkpoint_sha256": io.sha256(ckpt),
        "tolerance": TOLERANCE,
    }
    io.write_json(out / MODEL_JSON, meta)
    return meta


def check_request(ckpt: str | Path, fmt: str, out: str | Path) -> None:
    """One line for an unknown format or an unwritable folder, before the checkpoint is read."""
    from core.outputs import check_output_dir

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}: choose {' or '.join(FORMATS)}")
    check_output_dir(out, inputs={"--ckpt": ckpt}, what="export folder (-o)")
    from runs.run_folder import CONFIG

    if (Path(out) / CONFIG).exists():
        from core.errors import OutputError

        raise OutputError(
            "is a run folder: its provenance.json and MODEL_CARD.md would be replaced; choose another -o", out
        )


def export_model(ckpt: str | Path, fmt: str, out: str | Path, size: list[int] | None = None) -> dict[str, Any]:
    """Export ``ckpt`` to folder ``out`` in ``fmt`` (``onnx`` | ``torchscript``); returns ``model.json``."""
    import torch

    from core import io
    from evaluation.exported import MODEL_JSON, ExportedModel
    from runs import provenance
    from runs.checkpoints import load_module
    from runs.model_card import render
    from runs.real_eval import run_folder_of
    from runs.run_folder import PROVENANCE, RunFolder

    check_request(ckpt, fmt, out)
    module = load_module(ckpt)  # a damaged checkpoint: one line naming it
    hp = {k: v for k, v in dict(module.hparams).items()}
    net = module.net.eval()
    shape = trace_size(hp, size)
    multiple = int(getattr(net, "multiple", 1) or 1)
    if any(s % multiple for s in shape):
        raise ConfigError(f"--size {' '.join(map(str, shape))}: each axis must be a multiple of {multiple}")
    torch.manual_seed(0)
    x = torch.randn(2, 1, *shape)
    traced = _trace(net, x)
    dynamic = _generalises(net, traced, x, multiple)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = _write_network(net, traced, x, out, fmt, dynamic, multiple, hp, ckpt)
    if dynamic and _max_diff(ExportedModel(out), net, _larger(x, multiple)) > TOLERANCE:
        meta = _write_network(
            net, traced, x, out, fmt, False, multiple, hp, ckpt
        )  # the trace generalises, the file not
    diff = _max_diff(ExportedModel(out), net, x)
    if not diff <= TOLERANCE:
        raise InputError(f"the exported network differs from PyTorch by {diff:.2e} (> {TOLERANCE})", ckpt)
    meta["max_abs_diff"] = diff
    io.write_json(out / MODEL_JSON, meta)
    io.write_json(out / "preprocessing.json", hp.get("preprocessing") or {})
    io.write_json(out / "classes.json", {"classes": hp.get("classes"), "num_classes": hp.get("num_classes")})
    run = run_folder_of(ckpt)
    folder = RunFolder(Path(run)) if run is not None else None
    io.write_text(out / "MODEL_CARD.md", render(folder, hp, ckpt))
    record = {"run": folder.read_provenance() if folder else None, "export": provenance.collect()}
    record["export"]["ended"] = provenance.now()
    io.write_json(out / PROVENANCE, record)
    return meta
