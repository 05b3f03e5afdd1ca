"""``ClassifierModule``: a network plus a typed optimizer/schedule config, as a LightningModule."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from lrtune._compat._lightning import attached_trainer
from lrtune.config import OptimizerConfig, ScheduleConfig, TrainConfig
from lrtune.models import compiled_model, create_model
from lrtune.optimizers import get_optimizer_info
from lrtune.schedules import create_scheduler

__all__ = ["ClassifierModule", "configure_optimization"]


def configure_optimization(
    params: Any, optimizer: OptimizerConfig, schedule: ScheduleConfig, trainer: pl.Trainer
) -> dict[str, Any]:
    """What ``configure_optimizers`` returns for lrtune's configs: ``optimizer`` over
    ``params`` (tensors or param-group dicts) plus ``schedule`` as a per-step ``LambdaLR``
    whose length is the Trainer's ``estimated_stepping_batches``.

    Shared by :class:`ClassifierModule` and the optimization lrtune injects into your own
    module (:func:`lrtune.components.inject_optimization`).
    """
    assert optimizer.lr is not None  # filled with the registry default by validation
    built = get_optimizer_info(optimizer.name).create(params, optimizer.lr, optimizer.params)
    total_steps = max(1, int(trainer.estimated_stepping_batches))
    scheduler = create_scheduler(built, schedule.name, total_steps, schedule.params)
    return {
        "optimizer": built,
        "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
    }


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
        channels_last: Put the conv weights and every input batch in channels-last memory
            layout (default ``True``: the faster conv path on CPUs and GPU tensor cores;
            ignored for models without ``Conv2d`` layers).
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        optimizer: OptimizerConfig | None = None,
        schedule: ScheduleConfig | None = None,
        *,
        label_smoothing: float = 0.0,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.channels_last = channels_last and any(
            isinstance(layer, nn.Conv2d) for layer in model.modules()
        )
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model = model
        self.num_classes = num_classes
        self.optimizer_config = optimizer or OptimizerConfig()
        self.schedule_config = schedule or ScheduleConfig()
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self._loss_sum: torch.Tensor | None = None
        self._loss_count = 0

    @classmethod
    def from_config(
        cls, config: TrainConfig, input_shape: tuple[int, int, int], num_classes: int
    ) -> ClassifierModule:
        """Build the model named in ``config`` for the given data shape (compiled once per
        process and reused when ``config.compile``; see :func:`lrtune.models.compiled_model`)."""
        if config.compile:
            model = compiled_model(
                config.model, input_shape, num_classes,
                channels_last=config.channels_last, **config.model_options,
            )  # fmt: skip
        else:
            model = create_model(config.model, input_shape, num_classes, **config.model_options)
        return cls(
            model, num_classes, config.optimizer, config.schedule,
            channels_last=config.channels_last,
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def on_train_epoch_start(self) -> None:
        self._loss_sum, self._loss_count = None, 0

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> Any:
        x, y = batch
        loss = self.loss_fn(self(x), y)
        # the epoch mean is summed here and logged once, at the epoch's last step: a
        # ``self.log`` per step costs more than a small model's forward pass
        detached = loss.detach()
        self._loss_sum = detached if self._loss_sum is None else self._loss_sum + detached
        self._loss_count += 1
        trainer = attached_trainer(self)
        if trainer is None:  # called outside a Trainer: nothing to log to
            return loss
        if trainer.is_last_batch or 0 < trainer.max_steps <= trainer.global_step + 1:
            mean = self._loss_sum / self._loss_count
            self.log("train_loss", mean, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        x, y = batch
        logits = self(x)
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
        return configure_optimization(
            self.parameters(), self.optimizer_config, self.schedule_config, self.trainer
        )
