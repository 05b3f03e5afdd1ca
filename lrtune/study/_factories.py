"""The study's sampler and pruner, built from its validated configuration.

Optuna's own samplers and pruners with lrtune's defaults; TPE is
:class:`lrtune._sampler.GatedTPESampler` (multivariate, grouped, sampling only the groups a
trial uses).
"""

from __future__ import annotations

import collections.abc
import inspect
import sys
import typing
import warnings
from typing import Any

import optuna

from lrtune.config import StudyConfig
from lrtune.errors import ConfigError

__all__ = ["create_pruner", "create_sampler"]


def _check(cls: type, options: dict[str, Any], field: str) -> None:
    """``options`` checked against the annotations of ``cls.__init__`` (Optuna's samplers
    and pruners do not check types: ``n_startup_trials: "ten"`` would fail every trial
    later). An option whose annotation cannot be read or checked passes as given."""
    import pydantic

    parameters = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
    namespace = {**vars(typing), **vars(collections.abc),
                 **vars(sys.modules[cls.__module__])}  # fmt: skip
    namespace.update(optuna=optuna, FrozenTrial=optuna.trial.FrozenTrial)
    for key, value in options.items():
        parameter = parameters.get(key)
        if parameter is None or parameter.annotation is inspect.Parameter.empty:
            continue  # unknown keys: the constructor names them
        hint = parameter.annotation
        try:
            if isinstance(hint, str):
                hint = eval(hint, namespace)  # Optuna's own annotation text
            adapter = pydantic.TypeAdapter(hint)
        except Exception:
            continue
        try:
            adapter.validate_python(value, strict=True)
        except pydantic.ValidationError as error:
            problem = error.errors()[0]["msg"][0].lower() + error.errors()[0]["msg"][1:]
            shown = repr(value)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise ConfigError(f"{field}.{key}: {problem}, got {shown}") from None


def create_sampler(config: StudyConfig) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded. TPE is multivariate with grouped decomposition, so the
    conditional parameters (per optimizer, per schedule) are modelled jointly; it samples
    only the groups a trial uses (:class:`lrtune._sampler.GatedTPESampler`)."""
    name, options = config.sampler.name, dict(config.sampler.options)
    classes = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
               "gp": optuna.samplers.GPSampler, "cmaes": optuna.samplers.CmaEsSampler,
               "grid": optuna.samplers.GridSampler}  # fmt: skip
    _check(classes[name], options, "sampler.options")
    try:
        if name == "tpe":
            from lrtune._sampler import GatedTPESampler

            options.setdefault("multivariate", True)
            options.setdefault("group", bool(options["multivariate"]))  # needs multivariate
            options.setdefault("n_startup_trials", 10)
            with warnings.catch_warnings():  # `group` is marked experimental; we rely on it
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return GatedTPESampler(seed=config.seed, **options)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=config.seed, **options)
        if name == "gp":
            return optuna.samplers.GPSampler(seed=config.seed, **options)
        if name == "cmaes":
            options.setdefault("warn_independent_sampling", False)
            return optuna.samplers.CmaEsSampler(seed=config.seed, **options)
        if "search_space" not in options:
            raise ConfigError(
                "sampler.options.search_space is required for the grid sampler "
                "(a mapping of parameter name to the list of values)"
            )
        return optuna.samplers.GridSampler(seed=config.seed, **options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"sampler.options: {' '.join(str(error).split())}") from None


def create_pruner(config: StudyConfig) -> optuna.pruners.BasePruner:
    """The study's pruner; its resource unit is the report step (epoch, or steps)."""
    name, options = config.pruner.name, dict(config.pruner.options)
    max_resource = config.budget.epochs or config.budget.steps or 1
    classes = {"median": optuna.pruners.MedianPruner, "hyperband": optuna.pruners.HyperbandPruner,
               "successive-halving": optuna.pruners.SuccessiveHalvingPruner,
               "none": optuna.pruners.NopPruner}  # fmt: skip
    _check(classes[name], options, "pruner.options")
    try:
        if name == "median":
            options.setdefault("n_startup_trials", 5)
            options.setdefault("n_warmup_steps", 1 if config.budget.epochs else 0)
            return optuna.pruners.MedianPruner(**options)
        if name == "hyperband":
            options.setdefault("min_resource", 1)
            options.setdefault("max_resource", max_resource)
            return optuna.pruners.HyperbandPruner(**options)
        if name == "successive-halving":
            return optuna.pruners.SuccessiveHalvingPruner(**options)
        return optuna.pruners.NopPruner(**options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"pruner.options: {' '.join(str(error).split())}") from None
