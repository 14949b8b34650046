"""``MODEL_CARD.md``: what a trained model is, what it was trained and tested on, and what it is not for.

Written into a run folder at the end of ``cordbench fit`` / ``test`` (:func:`refresh_model_card`), by the
leaderboard for each entry's best trial, and into an export folder by ``cordbench export``. Every figure
comes from the run's own records: the checkpoint's hyper-parameters (architecture, preset, options,
preprocessing contract, post-processing, class map), ``data.json`` / ``split.json``, ``test_metrics.csv``
(phantom or labelled data of the run's data set) and ``real_metrics.csv`` (``test --real``, per contrast),
``provenance.json``. Parameters and FLOPs are counted on the rebuilt network
(:func:`lightning_modules.flops.flop_counter`: 2 FLOPs per multiply-add, one forward pass of batch 1 at
the training patch size). Each metric's 95 % CI is the percentile bootstrap of the mean over subjects
(:func:`core.bootstrap.bootstrap_ci`, 10 000 resamples, seed 0, non-finite values left out), the
leaderboard's definition. A missing record leaves its section saying so; a card is never a reason for a
run to fail (:func:`refresh_model_card` warns instead).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

#: Image contrasts cordbench data sets provide (BIDS suffixes); a model has seen only its own.
KNOWN_CONTRASTS = ("T1w", "T2w", "T2star", "dwi")
N_BOOT = 10000


def network_cost(hp: dict[str, Any]) -> dict[str, Any]:
    """Parameters and forward GFLOPs of the checkpoint's network at ``1×1×patch`` (the training patch)."""
    import torch

    from lightning_modules.flops import flop_counter
    from lightning_modules.registry import build_network

    dims = int(hp.get("spatial_dims", 2))
    options = {k: v for k, v in (hp.get("options") or {}).items() if k != "pretrained"}
    net = build_network(
        str(hp.get("network")),
        in_channels=int(hp.get("in_channels", 1)),
        num_classes=int(hp.get("num_classes", 2)),
        spatial_dims=dims,
        preset=hp.get("preset"),
        **options,
    ).eval()
    patch = [int(p) for p in (hp.get("patch_size") or ([64, 64] if dims == 2 else [64, 64, 32]))][:dims]
    with torch.inference_mode(), flop_counter() as counter:
        net(torch.zeros(1, 1, *patch))
    return {
        "params": int(sum(p.numel() for p in net.parameters())),
        "gflops": counter.get_total_flops() / 1e9,
        "input": "×".join(map(str, (1, 1, *patch))),
    }


#: The metrics a card shows per class (all of them, and the per-rater scores, stay in the CSV files).
CARD_METRICS = ("dice", "jaccard", "tpr", "precision", "hd95", "msd")


def metric_rows(frame: Any) -> list[tuple[str, float, float, float, int]]:
    """``(metric, mean, ci_low, ci_high, n)`` of the ``<class>/<metric>`` columns (:data:`CARD_METRICS`) of a
    per-subject metrics table."""
    from core.bootstrap import bootstrap_ci

    rows = []
    for col in frame.columns:
        if col.count("/") != 1 or col.split("/")[1] not in CARD_METRICS:
            continue
        vals = frame[col].to_numpy()
        try:
            vals = vals.astype(float)
        except (TypeError, ValueError):
            continue
        fin = vals[np.isfinite(vals)]
        lo, hi = bootstrap_ci(fin, n_boot=N_BOOT, seed=0)
        rows.append((col, float(np.mean(fin)) if fin.size else float("nan"), lo, hi, int(fin.size)))
    return rows


def _table(rows: list[tuple[str, float, float, float, int]]) -> list[str]:
    out = ["| metric | mean | 95 % CI | n |", "|---|---|---|---|"]
    out += [f"| {m} | {v:.4f} | [{lo:.4f}, {hi:.4f}] | {n} |" for m, v, lo, hi, n in rows]
    return out


def _read(folder: Any, what: str) -> Any:
    try:
        return getattr(folder, what)()
    except Exception:
        return None


def render(folder: Any, hp: dict[str, Any], ckpt: str | Path | None) -> str:
    """The card's Markdown for run folder ``folder`` (a :class:`runs.run_folder.RunFolder`, or None)."""
    from core import __version__
    from runs import provenance

    data = (_read(folder, "read_data_description") if folder is not None else None) or {}
    split = (_read(folder, "read_split") if folder is not None else None) or {}
    prov = (folder.read_provenance() if folder is not None else None) or {}
    contrast = str(hp.get("contrast") or data.get("contrast") or "?")
    classes = hp.get("classes") or {}
    task = hp.get("task", "sc")
    lines = [
        f"# Model card: {hp.get('network')} ({hp.get('preset')}), task {task}",
        "",
        f"Written by cordbench {__version__} on {provenance.now()}"
        + (f" from the run folder `{folder.path}`." if folder is not None else "."),
        "",
        "## Model",
        "",
        f"- Architecture: `{hp.get('network')}`, preset `{hp.get('preset')}`, options "
        f"`{json.dumps(hp.get('options') or {}, sort_keys=True)}`",
        f"- Input: 1 channel ({contrast}), {int(hp.get('spatial_dims', 2))}D "
        + ("axial slices" if int(hp.get("spatial_dims", 2)) == 2 else "patches (sliding window)")
        + f"; output: {hp.get('num_classes')} classes, scored classes "
        + ", ".join(f"{k} = labels {v}" for k, v in classes.items()),
    ]
    try:
        cost = network_cost(hp)
        lines.append(
            f"- Parameters: {cost['params']:,}; FLOPs: {cost['gflops']:.3f} GFLOPs per forward pass at "
            f"{cost['input']} (2 FLOPs per multiply-add)"
        )
    except Exception as exc:
        lines.append(f"- Parameters and FLOPs: not available ({type(exc).__name__}: {exc})")
    if ckpt is not None and Path(ckpt).is_file():
        from core import io

        lines.append(f"- Checkpoint: `{ckpt}` (SHA-256 `{io.sha256(ckpt)}`)")
    lines += ["", *_data_section(data, split, prov), "", *_contract_section(hp), ""]
    lines += _metrics_section(folder, data)
    lines += ["", *_use_section(task, contrast, data), "", *_provenance_section(prov)]
    return "\n".join(lines) + "\n"


def _data_section(data: dict[str, Any], split: dict[str, Any], prov: dict[str, Any]) -> list[str]:
    ident = prov.get("data") or {}
    out = ["## Training data and split", ""]
    if not data:
        return out + ["No data description (`data.json`) beside this checkpoint."]
    out.append(
        f"- Data set: `{data.get('data')}`"
        + (f" ({ident.get('name')}" + (f", BIDS {ident['bids_version']}" if ident.get("bids_version") else "") + ")")
        * bool(ident.get("name"))
        + f", root `{data.get('root')}`, contrast {data.get('contrast')}, task {data.get('task')}"
    )
    counts = ", ".join(f"{len(split.get(k) or [])} {k}" for k in ("train", "val", "test"))
    out.append(f"- Split (`split.json`): {counts} subjects; test subjects: {', '.join(split.get('test') or []) or '-'}")
    if ident.get("files_sha256"):
        out.append(f"- Files used: {ident.get('n_files')} (SHA-256 of their list `{ident['files_sha256']}`)")
    if ident.get("git_commit"):
        out.append(
            f"- Data version: git commit `{ident['git_commit']}`" + (" (git-annex)" if ident.get("git_annex") else "")
        )
    if ident.get("phantom"):
        ph = ident["phantom"]
        out.append(
            f"- Synthetic: {ph.get('generator')} {ph.get('version')}, seed {ph.get('seed')}, "
            f"{ph.get('n_subjects')} subjects, options `{json.dumps(ph.get('options'), sort_keys=True)}`"
        )
    licence = ident.get("licence") or ("generated by cordbench (MIT)" if ident.get("phantom") else None)
    out.append(f"- Licence of the training data: {licence or 'not stated in the data set'}")
    return out


def _contract_section(hp: dict[str, Any]) -> list[str]:
    from data_modules.preprocessing import Preprocessing

    pre = Preprocessing.from_hparams(hp).to_dict()
    return [
        "## Preprocessing contract and post-processing",
        "",
        "Every image goes through this chain before the network (reorientation to RAS, resampling to "
        "`spacing`, in-plane crop/pad centred on the field of view, z-score, zero padding to `min_shape`; "
        "`data_modules/preprocessing.py`); the argmax label map is post-processed and written back onto the "
        "input's own grid (nearest neighbour in world coordinates).",
        "",
        "```json",
        json.dumps(pre, indent=2, sort_keys=True),
        "```",
        "",
        f"Post-processing: `{hp.get('postprocess') or 'none'}`.",
    ]


def _metrics_section(folder: Any, data: dict[str, Any]) -> list[str]:
    out = ["## Test metrics", ""]
    kind = "phantom" if data.get("data") == "phantom" else f"`{data.get('data')}`"
    frame = _read(folder, "read_test_metrics") if folder is not None else None
    summary = (_read(folder, "read_test_summary") if folder is not None else None) or {}
    if frame is not None and len(frame):
        out += [
            f"Held-out subjects of the {kind} data ({len(frame)} subjects, scored on the "
            f"{summary.get('scoring', 'native')} grid; mean and 95 % percentile-bootstrap CI over subjects):",
            "",
            *_table(metric_rows(frame)),
            "",
            "Every metric per subject (and per rater where the data have several): `test_metrics.csv`; distances in mm.",
        ]
    else:
        out.append("No test metrics (`test_metrics.csv`) in this run folder.")
    real = _read(folder, "read_real_metrics") if folder is not None and folder.real_metrics.exists() else None
    if real is not None and len(real):
        from data_modules.real import MANUAL

        for contrast, grp in real.groupby("contrast"):
            manual = grp[[c for c in grp.columns if c.endswith("/dice")]].copy()
            for col in manual.columns:  # ground truth = manual masks only (as real_summary.json's metrics)
                ref = grp.get(col.replace("/dice", "/reference"))
                manual[col] = manual[col].where(ref == MANUAL) if ref is not None else float("nan")
            rows = [r for r in metric_rows(manual) if r[4]]
            if rows:
                out += ["", f"Real labelled scans, contrast {contrast} (manual masks, {len(grp)} images):", ""]
                out += _table(rows)
        out += ["", "Per image, and the agreement with automatic references: `real_metrics.csv`."]
    else:
        out += ["", "No real-data test (`cordbench test --real`) recorded."]
    return out


def _use_section(task: str, contrast: str, data: dict[str, Any]) -> list[str]:
    seen = set(data.get("contrasts") or contrast.split("+"))  # a multi-contrast run's images (data.json)
    unseen = [c for c in KNOWN_CONTRASTS if c not in seen and not (c == "dwi" and "rec-average_dwi" in seen)]
    out = [
        "## Intended use and known limitations",
        "",
        f"- Intended use: research segmentation (task `{task}`) of {contrast} cervical spinal cord MRI, "
        "through `cordbench predict` (or an export of it); not a medical device, not for clinical decisions.",
        f"- Contrasts never seen in training: {', '.join(unseen) or 'none of ' + ', '.join(KNOWN_CONTRASTS)}; "
        "expect failures on unseen ones.",
        "- The label-free crop is centred on the field of view: a cord far from the image centre may fall "
        "outside a small `crop`.",
    ]
    if data.get("data") == "phantom":
        out.append("- Trained on synthetic phantoms only: real-scan performance is what the real-data test shows.")
    return out


def _provenance_section(prov: dict[str, Any]) -> list[str]:
    out = ["## Provenance", ""]
    if not prov:
        return out + ["No `provenance.json` in this run folder."]
    git, hw = prov.get("git") or {}, prov.get("hardware") or {}
    dirty = " with uncommitted changes (diff SHA-256 `" + str(git.get("diff_sha256")) + "`)" if git.get("dirty") else ""
    out += [
        f"- Code: cordbench {prov.get('cordbench')}, commit `{git.get('commit')}`{dirty}",
        f"- Python {prov.get('python')}; "
        + ", ".join(f"{k} {v}" for k, v in (prov.get("packages") or {}).items() if v)
        + " (all packages: `pip_freeze.txt`)",
        f"- Hardware: {hw.get('cpu')} ({hw.get('cpu_count')} logical CPUs); GPU: "
        + (f"{hw.get('gpu')} ×{hw.get('gpu_count')}, CUDA {hw.get('cuda')}" if hw.get("gpu_count") else "none"),
        f"- Command: `{' '.join(prov.get('command') or [])}`; started {prov.get('started')}, ended {prov.get('ended')}",
    ]
    return out


def refresh_model_card(folder: Any, ckpt: str | Path | None = None) -> Path | None:
    """(Re)write ``MODEL_CARD.md`` of a run folder from its best (else last, else ``ckpt``) checkpoint.

    Never fatal: a problem is one warning and no card.
    """
    from runs.checkpoints import read_checkpoint

    try:
        ckpt = ckpt or next((c for c in (folder.best_ckpt, folder.last_ckpt) if c.is_file()), None)
        if ckpt is None:
            return None
        hp = dict(read_checkpoint(ckpt)["hyper_parameters"])
        return folder.write_model_card(render(folder, hp, ckpt))
    except Exception as exc:
        warnings.warn(f"{folder.path}: no model card ({type(exc).__name__}: {exc})", RuntimeWarning, stacklevel=2)
        return None
