"""``find_lr()``: run an LR range test on any LightningModule and hand back the result."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import lightning.pytorch as pl

from lrtune.callbacks import LRRangeTest
from lrtune.errors import ConfigError
from lrtune.lr_range import LRFinderResult, Mode

__all__ = ["find_lr"]


def find_lr(
    module: pl.LightningModule,
    train_dataloaders: Any = None,
    datamodule: pl.LightningDataModule | None = None,
    *,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    num_steps: int = 100,
    mode: Mode = "exponential",
    smoothing: float = 0.9,
    divergence_threshold: float = 3.0,
    method: str = "bracket",
    target: Literal["auto", "constant", "max"] = "auto",
    accelerator: str = "auto",
    precision: str | None = None,
    gradient_clip_val: float | None = None,
    gradient_clip_algorithm: str | None = None,
    accumulate_grad_batches: int = 1,
    callbacks: Sequence[pl.Callback] = (),
    update_attr: str | None = None,
    label: str = "",
) -> LRFinderResult:
    """Run Leslie Smith's LR range test on ``module`` and restore it afterwards.

    Works for any LightningModule whose ``configure_optimizers`` returns one optimizer (with
    or without schedulers). A short-lived lean Trainer (no logger, no checkpoints, no
    validation) runs an :class:`~lrtune.LRRangeTest` at fit start and stops; the module's
    weights and the data order are as before the call. Nothing is written to disk.

    Args:
        module: The model to test; ``configure_optimizers`` supplies the optimizer.
        train_dataloaders: Training data (any iterable of batches, or a DataLoader).
        datamodule: Or a datamodule whose ``train_dataloader`` supplies it.
        min_lr: First LR of the sweep (default 1e-7).
        max_lr: Last LR of the sweep (default 10).
        num_steps: Optimizer steps in the sweep (default 100, at least 10).
        mode: ``exponential`` (default) or ``linear`` LR spacing.
        smoothing: EMA factor for the losses (default 0.9).
        divergence_threshold: See :class:`~lrtune.LRRangeTest` (default 3).
        method: Suggestion method (default ``bracket``).
        target: ``constant``, ``max`` or ``auto`` (default: ``max`` for one-cycle or
            warm-up schedules).
        accelerator: Lightning accelerator (default ``auto``: GPU when present).
        precision: Lightning precision, e.g. ``bf16-mixed`` (default: Lightning's).
        gradient_clip_val: Clip gradients as in training (default: no clipping).
        gradient_clip_algorithm: ``norm`` or ``value``.
        accumulate_grad_batches: Micro-batches per optimizer step; their losses are
            averaged into one point (default 1).
        callbacks: Extra callbacks for the Trainer.
        update_attr: Set this attribute of ``module`` (e.g. ``"lr"``) to the suggestion.
        label: Name for the result (plots, tables).

    Returns:
        An :class:`~lrtune.lr_range.LRFinderResult`; ``suggestion`` is ``None`` (with
        ``reason``) when the loss never fell or was not finite from the start.

    Raises:
        ConfigError: Bad bounds, no training data, no optimizer or several optimizers.
    """
    if (train_dataloaders is None) == (datamodule is None):
        raise ConfigError("find_lr needs exactly one of train_dataloaders or datamodule")
    finder = LRRangeTest(
        min_lr,
        max_lr,
        num_steps,
        mode=mode,
        smoothing=smoothing,
        divergence_threshold=divergence_threshold,
        method=method,
        target=target,
        stop_after=True,
        label=label,
    )
    kwargs: dict[str, Any] = {}
    if precision is not None:
        kwargs["precision"] = precision
    if gradient_clip_val is not None:
        kwargs["gradient_clip_val"] = gradient_clip_val
        kwargs["gradient_clip_algorithm"] = gradient_clip_algorithm or "norm"
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        accumulate_grad_batches=accumulate_grad_batches,
        callbacks=[finder, *callbacks],
        **kwargs,
    )
    try:
        trainer.fit(module, train_dataloaders=train_dataloaders, datamodule=datamodule)
    except ValueError as error:
        if "configure_optimizers" in str(error) or "optimizer" in str(error).lower():
            raise ConfigError(f"find_lr: {error}") from None
        raise
    if finder.result is None:
        raise ConfigError("find_lr: the range test did not run (no training batches?)")
    if update_attr is not None and finder.result.suggestion is not None:
        setattr(module, update_attr, finder.result.suggestion)
    return finder.result
