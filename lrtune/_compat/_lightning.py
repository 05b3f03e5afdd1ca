"""Private names of Lightning, torch and torchmetrics that lrtune needs (Lightning layer).

See :mod:`lrtune._compat` for why they are fenced here.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.core.optimizer import _MockOptimizer
from torchmetrics import Metric

__all__ = [
    "attached_trainer",
    "before_batch_transfer",
    "fit_val_source",
    "is_mock_optimizer",
    "metric_update_count",
    "set_metric_update_count",
]


def is_mock_optimizer(optimizer: Any) -> bool:
    """Is ``optimizer`` Lightning's placeholder for a ``configure_optimizers`` that
    returned none?"""
    return isinstance(optimizer, _MockOptimizer)


def attached_trainer(module: Any) -> Any:
    """The Trainer a module is attached to, or ``None`` (``module.trainer`` raises instead
    when there is none)."""
    return module._trainer


def before_batch_transfer(module: pl.LightningModule, batch: Any) -> Any:
    """Run the module's and the datamodule's ``on_before_batch_transfer`` hooks on
    ``batch``, as Lightning's loops do before moving a batch to the device."""
    return module._on_before_batch_transfer(batch, dataloader_idx=0)


def fit_val_source(trainer: pl.Trainer) -> Any:
    """What ``trainer.fit`` took for validation: the ``val_dataloaders`` given to it, or
    the module or datamodule whose ``val_dataloader()`` it will call (``None`` before any
    fit). Lightning keeps it in the validation loop's data source."""
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    source = getattr(getattr(loop, "val_loop", None), "_data_source", None)
    return getattr(source, "instance", None)


def metric_update_count(metric: Metric) -> int:
    """How many times a torchmetrics ``Metric`` was updated since its last reset."""
    return metric._update_count


def set_metric_update_count(metric: Metric, count: int) -> None:
    """Put a metric's update count back and drop its cached ``compute()`` value (after its
    states were put back)."""
    metric._update_count = count
    metric._computed = None
