"""``cordbench export``: a checkpoint as a self-contained model folder (ONNX or TorchScript)."""

from __future__ import annotations

import argparse

HELP = "export a checkpoint (ONNX or TorchScript) with its preprocessing contract, class map, model card and provenance"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from core.ranges import Range, add_number

    p.add_argument("--ckpt", required=True, help="trained checkpoint (.ckpt)")
    p.add_argument("--format", default="onnx", help="onnx (run by onnxruntime) or torchscript (default: onnx)")
    p.add_argument("-o", "--output", required=True, help="export folder (created; files in it are replaced)")
    add_number(
        p,
        "--size",
        kind=int,
        range=Range(1, 65536),
        nargs="+",
        metavar="N",
        help="spatial size to trace at (default: the preprocessed slice size, else the training patch); "
        "networks with a fixed geometry (Swin windows) accept only this size",
    )


def run(args: argparse.Namespace) -> int:
    from runs.export import export_model

    meta = export_model(args.ckpt, args.format, args.output, size=args.size)
    sizes = meta["input"]
    accepts = (
        f"any spatial size (padded to a multiple of {sizes['multiple']})"
        if sizes["dynamic"]
        else f"only {'x'.join(map(str, sizes['shape']))} inputs ({sizes['why']})"
    )
    print(f"wrote {meta['format']} model to {args.output} (max |exported - PyTorch| = {meta['max_abs_diff']:.2e})")
    print(f"the exported network accepts {accepts}")
    return 0
