"""``find_lr()``: run an LR range test on any LightningModule and hand back the result.

``compare_optimizers()`` runs one test per optimizer from the same starting point.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import lightning.pytorch as pl

from lrtune._compat._lightning import attached_trainer
from lrtune._state import DataPosition
from lrtune._trainer import TrainerOptions, check_options, lean_trainer, options_for
from lrtune.errors import ConfigError
from lrtune.range_test import Mode, RangeTestResult
from lrtune.range_test._callback import LRRangeTest, lr_attribute
from lrtune.range_test._verify import Verification

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from lrtune.config import TrainConfig

__all__ = ["compare_optimizers", "find_lr"]


def find_lr(
    module: pl.LightningModule,
    train_dataloaders: Any = None,
    datamodule: pl.LightningDataModule | None = None,
    *,
    val_dataloaders: Any = None,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    num_steps: int = 100,
    mode: Mode = "exponential",
    divergence_threshold: float = 3.0,
    method: str = "bracket",
    target: Literal["auto", "constant", "max"] = "auto",
    update_attr: bool | str | None = None,
    label: str = "",
    verify: bool | Verification = True,
    **trainer_options: Unpack[TrainerOptions],
) -> RangeTestResult:
    """Run Leslie Smith's LR range test on ``module`` and restore it afterwards.

    Works for any LightningModule whose ``configure_optimizers`` returns one optimizer (with
    or without schedulers). A short-lived lean Trainer (no logger, no checkpoints, no
    validation) runs an :class:`~lrtune.LRRangeTest` at fit start and stops; the module's
    weights and the data order are as before the call. Nothing is written to disk.

    Args:
        module: The model to test; ``configure_optimizers`` supplies the optimizer.
        train_dataloaders: Training data (any iterable of batches, or a DataLoader).
        datamodule: Or a datamodule whose ``train_dataloader`` supplies it. With neither,
            the module's own ``train_dataloader()`` (and, for the verification, its
            ``val_dataloader()``), as in Lightning.
        val_dataloaders: Held-out batches for the verification probes (default: the
            datamodule's or the module's ``val_dataloader()``, else training batches no
            probe trains on).
        min_lr: First LR of the sweep (default 1e-7).
        max_lr: Last LR of the sweep (default 10).
        num_steps: Optimizer steps in the sweep (default 100, at least 10).
        mode: ``exponential`` (default) or ``linear`` LR spacing.
        divergence_threshold: See :class:`~lrtune.LRRangeTest` (default 3).
        method: Suggestion method (default ``bracket``).
        target: ``constant``, ``max`` or ``auto`` (default: ``max`` for one-cycle or
            warm-up schedules).
        update_attr: Write the suggestion where the module keeps its LR, as Lightning's
            ``Tuner.lr_find(update_attr=...)`` does: ``True`` finds ``lr`` or
            ``learning_rate``; a name (e.g. ``"lr"``) is that field. The field is looked
            up on the module, its ``hparams`` (``save_hyperparameters()``), the
            datamodule and the datamodule's ``hparams``, and set in every one of them that
            has it. A field found nowhere is an error before any training (default
            ``None``: nothing is written).
        label: Name for the result (plots, tables).
        verify: Check the sweep's suggestion with short constant-LR probes at and above
            it, scored on held-out batches (the datamodule's validation split when it has
            one); a higher LR must win clearly and a winner above the sweep's answer must
            stay healthy over a run as long as the sweep (default ``True``:
            :class:`~lrtune.Verification` with its defaults; ``False``: the sweep's answer
            alone; see :class:`~lrtune.LRRangeTest`).
        **trainer_options: The Trainer the test runs in (:class:`~lrtune.TrainerOptions`):
            ``accelerator`` (default ``auto``: GPU when present), ``devices`` (one device;
            default 1, the first), ``precision`` (e.g. ``bf16-mixed``),
            ``gradient_clip_val`` and ``gradient_clip_algorithm`` (clip as in training),
            ``accumulate_grad_batches`` (micro-batches per optimizer step; their losses are
            averaged into one point) and extra ``callbacks``.

    Returns:
        An :class:`~lrtune.range_test.RangeTestResult`; ``suggestion`` is ``None`` (with
        ``reason``) when the loss never fell or was not finite from the start.

    Raises:
        ConfigError: Bad bounds, no training data, no optimizer or several optimizers, an
            unknown Trainer option.

    Example (your own LightningModule works the same way)::

        >>> from lrtune import TrainConfig
        >>> from lrtune.training import datamodule_for, module_for
        >>> config = TrainConfig(dataset="digits", model="mlp", optimizer={"name": "adam"})
        >>> dm = datamodule_for(config)
        >>> model = module_for(config, dm)
        >>> result = find_lr(model, datamodule=dm, num_steps=30, accelerator="cpu")
        >>> 1e-5 < result.suggestion < 1.0
        True
        >>> result.reason  # doctest: +ELLIPSIS
        '...'
    """
    options = check_options(trainer_options, "find_lr")
    if train_dataloaders is not None and datamodule is not None:
        raise ConfigError("find_lr takes train_dataloaders or datamodule, not both")
    if train_dataloaders is None and datamodule is None:
        from lrtune.components import overrides

        if not overrides(module, "train_dataloader"):  # Lightning would use the module's own
            raise ConfigError(
                f"find_lr needs training data: train_dataloaders, a datamodule, or a "
                f"train_dataloader() method on {type(module).__name__}"
            )
    attr = lr_attribute(module, datamodule, update_attr)  # before any training
    finder = LRRangeTest(
        min_lr,
        max_lr,
        num_steps,
        mode=mode,
        divergence_threshold=divergence_threshold,
        method=method,
        target=target,
        label=label,
        verify=verify,
        update_attr=attr or False,
    )
    finder._stop_after = True  # one Trainer per call, stopped once the test has run
    kwargs: dict[str, Any] = {"devices": 1, **options, "max_epochs": 1, "limit_val_batches": 0}
    kwargs["callbacks"] = [finder, *options.get("callbacks", ())]
    trainer = lean_trainer(module, **kwargs)
    # fit draws from the RNGs before the callback's snapshot (e.g. a shuffled DataLoader's
    # seed when its iterator is made): put them back so the data order is as before the call
    position = DataPosition.take(train_dataloaders)
    attached = attached_trainer(module), datamodule.trainer if datamodule is not None else None
    try:
        trainer.fit(module, train_dataloaders, val_dataloaders, datamodule)
    except ValueError as error:
        if "configure_optimizers" in str(error) or "optimizer" in str(error).lower():
            raise ConfigError(f"find_lr: {error}") from None
        raise
    except RuntimeError as error:  # Lightning's refusal of several optimizers
        if "multiple optimizers" in str(error):
            raise ConfigError(f"find_lr: {error}") from None
        raise
    finally:
        position.restore(train_dataloaders)
        module.trainer = attached[0]  # not left attached to the finder's own Trainer
        if datamodule is not None:
            datamodule.trainer = attached[1]
    if finder.result is None:
        raise ConfigError("find_lr: the range test did not run (no training batches?)")
    return finder.result


def compare_optimizers(
    config: TrainConfig,
    optimizers: Sequence[str],
    *,
    min_lr: float | None = None,
    max_lr: float | None = None,
    num_steps: int = 100,
    method: str = "bracket",
    progress: Callable[[RangeTestResult], None] | None = None,
    verify: bool | Verification = True,
) -> list[RangeTestResult]:
    """One range test per optimizer, from the same initial weights and the same data order.

    Args:
        config: Dataset, model (or your own ``module``/``datamodule``), batch size,
            schedule, clipping, seed and device; its own optimizer is ignored.
        optimizers: Registry names, e.g. ``["sgd", "adam", "adamax", "rmsprop"]``.
        min_lr: First LR of every sweep (default: the optimizer's search range low / 10).
        max_lr: Last LR of every sweep (default: the optimizer's search range high x 10).
        num_steps: Optimizer steps per sweep (default 100).
        method: Suggestion method (default ``bracket``).
        progress: Called with each result as it is ready.
        verify: Verify each suggestion with constant-LR probes (default ``True``; see
            :func:`find_lr`).

    Returns:
        One :class:`~lrtune.range_test.RangeTestResult` per optimizer, labelled with its name.
    """
    from lightning.fabric.utilities.seed import seed_everything

    from lrtune.config import OptimizerConfig
    from lrtune.models import create_model
    from lrtune.module import ClassifierModule
    from lrtune.optimizers import get_optimizer_info
    from lrtune.training import datamodule_for

    infos = [get_optimizer_info(name) for name in optimizers]
    if not infos:
        raise ConfigError("optimizers: give at least one optimizer")
    datamodule = datamodule_for(config)
    datamodule.prepare_data()
    seed_everything(config.seed, verbose=False)
    own: pl.LightningModule | None = None
    if config.module is not None:  # your own module: built once, its optimizer injected
        from lrtune.components import build_module, inject_optimization

        own = build_module(config)
        initial = copy.deepcopy(own.state_dict())
    else:
        model = create_model(
            config.model, datamodule.input_shape, datamodule.num_classes,  # type: ignore[attr-defined]
            **config.model_options,
        )  # fmt: skip
        initial = copy.deepcopy(model.state_dict())
    results = []
    for info in infos:
        if info.no_range_test:  # said plainly, in the result, instead of a sweep
            results.append(_not_tested(info.name, info.no_range_test, num_steps, method))
            if progress is not None:
                progress(results[-1])
            continue
        seed_everything(config.seed, verbose=False)
        module: pl.LightningModule
        if own is not None:
            own.load_state_dict(initial)
            module = inject_optimization(own, OptimizerConfig(name=info.name), config)
        else:
            model.load_state_dict(initial)
            module = ClassifierModule(
                model, datamodule.num_classes, OptimizerConfig(name=info.name),  # type: ignore[attr-defined]
                config.schedule, channels_last=config.channels_last,
            )  # fmt: skip
        low, high = info.lr_range
        result = find_lr(
            module,
            datamodule=datamodule,
            min_lr=min_lr if min_lr is not None else low / 10,
            max_lr=max_lr if max_lr is not None else high * 10,
            num_steps=num_steps,
            method=method,
            label=info.name,
            verify=verify,
            **options_for(config),
        )
        results.append(result)
        if progress is not None:
            progress(result)
    return results


def _not_tested(label: str, why: str, num_steps: int, method: str) -> RangeTestResult:
    """The result of a range test that does not apply to an optimizer: no curve, ``why``."""
    return RangeTestResult(
        lrs=[], losses=[], smoothed=[], suggestion=None, reason=f"no range test: {why}",
        suggestions={}, bracket=None, method=method, target="constant", stop_reason=None,
        num_steps=num_steps, seconds=0.0, label=label,
    )  # fmt: skip
