"""``lr_find(trainer, model, ...)``: lrtune's range test, called the way Lightning's is.

``Tuner(trainer).lr_find(model, ...)`` becomes ``lrtune.lr_find(trainer, model, ...)`` with
the same arguments, and the answer (:class:`~lrtune.LRFinder`) has the interface of
Lightning's ``_LRFinder`` (``suggestion()``, ``results``, ``plot()``). The work is
:func:`lrtune.find_lr`'s: this module only maps Lightning's argument names and reads the
Trainer's device, precision, gradient clipping and accumulation. What changes for a user
is in docs/range-test.md and docs/LIGHTNING_PARITY.md.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl

from lrtune.errors import ConfigError
from lrtune.range_test import Mode
from lrtune.range_test._callback import LRFinder

if TYPE_CHECKING:
    from lrtune.range_test._verify import Verification

__all__ = ["lr_find"]

log = logging.getLogger(__name__)


def _device(trainer: pl.Trainer) -> tuple[str, int | list[int]]:
    """The Trainer's accelerator name and its (first) device, as ``Trainer`` takes them."""
    from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator, MPSAccelerator

    device = trainer.strategy.root_device
    if isinstance(trainer.accelerator, CUDAAccelerator):
        return "gpu", [device.index or 0]
    if isinstance(trainer.accelerator, MPSAccelerator):
        return "mps", 1
    if isinstance(trainer.accelerator, CPUAccelerator):
        return "cpu", 1
    return "auto", 1


def lr_find(
    trainer: pl.Trainer,
    model: pl.LightningModule,
    train_dataloaders: Any = None,
    val_dataloaders: Any = None,
    dataloaders: Any = None,
    datamodule: pl.LightningDataModule | None = None,
    method: str = "fit",
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    num_training: int = 100,
    mode: Mode = "exponential",
    early_stop_threshold: float | None = 3.0,
    update_attr: bool = True,
    attr_name: str = "",
    *,
    verify: bool | Verification = True,
) -> LRFinder | None:
    """Lightning's ``Tuner(trainer).lr_find(model, ...)``, answered by lrtune.

    Takes Lightning's arguments and runs :func:`lrtune.find_lr` on the Trainer's
    accelerator and device, precision, gradient clipping and gradient accumulation. The
    ``trainer`` itself is not run: nothing on it changes, nothing is written to its
    ``default_root_dir``, and ``model`` ends as it was, weights, optimizer and data order
    included (its ``trainer`` too). With ``update_attr`` the suggestion is written where
    the model keeps its LR: ``lr``/``learning_rate`` (or ``attr_name``) on the model, its
    ``hparams``, the datamodule or its ``hparams``.

    Args:
        trainer: Whose settings the test uses (it is not run).
        model: The module to test.
        train_dataloaders: Training data, or a datamodule (as in Lightning).
        val_dataloaders: Held-out batches for lrtune's verification probes.
        dataloaders: Not for ``method="fit"`` (Lightning's rule); must be ``None``.
        datamodule: Or a datamodule. With no data at all, the model's own
            ``train_dataloader()``.
        method: ``"fit"``, the only stage Lightning's finder runs.
        min_lr: First LR (default 1e-7; Lightning's is 1e-8).
        max_lr: Last LR (default 10; Lightning's is 1, often short of where SGD diverges).
        num_training: Steps of the sweep (default 100).
        mode: ``exponential`` (default) or ``linear``.
        early_stop_threshold: lrtune's divergence threshold (default 3: a rise of 3x the
            fall so far; Lightning's 4.0 is a ratio to the best loss, which depends on
            the loss's offset); ``None`` turns the rise rule off.
        update_attr: Write the suggestion to the model's LR field (default ``True``, as
            Lightning); a missing field is an error before any training.
        attr_name: The field's name (default: ``lr`` or ``learning_rate``).
        verify: lrtune's verification probes (default ``True``; see
            :func:`lrtune.find_lr`).

    Returns:
        An :class:`LRFinder`, or ``None`` when the Trainer has ``fast_dev_run`` (as in
        Lightning).

    Raises:
        ConfigError: A bad argument, a missing LR field, no data, or not one optimizer.

    Example (``Tuner(trainer).lr_find(model, ...)`` in Lightning)::

        >>> import lightning.pytorch as pl
        >>> from lrtune import lr_find
        >>> from lrtune import TrainConfig
        >>> from lrtune.training import datamodule_for, module_for
        >>> config = TrainConfig(dataset="digits", model="mlp", optimizer={"name": "adam"})
        >>> dm = datamodule_for(config)
        >>> model = module_for(config, dm)
        >>> trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
        >>> finder = lr_find(trainer, model, datamodule=dm, num_training=30,
        ...                  update_attr=False)
        >>> sorted(finder.results)
        ['loss', 'lr']
        >>> finder.suggestion() == finder.result.suggestion
        True
    """
    from lrtune.range_test._find import find_lr

    if method != "fit":
        raise ConfigError(f"lr_find: method={method!r}: the LR finder runs for 'fit' only")
    if dataloaders is not None:
        raise ConfigError(
            "lr_find: dataloaders is for other methods; give train_dataloaders and val_dataloaders"
        )
    if isinstance(train_dataloaders, pl.LightningDataModule):
        if datamodule is not None:
            raise ConfigError("lr_find: a datamodule as train_dataloaders and as datamodule")
        train_dataloaders, datamodule = None, train_dataloaders
    if trainer.fast_dev_run:
        log.warning("Skipping the learning rate finder: the Trainer has fast_dev_run")
        return None
    accelerator, devices = _device(trainer)
    clip = trainer.gradient_clip_val
    algorithm = trainer.gradient_clip_algorithm
    result = find_lr(
        model,
        train_dataloaders,
        datamodule,
        val_dataloaders=val_dataloaders,
        min_lr=min_lr,
        max_lr=max_lr,
        num_steps=num_training,
        mode=mode,
        divergence_threshold=float("inf") if early_stop_threshold is None else early_stop_threshold,
        accelerator=accelerator,
        devices=devices,
        precision=str(trainer.precision),
        gradient_clip_val=float(clip) if clip else None,
        gradient_clip_algorithm=str(getattr(algorithm, "value", algorithm) or "norm"),
        accumulate_grad_batches=trainer.accumulate_grad_batches,
        update_attr=(attr_name or True) if update_attr else None,
        verify=verify,
    )
    return LRFinder(result)
