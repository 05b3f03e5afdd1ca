"""What a study stores and how to read it back: the study user attrs lrtune writes, trials
with their test metrics, the best trial of each optimizer, and the best trial's training
configuration.

Optuna only, no Lightning: the study runner writes these results, the report, the summary
and ``lrtune best`` read them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from lrtune.config import TrainConfig
from lrtune.errors import ConfigError

__all__ = [
    "ATTR_BASELINE",
    "ATTR_CONFIG",
    "ATTR_LR_AUTO",
    "ATTR_TEST_PREFIX",
    "FINISHED",
    "best_config",
    "best_per_optimizer",
    "describe_tuned_vs_tuning_free",
    "finished_count",
    "trials_with_tests",
    "tuned_vs_tuning_free",
]

ATTR_CONFIG = "lrtune.study_config"
"""Study user attr: the configuration the study was created with (password masked)."""

ATTR_LR_AUTO = "lrtune.lr_auto"
"""Study user attr: ``lr: auto``'s ranges per optimizer, their source and range-test curve."""

ATTR_TEST_PREFIX = "lrtune.test."
"""``test: end`` stores trial N's test metrics in the study user attr ``lrtune.test.N`` (a
finished trial's own attrs can no longer change); :func:`trials_with_tests` merges them."""


def trials_with_tests(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's trials, with the test metrics that ``test: end`` stored in the study's
    user attrs merged into each trial's ``user_attrs`` (copies; the study is not changed)."""
    trials = study.get_trials(deepcopy=False)
    stored = {
        key[len(ATTR_TEST_PREFIX) :]: value
        for key, value in study.user_attrs.items()
        if key.startswith(ATTR_TEST_PREFIX) and isinstance(value, dict)
    }
    if not stored:
        return trials
    merged = []
    for trial in trials:
        extra = stored.get(str(trial.number))
        if extra:
            trial = copy.copy(trial)
            trial.user_attrs = {**trial.user_attrs, **extra}
        merged.append(trial)
    return merged


def best_per_optimizer(
    trials: Sequence[optuna.trial.FrozenTrial], maximize: bool, default: str = "?"
) -> dict[str, optuna.trial.FrozenTrial]:
    """The best complete trial of each optimizer (``default`` names trials without an
    ``optimizer`` parameter)."""
    sign = 1.0 if maximize else -1.0
    best: dict[str, optuna.trial.FrozenTrial] = {}
    for trial in trials:
        if trial.state != TrialState.COMPLETE or trial.value is None:
            continue
        name = str(trial.params.get("optimizer") or trial.user_attrs.get(ATTR_BASELINE, default))
        if name not in best or sign * trial.value > sign * float(best[name].value):  # type: ignore[arg-type]
            best[name] = trial
    return best


ATTR_BASELINE = "baseline"
"""Trial user attr of a ``baselines`` trial: the tuning-free optimizer it runs."""


def tuned_vs_tuning_free(
    trials: Sequence[optuna.trial.FrozenTrial], maximize: bool
) -> dict[str, Any] | None:
    """The best tuned trial against the best ``baselines`` trial, or ``None`` without
    baselines. Each side: ``value``, ``trial``, ``optimizer`` (``None`` before a complete
    trial), ``trials`` (finished) and ``seconds`` (their training time); and
    ``difference``: tuned minus tuning-free, in the objective's units (``None`` until both
    have a value)."""
    free = [t for t in trials if ATTR_BASELINE in t.user_attrs]
    if not free:
        return None
    tuned = [t for t in trials if ATTR_BASELINE not in t.user_attrs]
    sign = 1.0 if maximize else -1.0

    def side(group: Sequence[optuna.trial.FrozenTrial]) -> dict[str, Any]:
        complete = [t for t in group if t.state == TrialState.COMPLETE and t.value is not None]
        best = max(complete, key=lambda t: sign * float(t.value), default=None)  # type: ignore[arg-type]
        return {
            "value": None if best is None else float(best.value),  # type: ignore[arg-type]
            "trial": None if best is None else best.number,
            "optimizer": None
            if best is None
            else str(best.params.get("optimizer") or best.user_attrs.get(ATTR_BASELINE)),
            "trials": sum(t.state in FINISHED for t in group),
            "seconds": sum(float(t.user_attrs.get("seconds", 0.0)) for t in group),
        }

    out = {"tuned": side(tuned), "tuning_free": side(free)}
    values = out["tuned"]["value"], out["tuning_free"]["value"]
    difference = None if None in values else values[0] - values[1]
    return {**out, "difference": difference}


def describe_tuned_vs_tuning_free(comparison: Mapping[str, Any], metric: str) -> str:
    """One line for summaries: ``val_acc: best tuned 0.9712 (adam, trial 14; 28 trials,
    310.2 s) vs best tuning-free 0.9650 (prodigy, trial 0; 2 trials, 25.1 s): +0.0062``."""

    def part(entry: Mapping[str, Any]) -> str:
        if entry["value"] is None:
            return f"none yet ({entry['trials']} trials)"
        return (f"{entry['value']:.4f} ({entry['optimizer']}, trial {entry['trial']}; "
                f"{entry['trials']} trials, {entry['seconds']:.1f} s)")  # fmt: skip

    difference = comparison["difference"]
    tail = "" if difference is None else f": {difference:+.4f}"
    return (f"{metric}: best tuned {part(comparison['tuned'])} vs best tuning-free "
            f"{part(comparison['tuning_free'])}{tail}")  # fmt: skip


def best_config(study: optuna.Study) -> TrainConfig:
    """The resolved training configuration of the study's best trial.

    Raises:
        ConfigError: The study has no complete trial.
    """
    try:
        trial = study.best_trial
    except ValueError:
        raise ConfigError(f"study {study.study_name!r} has no complete trial yet") from None
    return TrainConfig.model_validate(trial.user_attrs["config"])


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
"""The states that count towards ``n_trials``."""


def finished_count(study: optuna.Study) -> int:
    """How many of the study's trials are complete or pruned."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))
