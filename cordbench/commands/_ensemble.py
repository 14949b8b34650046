"""``cordbench predict`` with several ``--ckpt``, ``--tta``, ``--soft`` or ``--uncertainty`` (evaluation/ensemble.py)."""

from __future__ import annotations

import argparse
from pathlib import Path


def run_ensemble(args: argparse.Namespace) -> int:
    """Check every checkpoint and output path, then predict each input with the ensemble."""
    import sys
    import warnings

    from core.outputs import check_not_input, check_output_dir
    from evaluation.ensemble_files import classes_of, extra_outputs, predict_ensemble_file
    from evaluation.inference import EmptyPredictionWarning, OrientationWarning
    from runs.ensemble_eval import load_members

    named = {f"--ckpt #{i + 1}": c for i, c in enumerate(args.ckpt)}
    if args.qc:
        check_output_dir(args.qc, inputs={**named, "--bids": args.bids}, what="--qc folder")
    members = load_members(args.ckpt)  # every file exists and loads, before any output is written
    module = members[0].module
    task = module.hparams.get("task", "sc")
    if args.bids:
        pairs = _bids_pairs(args, module, task)
    else:
        from cordbench.commands._predict_outputs import plan_outputs

        inputs = [Path(p) for p in args.input]
        pairs = list(zip(inputs, plan_outputs(inputs, args.output, task, list(args.ckpt))))
    several = len(members) > 1 or args.tta != "none"
    for _, out in pairs:
        for extra in extra_outputs(out, classes_of(module), args.soft, args.uncertainty, several):
            check_not_input(extra, {**named, **{f"-i {s}": s for s, _ in pairs}})
    rows = []
    for src, out in pairs:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", EmptyPredictionWarning)
            warnings.simplefilter("always", OrientationWarning)
            rows.append(predict_ensemble_file(members, src, out, args.tta, args.soft, args.uncertainty))
        print(f"wrote {out}")
        for w in caught:
            if issubclass(w.category, EmptyPredictionWarning):
                print(f"warning: {w.message}", file=sys.stderr)
            elif issubclass(w.category, OrientationWarning):
                print(f"warning: {src}: {w.message}", file=sys.stderr)
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if args.qc:
        from runs.subject_outputs import write_predict_qc

        summaries = {out: r for (_, out), r in zip(pairs, rows)} if args.uncertainty else None
        index = write_predict_qc(pairs, args.qc, module.hparams.get("classes"), uncertainty=summaries)
        print(f"QC report: {index}")
    return 0


def _bids_pairs(args: argparse.Namespace, module, task: str) -> list[tuple[Path, Path]]:
    """(image, mask path) of every image of the BIDS tree to predict (as ``predict --bids``)."""
    from core.errors import InputError
    from data_modules import contrasts
    from data_modules.bids import BidsIndex
    from evaluation.native import prediction_path

    names = contrasts.requested(args.contrast, module.hparams)
    index = BidsIndex.from_dir(args.bids, strict=False)
    recs = [r for r in index.images if r.exists and contrasts.matches(names, r.contrast)]
    if not recs:
        raise InputError(f"no {'/'.join(names)} image to predict", args.bids)
    return [(Path(r.path), prediction_path(args.bids, r, task)) for r in recs]
