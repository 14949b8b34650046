"""``SegmentationModule``: one LightningModule for every registered network.

Training: Dice + cross-entropy on 2D axial slices or 3D patches from the torchio queue,
AdamW with a cosine or poly schedule (optional linear warm-up). Validation and test run on
whole subjects (slice by slice in 2D, sliding window in 3D): validation logs Dice per class
each epoch (``val/dice`` is the mean over subjects of the mean over scored classes, the
checkpoint metric); test computes the full metric set per subject — on the subject's native
grid by default — and keeps it in :attr:`test_records` for
the per-subject statistics of the leaderboard. Under DDP the per-subject records of all ranks
are gathered before any mean (every subject once), so both equal a single-process evaluation.
The ``preprocessing`` hyper-parameter is the run's preprocessing contract
(``data_modules.preprocessing``), so ``predict`` rebuilds the training chain. Hyper-parameters are plain Python values so
checkpoints load with ``torch.load(weights_only=True)``.

The label map of a subject (argmax and the run's ``postprocess`` rule) and its test record come from
:attr:`SegmentationModule.evaluator`, an object with the methods ``labels(probs, postprocess)`` and
``score(pred, affine, target, subject, classes, datamodule)`` (``evaluation.evaluator.SubjectEvaluator``),
which the runs layer attaches to every module it builds or loads: this package holds no evaluation code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from core.distributed import gather_records
from core.errors import ConfigError, CordbenchError
from core.schema import default
from lightning_modules.registry import build_network
from lightning_modules.schedule import lr_factor
from lightning_modules.volume import volume_probabilities


class TrainingDivergedError(CordbenchError):
    """The loss became NaN or infinite."""


def class_dice(pred: torch.Tensor, target: torch.Tensor, classes: dict[str, list[int]]) -> dict[str, float]:
    """Dice per scored class (a class may group several label values); both empty → 1."""
    out = {}
    for name, values in classes.items():
        p = torch.isin(pred, torch.as_tensor(values, device=pred.device))
        t = torch.isin(target, torch.as_tensor(values, device=target.device))
        denom = int(p.sum() + t.sum())
        out[name] = 1.0 if denom == 0 else float(2 * (p & t).sum()) / denom
    return out


class SegmentationModule(pl.LightningModule):
    """Wraps a registered network with loss, optimiser, schedule, inference and metrics."""

    # Defaults of the arguments a run config sets are the config schema's (core.schema; a recipe key's fallback):
    # a checkpoint saved before an argument existed loads with the value such runs had.
    def __init__(
        self,
        network: str = default("model.name"),
        preset: str | None = default("model.preset"),
        options: dict[str, Any] | None = None,
        num_classes: int = 2,
        in_channels: int = 1,
        spatial_dims: int = default("data.spatial_dims"),
        classes: dict[str, list[int]] | None = None,
        patch_size: list[int] | None = None,
        lr: float = default("model.lr"),
        weight_decay: float = default("model.weight_decay"),
        scheduler: str = default("model.scheduler"),
        warmup_epochs: int = default("model.warmup_epochs"),
        dice_weight: float = default("model.dice_weight"),
        ce_weight: float = default("model.ce_weight"),
        inference_batch: int = 32,
        log_images: bool = default("logger.wandb.log_images"),
        spacing: list[float] | None = None,
        task: str = default("data.task"),
        contrast: str = "T2w",
        preprocessing: dict[str, Any] | None = None,
        postprocess: str = "none",
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = build_network(
            network,
            in_channels=in_channels,
            num_classes=num_classes,
            spatial_dims=spatial_dims,
            preset=preset,
            **(options or {}),
        )
        self.classes = {k: list(v) for k, v in (classes or {"fg": list(range(1, num_classes))}).items()}
        from monai.losses import DiceCELoss

        self.loss_fn = DiceCELoss(
            to_onehot_y=True, softmax=True, include_background=False, lambda_dice=dice_weight, lambda_ce=ce_weight
        )
        self.val_records: list[dict[str, Any]] = []
        self.test_records: list[dict[str, Any]] = []
        self._val_epoch: list[dict[str, float]] = []
        self.evaluator: Any = None  # label maps and test records (see the module docstring)

    # ---------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _batch(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch["image"]["data"].float()
        y = batch["label"]["data"].long()
        if self.hparams.spatial_dims == 2:  # patches are (B, C, H, W, 1)
            x, y = x[..., 0], y[..., 0]
        return x, y

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        x, y = self._batch(batch)
        loss = self.loss_fn(self(x), y)
        if not torch.isfinite(loss):
            raise TrainingDivergedError(f"loss is {loss.item()} at epoch {self.current_epoch}, step {self.global_step}")
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=x.shape[0], sync_dist=True)
        return loss

    # -------------------------------------------------------------------------------- inference
    @torch.no_grad()
    def predict_volume(self, volume: torch.Tensor) -> torch.Tensor:
        """Class probabilities (1, C, X, Y, Z) for a preprocessed volume (1, 1, X, Y, Z)."""
        return volume_probabilities(self, volume, self.hparams)

    def _subject_prediction(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Label map (argmax + the run's post-processing, as ``predict``) and target of one subject."""
        probs = self.predict_volume(batch["image"]["data"].float())
        labels = self._evaluator().labels(probs[0], str(self.hparams.get("postprocess") or "none"))
        return labels, batch["label"]["data"][0, 0].long()

    def _evaluator(self) -> Any:
        if self.evaluator is None:
            raise ConfigError(
                "SegmentationModule.evaluator is not set: build the module with runs.runner.build_module "
                "or load it with runs.checkpoints.load_module"
            )
        return self.evaluator

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        pred, target = self._subject_prediction(batch)
        dice = class_dice(pred, target, self.classes)
        self._val_epoch.append({"subject": batch["subject_id"][0], **dice})
        if batch_idx == 0 and self.hparams.log_images:
            self._log_overlay(batch, pred, target)

    def on_validation_epoch_end(self) -> None:
        # every rank's subjects, each once (DDP): the same full-set value on every rank
        records, self._val_epoch = gather_records(self._val_epoch), []
        if not records:
            return
        for name in self.classes:
            self.log(f"val/{name}/dice", float(np.mean([d[name] for d in records])), sync_dist=True)
        mean = float(np.mean([np.mean([d[name] for name in self.classes]) for d in records]))
        self.log("val/dice", mean, prog_bar=True, sync_dist=True)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        pred, target = self._subject_prediction(batch)
        affine = np.asarray(batch["image"]["affine"][0], dtype=float)
        record, native = self._evaluator().score(
            pred.cpu().numpy(),
            affine,
            target.cpu().numpy(),
            batch["subject_id"][0],
            self.classes,
            getattr(self.trainer, "datamodule", None),
        )
        # the image's contrast: a multi-contrast run's subjects carry theirs, else the data's (the checkpoint's)
        dm = getattr(self.trainer, "datamodule", None)
        own = batch["contrast"][0] if "contrast" in batch else getattr(dm, "contrast", self.hparams.get("contrast"))
        record["contrast"] = str(own)
        self.test_records.append(record)
        return {"native_prediction": native}

    def on_test_epoch_start(self) -> None:
        self.test_records = []

    def on_test_epoch_end(self) -> None:
        """Gather every rank's subjects (each once, single-process order); log the mean Dice per class."""
        self.test_records = gather_records(self.test_records)
        keys = [
            k for k in (self.test_records[0] if self.test_records else {}) if k.endswith("/dice") and k.count("/") == 1
        ]
        for key in keys:
            self.log(f"test/{key}", float(np.mean([float(r[key]) for r in self.test_records])), sync_dist=True)

    # ------------------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.scheduler == "none":
            return opt
        total = max(1, int(self.trainer.max_epochs or 1))
        warm = int(self.hparams.warmup_epochs)
        kind = self.hparams.scheduler

        def factor(epoch: int) -> float:
            return lr_factor(epoch, kind, warm, total)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    # ---------------------------------------------------------------------------------- logging
    def _log_overlay(self, batch: dict[str, Any], pred: torch.Tensor, target: torch.Tensor) -> None:
        """Middle foreground slice with predicted and true masks, to wandb when it is the logger."""
        logger = next((lg for lg in self.loggers if type(lg).__name__ == "WandbLogger"), None)
        if logger is None:
            return
        z_fg = torch.nonzero(target.sum(dim=(0, 1)))
        z = int(z_fg[len(z_fg) // 2]) if len(z_fg) else target.shape[-1] // 2
        img = batch["image"]["data"][0, 0, :, :, z].float().cpu().numpy()
        img = (img - img.min()) / max(1e-6, float(img.max() - img.min()))
        try:
            import wandb

            logger.experiment.log(
                {
                    "val/overlay": wandb.Image(
                        np.rot90(img),
                        masks={
                            "prediction": {"mask_data": np.rot90(pred[:, :, z].cpu().numpy())},
                            "ground_truth": {"mask_data": np.rot90(target[:, :, z].cpu().numpy())},
                        },
                    ),
                    "epoch": self.current_epoch,
                }
            )
        except Exception:  # a logging problem must never fail a run
            pass
