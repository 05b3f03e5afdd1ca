"""``ClassifierModule``: a network plus a typed optimizer/schedule config, as a LightningModule."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from lrtune.config import OptimizerConfig, ScheduleConfig, TrainConfig
from lrtune.models import create_model
from lrtune.optimizers import get_optimizer_info
from lrtune.schedules import create_scheduler

__all__ = ["ClassifierModule"]


class ClassifierModule(pl.LightningModule):
    """Image classifier trained with cross-entropy.

    Logs ``train_loss`` (epoch mean), ``val_loss``, ``val_acc``, ``test_loss``, ``test_acc``
    (torchmetrics) and ``lr`` (first param group, at the end of each epoch).

    Args:
        model: The network: images ``(B, C, H, W)`` in, logits ``(B, num_classes)`` out.
        num_classes: Number of classes.
        optimizer: Optimizer and hyperparameters (default Adam at its default LR).
        schedule: LR schedule, stepped every optimizer step (default constant).
        label_smoothing: Cross-entropy label smoothing (default 0).
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        optimizer: OptimizerConfig | None = None,
        schedule: ScheduleConfig | None = None,
        *,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.model = model
        self.num_classes = num_classes
        self.optimizer_config = optimizer or OptimizerConfig()
        self.schedule_config = schedule or ScheduleConfig()
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    @classmethod
    def from_config(
        cls, config: TrainConfig, input_shape: tuple[int, int, int], num_classes: int
    ) -> ClassifierModule:
        """Build the model named in ``config`` for the given data shape."""
        model = create_model(config.model, input_shape, num_classes, **config.model_options)
        return cls(model, num_classes, config.optimizer, config.schedule)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> Any:
        x, y = batch
        loss = self.loss_fn(self.model(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        x, y = batch
        logits = self.model(x)
        metric = self.val_acc if stage == "val" else self.test_acc
        metric.update(logits, y)
        self.log(f"{stage}_loss", self.loss_fn(logits, y), on_epoch=True, prog_bar=True)
        self.log(f"{stage}_acc", metric, on_epoch=True, prog_bar=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_train_epoch_end(self) -> None:
        optimizer = self.optimizers(use_pl_optimizer=False)
        assert isinstance(optimizer, torch.optim.Optimizer)
        self.log("lr", optimizer.param_groups[0]["lr"], on_epoch=True)

    def configure_optimizers(self) -> Any:
        """The configured optimizer plus a per-step ``LambdaLR`` schedule.

        The schedule's length is the Trainer's ``estimated_stepping_batches``.
        """
        opt = self.optimizer_config
        assert opt.lr is not None  # filled with the registry default by validation
        optimizer = get_optimizer_info(opt.name).create(self.parameters(), opt.lr, opt.params)
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = create_scheduler(
            optimizer, self.schedule_config.name, total_steps, self.schedule_config.params
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }
