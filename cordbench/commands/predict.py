"""``cordbench predict``: segment NIfTI images; masks written on each input's own grid."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "segment NIfTI file(s) with a checkpoint or an exported model; masks keep the input's shape and affine"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ckpt",
        action="append",
        help="trained checkpoint (.ckpt); repeat it for an ensemble (class probabilities averaged, docs/models.md)",
    )
    p.add_argument(
        "--model",
        metavar="DIR",
        help="instead of --ckpt: a folder written by `cordbench export` (the network runs in onnxruntime)",
    )
    p.add_argument("-i", "--input", nargs="+", help="input NIfTI image(s), any orientation")
    p.add_argument(
        "--bids",
        metavar="ROOT",
        help="predict every image of a BIDS data set into "
        "ROOT/derivatives/cordbench/sub-*/{anat,dwi}/<stem>_label-<TASK>_seg.nii.gz",
    )
    p.add_argument(
        "--contrast",
        help="with --bids: the contrast(s) to segment: a BIDS contrast (T1w, flip-1_mt-on_MTS, …), a short name "
        "(MTon, MToff, dwi), A,B or all (default: the model's own, every listed one for a multi-contrast model)",
    )
    p.add_argument("-o", "--output", help="output mask path (one input) or folder (several inputs)")
    p.add_argument(
        "--qc",
        metavar="DIR",
        help="also write the QC panel of every prediction (PNG) and the sortable report DIR/index.html",
    )
    add_ensemble_arguments(p)


def add_ensemble_arguments(p: argparse.ArgumentParser) -> None:
    """``--tta``, ``--soft``, ``--uncertainty`` (evaluation/ensemble.py)."""
    from evaluation.ensemble import TTA_CHOICES

    p.add_argument(
        "--tta",
        choices=TTA_CHOICES,
        default="none",
        help="test-time augmentation averaged in probability space: flips = also the R-L mirror (default none)",
    )
    p.add_argument(
        "--soft", action="store_true", help="also write each class's probability map <mask>_prob-<class>.nii.gz"
    )
    p.add_argument(
        "--uncertainty",
        action="store_true",
        help="also write <mask>_entropy.nii.gz (and _variance with several passes) and the per-image "
        "uncertainty summary (sidecar, QC report)",
    )


def _ensemble(args: argparse.Namespace) -> bool:
    return len(args.ckpt) > 1 or args.tta != "none" or args.soft or args.uncertainty


def run(args: argparse.Namespace) -> int:
    import sys
    import warnings

    from cordbench.commands._predict_outputs import plan_outputs
    from core.errors import ConfigError
    from core.outputs import check_output_dir
    from evaluation.inference import EmptyPredictionWarning, OrientationWarning, predict_file, sidecar_path

    if bool(args.input) == bool(args.bids):
        raise ConfigError("give either -i/--input images or --bids ROOT")
    if bool(args.ckpt) == bool(args.model):
        raise ConfigError("give either --ckpt CKPT (repeatable) or --model DIR (an exported model)")
    if args.model and (args.tta != "none" or args.soft or args.uncertainty):
        raise ConfigError("--tta, --soft and --uncertainty need --ckpt checkpoints (not an exported --model)")
    if args.ckpt and _ensemble(args):
        from cordbench.commands._ensemble import run_ensemble

        return run_ensemble(args)
    if args.ckpt:
        args.ckpt = args.ckpt[0]
    source = args.ckpt or args.model
    if args.qc:
        check_output_dir(args.qc, inputs={"--ckpt": source, "--bids": args.bids}, what="--qc folder")
    if args.bids:
        module = _load(args)
        task = module.hparams.get("task", "sc")
        from data_modules.contrasts import requested
        from evaluation.inference import predict_bids

        outs = predict_bids(module, args.bids, requested(args.contrast, module.hparams), task, ckpt=args.ckpt)
        print(f"wrote {len(outs)} masks under {args.bids}/derivatives/cordbench")
        if args.qc:
            import json

            pairs = [(Path(json.loads(sidecar_path(o).read_text())["Source"]), o) for o in outs]
            _qc(pairs, args.qc, module)
        return 0
    module = _load(args)  # a bad checkpoint is reported before the outputs
    inputs = [Path(p) for p in args.input]
    outs = plan_outputs(inputs, args.output, module.hparams.get("task", "sc"), source)
    pairs = []
    for src, out in zip(inputs, outs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", EmptyPredictionWarning)
            warnings.simplefilter("always", OrientationWarning)
            predict_file(module, src, out, ckpt=args.ckpt)
        pairs.append((src, out))
        print(f"wrote {out}")
        for w in caught:
            if issubclass(w.category, (EmptyPredictionWarning, OrientationWarning)):
                print(f"warning: {w.message}", file=sys.stderr)
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if args.qc:
        _qc(pairs, args.qc, module)
    return 0


def _load(args: argparse.Namespace):
    """The checkpoint's module, or an exported model (``evaluation.exported``) that swaps only its network forward."""
    if args.model:
        from evaluation.exported import ExportedModel

        return ExportedModel(args.model)
    from runs.checkpoints import load_module

    return load_module(args.ckpt)


def _qc(pairs: list, qc_dir: str, module) -> None:
    from runs.subject_outputs import write_predict_qc

    index = write_predict_qc(pairs, qc_dir, module.hparams.get("classes"))
    print(f"QC report: {index}")
