"""Train one configuration: ``lrtune.train(config) -> TrainResult``.

The Trainer is lean: no checkpoint files, no logger directory, no sanity validation, no
model summary. Progress goes through an optional per-epoch line printer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

import lightning.pytorch as pl
from lightning.fabric.utilities.seed import seed_everything

from lrtune._trainer import lean_trainer, options_for
from lrtune.config import TrainConfig
from lrtune.data import create_datamodule
from lrtune.errors import ConfigError
from lrtune.module import ClassifierModule
from lrtune.optimizers import get_optimizer_info

__all__ = [
    "EpochReport",
    "TrainResult",
    "build_trainer",
    "datamodule_for",
    "module_for",
    "train",
]


class EpochReport(pl.Callback):
    """Records one row of metrics per training epoch and optionally prints it.

    Args:
        stream: Where to print one line per epoch (``None``: print nothing).
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.history: list[dict[str, float]] = []
        self._stream = stream
        self._start = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics
        row: dict[str, float] = {"epoch": trainer.current_epoch + 1, "step": trainer.global_step}
        for key in ("train_loss", "val_loss", "val_acc"):
            if key in metrics:
                row[key] = float(metrics[key])
        if trainer.optimizers:
            row["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        row["seconds"] = time.perf_counter() - self._start
        self.history.append(row)
        if self._stream is not None:
            parts = [f"epoch {row['epoch']}/{trainer.max_epochs}"]
            parts += [
                f"{key} {row[key]:.4g}"
                for key in ("train_loss", "val_loss", "val_acc", "lr")
                if key in row
            ]
            parts.append(f"{row['seconds']:.1f}s")
            print("  ".join(parts), file=self._stream, flush=True)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict["history"])


@dataclass
class TrainResult:
    """What one training run produced.

    Attributes:
        val_acc: Validation accuracy after the last epoch.
        val_loss: Validation loss after the last epoch.
        test_acc: Accuracy on the official test set.
        test_loss: Loss on the official test set.
        train_loss: Mean training loss of the last epoch.
        epochs: Epochs run.
        steps: Optimizer steps run.
        seconds: Wall time of fit + test.
        config: The resolved configuration.
        history: One row of metrics per epoch.
        metrics: Every scalar metric the module logged (fit, then test), by name: what a
            module of your own reports (``val_loss``, ``val/f1``, ...).
    """

    val_acc: float
    val_loss: float
    test_acc: float
    test_loss: float
    train_loss: float
    epochs: int
    steps: int
    seconds: float
    config: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; non-finite numbers become ``None``."""

        def clean(value: Any) -> Any:
            if isinstance(value, float) and not math.isfinite(value):
                return None
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list):
                return [clean(v) for v in value]
            return value

        return clean(asdict(self))


def datamodule_for(config: TrainConfig) -> pl.LightningDataModule:
    """The datamodule ``config`` trains on: its dataset, folder, batch size, split,
    augmentation and seed (the data itself is cached per process); or your own, built from
    ``config.datamodule``."""
    if config.datamodule is not None:
        from lrtune.components import build_datamodule

        return build_datamodule(config)
    return create_datamodule(
        config.dataset,
        data_dir=config.data_dir,
        batch_size=config.resolved_batch_size,
        val_fraction=config.val_fraction,
        augment=config.resolved_augment,
        seed=config.seed,
        download=config.download,
    )


def module_for(config: TrainConfig, datamodule: pl.LightningDataModule) -> pl.LightningModule:
    """The module ``config`` trains: your own (``config.module``, with the optimizer,
    schedule and clipping injected) or lrtune's ``ClassifierModule``, shaped by the
    dataset."""
    if config.module is not None:
        from lrtune.components import build_module

        return build_module(config)
    info = getattr(datamodule, "info", None)  # lrtune's datamodules: input shape, classes
    if info is None:
        raise ConfigError(
            f"model: lrtune's {config.model} needs one of lrtune's datasets (for its input "
            f"shape), not {type(datamodule).__name__}; give module (your LightningModule)"
        )
    return ClassifierModule.from_config(config, info.input_shape, info.num_classes)


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The scalar entries of ``trainer.callback_metrics`` (or a test result) as floats."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError, RuntimeError):  # a non-scalar tensor or an object
            continue
    return out


def build_trainer(
    config: TrainConfig,
    *,
    callbacks: Sequence[pl.Callback] = (),
    module: object = None,
    **overrides: Any,
) -> pl.Trainer:
    """A lean ``lightning.pytorch.Trainer`` for ``config``.

    Args:
        config: Supplies epochs, device, precision and gradient clipping.
        callbacks: Extra callbacks.
        module: The module it will train: one written against ``pytorch_lightning`` gets
            that package's ``Trainer`` (default: ``lightning.pytorch``'s).
        **overrides: Any ``Trainer`` argument, winning over the defaults here.
    """
    callbacks = list(callbacks)
    if get_optimizer_info(config.optimizer.name).schedule_free:
        from lrtune._schedule_free import ScheduleFreeModes

        callbacks.append(ScheduleFreeModes())
    kwargs = {"max_epochs": config.epochs, "devices": 1, **options_for(config), **overrides}
    return lean_trainer(module, **kwargs, callbacks=callbacks)


def _metric(metrics: dict[str, Any], key: str) -> float:
    value = metrics.get(key)
    return float(value) if value is not None else math.nan


def train(
    config: TrainConfig,
    *,
    callbacks: Sequence[pl.Callback] = (),
    progress: TextIO | None = None,
    test: bool = True,
    on_module: Callable[[pl.LightningModule], None] | None = None,
) -> TrainResult:
    """Train ``config`` and evaluate on validation and test sets.

    Args:
        config: What to train (see :class:`~lrtune.config.TrainConfig`).
        callbacks: Extra Lightning callbacks.
        progress: Stream for one line per epoch (e.g. ``sys.stderr``); ``None`` is silent.
        test: Evaluate on the official test set after training (default ``True``).
        on_module: Called with the built module before training (for inspection).

    Returns:
        A :class:`TrainResult` with final metrics, timing and per-epoch history.

    Raises:
        ConfigError: The configuration is invalid for the data (e.g. model too deep).
        DataError: Dataset files are missing or corrupt.

    Example::

        >>> from lrtune import TrainConfig, train
        >>> config = TrainConfig(dataset="digits", model="mlp", epochs=2, device="cpu",
        ...                      optimizer={"name": "adam", "lr": 3e-3})
        >>> result = train(config)
        >>> result.epochs, result.val_acc > 0.8
        (2, True)
    """
    start = time.perf_counter()
    seed_everything(config.seed, verbose=False)
    datamodule = datamodule_for(config)
    datamodule.prepare_data()
    module = module_for(config, datamodule)
    if on_module is not None:
        on_module(module)
    report = EpochReport(progress)
    trainer = build_trainer(config, callbacks=[report, *callbacks], module=module)
    trainer.fit(module, datamodule=datamodule)
    fit_metrics = dict(trainer.callback_metrics)
    test_metrics: dict[str, Any] = {}
    if test and can_test(module, datamodule):
        test_metrics = dict(trainer.test(module, datamodule=datamodule, verbose=False)[0])
    return TrainResult(
        val_acc=_metric(fit_metrics, "val_acc"),
        val_loss=_metric(fit_metrics, "val_loss"),
        test_acc=_metric(test_metrics, "test_acc"),
        test_loss=_metric(test_metrics, "test_loss"),
        train_loss=_metric(fit_metrics, "train_loss"),
        epochs=trainer.current_epoch,
        steps=trainer.global_step,
        seconds=time.perf_counter() - start,
        config=config.to_dict(),
        history=report.history,
        metrics={**scalar_metrics(fit_metrics), **scalar_metrics(test_metrics)},
    )


def can_test(module: pl.LightningModule, datamodule: pl.LightningDataModule) -> bool:
    """Does the module define ``test_step`` and the datamodule a test split? (lrtune's
    always do; a module of your own may not.)"""
    from lrtune.components import overrides

    return overrides(module, "test_step") and overrides(datamodule, "test_dataloader")
