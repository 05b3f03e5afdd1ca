"""What the spy modules are, written once for both Lightning namespaces: the logic as
mixins, which spy.py and spy_pl.py put in front of their namespace's base classes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def digits(n: int = 600) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    x = torch.tensor(images[:n], dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    return x, torch.tensor(labels[:n], dtype=torch.long)


def loaders(batch_size: int) -> tuple[DataLoader, DataLoader, DataLoader]:
    x, y = digits()
    train = TensorDataset(x[:400], y[:400])
    val = TensorDataset(x[400:500], y[400:500])
    test = TensorDataset(x[500:], y[500:])
    return (
        DataLoader(train, batch_size=batch_size, shuffle=True),
        DataLoader(val, batch_size=256),
        DataLoader(test, batch_size=256),
    )


def net(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def record(path: str | None, optimizer: torch.optim.Optimizer, **extra: Any) -> None:
    """Append what the module sees of its optimizer to ``path`` (one JSON line)."""
    if not path:
        return
    groups = optimizer.param_groups
    row = {
        "optimizer": type(optimizer).__name__,
        "lrs": [g["lr"] for g in groups],
        "initial_lrs": [g.get("initial_lr", g["lr"]) for g in groups],
        "momentum": groups[0].get("momentum"),
        "betas": list(groups[0]["betas"]) if "betas" in groups[0] else None,
        "weight_decay": [g.get("weight_decay") for g in groups],
        **extra,
    }
    with Path(path).open("a") as handle:
        handle.write(json.dumps(row) + "\n")


class SpyLogic:
    """A module that records the optimizer it trains with; its own ``configure_optimizers``
    must never run. Mixed into each namespace's ``LightningModule`` (spy.py, spy_pl.py)."""

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


class GroupedLogic:
    """Two parameter groups: the first layer at a tenth of the LR, no weight decay on biases."""

    def param_groups(self) -> list[dict]:
        first, last = self.net[1], self.net[3]
        return [
            {"params": [first.weight], "lr_scale": 0.1},
            {"params": [last.weight]},
            {"params": [first.bias, last.bias], "weight_decay": 0.0},
        ]


class NoMetricLogic:
    """Logs ``val_error`` and ``val_acc`` but no ``val_loss``."""

    def validation_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        x, y = batch
        acc = (self(x).argmax(1) == y).float().mean()
        self.log("val_error", 1 - acc)
        self.log("val_acc", acc)


class DataLogic:
    """A datamodule over 600 digits; mixed into each namespace's ``LightningDataModule``."""

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


class FixedBatchLogic:
    """A datamodule whose batch size is not an argument."""

    def __init__(self) -> None:
        super().__init__(batch_size=32)


class BrokenSetupLogic:
    """A datamodule whose ``setup`` raises (its data folder is not there)."""

    def setup(self, stage: str | None = None) -> None:
        raise FileNotFoundError("the user's data folder /data/train is missing")


class NoLossLogic:
    """``training_step`` returns a dict without ``loss``."""

    def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        x, y = batch
        return {"error": nn.functional.cross_entropy(self(x), y)}
