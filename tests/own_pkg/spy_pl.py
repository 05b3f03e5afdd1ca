"""Modules and datamodules written against ``pytorch_lightning`` (pytorch-lightning)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn

from tests.own_pkg._common import loaders, net, record

CONSTANT = 3


class Spy(pl.LightningModule):
    """Records the optimizer it trains with; its own ``configure_optimizers`` must never run."""

    def __init__(self, hidden: int = 32, record: str | None = None, fail: bool = False) -> None:
        super().__init__()
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        self.hidden = hidden
        self.record_path = record
        self.fail = fail
        self.net = net(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def on_train_start(self) -> None:
        record(self.record_path, self.optimizers(use_pl_optimizer=False), hidden=self.hidden)

    def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        if self.fail:
            raise RuntimeError("the user's training_step is broken")
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        x, y = batch
        logits = self(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def test_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        x, y = batch
        self.log("test_acc", (self(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        raise AssertionError("lrtune must not call the module's own configure_optimizers")


class Grouped(Spy):
    """Two parameter groups: the first layer at a tenth of the LR, no weight decay on biases."""

    def param_groups(self) -> list[dict]:
        first, last = self.net[1], self.net[3]
        return [
            {"params": [first.weight], "lr_scale": 0.1},
            {"params": [last.weight]},
            {"params": [first.bias, last.bias], "weight_decay": 0.0},
        ]


class NoMetric(Spy):
    """Logs ``val_error`` and ``val_acc`` but no ``val_loss``."""

    def validation_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        x, y = batch
        acc = (self(x).argmax(1) == y).float().mean()
        self.log("val_error", 1 - acc)
        self.log("val_acc", acc)


class Data(pl.LightningDataModule):
    def __init__(self, batch_size: int = 32) -> None:
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage: str | None = None) -> None:
        self.loaders = loaders(self.batch_size)

    def train_dataloader(self):  # type: ignore[no-untyped-def]
        return self.loaders[0]

    def val_dataloader(self):  # type: ignore[no-untyped-def]
        return self.loaders[1]

    def test_dataloader(self):  # type: ignore[no-untyped-def]
        return self.loaders[2]


class FixedBatch(Data):
    """A datamodule whose batch size is not an argument."""

    def __init__(self) -> None:
        super().__init__(batch_size=32)
