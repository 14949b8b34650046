"""An exported model (``cordbench export``) loaded for inference: the network runs in onnxruntime (or TorchScript).

An export folder holds the network file and ``model.json``, which carries the checkpoint's
hyper-parameters (preprocessing contract, class map, post-processing, spatial dims, patch size) and
the input sizes the network accepts. :class:`ExportedModel` offers what :mod:`evaluation.inference`
uses of a checkpoint's module — ``hparams`` and ``predict_volume`` — and swaps only the network's
forward pass: the preprocessing chain, the slice batching or sliding window
(:func:`lightning_modules.module.volume_probabilities`), the argmax, the post-processing and the
write-back onto the input's grid are the checkpoint's own code, so both predict the same mask.

Input sizes (``model.json`` ``input``): ``{"dynamic": true, "multiple": M}`` — any spatial size, which
:meth:`ExportedModel.forward` zero-pads at the end to a multiple of ``M`` and crops back, exactly as
the network does inside itself; ``{"dynamic": false, "shape": [...]}`` — only that size (e.g. Swin
window geometry fixed at export); another size is refused in one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InputError

MODEL_JSON = "model.json"
FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}


class ExportedModel:
    """A network exported by ``cordbench export``, with the checkpoint's inference contract."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        meta_path = self.folder / MODEL_JSON
        if not self.folder.is_dir():
            raise InputError("not a folder (an exported model is the folder `cordbench export` wrote)", self.folder)
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        except FileNotFoundError:
            raise InputError(f"{MODEL_JSON} missing: not an exported cordbench model", self.folder) from None
        except (OSError, ValueError) as exc:
            raise InputError(f"unreadable {MODEL_JSON} ({exc})", meta_path) from None
        fmt = self.meta.get("format")
        if fmt not in FORMATS:
            raise InputError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})", meta_path)
        self.format = fmt
        self.hparams: dict[str, Any] = dict(self.meta.get("hparams") or {})
        self.input: dict[str, Any] = dict(self.meta.get("input") or {})
        self.network_file = self.folder / FORMATS[fmt]
        if not self.network_file.is_file():
            raise InputError(f"{FORMATS[fmt]} missing from the exported model", self.folder)
        self._run = self._onnx() if fmt == "onnx" else self._torchscript()

    def _onnx(self):
        import onnxruntime as ort
        import torch

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, torch.get_num_threads())
        try:
            session = ort.InferenceSession(str(self.network_file), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for a damaged file
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"onnxruntime cannot load the network ({first})", self.network_file) from None
        name = session.get_inputs()[0].name

        def run(x: np.ndarray) -> np.ndarray:
            return session.run(None, {name: x})[0]

        return run

    def _torchscript(self):
        import torch

        try:
            net = torch.jit.load(str(self.network_file), map_location="cpu")
        except (RuntimeError, ValueError, OSError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"TorchScript cannot load the network ({first})", self.network_file) from None
        net.eval()

        def run(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return net(torch.from_numpy(x)).numpy()

        return run

    def check_size(self, sizes: tuple[int, ...]) -> None:
        """Refuse a spatial size the exported network does not accept, naming the sizes it does."""
        if self.input.get("dynamic", True):
            return
        shape = tuple(int(s) for s in self.input.get("shape") or ())
        if tuple(sizes) != shape:
            raise InputError(
                f"this exported {self.hparams.get('network')} accepts only inputs of "
                f"{'x'.join(map(str, shape))} voxels ({self.input.get('why', 'fixed at export')}); the "
                f"preprocessed image gives {'x'.join(map(str, sizes))}: export with --size "
                f"{' '.join(map(str, sizes))}, or from a run whose data.crop fixes the slice size",
                self.folder,
            )

    def forward(self, x: Any) -> Any:
        """Logits of a batch ``(B, 1, *spatial)`` (a torch tensor) through the exported network."""
        import torch
        import torch.nn.functional as F

        sizes = tuple(int(s) for s in x.shape[2:])
        multiple = int(self.input.get("multiple") or 1) if self.input.get("dynamic", True) else 1
        self.check_size(sizes)
        pads: list[int] = []
        for s in reversed(sizes):
            pads += [0, (multiple - s % multiple) % multiple]
        xp = F.pad(x, pads) if any(pads) else x
        out = torch.from_numpy(np.asarray(self._run(np.ascontiguousarray(xp.detach().cpu().numpy(), np.float32))))
        return out[(slice(None), slice(None)) + tuple(slice(0, s) for s in sizes)]

    __call__ = forward

    def predict_volume(self, volume: Any) -> Any:
        """Class probabilities (1, C, X, Y, Z) of a preprocessed volume, as the checkpoint's module computes them."""
        from lightning_modules.volume import volume_probabilities

        return volume_probabilities(self.forward, volume, self.hparams)
