"""Schedule-Free optimizers' two sets of weights, switched where Lightning trains and evaluates.

A Schedule-Free optimizer (``schedulefree.AdamWScheduleFree``, ``SGDScheduleFree``) steps on
one sequence of weights and evaluates on another (an average): ``optimizer.train()`` and
``optimizer.eval()`` swap them in place. :class:`ScheduleFreeModes` makes the swap at the
right hooks for any module whose optimizer is one (lrtune's, or the user's own), and
recomputes BatchNorm's running statistics for the evaluation weights, which the training
weights' statistics do not fit. :func:`train_mode` is what the range test calls before it
steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from lrtune._compat._core import is_batch_norm
from lrtune._state import DataPosition

__all__ = [
    "BN_BATCHES",
    "ScheduleFreeModes",
    "is_schedule_free",
    "recompute_batchnorm",
    "train_mode",
]

BN_BATCHES = 20
"""Training batches whose statistics replace BatchNorm's running ones for the evaluation
weights (fewer when an epoch has fewer)."""


def is_schedule_free(optimizer: Any) -> bool:
    """Does ``optimizer`` keep Schedule-Free's train/eval modes?"""
    groups = getattr(optimizer, "param_groups", None) or []
    return callable(getattr(optimizer, "eval", None)) and any("train_mode" in g for g in groups)


def _in_train_mode(optimizer: Any) -> bool:
    return bool(optimizer.param_groups[0]["train_mode"])


def train_mode(optimizers: Iterable[Any]) -> None:
    """Put every Schedule-Free optimizer among ``optimizers`` on its training weights."""
    for optimizer in optimizers:
        if is_schedule_free(optimizer):
            optimizer.train()


def recompute_batchnorm(module: nn.Module, batches: Iterable[Any], forward: Any) -> int:
    """Replace every BatchNorm layer's running statistics by their average over ``batches``
    (``forward(batch)`` runs the model on one, in training mode, without gradients).

    Returns:
        How many batches were used (0: no BatchNorm layer, nothing done).
    """
    norms = [m for m in module.modules() if is_batch_norm(m)]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    was_training = module.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    module.train()
    used = 0
    with torch.no_grad():
        for batch in batches:
            forward(batch)
            used += 1
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    module.train(was_training)
    return used


class ScheduleFreeModes(pl.Callback):
    """Training weights while training, evaluation weights everywhere else.

    ``optimizer.train()`` before each training batch; ``optimizer.eval()`` when validation,
    test or prediction starts and when ``fit`` ends, so checkpoints saved after validation,
    the weights a study keeps as its best and the module a user gets back all hold the
    evaluation weights. On each switch to them, BatchNorm statistics are recomputed over up
    to :data:`BN_BATCHES` training batches; the data order and RNG streams are put back
    afterwards, so training is unchanged. Does nothing for other optimizers.
    """

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        train_mode(trainer.optimizers)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._evaluation_weights(trainer, pl_module)

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._evaluation_weights(trainer, pl_module)

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._evaluation_weights(trainer, pl_module)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._evaluation_weights(trainer, pl_module)

    def _evaluation_weights(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        switched = False
        for optimizer in trainer.optimizers:
            if is_schedule_free(optimizer) and _in_train_mode(optimizer):
                optimizer.eval()
                switched = True
        if switched and trainer.train_dataloader is not None:
            _batchnorm_from_training_data(trainer, pl_module)


def _batchnorm_from_training_data(trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
    """:func:`recompute_batchnorm` over the first training batches through
    ``training_step``; the data's position and torchmetrics states are put back after."""
    from lrtune.range_test._steps import (
        device_batches,
        logging_off,
        metric_states,
        restore_metric_states,
    )

    loader = trainer.train_dataloader
    position = DataPosition.take(loader)
    metrics = metric_states(pl_module)

    def first_batches() -> Iterator[Any]:
        for index, batch in enumerate(device_batches(trainer, pl_module, loader)):
            if index == BN_BATCHES:
                return
            yield batch

    try:
        with logging_off(pl_module):
            recompute_batchnorm(pl_module, first_batches(), lambda b: pl_module.training_step(b, 0))
    finally:
        position.restore(loader)
        restore_metric_states(metrics)
