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
    p.add_argument("--contrast", help="with --bids: the contrast to segment (default: the model's)")
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


def _default_out(src: Path, task: str) -> Path:
    stem = src.name[:-7] if src.name.endswith(".nii.gz") else src.stem
    return src.with_name(f"{stem}_label-{task}_seg.nii.gz")


def plan_outputs(inputs: list[Path], output: str | None, task: str, ckpt: str | list[str]) -> list[Path]:
    """The mask path of every input, checked before any inference.

    ``-o`` is a folder when it ends with a separator, is an existing folder, or (several inputs)
    has no NIfTI extension; otherwise it is the one mask and must end in .nii.gz/.nii. No mask or
    sidecar may be one of the inputs or the checkpoint, and no two inputs may write the same mask.
    """
    from core.errors import OutputError
    from core.outputs import NIFTI_SUFFIXES, check_not_input, check_output_dir, check_output_file
    from evaluation.inference import sidecar_path

    named = {f"-i {p}": p for p in inputs}
    for i, c in enumerate([ckpt] if isinstance(ckpt, (str, Path)) else ckpt):
        named["--ckpt" if i == 0 else f"--ckpt #{i + 1}"] = c
    folder = output is not None and (
        output.endswith(("/", "\\"))
        or Path(output).is_dir()
        or (len(inputs) > 1 and not output.lower().endswith(NIFTI_SUFFIXES))
    )
    if output is not None and len(inputs) > 1 and not folder:
        raise OutputError(f"{len(inputs)} inputs need -o to be a folder (it holds one mask per input)", output)
    if folder:
        check_output_dir(output, inputs=named, what="-o folder")
        outs = [Path(output) / _default_out(src, task).name for src in inputs]
    elif output is not None:
        outs = [check_output_file(output, inputs=named, suffixes=NIFTI_SUFFIXES, what="mask (-o)")]
    else:
        outs = [_default_out(src, task) for src in inputs]
    seen: dict[Path, Path] = {}
    for src, out in zip(inputs, outs):
        check_output_file(out, inputs=named, suffixes=NIFTI_SUFFIXES, what="mask")
        check_not_input(sidecar_path(out), named)
        if out.absolute() in seen:
            raise OutputError(f"inputs {seen[out.absolute()]} and {src} would both write this mask", out)
        seen[out.absolute()] = src
    return outs


def run(args: argparse.Namespace) -> int:
    import sys
    import warnings

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
        from evaluation.inference import predict_bids

        contrast = args.contrast or module.hparams.get("contrast", "T2w")
        outs = predict_bids(module, args.bids, contrast, task, ckpt=args.ckpt)
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
