"""Modules and datamodules written against ``lightning.pytorch``, as users write them (their
logic is in ``_common``, shared with the other namespace)."""

from __future__ import annotations

import lightning.pytorch as pl

from tests.own_pkg._common import (
    BrokenSetupLogic,
    DataLogic,
    FixedBatchLogic,
    GroupedLogic,
    NoLossLogic,
    NoMetricLogic,
    SpyLogic,
)

CONSTANT = 3


class Spy(SpyLogic, pl.LightningModule):
    """Records the optimizer it trains with; its own ``configure_optimizers`` must never run."""


class Grouped(GroupedLogic, Spy):
    """Two parameter groups: the first layer at a tenth of the LR, no weight decay on biases."""


class NoMetric(NoMetricLogic, Spy):
    """Logs ``val_error`` and ``val_acc`` but no ``val_loss``."""


class Data(DataLogic, pl.LightningDataModule):
    """600 digits: 400 to train, 100 to validate, 100 to test."""


class FixedBatch(FixedBatchLogic, Data):
    """A datamodule whose batch size is not an argument."""


class BrokenSetup(BrokenSetupLogic, Data):
    """A datamodule whose ``setup`` raises."""


class NoLoss(NoLossLogic, Spy):
    """``training_step`` returns a dict without ``loss``."""
