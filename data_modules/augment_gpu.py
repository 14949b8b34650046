"""Batch augmentation of 2D training slices on the training device (GPU or CPU).

The fast 2D pipeline (:mod:`data_modules.fast2d`) hands over, per sample, a *window* around the
sampled slice position that is larger than the patch, so that rotating/scaling it never shows
padding; this module warps whole batches, then crops the centred patch. It implements the same
augmentations, strengths and probability semantics as the torchio path
(:meth:`data_modules.base.SegmentationDataModule.augment`, ``data.augment.*``): each transform is
applied to a sample with probability ``min(1, p * strength)`` (drawn per slice here, per volume in
the torchio path), in the torchio order affine → elastic → bias field → gamma → noise.

- **affine** (kornia ``RandomAffine``): in-plane rotation U(±10·k)° and per-axis scale U(1 ± 0.1·k),
  no translation (torchio: ``RandomAffine(scales=0.1k, degrees=(0, 0, 10k))``).
- **elastic**: torchio's ``RandomElasticDeformation`` field — a 7×7 control grid over the subject's
  in-plane extent, the outer two rows/columns locked, free points displaced U(±2 mm) per axis —
  evaluated at the window's voxels by cubic interpolation of the control grid (torchio: cubic
  B-spline, slightly smoother) and applied with kornia's ``elastic_transform2d``.
- **bias field**: torchio's ``RandomBiasField`` (order 3, coefficients U(±0.3·k)): ``exp`` of a 3D
  polynomial in the volume's normalised coordinates, evaluated on the slice's voxels.
- **gamma**: ``sign(x)·|x|^γ``, log γ ~ U(±0.2·k) (torchio's rule for images with negative values).
- **noise**: additive Gaussian, std ~ U(0, 0.1·k).

Masks: the label's one-hot channels are warped with the image (same bilinear sampling) and the
class is their argmax (background as one minus the others, exact since the warp is linear) — argmax-consistent with the image: a binary mask used as an image and
thresholded at 0.5 after the warp gives exactly the warped mask. Intensity transforms never touch
the mask. All random draws use torch's global generator on the batch's device (seeded by
``seed_everything``; deterministic for one seed on CPU).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

ELASTIC_CONTROL_POINTS = 7
ELASTIC_LOCKED_BORDERS = 2
ELASTIC_MAX_MM = 2.0
BIAS_ORDER = 3


def probabilities(augment: dict[str, Any]) -> dict[str, float]:
    """``min(1, p * strength)`` per transform (all 0 when ``strength`` is 0), as in the torchio path."""
    k = float(augment["strength"])
    names = ("affine", "elastic", "bias_field", "gamma", "noise")
    return {n: (min(1.0, float(augment[n]) * k) if k > 0 else 0.0) for n in names}


def window_margin(patch: tuple[int, int], augment: dict[str, Any], min_spacing_mm: float) -> int:
    """Voxels of context on each side of the patch so that no warp samples outside the window."""
    p = probabilities(augment)
    k = float(augment["strength"])
    if p["affine"] <= 0 and p["elastic"] <= 0:
        return 0
    half = [s / 2 for s in patch]
    need = max(half)
    if p["affine"] > 0:
        theta = math.radians(min(10 * k, 90.0))
        angles = [theta * i / 64 for i in range(65)]
        reach = max(
            max(
                half[0] * abs(math.cos(a)) + half[1] * abs(math.sin(a)),
                half[1] * abs(math.cos(a)) + half[0] * abs(math.sin(a)),
            )
            for a in angles
        )
        need = reach / max(1.0 - 0.1 * k, 0.5)
    if p["elastic"] > 0:
        need += ELASTIC_MAX_MM / max(min_spacing_mm, 1e-3)
    return int(math.ceil(need - min(half))) + 2


def foreground_channels(label: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """One-hot channels of classes 1..C-1 (B, C-1, H, W); background is implied (1 - their sum)."""
    lab = label[:, 0]
    return torch.stack([(lab == c).to(dtype) for c in range(1, num_classes)], dim=1)


def onehot_argmax(fg: torch.Tensor) -> torch.Tensor:
    """Argmax over (background = 1 - sum, foreground channels): (B, 1, H, W) long; ties go to the lower class.

    A channel loop rather than ``Tensor.argmax(1)``, which is ~40x slower on CPU for a few channels.
    """
    best = 1 - fg.sum(1)
    out = torch.zeros(best.shape, dtype=torch.long, device=fg.device)
    for c in range(fg.shape[1]):
        better = fg[:, c] > best
        best = torch.where(better, fg[:, c], best)
        out = torch.where(better, torch.full_like(out, c + 1), out)
    return out[:, None]


class BatchAugment(torch.nn.Module):
    """Augment a batch of windows ``(B, 1, W0, W1)`` and crop the centred ``patch`` (see module doc).

    ``where`` gives, per sample, the window's first voxel in the volume (``origin``, (B, 2)), the
    slice index ``z`` (B,), the volume ``shape`` (B, 3) and in-plane ``spacing`` (B, 2, mm): the
    bias field and elastic grid are defined over the volume, as in torchio.
    """

    def __init__(self, augment: dict[str, Any], patch: tuple[int, int], num_classes: int):
        super().__init__()
        self.p = probabilities(augment)
        self.k = float(augment["strength"])
        self.patch = (int(patch[0]), int(patch[1]))
        self.num_classes = int(num_classes)
        self.affine = None
        if self.p["affine"] > 0:
            import kornia.augmentation as K

            s = (1 - 0.1 * self.k, 1 + 0.1 * self.k)
            self.affine = K.RandomAffine(
                degrees=10 * self.k, scale=(*s, *s), p=self.p["affine"], padding_mode="border", align_corners=False
            )

    # ---------------------------------------------------------------------------------- pieces
    def _draw(self, name: str, n: int, device: torch.device) -> torch.Tensor:
        return torch.rand(n, device=device) < self.p[name]

    def _elastic(self, x: torch.Tensor, where: dict[str, torch.Tensor]) -> torch.Tensor:
        from kornia.geometry.transform import elastic_transform2d

        sel = self._draw("elastic", x.shape[0], x.device)
        if not bool(sel.any()):
            return x
        b, (w0, w1) = int(sel.sum()), x.shape[-2:]
        n = ELASTIC_CONTROL_POINTS
        coarse = (torch.rand(b, 2, n, n, device=x.device) * 2 - 1) * ELASTIC_MAX_MM  # mm, channels (axis0, axis1)
        lb = ELASTIC_LOCKED_BORDERS
        inner = torch.zeros_like(coarse)
        inner[:, :, lb : n - lb, lb : n - lb] = 1
        coarse = coarse * inner / where["spacing"][sel].to(x.dtype)[:, :, None, None]  # voxels
        # control points at -s, 0, s, ..., 5s over the volume extent L = 4s (SimpleITK mesh 4, order 3)
        shape = where["shape"][sel].to(x.dtype)
        origin = where["origin"][sel].to(x.dtype)
        t0 = origin[:, 0, None] + torch.arange(w0, device=x.device, dtype=x.dtype)
        t1 = origin[:, 1, None] + torch.arange(w1, device=x.device, dtype=x.dtype)
        g0 = (t0 / (shape[:, 0, None] - 1).clamp(min=1) * 4 + 1) / (n - 1) * 2 - 1
        g1 = (t1 / (shape[:, 1, None] - 1).clamp(min=1) * 4 + 1) / (n - 1) * 2 - 1
        grid = torch.stack(
            torch.broadcast_tensors(g1[:, None, :], g0[:, :, None]), dim=-1
        )  # (b, w0, w1, [x=axis1, y=axis0])
        field = F.grid_sample(coarse, grid, mode="bicubic", align_corners=True)  # (b, 2, w0, w1) voxels
        noise = torch.stack([field[:, 1] * 2 / w1, field[:, 0] * 2 / w0], dim=1)  # kornia: (x, y) normalised
        out = x.clone()
        out[sel] = elastic_transform2d(x[sel], noise, (1, 1), (1.0, 1.0), (1.0, 1.0), False, "bilinear", "border")
        return out

    def _bias(self, img: torch.Tensor, where: dict[str, torch.Tensor], off: tuple[int, int]) -> torch.Tensor:
        sel = self._draw("bias_field", img.shape[0], img.device)
        b, (p0, p1) = img.shape[0], img.shape[-2:]
        dev, dt = img.device, img.dtype
        shape, origin = where["shape"].to(dt), where["origin"].to(dt)

        def norm(t: torch.Tensor, n: torch.Tensor) -> torch.Tensor:  # torchio: (t - n/2 + 0.5) / max
            half = (n / 2 - 0.5)[:, None]
            return (t - n[:, None] / 2 + 0.5) / torch.where(half > 0, half, torch.ones_like(half))

        order = BIAS_ORDER + 1
        powers = torch.arange(order, device=dev, dtype=dt)
        x = norm(origin[:, 0, None] + off[0] + torch.arange(p0, device=dev, dtype=dt), shape[:, 0])
        y = norm(origin[:, 1, None] + off[1] + torch.arange(p1, device=dev, dtype=dt), shape[:, 1])
        z = norm(where["z"].to(dt)[:, None], shape[:, 2])  # (b, 1)
        terms = [(i, j, m) for i in range(order) for j in range(order - i) for m in range(order - i - j)]
        coef = (torch.rand(b, len(terms), device=dev, dtype=dt) * 2 - 1) * (0.3 * self.k)  # torchio's order
        full = torch.zeros(b, order, order, order, device=dev, dtype=dt)
        idx = torch.tensor(terms, device=dev)
        full[:, idx[:, 0], idx[:, 1], idx[:, 2]] = coef
        a = (full * z.pow(powers)[:, None, None, :]).sum(-1)  # (b, i, j): z terms folded in
        xp = x[:, None, :].pow(powers[None, :, None])  # (b, i, p0)
        yp = y[:, None, :].pow(powers[None, :, None])  # (b, j, p1)
        field = torch.einsum("bip,bij,bjq->bpq", xp, a, yp)
        return torch.where(sel[:, None, None, None], img * torch.exp(field)[:, None], img)

    def _gamma(self, img: torch.Tensor) -> torch.Tensor:
        sel = self._draw("gamma", img.shape[0], img.device)
        log_g = (torch.rand(img.shape[0], device=img.device, dtype=img.dtype) * 2 - 1) * 0.2 * self.k
        g = torch.where(sel, log_g.exp(), torch.ones_like(log_g))[:, None, None, None]
        return torch.where(sel[:, None, None, None], img.sign() * img.abs() ** g, img)

    def _noise(self, img: torch.Tensor) -> torch.Tensor:
        sel = self._draw("noise", img.shape[0], img.device)
        std = torch.rand(img.shape[0], device=img.device, dtype=img.dtype) * 0.1 * self.k * sel
        return img + torch.randn_like(img) * std[:, None, None, None]

    # --------------------------------------------------------------------------------- forward
    @torch.no_grad()
    def forward(
        self, image: torch.Tensor, label: torch.Tensor, where: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(image (B, 1, P0, P1) float, label (B, 1, P0, P1) long) from windows (B, 1, W0, W1)."""
        image = image.float()
        w0, w1 = image.shape[-2:]
        off = ((w0 - self.patch[0]) // 2, (w1 - self.patch[1]) // 2)
        if self.p["affine"] > 0 or self.p["elastic"] > 0:
            x = torch.cat([image, foreground_channels(label, self.num_classes, image.dtype)], dim=1)
            if self.affine is not None:
                x = self.affine(x)
            if self.p["elastic"] > 0:
                x = self._elastic(x, where)
            x = x[..., off[0] : off[0] + self.patch[0], off[1] : off[1] + self.patch[1]]
            image, label = x[:, :1].contiguous(), onehot_argmax(x[:, 1:])
        else:
            image = image[..., off[0] : off[0] + self.patch[0], off[1] : off[1] + self.patch[1]].contiguous()
            label = label[..., off[0] : off[0] + self.patch[0], off[1] : off[1] + self.patch[1]].long()
        if self.p["bias_field"] > 0:
            image = self._bias(image, where, off)
        if self.p["gamma"] > 0:
            image = self._gamma(image)
        if self.p["noise"] > 0:
            image = self._noise(image)
        return image, label
