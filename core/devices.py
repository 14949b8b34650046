"""Device-dependent Trainer choices: the automatic mixed precision (``trainer.precision: auto``).

``auto`` (the default) resolves, in the process that builds the Trainer (a DDP worker sees its
own GPU), to:

* ``bf16-mixed`` on a CUDA GPU of compute capability 8.0 or newer (Ampere, Ada, Hopper, …:
  native bfloat16 tensor cores; no loss scaling needed),
* ``16-mixed`` on an older CUDA GPU (Volta, Turing: float16 with a gradient scaler),
* ``32-true`` on CPU (CPU autocast is slower than float32 for these networks on the CPUs we
  measured, and ``cordbench`` promises the same metrics for the same seed on CPU).

Any other value (``32-true``, ``16-mixed``, ``bf16-mixed``, ``64-true``, …) is used as named.
"""

from __future__ import annotations

AUTO = "auto"


def choose_precision(requested: str | int | None, capability: tuple[int, int] | None) -> str:
    """The Lightning ``precision`` for ``requested`` on a device of CUDA ``capability`` (None: no GPU)."""
    if requested not in (None, AUTO, ""):
        return str(requested)
    if capability is None:
        return "32-true"
    return "bf16-mixed" if int(capability[0]) >= 8 else "16-mixed"


def cuda_capability(on_gpu: bool) -> tuple[int, int] | None:
    """Compute capability of the current CUDA device when the run trains on a GPU, else None."""
    if not on_gpu:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    return tuple(torch.cuda.get_device_capability())  # type: ignore[return-value]
