"""GatedTPESampler: Optuna's grouped TPE that samples only the groups a trial uses."""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import optuna
import pytest
from optuna.search_space.group_decomposed import _GroupDecomposedSearchSpace

from lrtune._compat._core import IncrementalGroups
from lrtune._sampler import GatedTPESampler, _gate
from lrtune.config import StudyConfig
from lrtune.space import lr_ranges, suggest_config
from lrtune.study import create_sampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

CONFIG = StudyConfig.model_validate(
    {
        "name": "sampler", "budget": {"epochs": 1}, "n_trials": 1,
        "space": {
            "optimizers": ["sgd", "momentum", "adam", "adamax"],
            "lr": {"low": 1e-4, "high": 1.0},
            "grow": False,  # each optimizer's whole group (LR, β, momentum, weight decay)
            "schedules": [
                "constant", {"name": "step", "params": {"gamma": {"low": 0.1, "high": 0.9}}},
            ],
        },
    }
)  # fmt: skip
RANGES = lr_ranges(CONFIG, {})


def _objective(trial: optuna.Trial) -> float:
    config = suggest_config(trial, CONFIG, RANGES)
    lr = config.optimizer.lr
    assert lr is not None
    return -abs(math.log10(lr) + 2.5) - 0.1 * len(config.optimizer.name)


def _sampler(cls: type[optuna.samplers.TPESampler], seed: int = 0, **kw: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(multivariate=True, group=True, n_startup_trials=5, seed=seed, **kw)


def test_lrtune_uses_it_for_tpe() -> None:
    assert isinstance(create_sampler(CONFIG), GatedTPESampler)


def test_gate_reads_lrtune_parameter_names() -> None:
    choices = {"optimizer": {"sgd", "adam"}, "schedule": {"constant", "step"}}
    assert _gate("adam.lr", choices) == ("optimizer", "adam")
    assert _gate("adam.1-beta1", choices) == ("optimizer", "adam")
    assert _gate("schedule.step.gamma", choices) == ("schedule", "step")
    assert _gate("lr", choices) is None  # shared LR: always sampled
    assert _gate("model.width", choices) is None
    assert _gate("rmsprop.lr", choices) is None  # not a choice here


def test_incremental_groups_equal_optunas_decomposition() -> None:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    incremental = IncrementalGroups(True)
    for _ in range(40):
        study.optimize(_objective, n_trials=1)
        got = incremental.calculate(study).search_spaces
        want = _GroupDecomposedSearchSpace(True).calculate(study).search_spaces
        assert got == want
    assert len(got) >= 5  # shared + one group per optimizer + the step schedule's gamma


def test_only_the_chosen_groups_are_sampled() -> None:
    """Per trial: the shared group, the chosen optimizer's group and (if chosen) the step
    schedule's group; Optuna's sampler samples every group."""
    calls: dict[str, list[list[str]]] = {}
    for cls in (GatedTPESampler, optuna.samplers.TPESampler):
        sampler = _sampler(cls)
        seen: list[list[str]] = []
        original = sampler._sample_relative

        def spy(
            study: Any, trial: Any, space: dict[str, Any], _o: Any = original, _s: Any = seen
        ) -> Any:
            _s.append(sorted(space))
            return _o(study, trial, space)

        sampler._sample_relative = spy
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.optimize(_objective, n_trials=30)
        calls[cls.__name__] = seen
        if cls is GatedTPESampler:
            per_trial = len(seen) / 30
            for trial in study.trials[5:]:
                stored = trial.system_attrs.get("tpe:relative_params:0")
                assert stored is not None  # shared for other workers (constant liar)
                relative = json.loads(stored)
                name = trial.params["optimizer"]
                # every gated parameter sampled belongs to the chosen optimizer/schedule
                for key in relative:
                    head = key.split(".")[0]
                    assert head in {"optimizer", "schedule", "clip", name}, key
                    if key.startswith("schedule."):
                        assert trial.params["schedule"] == "step"
                # and the trial used the relative values (not independent ones)
                assert trial.params[f"{name}.lr"] == relative[f"{name}.lr"]
    gated, plain = len(calls["GatedTPESampler"]), len(calls["TPESampler"])
    assert gated < plain / 2, (gated, plain)
    assert per_trial <= 3


def test_finds_as_good_values_as_optunas_tpe() -> None:
    """Same distributions per used group, so over seeds the best values are comparable."""
    best = {}
    for cls in (GatedTPESampler, optuna.samplers.TPESampler):
        values = []
        for seed in range(3):
            study = optuna.create_study(direction="maximize", sampler=_sampler(cls, seed))
            study.optimize(_objective, n_trials=40)
            values.append(study.best_value)
        best[cls.__name__] = sum(values) / len(values)
    # the optimum is -0.3 (sgd at lr 10^-2.5); both get close, neither much worse
    assert best["GatedTPESampler"] > -0.6
    assert best["GatedTPESampler"] >= best["TPESampler"] - 0.15, best


@pytest.mark.parametrize("options", [{"group": False}, {"constant_liar": False}])
def test_other_settings_still_work(options: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = GatedTPESampler(
            **{"multivariate": True, "group": True, "n_startup_trials": 5, "seed": 1, **options}
        )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(_objective, n_trials=15)
    assert len(study.trials) == 15 and all(t.state.name == "COMPLETE" for t in study.trials)
