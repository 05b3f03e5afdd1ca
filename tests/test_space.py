"""The conditional search space, checked on many asks of a real Optuna study (no training)."""

from __future__ import annotations

import math

import optuna
import pytest

from lrtune.config import StudyConfig, study_config_from
from lrtune.optimizers import get_optimizer_info
from lrtune.space import (
    TRIALS_PER_DIMENSION,
    default_params,
    describe_space,
    lr_ranges,
    suggest_config,
    trials_to_open,
)


def _study(n_trials: int = 1, **space: object) -> StudyConfig:
    """A study over every optimizer; the whole space from the first trial (``grow`` off)
    unless ``space`` says otherwise."""
    return study_config_from(
        None,
        {
            "name": "t",
            "budget": {"epochs": 1},
            "n_trials": n_trials,
            "space": {
                "grow": False,
                "optimizers": ["sgd", "momentum", "nesterov", "rmsprop", "adagrad", "adam",
                               "adamw", "adamax", "nadam", "radam"],
                "schedules": ["constant", {"name": "step", "params": {"gamma": {"low": 0.1,
                                                                               "high": 0.5}}},
                              {"name": "onecycle", "params": {"pct_start": 0.2}}],
                "clip": ["none", "norm", "value"],
                **space,
            },
        },
    )  # fmt: skip


def _asks(config: StudyConfig, n: int = 150) -> list[tuple[dict, object]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    ranges = lr_ranges(config)
    out = []
    for _ in range(n):
        trial = study.ask()
        train = suggest_config(trial, config, ranges)
        out.append((trial.params, train))
        study.tell(trial, 0.0)
    return out


def test_parameters_exist_only_where_they_apply() -> None:
    seen_optimizers = set()
    for params, train in _asks(_study()):
        opt = params["optimizer"]
        seen_optimizers.add(opt)
        info = get_optimizer_info(opt)
        assert train.optimizer.name == opt
        # exactly this optimizer's LR parameter, and no other optimizer's parameters
        assert f"{opt}.lr" in params
        assert all(k.split(".")[0] in (opt, "optimizer", "schedule", "clip") for k in params)
        has = {k.split(".", 1)[1] for k in params if k.startswith(opt + ".")}
        assert ("1-beta1" in has) == info.has_betas and ("1-beta2" in has) == info.has_betas
        assert ("1-momentum" in has) == info.has_momentum
        assert "eps" not in has  # not tunable by default
        # schedule params only for their schedule; fixed values pass through
        sched = params["schedule"]
        assert ("schedule.step.gamma" in params) == (sched == "step")
        if sched == "onecycle":
            assert train.schedule.params["pct_start"] == 0.2
        # clip threshold only when clipping, named by kind
        kind = params["clip"]
        assert train.clip.kind == kind
        assert (f"clip.{kind}.threshold" in params) == (kind != "none")
    assert seen_optimizers == {
        "sgd", "momentum", "nesterov", "rmsprop", "adagrad", "adam", "adamw", "adamax",
        "nadam", "radam",
    }  # fmt: skip


def test_values_fall_in_their_ranges() -> None:
    for params, train in _asks(_study()):
        info = get_optimizer_info(train.optimizer.name)
        low, high = info.lr_range
        assert low <= train.optimizer.lr <= high
        for hp in info.hyperparameters:
            value = train.optimizer.params[hp.name]
            if hp.tune:
                assert hp.low - 1e-12 <= value <= hp.high + 1e-12, (hp.name, value)
            else:
                assert value == hp.default
        if "1-beta1" in str(params):
            one_minus = params[f"{train.optimizer.name}.1-beta1"]
            assert math.isclose(train.optimizer.params["beta1"], 1 - one_minus)


def test_space_overrides_registry_ranges_and_turns_things_off() -> None:
    config = _study(
        optimizers=["adam", "momentum"],
        lr={"low": 1e-3, "high": 1e-2},
        hyperparameters={"beta1": {"low": 0.8, "high": 0.9}, "weight_decay": False},
    )
    for params, train in _asks(config, 60):
        assert 1e-3 <= train.optimizer.lr <= 1e-2
        assert train.optimizer.params["weight_decay"] == 0.0
        assert not any(k.endswith("weight_decay") for k in params)
        if train.optimizer.name == "adam":
            assert 0.8 <= train.optimizer.params["beta1"] <= 0.9


def test_shared_lr_parameter_when_not_linked() -> None:
    config = _study(optimizers=["adam", "sgd"], lr={"low": 1e-4, "high": 1e-1, "linked": False})
    for params, _ in _asks(config, 20):
        assert "lr" in params and not any(k.endswith(".lr") for k in params)


def test_batch_size_and_model_options_only_when_asked() -> None:
    for params, _ in _asks(_study(optimizers=["adam"]), 10):
        assert "batch_size" not in params and not any(k.startswith("model.") for k in params)
    config = _study(optimizers=["adam"], batch_size=[32, 64], model_options={"width": [16, 32]})
    for params, train in _asks(config, 20):
        assert train.batch_size == params["batch_size"] in (32, 64)
        assert train.model_options["width"] == params["model.width"] in (16, 32)


def test_default_params_enqueue_each_optimizer_at_its_defaults() -> None:
    config = _study(optimizers=["adam", "momentum", "sgd"])
    ranges = lr_ranges(config)
    study = optuna.create_study()
    for name in config.space.optimizers:
        study.enqueue_trial(default_params(config, name, ranges))
    for name in config.space.optimizers:
        trial = study.ask()
        train = suggest_config(trial, config, ranges)
        info = get_optimizer_info(name)
        assert train.optimizer.name == name
        assert train.optimizer.lr == pytest.approx(info.lr_default)
        for hp in info.hyperparameters:
            if hp.tune and hp.name != "weight_decay":
                assert train.optimizer.params[hp.name] == pytest.approx(hp.default)
        assert train.schedule.name == "constant" and train.clip.kind == "none"
        study.tell(trial, 0.0)


def test_lr_ranges_from_auto_win() -> None:
    config = _study(optimizers=["adam", "sgd"])
    ranges = lr_ranges(config, {"adam": (1e-4, 3e-3)})
    assert ranges == {"adam": (1e-4, 3e-3), "sgd": get_optimizer_info("sgd").lr_range}


def test_a_short_study_searches_the_lr_alone_and_a_long_one_everything() -> None:
    """space.grow: an optimizer's registry hyperparameters join at 10 trials per dimension
    per optimizer (adam: lr, beta1, beta2, weight_decay -> 40 trials each, 80 for two)."""
    optimizers = ["adam", "momentum"]
    assert trials_to_open(_study(optimizers=optimizers), "adam") == TRIALS_PER_DIMENSION * 4 * 2
    assert trials_to_open(_study(optimizers=optimizers), "momentum") == TRIALS_PER_DIMENSION * 3 * 2
    short = _study(20, optimizers=optimizers, grow=True)
    for params, train in _asks(short, 30):
        name = train.optimizer.name
        assert {k for k in params if k.startswith(name + ".")} == {f"{name}.lr"}, params
        info = get_optimizer_info(name)
        for hp in info.hyperparameters:  # held at the registry default
            assert train.optimizer.params[hp.name] == pytest.approx(hp.default)
    # at 60 trials momentum's three dimensions open (60 >= 10 * 3 * 2), adam's four do not
    middle = _study(60, optimizers=optimizers, grow=True)
    for params, train in _asks(middle, 30):
        opened = {k for k in params if k.startswith(train.optimizer.name + ".")}
        if train.optimizer.name == "momentum":
            assert opened == {"momentum.lr", "momentum.1-momentum", "momentum.weight_decay"}
        else:
            assert opened == {"adam.lr"}
    lines = describe_space(middle)
    assert lines[0].startswith("adam: lr; beta1, beta2, weight_decay at registry defaults")
    assert "n_trials >= 80" in lines[0]
    assert lines[1] == "momentum: lr, momentum, weight_decay"
    # a timeout alone gives no budget to size the space by: everything is searched
    timed = study_config_from(None, {"name": "t", "budget": {"epochs": 1}, "timeout": 60,
                                     "space": {"optimizers": optimizers}})  # fmt: skip
    assert describe_space(timed)[0] == "adam: lr, beta1, beta2, weight_decay"


def test_a_hyperparameter_the_study_names_is_searched_from_the_first_trial() -> None:
    config = _study(
        4, optimizers=["adam"], grow=True, hyperparameters={"beta1": {"low": 0.8, "high": 0.95}}
    )
    for params, train in _asks(config, 10):
        assert "adam.1-beta1" in params and 0.8 <= train.optimizer.params["beta1"] <= 0.95
        assert "adam.1-beta2" not in params and "adam.weight_decay" not in params
    assert describe_space(config)[0].startswith("adam: lr, beta1; beta2, weight_decay at")


def test_default_params_take_a_given_lr_clipped_into_the_range() -> None:
    config = _study(optimizers=["adam"])
    ranges = {"adam": (1e-4, 1e-2)}
    assert default_params(config, "adam", ranges, lr=3e-3)["adam.lr"] == 3e-3
    assert default_params(config, "adam", ranges, lr=0.5)["adam.lr"] == 1e-2
