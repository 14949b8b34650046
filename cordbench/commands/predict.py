"""``cordbench predict``: segment NIfTI images; masks written on each input's own grid."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "segment NIfTI file(s) with a checkpoint; masks keep the input's shape and affine"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", required=True, help="trained checkpoint (.ckpt)")
    p.add_argument("-i", "--input", nargs="+", help="input NIfTI image(s), any orientation")
    p.add_argument("--bids", metavar="ROOT", help="predict every image of a BIDS data set into "
                   "ROOT/derivatives/cordbench/sub-*/{anat,dwi}/<stem>_label-<TASK>_seg.nii.gz")
    p.add_argument("--contrast", help="with --bids: the contrast to segment (default: the model's)")
    p.add_argument("-o", "--output", help="output mask path (one input) or folder (several inputs)")
    p.add_argument("--qc", metavar="DIR", help="also write the QC panel of every prediction (PNG) and the "
                   "sortable report DIR/index.html")


def _default_out(src: Path, task: str) -> Path:
    stem = src.name[:-7] if src.name.endswith(".nii.gz") else src.stem
    return src.with_name(f"{stem}_label-{task}_seg.nii.gz")


def run(args: argparse.Namespace) -> int:
    from cordbench.checkpoints import load_module
    from cordbench.inference import predict_file

    from cordbench.errors import ConfigError

    if bool(args.input) == bool(args.bids):
        raise ConfigError("give either -i/--input images or --bids ROOT")
    module = load_module(args.ckpt)
    task = module.hparams.get("task", "sc")
    if args.bids:
        from cordbench.inference import predict_bids

        contrast = args.contrast or module.hparams.get("contrast", "T2w")
        outs = predict_bids(module, args.bids, contrast, task, ckpt=args.ckpt)
        print(f"wrote {len(outs)} masks under {args.bids}/derivatives/cordbench")
        if args.qc:
            import json

            pairs = [(Path(json.loads(_sidecar(o).read_text())["Source"]), o) for o in outs]
            _qc(pairs, args.qc, module)
        return 0
    inputs = [Path(p) for p in args.input]
    pairs = []
    for src in inputs:
        if args.output and len(inputs) == 1 and not Path(args.output).is_dir():
            out = Path(args.output)
        elif args.output:
            out = Path(args.output) / _default_out(src, task).name
        else:
            out = _default_out(src, task)
        predict_file(module, src, out, ckpt=args.ckpt)
        pairs.append((src, out))
        print(f"wrote {out}")
    if args.qc:
        _qc(pairs, args.qc, module)
    return 0


def _sidecar(mask: Path) -> Path:
    return mask.with_name(mask.name[:-7] + ".json" if mask.name.endswith(".nii.gz") else mask.stem + ".json")


def _qc(pairs: list, qc_dir: str, module) -> None:
    from cordbench.test_outputs import write_predict_qc

    index = write_predict_qc(pairs, qc_dir, module.hparams.get("classes"))
    print(f"QC report: {index}")
