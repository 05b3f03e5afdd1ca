"""``LRRangeTest``: Leslie Smith's LR range test as a Lightning callback, restored in memory.

The sweep runs its own short inner loop through the Trainer's strategy (so mixed precision,
gradient clipping and accumulation behave as in training), records one loss per optimizer
step while the LR grows, stops on divergence, then puts back every piece of state it
touched: weights, buffers, gradients, optimizer, schedulers, grad scaler, RNG streams,
torchmetrics states and the training dataloader's position. Nothing is written to disk, so
parallel trials cannot collide, and training afterwards is bit-for-bit what it would have
been without the test.
"""

from __future__ import annotations

import logging
import math
import time
from types import EllipsisType
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from typing_extensions import override

from lrtune._compat._core import scale_last_lr
from lrtune._compat._lightning import is_mock_optimizer
from lrtune._schedule_free import train_mode
from lrtune.errors import ConfigError
from lrtune.range_test import METHODS, DivergenceRule, Mode, RangeTestResult, analyze, lr_sweep
from lrtune.range_test._steps import (
    Snapshot,
    base_lrs,
    cycle,
    group_ratios,
    logging_off,
    one_step,
    plain_steps,
    set_lr,
)
from lrtune.range_test._verify import Verification, as_verification, verify

__all__ = ["LRFinder", "LRRangeTest"]

log = logging.getLogger(__name__)

_LR_KEYS = ("lr", "initial_lr", "max_lr", "min_lr")

NON_FINITE_PATIENCE = 3
"""Non-finite losses in a row that end a sweep whose weights are still finite (a mixed
precision loss scaler skips those steps): past them the loss has diverged."""


# ----------------------------------------------------------------------------- LRs


def _is_one_cycle(trainer: pl.Trainer) -> bool:
    from lrtune.schedules import OneCycle, WarmupCosine

    for config in trainer.lr_scheduler_configs:
        scheduler = config.scheduler
        if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR):
            return True
        lambdas = getattr(scheduler, "lr_lambdas", ())
        if any(isinstance(fn, OneCycle | WarmupCosine) for fn in lambdas):
            return True
    return False


def apply_lr(trainer: pl.Trainer, optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Make ``lr`` the first group's base LR, scaling every group and scheduler alike.

    Every LR-like value (``lr``, ``initial_lr``, one-cycle's ``max_lr``/``min_lr``, the
    schedulers' ``base_lrs`` and last LRs) is multiplied by the same factor, so group ratios
    and schedule shapes are kept.
    """
    factor = lr / base_lrs(optimizer)[0]
    for group in optimizer.param_groups:
        for key in _LR_KEYS:
            if key in group:
                group[key] = group[key] * factor
    for config in trainer.lr_scheduler_configs:
        scheduler = config.scheduler
        if getattr(scheduler, "optimizer", None) is not optimizer:
            continue
        if hasattr(scheduler, "base_lrs"):
            scheduler.base_lrs = [b * factor for b in scheduler.base_lrs]
        scale_last_lr(scheduler, factor)


def _no_range_test(optimizer: torch.optim.Optimizer) -> str:
    """Why the registry says a range test does not apply to ``optimizer``'s class, or ``""``."""
    from lrtune.optimizers import OPTIMIZERS

    name = type(optimizer).__name__
    for info in OPTIMIZERS.values():
        if isinstance(info.cls, str) and info.cls.endswith(f":{name}") and info.no_range_test:
            return info.no_range_test
    return ""


# ----------------------------------------------------------------------------- the LR field

_LR_NAMES = ("lr", "learning_rate")
"""The fields ``update_attr=True`` looks for, in this order (Lightning's)."""


def _lr_holders(module: Any, datamodule: Any, name: str) -> list[Any]:
    """Everything that holds the field ``name``: the module, its ``hparams``, the datamodule
    and its ``hparams`` (Lightning's ``lightning_setattr`` order)."""
    holders: list[Any] = []
    for owner in (module, datamodule):
        if owner is None:
            continue
        if hasattr(owner, name):
            holders.append(owner)
        hparams = getattr(owner, "hparams", None)
        if hparams is not None and name in hparams:
            holders.append(hparams)
    return holders


def lr_attribute(module: Any, datamodule: Any, update_attr: bool | str | None) -> str | None:
    """The field ``update_attr`` names (``True``: ``lr`` or ``learning_rate``, the first
    the module, its ``hparams`` or the datamodule holds), or ``None`` for no update.

    Raises:
        ConfigError: The field is held nowhere (checked before any training, as Lightning
            does), naming where it looked.
    """
    if update_attr is None or update_attr is False or update_attr == "":
        return None
    names = _LR_NAMES if update_attr is True else (str(update_attr),)
    for name in names:
        if _lr_holders(module, datamodule, name):
            return name
    where = f"{type(module).__name__}, its hparams"
    if datamodule is not None:
        where += f", {type(datamodule).__name__} or its hparams"
    asked = " or ".join(repr(n) for n in names)
    raise ConfigError(
        f"update_attr={update_attr!r}: no field {asked} in {where}; give the name of the "
        "field your configure_optimizers reads (update_attr='my_lr'), or save it with "
        "self.save_hyperparameters()"
    )


def write_lr(module: Any, datamodule: Any, name: str, lr: float) -> None:
    """Set the field ``name`` to ``lr`` everywhere it is held (see :func:`_lr_holders`)."""
    for holder in _lr_holders(module, datamodule, name):
        if isinstance(holder, dict):
            holder[name] = lr
        else:
            setattr(holder, name, lr)


# ----------------------------------------------------------------------------- Lightning's answer


class LRFinder:
    """What :func:`lr_find` (and :attr:`lrtune.LRRangeTest.optimal_lr`) returns: Lightning's
    ``_LRFinder`` interface over lrtune's :class:`~lrtune.range_test.RangeTestResult`.

    Attributes:
        result: lrtune's whole result: the curve, the probes, ``reason``.
        results: ``{"lr": [...], "loss": [...]}``, one entry per recorded step, as in
            Lightning. :meth:`suggestion` with ``skip_begin``/``skip_end`` reads it, so
            editing it changes what that recomputes.
    """

    def __init__(self, result: RangeTestResult) -> None:
        self.result = result
        self.results: dict[str, list[float]] = {
            "lr": list(result.lrs),
            "loss": list(result.losses),
        }

    def suggestion(
        self, skip_begin: int | None = None, skip_end: int | None = None
    ) -> float | None:
        """The suggested LR, or ``None`` (``result.reason`` says why).

        Args:
            skip_begin: Finite points at the start to leave out (lrtune's default 2).
            skip_end: Points at the end to leave out (default 1, as Lightning's).

        With neither argument, lrtune's answer: the sweep's suggestion checked by the
        verification probes (``result.suggestion``). With either, the sweep's suggestion
        recomputed from :attr:`results` without those points (no probes: they need the
        model).
        """
        if skip_begin is None and skip_end is None:
            return self.result.suggestion
        analysis = analyze(
            self.results["lr"],
            self.results["loss"],
            method=self.result.method,
            target="max" if self.result.target == "max" else "constant",
            skip_start=2 if skip_begin is None else skip_begin,
            skip_end=skip_end,
        )
        if analysis.suggestion is None:
            log.error("lrtune: no LR suggestion: %s", analysis.reason)
        return analysis.suggestion

    def plot(self, suggest: bool = True, show: bool = False, ax: Any = None) -> Any:
        """Loss vs LR as a plotly ``Figure`` (Lightning draws with matplotlib): the bracket
        shaded and the suggestion always marked (``suggest`` is taken for Lightning's
        signature); ``show`` opens it; ``ax`` (a matplotlib axis) is refused."""
        if ax is not None:
            raise ConfigError("plot(ax=...): lrtune draws with plotly, not on a matplotlib axis")
        figure = self.result.plot()
        if show:
            figure.show()  # type: ignore[attr-defined]
        return figure


# ----------------------------------------------------------------------------- callback


class LRRangeTest(pl.Callback):
    """Leslie Smith's LR range test, run inside ``Trainer.fit`` and undone afterwards.

    At the chosen moment (fit start by default) the callback sweeps the LR from ``min_lr``
    to ``max_lr`` over ``num_steps`` optimizer steps of the training data, records the
    loss of each step, stops early when the loss diverges, restores every state it touched
    in memory, and stores the outcome in :attr:`result`. With ``apply=True`` the suggested
    LR becomes the optimizer's (and its schedulers') base LR before training goes on.

    Args:
        min_lr: First LR of the sweep (default 1e-7).
        max_lr: Last LR of the sweep (default 10).
        num_steps: Optimizer steps in the sweep (default 100, at least 10). The sweep
            cycles through the training data as often as needed: the Trainer's
            ``max_epochs``/``limit_train_batches`` do not cut it short.
        mode: ``exponential`` (default) or ``linear`` spacing of the LRs.
        divergence_threshold: Stop when the smoothed loss rises above its best by more than
            this many times how far it had fallen (default 3). Shifting or scaling the loss
            does not change when this fires.
        method: Suggestion method: ``bracket`` (default, chosen by benchmark; see
            docs/benchmarks-history.md), ``steepest``, ``valley`` or ``minimum`` (÷10).
        target: ``constant`` (a working LR), ``max`` (the peak LR of a one-cycle or warm-up
            schedule) or ``auto`` (default: ``max`` when the module uses such a schedule).
        epoch: Run at the start of this epoch instead of at fit start.
        step: Run before this global step instead (mid-epoch is fine).
        apply: Apply the suggestion to the optimizer and schedulers (default ``False``).
        label: Name for the result (plots, tables).
        verify: After the sweep, check its suggestion with short constant-LR probes
            (default ``True``: :class:`~lrtune.Verification` with its defaults; pass a
            ``Verification(...)`` to change them; ``False`` gives the sweep's own answer).
            A few candidate LRs from the suggestion up to the sweep's stability edge each
            train from the same weights, optimizer state and batches and are scored on
            held-out batches (the validation split when the datamodule has one, else
            training batches no probe trains on); the best train on (successive halving).
            A higher LR wins only if it beats the lower ones clearly (beyond the noise of
            the score), and a winner above the sweep's answer must stay healthy over a
            longer run (as long as the sweep), else the next candidate down takes its
            place. ``result.reason`` says why the winner won and why any candidate was
            rejected; ``result.sweep_suggestion`` keeps the sweep's answer. Only for
            ``target="constant"``: a one-cycle's peak LR is judged by the whole schedule
            (warm-up, peak, anneal), which a probe a fraction of its length cannot run.
        update_attr: Write the suggestion where the module keeps its LR and apply it, as
            Lightning's ``LearningRateFinder(update_attr=True)`` does: ``True`` finds
            ``lr`` or ``learning_rate`` on the module, its ``hparams``, the datamodule or
            its ``hparams`` (``attr_name``, or a string here, names another field). A
            field found nowhere is a :class:`~lrtune.ConfigError` at setup, before any
            training (default ``False``: the callback only reports, unless ``apply``).
        attr_name: Lightning's name for the field (default ``""``: ``lr`` or
            ``learning_rate``).
        num_training_steps: Lightning's name for ``num_steps``.
        early_stop_threshold: Lightning's name for ``divergence_threshold`` (lrtune's rule:
            a rise over the fall, not a ratio to the best loss); ``None`` turns the rise
            rule off (a non-finite loss still ends the sweep when the weights are lost).

    ``LearningRateFinder(...)`` becomes ``LRRangeTest(...)`` with the same keyword
    arguments; :attr:`optimal_lr` answers as Lightning's does (``.suggestion()``,
    ``.results``).

    Example (the test runs at fit start, then training goes on at the suggested LR)::

        >>> import lightning.pytorch as pl
        >>> from lrtune import TrainConfig
        >>> from lrtune.training import datamodule_for, module_for
        >>> config = TrainConfig(dataset="digits", model="mlp", optimizer={"name": "adam"})
        >>> dm = datamodule_for(config)
        >>> model = module_for(config, dm)
        >>> finder = LRRangeTest(num_steps=30, apply=True)
        >>> trainer = pl.Trainer(max_epochs=1, callbacks=[finder], accelerator="cpu",
        ...                      logger=False, enable_checkpointing=False,
        ...                      enable_progress_bar=False, enable_model_summary=False)
        >>> trainer.fit(model, datamodule=dm)
        >>> trainer.optimizers[0].param_groups[0]["lr"] == finder.result.suggestion
        True
    """

    def __init__(
        self,
        min_lr: float = 1e-7,
        max_lr: float = 10.0,
        num_steps: int = 100,
        *,
        mode: Mode = "exponential",
        divergence_threshold: float = 3.0,
        method: str = "bracket",
        target: Literal["auto", "constant", "max"] = "auto",
        epoch: int | None = None,
        step: int | None = None,
        apply: bool = False,
        label: str = "",
        verify: bool | Verification = True,
        update_attr: bool | str = False,
        attr_name: str = "",
        num_training_steps: int | None = None,
        early_stop_threshold: float | EllipsisType | None = ...,
    ) -> None:
        if num_training_steps is not None:
            num_steps = num_training_steps
        self._lrs = lr_sweep(min_lr, max_lr, num_steps, mode)
        if not isinstance(early_stop_threshold, EllipsisType):
            divergence_threshold = (
                math.inf if early_stop_threshold is None else early_stop_threshold
            )
        if not divergence_threshold > 0:
            raise ConfigError(f"divergence_threshold must be > 0, got {divergence_threshold!r}")
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
        if target not in ("auto", "constant", "max"):
            raise ConfigError(f"target must be 'auto', 'constant' or 'max', got {target!r}")
        if epoch is not None and step is not None:
            raise ConfigError("give epoch or step, not both")
        if (epoch is not None and epoch < 0) or (step is not None and step < 0):
            raise ConfigError(f"epoch/step must be >= 0, got {epoch if step is None else step}")
        self._threshold = divergence_threshold
        self._method = method
        self._target = target
        self._epoch = epoch
        self._step = step
        self._apply = apply
        self._stop_after = False  # find_lr's: stop fit once the test has run
        self._label = label
        self._update_attr = attr_name if update_attr is True and attr_name else update_attr
        self._attr: str | None = None
        plan = as_verification(verify)
        self._plan = plan.resolved(len(self._lrs)) if plan is not None else None
        self.result: RangeTestResult | None = None

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(epoch=self._epoch, step=self._step, label=self._label)

    @property
    def optimal_lr(self) -> LRFinder | None:
        """The result with Lightning's ``LearningRateFinder.optimal_lr`` interface
        (``suggestion()``, ``results``, ``plot()``), or ``None`` before the test ran."""
        return LRFinder(self.result) if self.result is not None else None

    # ------------------------------------------------------------------ hooks
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":  # the LR field, found before any training or not at all
            self._attr = lr_attribute(pl_module, trainer.datamodule, self._update_attr)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._epoch is None and self._step is None:
            self._run(trainer, pl_module)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._epoch is not None and trainer.current_epoch == self._epoch:
            self._run(trainer, pl_module)

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._step is not None and trainer.global_step == self._step:
            self._run(trainer, pl_module)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"result": self.result.to_dict() if self.result is not None else None}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        data = state_dict.get("result")
        self.result = RangeTestResult.from_dict(data) if data else None

    # ------------------------------------------------------------------ the test
    def _run(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.result is not None or trainer.sanity_checking:
            return  # once per fit (and not again after a resume)
        if not pl_module.automatic_optimization:
            raise ConfigError("LRRangeTest needs automatic optimization")
        if not trainer.optimizers or is_mock_optimizer(trainer.optimizers[0]):
            raise ConfigError("LRRangeTest needs an optimizer: configure_optimizers returned none")
        if len(trainer.optimizers) != 1:
            raise ConfigError(
                "LRRangeTest needs exactly one optimizer from configure_optimizers, "
                f"got {len(trainer.optimizers)}"
            )
        optimizer = trainer.optimizers[0]
        loader = trainer.train_dataloader
        target = self._target
        if target == "auto":
            target = "max" if _is_one_cycle(trainer) else "constant"
        why_not = _no_range_test(optimizer)
        if why_not:
            raise ConfigError(
                f"LRRangeTest: no range test for {type(optimizer).__name__}: {why_not}"
            )
        start = time.perf_counter()
        snapshot = Snapshot.take(trainer, pl_module, loader)
        train_mode(trainer.optimizers)  # Schedule-Free steps on its training weights
        try:
            with logging_off(pl_module):
                lrs, losses, stop_reason, skipped = self._sweep(
                    trainer, pl_module, optimizer, loader
                )
                result = RangeTestResult.from_sweep(
                    lrs,
                    losses,
                    method=self._method,
                    target=target,  # type: ignore[arg-type]
                    stop_reason=stop_reason,
                    num_steps=len(self._lrs),
                    seconds=0.0,
                    label=self._label,
                )
                if self._plan and target == "constant" and result.suggestion is not None:
                    result = verify(
                        trainer, pl_module, optimizer, loader, snapshot, result, self._plan, self
                    )
                if skipped:
                    result.reason += (
                        f" ({len(lrs) + skipped} steps, {skipped} not recorded: "
                        "training_step returned None)"
                    )
        finally:
            snapshot.restore(trainer, pl_module, loader)
        result.seconds = time.perf_counter() - start
        self.result = result
        log.info(
            "LR range test: %d steps, %s; suggestion %s",
            len(lrs), stop_reason or "no divergence",
            "none" if result.suggestion is None else f"{result.suggestion:.3g}",
        )  # fmt: skip
        if self.result.suggestion is not None:
            if self._attr is not None:
                write_lr(pl_module, trainer.datamodule, self._attr, self.result.suggestion)
            if self._apply or self._attr is not None:
                apply_lr(trainer, optimizer, self.result.suggestion)
        if self._stop_after:
            trainer.should_stop = True

    def _sweep(
        self,
        trainer: pl.Trainer,
        module: pl.LightningModule,
        optimizer: torch.optim.Optimizer,
        loader: Any,
    ) -> tuple[list[float], list[float], str | None, int]:
        """Run the sweep; return the LRs and losses recorded, why it stopped early, and how
        many steps ``training_step`` skipped.

        A step whose ``training_step`` returned ``None`` is not recorded (its LR is passed
        over). A non-finite loss is recorded and passed over by the analysis, as Lightning
        does (a NaN warm-up step need not end the sweep); the sweep stops at one when the
        weights are no longer finite, or at :data:`NON_FINITE_PATIENCE` in a row.
        """
        if loader is None:
            raise ConfigError("LRRangeTest needs training data (train_dataloaders or datamodule)")
        ratios = group_ratios(optimizer)
        accumulate = max(1, int(trainer.accumulate_grad_batches))
        batches = cycle(trainer, module, loader)
        direct = plain_steps(trainer, module, self)
        rule = DivergenceRule(threshold=self._threshold)
        module.train()
        lrs: list[float] = []
        losses: list[float] = []
        skipped = bad = 0
        for lr in self._lrs:
            set_lr(optimizer, lr, ratios)
            loss = one_step(
                trainer, module, optimizer, batches, direct=direct, accumulate=accumulate
            )
            if loss is None:
                skipped += 1  # training_step returned None for every batch of this step
                continue
            lrs.append(float(lr))
            losses.append(loss)
            if not math.isfinite(loss):
                bad += 1
                broken = not all(bool(torch.isfinite(p).all()) for p in module.parameters())
                if broken or bad >= NON_FINITE_PATIENCE:
                    why = "the weights are no longer finite" if broken else f"{bad} in a row"
                    stop = f"loss is {loss} at step {len(losses) - 1} ({why})"
                    return lrs, losses, stop, skipped
                continue
            bad = 0
            reason = rule.update(loss)
            if reason is not None:
                return lrs, losses, reason, skipped
        return lrs, losses, None, skipped
