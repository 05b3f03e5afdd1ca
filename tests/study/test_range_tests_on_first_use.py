"""``space.lr.range_tests: first_use``: each optimizer's range test runs just before its
first trial (in its worker, under the set-up lock), not all of them before any trial."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

import lrtune.range_test._find
from lrtune.config import StudyConfig
from lrtune.hooks import SearchCallback
from lrtune.study import search


def _config(tmp_path: Path, **fields: Any) -> StudyConfig:
    lr = {"auto": True, "num_steps": 30, **fields.pop("lr", {})}
    data: dict[str, Any] = {
        "name": "lazy", "dataset": "digits", "model": "mlp",
        "model_options": {"width": 16, "depth": 1}, "budget": {"epochs": 1}, "n_trials": 3,
        "seed": 0, "storage": str(tmp_path / "studies.journal"),
        "space": {"optimizers": ["sgd", "adam", "rmsprop"], "lr": lr},
        **fields,
    }  # fmt: skip
    return StudyConfig.model_validate(data)


@pytest.fixture
def events() -> Iterator[list[str]]:
    """What ran, in order: ``test <optimizer>`` for each range test, then (from the
    callback below) ``trial <optimizer>`` for each finished trial."""
    seen: list[str] = []
    original = lrtune.range_test._find.compare_optimizers

    def counted(config: Any, optimizers: Any, **kwargs: Any) -> Any:
        seen.extend(f"test {name}" for name in optimizers)
        return original(config, optimizers, **kwargs)

    lrtune.range_test._find.compare_optimizers = counted  # type: ignore[assignment]
    try:
        yield seen
    finally:
        lrtune.range_test._find.compare_optimizers = original


def _trial_log(seen: list[str]) -> Any:
    def record(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        seen.append(f"trial {trial.params['optimizer']}")

    return record


def test_each_range_test_runs_just_before_its_optimizers_first_trial(
    tmp_path: Path, events: list[str]
) -> None:
    config = _config(tmp_path)
    study = search(config, progress=None, publish=False, callbacks=[_trial_log(events)])
    assert events == [
        "test sgd", "trial sgd", "test adam", "trial adam", "test rmsprop", "trial rmsprop"
    ]  # fmt: skip
    stored = study.user_attrs["lrtune.lr_auto"]
    for trial in study.trials:  # each at its optimizer's suggestion, as when run up front
        name = trial.params["optimizer"]
        assert trial.user_attrs["start"] == "lr finder"
        assert trial.params[f"{name}.lr"] == pytest.approx(stored[name]["result"]["suggestion"])


def test_the_ranges_equal_those_of_range_tests_run_up_front(tmp_path: Path) -> None:
    lazy = search(_config(tmp_path), progress=None, publish=False)
    upfront = search(
        _config(tmp_path, name="upfront", lr={"range_tests": "upfront"}),
        progress=None, publish=False,
    )  # fmt: skip
    first, second = lazy.user_attrs["lrtune.lr_auto"], upfront.user_attrs["lrtune.lr_auto"]
    assert set(first) == set(second) == {"sgd", "adam", "rmsprop"}
    for name in first:
        assert first[name]["range"] == pytest.approx(second[name]["range"])
    assert [t.params for t in lazy.trials] == [t.params for t in upfront.trials]


def test_the_ranges_test_on_reading_only(tmp_path: Path, events: list[str]) -> None:
    """AutoRanges: membership and listing run nothing; reading a range runs its test once."""
    from lrtune.storage import close_storage, open_storage
    from lrtune.study._auto_lr import AutoRanges
    from lrtune.study._runner import open_study

    config = _config(tmp_path)
    storage = open_storage(config.storage)
    try:
        ranges = AutoRanges(open_study(config, storage), config, storage)
        assert (
            "adam" in ranges
            and "nadam" not in ranges
            and list(ranges) == ["sgd", "adam", "rmsprop"]
        )
        assert events == []
        low, high = ranges["adam"]
        assert 0 < low < high and ranges["adam"] == (low, high)
        assert events == ["test adam"] and set(ranges.entries) == {"adam"}
        with pytest.raises(KeyError):
            ranges["nadam"]
    finally:
        close_storage(storage)


def test_an_optimizer_no_trial_reaches_costs_no_range_test(
    tmp_path: Path, events: list[str]
) -> None:
    config = _config(tmp_path, n_trials=1)
    study = search(config, progress=None, publish=False)
    assert events == ["test sgd"]
    assert set(study.user_attrs["lrtune.lr_auto"]) == {"sgd"}
    # a rerun with a larger budget goes on with the next optimizer's range test and trial
    study = search(config, progress=None, publish=False, n_trials=2)
    assert events == ["test sgd", "test adam"]
    assert [t.params["optimizer"] for t in study.trials] == ["sgd", "adam"]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_without_finder_trials_the_sampled_optimizer_is_tested(
    tmp_path: Path, events: list[str]
) -> None:
    """enqueue_finder: false: the sampler picks the optimizer; its range test runs then."""
    config = _config(tmp_path, n_trials=2, enqueue_finder=False)
    study = search(config, progress=None, publish=False)
    sampled = {t.params["optimizer"] for t in study.trials}
    assert set(study.user_attrs["lrtune.lr_auto"]) == sampled
    assert sorted(events) == sorted(f"test {name}" for name in sampled)
    for trial in study.trials:
        name = trial.params["optimizer"]
        low, high = study.user_attrs["lrtune.lr_auto"][name]["range"]
        assert low <= trial.params[f"{name}.lr"] <= high
        assert "start" not in trial.user_attrs


class _Curves(SearchCallback):
    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def on_setup(self, study: optuna.Study, config: StudyConfig, lr_auto: Any) -> None:
        self.seen.append(sorted(lr_auto))


def test_the_hooks_see_each_new_range_test(tmp_path: Path) -> None:
    curves = _Curves()
    search(_config(tmp_path, n_trials=2), progress=None, publish=False, callbacks=[curves])
    assert curves.seen == [[], ["sgd"], ["adam", "sgd"]]


def test_a_rerun_may_switch_when_the_range_tests_run(tmp_path: Path, events: list[str]) -> None:
    """``range_tests`` is when they run, not what they find: not part of the study's
    identity, so a rerun with ``upfront`` continues a ``first_use`` study."""
    search(_config(tmp_path, n_trials=1), progress=None, publish=False)
    study = search(
        _config(tmp_path, n_trials=3, lr={"range_tests": "upfront"}), progress=None,
        publish=False,
    )  # fmt: skip
    assert events == ["test sgd", "test adam", "test rmsprop"]
    assert [t.params["optimizer"] for t in study.trials] == ["sgd", "adam", "rmsprop"]
    assert all(t.user_attrs["start"] == "lr finder" for t in study.trials)


def test_enqueue_defaults_runs_every_range_test_first(tmp_path: Path, events: list[str]) -> None:
    """``enqueue_defaults``' trials need every optimizer's range: the range tests all run
    in the set-up, and the finder's trials still come before the defaults' trials."""
    config = _config(tmp_path, n_trials=4, enqueue_defaults=True)
    study = search(config, progress=None, publish=False, callbacks=[_trial_log(events)])
    assert events == [
        "test sgd", "test adam", "test rmsprop", "trial sgd", "trial adam", "trial rmsprop",
        "trial sgd",
    ]  # fmt: skip
    ran = study.trials[:4]  # the defaults' other two trials wait in the queue
    assert [t.user_attrs.get("start") for t in ran] == ["lr finder"] * 3 + [None]
    assert ran[3].user_attrs["defaults"] is True
