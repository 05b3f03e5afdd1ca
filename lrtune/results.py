"""What a study stores and how to read it back: the study user attrs lrtune writes, trials
with their test metrics, the best trial of each optimizer, and the best trial's training
configuration.

Optuna only, no Lightning: the study runner writes these results, the report, the summary
and ``lrtune best`` read them.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import optuna
from optuna.trial import TrialState

from lrtune.config import TrainConfig
from lrtune.errors import ConfigError

__all__ = [
    "ATTR_CONFIG",
    "ATTR_LR_AUTO",
    "ATTR_TEST_PREFIX",
    "FINISHED",
    "best_config",
    "best_per_optimizer",
    "finished_count",
    "trials_with_tests",
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
        name = str(trial.params.get("optimizer", default))
        if name not in best or sign * trial.value > sign * float(best[name].value):  # type: ignore[arg-type]
            best[name] = trial
    return best


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
