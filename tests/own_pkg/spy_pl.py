"""Modules and datamodules written against ``pytorch_lightning`` (the pytorch-lightning
package), as users write them (their logic is in ``_common``, shared with spy.py)."""

from __future__ import annotations

import pytorch_lightning as pl

from tests.own_pkg._common import DataLogic, FixedBatchLogic, GroupedLogic, NoMetricLogic, SpyLogic

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
