"""The Lightning callbacks every study trial trains with, one concern each.

- :class:`PruningReport`: optuna-integration's pruning callback, reporting at the global
  step under a steps budget, and recording why a trial was pruned;
- :class:`MetricCheck`: fails the trial at its first validation when the objective metric
  was not logged (a study-wide input error);
- :class:`DivergenceStop`: ends a trial whose loss is NaN/inf or explodes;
- :class:`EpochsRun`: records how many epochs a trial finished (pruned ones too).

:mod:`lrtune.study._objective` builds them for each trial.
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import optuna
from optuna_integration import PyTorchLightningPruningCallback
from typing_extensions import override  # Python 3.12's typing.override; Lightning's too

from lrtune.errors import MissingMetricError

__all__ = ["DivergenceStop", "EpochsRun", "MetricCheck", "PruningReport"]


class PruningReport(PyTorchLightningPruningCallback):
    """optuna-integration's pruning callback; a pruned trial records why in its user attr
    ``pruned`` (the step, the metric and the pruner), which optuna-dashboard shows.

    Args:
        trial: The trial to report to.
        monitor: The objective metric.
        by_step: A steps budget: report at the global step (validation runs every N
            steps), not at the epoch.
        pruner: The pruner's name, for the record.
    """

    def __init__(self, trial: optuna.Trial, monitor: str, *, by_step: bool, pruner: str) -> None:
        super().__init__(trial, monitor=monitor)
        self._by_step = by_step
        self._pruner = pruner

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        score = trainer.callback_metrics.get(self.monitor)
        try:
            if self._by_step and score is not None and not trainer.sanity_checking:
                self._trial.report(score.item(), step=trainer.global_step)
                if self._trial.should_prune():
                    raise optuna.TrialPruned(f"Trial was pruned at step {trainer.global_step}.")
            else:
                super().on_validation_end(trainer, pl_module)
        except optuna.TrialPruned as pruned:
            value = f" with {self.monitor} {score.item():.4g}" if score is not None else ""
            self._trial.set_user_attr(
                "pruned", f"{str(pruned).rstrip('.')}{value} ({self._pruner} pruner)"
            )
            raise


class MetricCheck(pl.Callback):
    """Fails the trial at its first validation when ``metric`` was not logged, naming the
    metrics that were (optuna-integration's pruning callback would only warn, and the trial
    would end with a NaN value)."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.checked = False

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.checked:
            return
        self.checked = True
        if self.metric not in trainer.callback_metrics:
            logged = ", ".join(sorted(trainer.callback_metrics)) or "nothing"
            raise MissingMetricError(
                f"objective.metric: {type(pl_module).__name__} did not log {self.metric!r} "
                f"in validation (it logged: {logged}); log it with self.log({self.metric!r}, "
                "...) or set objective.metric to one of those"
            )


class DivergenceStop(pl.Callback):
    """Ends a trial at once when its loss is NaN/inf or explodes (recorded as pruned, with
    the reason in the trial's user attr ``diverged``).

    Exploding: the loss, smoothed over a few steps (EMA 0.5), exceeds ``explode_factor``
    times the first step's loss (the loss at initialisation). On a CPU every step's loss is
    checked; on a GPU every ``accelerator_every``-th (reading a loss waits for the GPU to
    finish the step, which would stall the queue of kernels every step; a NaN stays NaN).

    Args:
        trial: Where the reason is recorded.
        explode_factor: The limit, in units of the first loss (default 10).
        accelerator_every: Steps between checks on an accelerator (default 10).
    """

    def __init__(
        self, trial: optuna.Trial, explode_factor: float = 10.0, accelerator_every: int = 10
    ) -> None:
        self.trial = trial
        self.explode_factor = explode_factor
        self.accelerator_every = accelerator_every
        self.first: float | None = None
        self.smooth = 0.0

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
        batch: Any, batch_idx: int,
    ) -> None:  # fmt: skip
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None or self._skips(trainer, loss):
            return
        reason = self._why_diverged(float(loss))
        if reason is not None:
            reason = f"diverged at step {trainer.global_step}: {reason}"
            self.trial.set_user_attr("diverged", reason)
            raise optuna.TrialPruned(reason)

    def _skips(self, trainer: pl.Trainer, loss: Any) -> bool:
        """Not this step: an accelerator's loss, between every ``accelerator_every``-th."""
        device = getattr(loss, "device", None)
        return (
            self.first is not None
            and device is not None
            and device.type != "cpu"
            and bool(trainer.global_step % self.accelerator_every)
        )

    def _why_diverged(self, value: float) -> str | None:
        if not math.isfinite(value):
            return f"loss is {value}"
        if self.first is None:
            self.first, self.smooth = value, value
            return None
        self.smooth = 0.5 * self.smooth + 0.5 * value
        if abs(self.smooth) > self.explode_factor * abs(self.first) + 1e-12:
            return (
                f"loss exploded to {value:.4g} (initial {self.first:.4g}, "
                f"limit {self.explode_factor:g}x)"
            )
        return None


class EpochsRun(pl.Callback):
    """Records the epochs a trial has finished in its user attr ``epochs`` (so a pruned or
    failed trial says how far it got)."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.trial.set_user_attr("epochs", trainer.current_epoch + 1)
