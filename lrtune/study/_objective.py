"""One trial: the trial's parameters -> a :class:`~lrtune.config.TrainConfig` -> Lightning
training, with the divergence stop and optuna-integration's pruning callback.

The objective records what a trial did in its user attrs (the resolved config, the worker,
seconds, metrics, why it was pruned, diverged or failed), so optuna-dashboard and the report
show it. A NaN/inf or exploding loss ends the trial at once as pruned.
"""

from __future__ import annotations

import gc
import math
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from lrtune.config import StudyConfig, TrainConfig
from lrtune.errors import MissingMetricError
from lrtune.results import ATTR_BASELINE, best_per_optimizer
from lrtune.space import baseline_config, suggest_config
from lrtune.storage import mask_url
from lrtune.study import _coordination as coord
from lrtune.study._test_pass import trainer_limits

ATTR_INPUT_ERROR = "input_error"
"""Trial user attr: an error in the study's input that every trial would hit (the runner
stops the study with it as a :class:`~lrtune.errors.ConfigError`)."""

if TYPE_CHECKING:
    import lightning.pytorch as pl

    from lrtune.study._test_pass import HeldWeights


def _pruning_callback(trial: optuna.Trial, config: StudyConfig) -> pl.Callback:
    """The trial's :class:`~lrtune._trial_callbacks.PruningReport` (built when Lightning
    is already imported: this module is imported without it)."""
    from lrtune._trial_callbacks import PruningReport

    return PruningReport(trial, config.objective.metric, by_step=config.budget.epochs is None,
                         pruner=config.pruner.name)  # fmt: skip


def _epochs_run(trial: optuna.Trial) -> pl.Callback:
    from lrtune._trial_callbacks import EpochsRun

    return EpochsRun(trial)


def _metric_check(metric: str) -> pl.Callback:
    from lrtune._trial_callbacks import MetricCheck

    return MetricCheck(metric)


def _monitor_callback(trial: optuna.Trial) -> pl.Callback:
    from lrtune._trial_callbacks import DivergenceStop

    return DivergenceStop(trial)


class _Surplus(Exception):
    """This trial would exceed n_trials (other workers' trials got there first)."""


def _error_text(error: BaseException) -> str:
    """``Type: first line of the message`` (passwords in URLs masked), for user attrs."""
    lines = str(error).strip().splitlines()
    return mask_url(f"{type(error).__name__}: {lines[0] if lines else ''}")[:500]


def _user_error(error: BaseException) -> tuple[str, bool]:
    """The trial's ``error`` text, and whether every trial would fail the same way: the
    objective metric never logged, a set-up hook of the user's module or datamodule
    raised (``Data.setup raised ...``), or Lightning refused the module itself."""
    if isinstance(error, MissingMetricError):
        return str(error), True
    if "lightning" not in sys.modules:
        return _error_text(error), False
    from lrtune.components import SETUP_HOOKS, describe_user_error, user_code_origin

    described = describe_user_error(error)
    if described is None:
        return _error_text(error), False
    origin = user_code_origin(error)
    study_wide = origin is None or origin[1] in SETUP_HOOKS  # None: Lightning's refusal
    return mask_url(described)[:500], study_wide


def _objective(
    config: StudyConfig,
    ranges: Mapping[str, tuple[float, float]],
    module_factory: Callable[[TrainConfig], pl.LightningModule] | None,
    datamodule_factory: Callable[[TrainConfig], pl.LightningDataModule] | None,
    held: HeldWeights | None = None,
) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        if config.n_trials is not None:
            ahead = coord.trials_ahead(trial.study, trial.number)
            if ahead >= config.n_trials:
                reason = (
                    f"not run: {ahead} trials were already finished or running "
                    f"(n_trials {config.n_trials})"
                )
                trial.set_user_attr(coord.SURPLUS, reason)
                raise _Surplus(reason)
        with coord.TrialHeartbeat(trial):
            trial.set_user_attr("worker", coord.worker_id())
            baseline = trial.user_attrs.get(ATTR_BASELINE)
            if baseline is not None:  # a tuning-free optimizer at its defaults
                train_config = baseline_config(config, baseline)
            else:
                train_config = suggest_config(trial, config, ranges)
            trial.set_user_attr("config", train_config.to_dict())
            start = time.perf_counter()
            try:
                metrics = _train_trial(
                    trial, config, train_config, module_factory, datamodule_factory, held
                )
            except optuna.TrialPruned:
                trial.set_user_attr("seconds", time.perf_counter() - start)
                raise
            except Exception as error:  # recorded, then Optuna fails the trial
                trial.set_user_attr("seconds", time.perf_counter() - start)
                text, study_wide = _user_error(error)
                trial.set_user_attr("error", text)
                if study_wide:  # the runner stops the study: every trial would fail so
                    trial.set_user_attr(ATTR_INPUT_ERROR, text)
                raise
            finally:
                gc.collect()
                _empty_device_cache()
        trial.set_user_attr("seconds", time.perf_counter() - start)
        for key, value in metrics.items():
            trial.set_user_attr(key, value)
        value = metrics.get(config.objective.metric, math.nan)
        if not math.isfinite(value):
            trial.set_user_attr("diverged", f"{config.objective.metric} is {value}")
            raise optuna.TrialPruned(f"{config.objective.metric} is {value}")
        return value

    return objective


def _empty_device_cache() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _train_trial(
    trial: optuna.Trial,
    config: StudyConfig,
    train_config: TrainConfig,
    module_factory: Callable[[TrainConfig], pl.LightningModule] | None,
    datamodule_factory: Callable[[TrainConfig], pl.LightningDataModule] | None,
    held: HeldWeights | None = None,
) -> dict[str, float]:
    from lightning.fabric.utilities.seed import seed_everything

    from lrtune.training import build_trainer, can_test, datamodule_for, module_for, scalar_metrics

    # every trial starts from the same seed: same initial weights and batch order, so trials
    # differ only by their hyperparameters, and `lrtune train --config best.yaml` reproduces
    seed_everything(train_config.seed, verbose=False)
    if datamodule_factory is not None:
        datamodule = datamodule_factory(train_config)
    else:
        datamodule = datamodule_for(train_config)
    if module_factory is not None:
        module = module_factory(train_config)
    else:
        module = module_for(train_config, datamodule)
    limits = trainer_limits(config)
    trainer = build_trainer(
        train_config,
        callbacks=[
            _monitor_callback(trial),
            _epochs_run(trial),
            _metric_check(config.objective.metric),
            *(() if ATTR_BASELINE in trial.user_attrs else (_pruning_callback(trial, config),)),
        ],
        module=module,
        **limits,
    )
    trainer.fit(module, datamodule=datamodule)
    logged = scalar_metrics(trainer.callback_metrics)
    own = train_config.module is not None  # a module of your own: keep all it logged
    metrics = {k: v for k, v in logged.items() if own or k.startswith("val_")}
    metrics["steps"] = float(trainer.global_step)
    if (
        module_factory is None
        and config.test != "never"
        and can_test(module, datamodule)
        and (config.test == "every" or _improves(trial, config, train_config, metrics))
    ):
        if config.test == "end" and held is not None:
            held.keep(trial.number, train_config, module)
        else:
            tested = trainer.test(module, datamodule=datamodule, verbose=False)[0]
            metrics.update(scalar_metrics(tested))
    del trainer, module
    return metrics


def _improves(
    trial: optuna.Trial, config: StudyConfig, train_config: TrainConfig, metrics: dict[str, float]
) -> bool:
    """Does this trial beat every complete trial of its optimizer so far? (The trials that
    ``test: improving`` tests at once and ``test: end`` keeps the weights of.)"""
    value = metrics.get(config.objective.metric, math.nan)
    if not math.isfinite(value):
        return False
    name = train_config.optimizer.name
    maximize = config.objective.resolved_direction == "maximize"
    complete = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = best_per_optimizer(complete, maximize, default=name).get(name)
    if best is None:
        return True
    return value > float(best.value) if maximize else value < float(best.value)  # type: ignore[arg-type]
