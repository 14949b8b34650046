"""Whole-volume inference of a 2D or 3D segmentation network: the one owner of slice batching and the sliding window.

Used by :meth:`lightning_modules.module.SegmentationModule.predict_volume` (validation, test, ``predict``)
and by exported models (``evaluation.exported``), which swap only the forward pass.

The label-free rule of the run's preprocessing contract (``hparams["preprocessing"]["inference"]``,
:mod:`data_modules.preprocessing`; ``centre`` when the checkpoint recorded none) picks how the network
covers the preprocessed volume. A contract without ``crop`` has kept the whole image already: every rule
then runs as ``centre`` (so such runs keep their numbers).

* ``centre`` — the volume is the FOV-centred crop: 2D runs every axial slice whole, in batches of
  ``inference_batch``; 3D runs MONAI's sliding window over ``patch_size`` patches (overlap 0.25).
* ``sliding`` — MONAI's ``sliding_window_inference`` over the whole slices: windows of the contract's
  ``crop`` (at least the patch) for 2D, of ``patch_size`` for 3D; the contract's ``inference_overlap`` and
  ``inference_blend`` (Gaussian by default); the class probabilities of overlapping windows are blended.
  2D slices go ``inference_batch`` at a time, so memory is bounded by that many slices; the 3D output
  is accumulated on the CPU, each window computed on the network's device.
* ``localise`` — the sliding pass, then its cord (the largest 26-connected foreground component thin
  enough to be one — in-plane spread at most an eighth of the crop, i.e. a diameter up to half of it —
  joined by smaller ones on the slices it misses that continue it: :func:`cord_track`); the centre of the cord in
  each slice, linearly interpolated over the slices where it is absent
  (constant beyond its ends) and smoothed along the slices (Gaussian, sigma ``LOCALISE_SIGMA`` slices);
  where nothing is found, the centre of the field of view. Each slice's ``crop`` window centred on that
  track is cut out, the stack z-scored on its own voxels and segmented as under ``centre`` (the crops
  the network was trained on), and pasted back: background outside the windows. Z-scoring the stack
  makes what the fine pass sees independent of how much body or air the field of view holds around the
  cord (a z-score is affine, so this equals z-scoring the resampled image's crops, Perone's
  ``zscore-after-crop``); the coarse pass keeps the contract's normalisation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

RULES = ("centre", "sliding", "localise")
LOCALISE_SIGMA = 2.0  # slices: smoothing of the cord's track along the slice axis
MAX_PIECES = 32  # largest components of the coarse pass considered as pieces of the cord


def inference_rule(hparams: Any) -> str:
    """The label-free rule recorded in ``hparams`` (``centre`` for checkpoints that recorded none)."""
    pre = hparams.get("preprocessing") or {}
    return str(pre.get("inference") or "centre")


def volume_probabilities(forward: Any, volume: torch.Tensor, hparams: Any) -> torch.Tensor:
    """Class probabilities (1, C, X, Y, Z) of a preprocessed volume (1, 1, X, Y, Z) through ``forward``.

    ``forward`` maps a batch to logits: the module itself, or an exported network
    (``evaluation.exported``), so both predict through this one function; the rule is the module
    docstring's.
    """
    rule = inference_rule(hparams)
    if rule == "centre" or not (hparams.get("preprocessing") or {}).get("crop"):  # no crop: already the whole image
        return _direct(forward, volume, hparams)
    if rule == "sliding":
        return _sliding(forward, volume, hparams)
    if rule == "localise":
        return _localise(forward, volume, hparams)
    raise ValueError(f"unknown inference rule {rule!r} (one of {RULES})")


def _direct(forward: Any, volume: torch.Tensor, hparams: Any) -> torch.Tensor:
    """The ``centre`` pass: whole slices in batches (2D), ``patch_size`` sliding window (3D)."""
    if int(hparams.get("spatial_dims", 2)) == 2:
        slices = volume[0].permute(3, 0, 1, 2)  # (Z, 1, X, Y): axial slices in RAS
        batch = int(hparams.get("inference_batch") or 32)
        outs = [torch.softmax(forward(chunk), dim=1) for chunk in torch.split(slices, batch)]
        return torch.cat(outs).permute(1, 2, 3, 0)[None]
    from monai.inferers import sliding_window_inference

    roi = tuple(hparams.get("patch_size") or (64, 64, 32))
    logits = sliding_window_inference(volume, roi, sw_batch_size=4, predictor=forward, overlap=0.25)
    return torch.softmax(logits, dim=1)


def window(hparams: Any) -> tuple[int, ...]:
    """The sliding window: for 2D the larger of the contract's ``crop`` and the patch per axis (the size
    ``centre`` runs and an export is traced at), for 3D ``patch_size``."""
    pre = hparams.get("preprocessing") or {}
    if int(hparams.get("spatial_dims", 2)) == 3:
        return tuple(int(v) for v in (hparams.get("patch_size") or (64, 64, 32)))
    patch = [int(v) for v in (hparams.get("patch_size") or (64, 64))[:2]]
    crop = pre.get("crop") or patch
    return tuple(max(int(c), p) for c, p in zip(crop[:2], patch))


def crop_size(hparams: Any) -> tuple[int, int]:
    """The in-plane window of the fine pass of ``localise``: as :func:`window` for 2D, the contract's
    ``crop`` (else the patch) for 3D."""
    if int(hparams.get("spatial_dims", 2)) == 2:
        return window(hparams)[:2]  # type: ignore[return-value]
    crop = (hparams.get("preprocessing") or {}).get("crop") or window(hparams)
    return int(crop[0]), int(crop[1])


def _sliding(forward: Any, volume: torch.Tensor, hparams: Any) -> torch.Tensor:
    """MONAI's sliding window over the whole volume, blending class probabilities (module docstring)."""
    from monai.inferers import sliding_window_inference

    pre = hparams.get("preprocessing") or {}
    overlap = float(pre.get("inference_overlap", 0.25))
    mode = str(pre.get("inference_blend") or "gaussian")
    batch = int(hparams.get("inference_batch") or 32)

    def probs(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(forward(x), dim=1)

    roi = window(hparams)
    if int(hparams.get("spatial_dims", 2)) == 2:
        slices = volume[0].permute(3, 0, 1, 2)  # (Z, 1, X, Y)
        outs = [
            sliding_window_inference(chunk, roi, sw_batch_size=batch, predictor=probs, overlap=overlap, mode=mode)
            for chunk in torch.split(slices, batch)
        ]
        return torch.cat(outs).permute(1, 2, 3, 0)[None]
    return sliding_window_inference(
        volume,
        roi,
        sw_batch_size=4,
        predictor=probs,
        overlap=overlap,
        mode=mode,
        sw_device=volume.device,
        device=torch.device("cpu"),
    ).to(volume.device)


def cord_track(probs: torch.Tensor, reach: float = 24.0, spread: float = 6.0) -> np.ndarray | None:
    """The (x, y) centre per slice (Z, 2) of the cord found in ``probs`` (1, C, X, Y, Z); None when no
    foreground is found.

    Pieces are the ``MAX_PIECES`` largest 26-connected foreground components that are thin like a cord:
    the median over their slices of the larger in-plane standard deviation of their voxels' positions is at
    most ``spread`` voxels (a disc of diameter d has d / 4; a band along the image's edge or a blotch of
    tissue is wider). The cord is the piece of highest mean foreground probability among those at least
    half the size of the largest, joined by the next largest ones that lie
    on slices it does not cover and start within ``reach`` voxels (in-plane) of its end (a cord broken by
    slices the pass missed; a parallel false positive shares slices with it and is left out). The centre
    is interpolated linearly over the slices without it (constant beyond its ends), then smoothed along
    the slices (Gaussian, ``LOCALISE_SIGMA``).
    """
    from scipy import ndimage

    fg = (probs[0].argmax(0) > 0).cpu().numpy()
    lab, n = ndimage.label(fg, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return None
    nz = fg.shape[2]
    order = np.argsort(-np.bincount(lab.ravel())[1:], kind="stable")[:MAX_PIECES]  # largest first
    rank = np.full(n + 1, -1)
    rank[order + 1] = np.arange(len(order))
    idx = np.nonzero(rank[lab] >= 0)
    key = rank[lab[idx]] * nz + idx[2]  # (piece, slice) of each of their voxels
    size = len(order) * nz
    count = np.bincount(key, minlength=size).reshape(-1, nz)
    sx = np.bincount(key, weights=idx[0], minlength=size).reshape(-1, nz)
    sy = np.bincount(key, weights=idx[1], minlength=size).reshape(-1, nz)
    sxx = np.bincount(key, weights=idx[0].astype(float) ** 2, minlength=size).reshape(-1, nz)
    syy = np.bincount(key, weights=idx[1].astype(float) ** 2, minlength=size).reshape(-1, nz)
    p_fg = 1.0 - probs[0, 0].cpu().numpy()[idx]
    confidence = np.bincount(key // nz, weights=p_fg, minlength=len(order)) / np.maximum(count.sum(axis=1), 1)
    thin = []
    for comp in range(len(order)):
        zs = np.flatnonzero(count[comp])
        c = count[comp, zs]
        var = np.maximum(sxx[comp, zs] / c - (sx[comp, zs] / c) ** 2, syy[comp, zs] / c - (sy[comp, zs] / c) ** 2)
        if np.median(np.sqrt(np.maximum(var, 0))) <= spread:  # else not a cord's cross-section
            thin.append(comp)
    big = [c for c in thin if count[c].sum() >= 0.5 * count[thin[0]].sum()] if thin else []
    first = max(big, key=lambda c: confidence[c]) if big else None  # the surest of the large thin pieces
    centres: dict[int, np.ndarray] = {}
    for comp in ([first] + [c for c in thin if c != first]) if big else []:
        zs = np.flatnonzero(count[comp])
        found = {int(z): np.array([sx[comp, z], sy[comp, z]]) / count[comp, z] for z in zs}
        if centres:
            if any(z in centres for z in found):
                continue
            near = min(centres, key=lambda z: min(abs(z - k) for k in found))
            start = min(found, key=lambda k: abs(k - near))
            if np.linalg.norm(found[start] - centres[near]) > reach:
                continue
        centres.update(found)
    if not centres:
        return None
    zs = np.array(sorted(centres))
    pts = np.array([centres[int(z)] for z in zs])
    allz = np.arange(fg.shape[2])
    track = np.stack([np.interp(allz, zs, pts[:, i]) for i in range(2)], axis=1)
    if len(allz) > 1:
        track = ndimage.gaussian_filter1d(track, LOCALISE_SIGMA, axis=0, mode="nearest")
    return track


def _zscore(x: torch.Tensor) -> torch.Tensor:
    """``x`` z-scored on its own voxels (a constant stack stays as it is)."""
    std = x.std()
    return (x - x.mean()) / std if float(std) > 0 else x


def _localise(forward: Any, volume: torch.Tensor, hparams: Any) -> torch.Tensor:
    """Find the cord with the sliding pass, then segment ``crop`` windows centred on it slice by slice."""
    coarse = _sliding(forward, volume, hparams)
    size = crop_size(hparams)
    shape = volume.shape[2:5]
    track = cord_track(coarse, reach=max(size) / 2, spread=min(size) / 8)
    if track is None:  # nothing found: the centre of the field of view
        track = np.tile([(shape[0] - 1) / 2, (shape[1] - 1) / 2], (shape[2], 1))
    origins = [
        [int(np.clip(round(c - (s - 1) / 2), 0, max(0, n - s))) for c, s, n in zip(centre, size, shape[:2])]
        for centre in track
    ]
    sx, sy = min(size[0], shape[0]), min(size[1], shape[1])
    stack = torch.stack([volume[..., x : x + sx, y : y + sy, z] for z, (x, y) in enumerate(origins)], dim=-1)
    fine = _direct(forward, _zscore(stack), hparams)
    out = torch.zeros_like(coarse)
    out[:, 0] = 1.0
    for z, (x, y) in enumerate(origins):
        out[..., x : x + sx, y : y + sy, z] = fine[..., z]
    return out
