"""The range test's inner loop: optimizer steps without Lightning's loop, and undoing them.

:class:`Snapshot` copies everything a sweep or a probe changes (weights, buffers, gradients,
optimizers, schedulers, grad scaler, RNG streams, torchmetrics states, the dataloader's
position) and puts it back; :func:`one_step` runs one optimizer step through the Trainer's
strategy, or directly when Lightning's step machinery would add nothing
(:func:`plain_steps`); :func:`cycle` yields device batches from a loader as often as needed.
Used by ``_callback`` (the sweep) and ``_verify`` (the probes).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torchmetrics import Metric

from lrtune._compat._lightning import (
    before_batch_transfer,
    metric_update_count,
    set_metric_update_count,
)
from lrtune._state import is_stateful, loader_generator, rng_states, set_rng_states
from lrtune.errors import ConfigError


@dataclass
class Snapshot:
    """Everything the sweep changes, copied in memory."""

    weights: dict[str, torch.Tensor]
    grads: list[torch.Tensor | None]
    optimizers: list[dict[str, Any]]
    schedulers: list[dict[str, Any]]
    scaler: dict[str, Any] | None
    rng: dict[str, Any]
    metrics: list[tuple[Metric, dict[str, Any], int]]
    loader: dict[str, Any] | None
    loader_generator: torch.Tensor | None
    training: bool

    @classmethod
    def take(cls, trainer: pl.Trainer, module: pl.LightningModule, loader: Any) -> Snapshot:
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        generator = loader_generator(loader)
        return cls(
            weights={k: v.detach().clone() for k, v in module.state_dict().items()},
            grads=[
                None if p.grad is None else p.grad.detach().clone() for p in module.parameters()
            ],
            optimizers=[copy.deepcopy(o.state_dict()) for o in trainer.optimizers],
            schedulers=[
                copy.deepcopy(c.scheduler.state_dict()) for c in trainer.lr_scheduler_configs
            ],
            scaler=copy.deepcopy(scaler.state_dict()) if scaler is not None else None,
            rng=rng_states(),
            metrics=metric_states(module),
            loader=copy.deepcopy(loader.state_dict()) if is_stateful(loader) else None,
            loader_generator=generator.get_state() if generator is not None else None,
            training=module.training,
        )

    def restore(self, trainer: pl.Trainer, module: pl.LightningModule, loader: Any) -> None:
        """Put everything back; the snapshot stays intact for another restore (the probes
        restore it once each): what a ``load_state_dict`` would alias (an optimizer's
        moment tensors, a metric's states) is loaded from a copy, since training updates
        those in place."""
        module.load_state_dict(self.weights)
        with torch.no_grad():
            for p, g in zip(module.parameters(), self.grads, strict=True):
                p.grad = None if g is None else g.clone()
        for optimizer, state in zip(trainer.optimizers, self.optimizers, strict=True):
            optimizer.load_state_dict(copy.deepcopy(state))
        for config, state in zip(trainer.lr_scheduler_configs, self.schedulers, strict=True):
            config.scheduler.load_state_dict(state)
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if scaler is not None and self.scaler is not None:
            scaler.load_state_dict(self.scaler)
        set_rng_states(self.rng)
        restore_metric_states(self.metrics)
        if self.loader is not None:
            loader.load_state_dict(copy.deepcopy(self.loader))
        generator = loader_generator(loader)
        if generator is not None and self.loader_generator is not None:
            generator.set_state(self.loader_generator)
        module.train(self.training)


def metric_states(module: torch.nn.Module) -> list[tuple[Metric, dict[str, Any], int]]:
    """A copy of every torchmetrics ``Metric``'s state in ``module``."""
    return [(m, copy.deepcopy(m.metric_state), metric_update_count(m))
            for m in module.modules() if isinstance(m, Metric)]  # fmt: skip


def restore_metric_states(saved: list[tuple[Metric, dict[str, Any], int]]) -> None:
    """Put back what :func:`metric_states` copied (from a copy: ``saved`` stays intact)."""
    for metric, state, count in saved:
        for name, value in state.items():
            setattr(metric, name, copy.deepcopy(value))
        set_metric_update_count(metric, count)


@contextmanager
def logging_off(module: pl.LightningModule) -> Iterator[None]:
    """``self.log``/``self.log_dict`` do nothing during the sweep (its steps are not training)."""

    def discard(*args: Any, **kwargs: Any) -> None:
        return None

    module.log = discard  # type: ignore[method-assign]
    module.log_dict = discard  # type: ignore[method-assign]
    try:
        yield
    finally:
        del module.log
        del module.log_dict


def loss_of(output: Any) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        return output.get("loss")
    return None


def base_lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    """Each group's base LR: the scheduler's base if there is one, else the group's LR."""
    return [float(g.get("initial_lr", g["lr"])) for g in optimizer.param_groups]


_STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step",
               "on_before_zero_grad")  # fmt: skip
_MODULE_STEP_HOOKS = (*_STEP_HOOKS, "backward", "optimizer_step", "optimizer_zero_grad",
                      "configure_gradient_clipping")  # fmt: skip


def plain_steps(trainer: pl.Trainer, module: pl.LightningModule, finder: pl.Callback) -> bool:
    """Can the sweep call ``training_step``, ``backward`` and ``optimizer.step`` itself?

    Only when Lightning's step machinery would add nothing: full precision (no autocast or
    loss scaling), one device, no gradient clipping, and neither the module nor any other
    callback overrides a hook that runs around backward or the optimizer step. Then the
    result is the same, bit for bit, without ~0.3 ms of hook dispatch per step (most of a
    small model's step on a CPU); otherwise the sweep goes through ``trainer.strategy``.
    """
    from lightning.pytorch.plugins.precision import Precision
    from lightning.pytorch.strategies import SingleDeviceStrategy
    from lightning.pytorch.utilities.model_helpers import is_overridden

    if type(trainer.precision_plugin) is not Precision or trainer.gradient_clip_val:
        return False
    if type(trainer.strategy) is not SingleDeviceStrategy or trainer.strategy.model is not module:
        return False
    if any(is_overridden(hook, module, parent=pl.LightningModule) for hook in _MODULE_STEP_HOOKS):
        return False
    return not any(
        is_overridden(hook, callback, parent=pl.Callback)
        for callback in trainer.callbacks  # type: ignore[attr-defined]
        if callback is not finder
        for hook in _STEP_HOOKS
    )


def one_step(
    trainer: pl.Trainer,
    module: pl.LightningModule,
    optimizer: torch.optim.Optimizer,
    batches: Iterator[tuple[int, Any]],
    *,
    direct: bool,
    accumulate: int,
) -> float | None:
    """One optimizer step over ``accumulate`` batches; the mean loss, or ``None`` when
    ``training_step`` skipped every batch. ``direct``: see :func:`plain_steps`."""
    micro: list[float] = []

    def forward_backward() -> torch.Tensor | None:
        batch_idx, batch = next(batches)
        loss = loss_of(trainer.strategy.training_step(batch, batch_idx))
        if loss is None:
            return None
        trainer.strategy.backward(loss / accumulate, optimizer)
        micro.append(float(loss.detach()))
        return loss

    optimizer.zero_grad(set_to_none=True)
    if direct:
        for _ in range(accumulate):
            batch_idx, batch = next(batches)
            loss = loss_of(module.training_step(batch, batch_idx))
            if loss is not None:
                (loss / accumulate).backward()
                micro.append(float(loss.detach()))
        if micro:
            optimizer.step()
    else:
        for _ in range(accumulate - 1):
            forward_backward()
        trainer.strategy.optimizer_step(optimizer, forward_backward)
    return float(np.mean(micro)) if micro else None


def held_out_losses(
    trainer: pl.Trainer, module: pl.LightningModule, batches: list[Any]
) -> list[float]:
    """``training_step``'s loss on each of ``batches``, in eval mode, without gradients;
    ``[]`` when any is not finite (or every step was skipped)."""
    module.eval()
    losses = []
    with torch.no_grad(), trainer.precision_plugin.forward_context():
        for index, batch in enumerate(batches):
            loss = loss_of(module.training_step(batch, index))
            if loss is not None:
                losses.append(float(loss))
    module.train()
    return losses if all(math.isfinite(v) for v in losses) else []


_TRANSFER_HOOKS = ("on_before_batch_transfer", "transfer_batch_to_device",
                   "on_after_batch_transfer")  # fmt: skip


def device_batches(trainer: pl.Trainer, module: pl.LightningModule, loader: Any) -> Iterator[Any]:
    """One pass over ``loader``, each batch on the device.

    Batches go through the module's (or datamodule's) batch-transfer hooks as in Lightning's
    loop; when neither overrides one and the precision is plain, they are moved with
    ``move_data_to_device`` directly (the same result without the hook dispatch).
    """
    from lightning.fabric.utilities.apply_func import move_data_to_device
    from lightning.pytorch.plugins.precision import Precision
    from lightning.pytorch.utilities.model_helpers import is_overridden

    datamodule = getattr(trainer, "datamodule", None)
    hooked = any(is_overridden(h, module, parent=pl.LightningModule) for h in _TRANSFER_HOOKS)
    if datamodule is not None:
        parent = pl.LightningDataModule
        hooked = hooked or any(is_overridden(h, datamodule, parent=parent) for h in _TRANSFER_HOOKS)
    plain = type(trainer.precision_plugin) is Precision and not hooked
    device = trainer.strategy.root_device
    for batch in loader:
        if plain:
            yield move_data_to_device(batch, device)
        else:
            batch = trainer.precision_plugin.convert_input(batch)
            batch = before_batch_transfer(module, batch)
            yield trainer.strategy.batch_to_device(batch)


def cycle(
    trainer: pl.Trainer, module: pl.LightningModule, loader: Any
) -> Iterator[tuple[int, Any]]:
    """``(index, batch)`` on the device (see :func:`device_batches`), cycling through
    ``loader`` as often as needed."""
    index = 0
    while True:
        empty = True
        for batch in device_batches(trainer, module, loader):
            empty = False
            yield index, batch
            index += 1
        if empty:
            raise ConfigError("LRRangeTest: the training dataloader produced no batches")


def group_ratios(optimizer: torch.optim.Optimizer) -> list[float]:
    """Each param group's base LR over the first group's (kept when the LR is set)."""
    base = base_lrs(optimizer)
    return [b / base[0] if base[0] > 0 else 1.0 for b in base]


def set_lr(optimizer: torch.optim.Optimizer, lr: float, ratios: list[float]) -> None:
    """Set every group's LR to ``lr`` times its ratio (see :func:`group_ratios`)."""
    for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
        group["lr"] = float(lr) * ratio
