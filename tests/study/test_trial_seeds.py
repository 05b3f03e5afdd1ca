"""`trial_seeds`: every trial from the study's seed (`same`, the default), or each from its
own (`per_trial`), stored in the trial's config so that its best config reproduces it."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from lrtune import train
from lrtune.config import StudyConfig
from lrtune.results import best_config
from lrtune.study import search
from lrtune.study._objective import trial_seed


def _config(tmp_path: Path, mode: str, n_trials: int) -> StudyConfig:
    return StudyConfig.model_validate(
        {
            "name": "seeds", "dataset": "digits", "model": "mlp", "model_options": {"width": 16},
            "budget": {"epochs": 1}, "n_trials": n_trials, "pruner": "none", "seed": 5,
            "test": "never", "trial_seeds": mode, "storage": str(tmp_path / "s.journal"),
            "space": {"optimizers": ["adam"], "lr": {"low": 1e-3, "high": 1e-2}},
        }
    )  # fmt: skip


@pytest.mark.parametrize("mode", ["same", "per_trial"])
def test_three_trials_of_the_same_hyperparameters(tmp_path: Path, mode: str) -> None:
    """The same hyperparameters three times: one model under `same`, three under
    `per_trial`, each reproduced by training its stored config."""
    study = search(_config(tmp_path, mode, 1), progress=None, publish=False)
    for _ in range(2):
        study.enqueue_trial(study.trials[0].params)
    study = search(_config(tmp_path, mode, 3), progress=None, publish=False)
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 3 and len({str(t.params) for t in trials}) == 1
    seeds = [t.user_attrs["config"]["seed"] for t in trials]
    values = {t.value for t in trials}
    if mode == "same":
        assert seeds == [5, 5, 5] and len(values) == 1
    else:
        assert seeds == [trial_seed(5, t.number) for t in trials]
        assert len(set(seeds)) == 3 and len(values) == 3
    best = best_config(study)
    assert best.seed == study.best_trial.user_attrs["config"]["seed"]
    assert train(best, test=False).val_acc == pytest.approx(study.best_value, abs=1e-6)


def test_trial_seeds_differ_across_numbers_and_studies() -> None:
    seeds = {trial_seed(seed, number) for seed in range(20) for number in range(20)}
    assert len(seeds) == 400 and all(0 <= s < 2**32 for s in seeds)
    assert trial_seed(3, 7) == trial_seed(3, 7)


def test_trial_seeds_are_part_of_the_study(tmp_path: Path) -> None:
    """Switching `trial_seeds` on a rerun would mix two kinds of trial: refused."""
    from lrtune.errors import ConfigError

    search(_config(tmp_path, "same", 1), progress=None, publish=False)
    with pytest.raises(ConfigError, match="trial_seeds"):
        search(_config(tmp_path, "per_trial", 2), progress=None, publish=False)
