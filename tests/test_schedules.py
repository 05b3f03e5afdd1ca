"""LR schedules: closed forms, agreement with torch's own schedulers, state, and errors.

Every LR here is read from a real optimizer's ``param_groups`` after ``scheduler.step()``.
"""

from __future__ import annotations

import io
import itertools
import math
import warnings
from collections.abc import Callable, Mapping

import pytest
import torch
from torch import nn
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    ExponentialLR,
    LambdaLR,
    LRScheduler,
    OneCycleLR,
    StepLR,
)

from lrtune.errors import ConfigError
from lrtune.schedules import (
    SCHEDULES,
    ScheduleParam,
    create_scheduler,
    get_schedule_info,
    list_schedules,
    lr_factor,
)

T = 100
ALL = list_schedules()
SCHEDULE_PARAMS = [(name, p) for name in ALL for p in SCHEDULES[name].params]


def _optimizer(*lrs: float) -> torch.optim.Optimizer:
    groups = [{"params": [nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=lrs[0])


def _trace(
    optimizer: torch.optim.Optimizer, scheduler: LRScheduler, steps: int, group: int = 0
) -> list[float]:
    """LR of ``group`` before the first step and after each of ``steps`` scheduler steps."""
    lrs = [optimizer.param_groups[group]["lr"]]
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[group]["lr"])
    return lrs


def _ours(
    name: str,
    total_steps: int = T,
    params: Mapping[str, float] | None = None,
    *,
    base: float = 1.0,
    steps: int | None = None,
) -> list[float]:
    optimizer = _optimizer(base)
    scheduler = create_scheduler(optimizer, name, total_steps, params)
    assert isinstance(scheduler, LambdaLR)
    return _trace(optimizer, scheduler, total_steps if steps is None else steps)


def _torch(
    make: Callable[[torch.optim.Optimizer], LRScheduler], steps: int, base: float = 1.0
) -> list[float]:
    optimizer = _optimizer(base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. deprecation notes from torch's schedulers
        scheduler = make(optimizer)
        return _trace(optimizer, scheduler, steps)


def _strictly_decreasing(values: list[float]) -> bool:
    return all(a > b for a, b in itertools.pairwise(values))


def _strictly_increasing(values: list[float]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


def _assert_close(actual: list[float], expected: list[float], rel: float) -> None:
    assert len(actual) == len(expected)
    for step, (a, e) in enumerate(zip(actual, expected, strict=True)):
        assert math.isclose(a, e, rel_tol=rel, abs_tol=0.0), f"step {step}: {a!r} != {e!r}"


# ----------------------------------------------------------------------------- registry


def test_registry() -> None:
    assert ALL == ["constant", "step", "exponential", "cosine", "onecycle", "warmup_cosine"]
    for name in ALL:
        info = get_schedule_info(name)
        assert info.name == name
        assert info.description
        assert info.param_names == tuple(p.name for p in info.params)


@pytest.mark.parametrize(
    ("schedule", "param"), SCHEDULE_PARAMS, ids=[f"{s}-{p.name}" for s, p in SCHEDULE_PARAMS]
)
def test_param_declarations_are_valid(schedule: str, param: ScheduleParam) -> None:
    assert param.check(param.default) == param.default
    assert param.low <= param.high
    if param.tune:
        assert param.low < param.high
        assert param.check(param.low) == param.low
        assert param.check(param.high) == param.high
    if param.log:
        assert param.low > 0
    if param.integer:
        assert isinstance(param.check(param.default), int)
    assert param.help


@pytest.mark.parametrize("name", ALL)
def test_lr_factor_matches_the_scheduler(name: str) -> None:
    lrs = _ours(name, T, base=1.0)
    last = T - 1 if name == "onecycle" else T
    for step in (0, 1, 17, 50, last):
        assert math.isclose(lrs[step], lr_factor(name, step, T), rel_tol=1e-15, abs_tol=0.0)


# ----------------------------------------------------------------------------- constant


def test_constant_stays_one() -> None:
    assert _ours("constant", T, base=0.3, steps=T + 10) == [0.3] * (T + 11)
    assert all(lr_factor("constant", t, T) == 1.0 for t in (0, 1, T, 10 * T))


# ----------------------------------------------------------------------------- step


@pytest.mark.parametrize(("step_size", "gamma"), [(10, 0.5), (7, 0.1), (1, 0.9), (100, 0.2)])
@pytest.mark.parametrize("base", [1.0, 0.1])
def test_step_matches_torch_step_lr(step_size: int, gamma: float, base: float) -> None:
    ours = _ours("step", T, {"step_size": step_size, "gamma": gamma}, base=base)
    expected = _torch(lambda opt: StepLR(opt, step_size=step_size, gamma=gamma), T, base)
    _assert_close(ours, expected, 1e-12)
    for t in range(T + 1):
        assert math.isclose(ours[t], base * gamma ** (t // step_size), rel_tol=1e-12)


def test_step_default_step_size_is_a_third_of_the_run() -> None:
    assert math.ceil(T / 3) == 34
    ours = _ours("step", T)
    _assert_close(ours, _torch(lambda opt: StepLR(opt, step_size=34, gamma=0.1), T), 1e-12)
    assert ours[33] == 1.0
    assert math.isclose(ours[34], 0.1)
    assert math.isclose(ours[67], 0.1)
    assert math.isclose(ours[68], 0.01)
    assert math.isclose(ours[T], 0.01)
    # two drops per run, whatever the length
    for total in (1, 2, 3, 10, 31):
        size = math.ceil(total / 3)
        assert get_schedule_info("step").factor_fn(total).step_size == size
        assert lr_factor("step", size - 1, total) == 1.0
        assert math.isclose(lr_factor("step", size, total), 0.1)


# ----------------------------------------------------------------------------- exponential


@pytest.mark.parametrize(("decay_rate", "decay_steps"), [(0.5, 10), (0.1, 0), (0.9, 3)])
@pytest.mark.parametrize("base", [1.0, 0.02])
def test_exponential_closed_form_and_torch(
    decay_rate: float, decay_steps: int, base: float
) -> None:
    params = {"decay_rate": decay_rate, "decay_steps": decay_steps}
    ours = _ours("exponential", T, params, base=base)
    steps = decay_steps or T
    closed = [base * decay_rate ** (t / steps) for t in range(T + 1)]
    _assert_close(ours, closed, 1e-12)
    gamma = decay_rate ** (1 / steps)
    _assert_close(ours, _torch(lambda opt: ExponentialLR(opt, gamma=gamma), T, base), 1e-9)


@pytest.mark.parametrize(("decay_rate", "decay_steps"), [(0.5, 10), (0.1, 0), (0.3, 7)])
@pytest.mark.parametrize("staircase", [1, True])
def test_exponential_staircase_is_step_lr(
    decay_rate: float, decay_steps: int, staircase: float
) -> None:
    params = {"decay_rate": decay_rate, "decay_steps": decay_steps, "staircase": staircase}
    ours = _ours("exponential", T, params, steps=T + 5)
    steps = decay_steps or T
    expected = _torch(lambda opt: StepLR(opt, step_size=steps, gamma=decay_rate), T + 5)
    _assert_close(ours, expected, 1e-12)
    for t in range(T + 6):
        assert math.isclose(ours[t], decay_rate ** (t // steps), rel_tol=1e-12)


def test_exponential_default_decays_by_decay_rate_over_the_run() -> None:
    ours = _ours("exponential", T)  # decay_rate 0.1, decay_steps = T
    assert ours[0] == 1.0
    assert math.isclose(ours[T], 0.1, rel_tol=1e-12)
    assert math.isclose(ours[T // 2], math.sqrt(0.1), rel_tol=1e-12)
    ours = _ours("exponential", T, {"decay_rate": 0.25})
    assert math.isclose(ours[T], 0.25, rel_tol=1e-12)
    # not staircase by default: strictly decreasing
    assert _strictly_decreasing(ours)


# ----------------------------------------------------------------------------- cosine


@pytest.mark.parametrize("min_factor", [0.0, 0.05, 0.5])
@pytest.mark.parametrize("base", [1.0, 0.1, 3e-3])
def test_cosine_matches_torch_cosine_annealing(min_factor: float, base: float) -> None:
    ours = _ours("cosine", T, {"min_factor": min_factor}, base=base)
    expected = _torch(
        lambda opt: CosineAnnealingLR(opt, T_max=T, eta_min=min_factor * base), T, base
    )
    _assert_close(ours, expected, 1e-9)
    closed = [
        base * (min_factor + (1 - min_factor) * (1 + math.cos(math.pi * t / T)) / 2)
        for t in range(T + 1)
    ]
    _assert_close(ours, closed, 1e-12)
    assert ours[0] == base
    assert math.isclose(ours[T], min_factor * base, rel_tol=1e-12)


@pytest.mark.parametrize("min_factor", [0.0, 0.1])
def test_cosine_stays_at_the_minimum_after_the_run(min_factor: float) -> None:
    ours = _ours("cosine", T, {"min_factor": min_factor}, steps=T + 25)
    assert all(lr == ours[T] for lr in ours[T:])
    assert math.isclose(ours[T], min_factor, rel_tol=1e-12, abs_tol=0.0)
    assert lr_factor("cosine", 10 * T, T, {"min_factor": min_factor}) == ours[T]


def test_cosine_default_reaches_zero() -> None:
    ours = _ours("cosine", T)
    assert ours[T] == 0.0
    assert _strictly_decreasing(ours[: T + 1])


# ----------------------------------------------------------------------------- onecycle


def _torch_onecycle(base: float, total: int, params: Mapping[str, float]) -> list[float]:
    kwargs = {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4, **params}
    return _torch(
        lambda opt: OneCycleLR(
            opt,
            max_lr=base,
            total_steps=total,
            anneal_strategy="cos",
            cycle_momentum=False,
            three_phase=False,
            **kwargs,
        ),
        total - 1,
        base,
    )


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"pct_start": 0.25, "div_factor": 10.0, "final_div_factor": 100.0},
        {"pct_start": 0.5, "div_factor": 5.0, "final_div_factor": 1e5},
        {"pct_start": 0.123, "div_factor": 1.0, "final_div_factor": 1.0},
    ],
)
@pytest.mark.parametrize("base", [1.0, 0.05])
@pytest.mark.parametrize("total", [T, 37])
def test_onecycle_matches_torch(params: dict, base: float, total: int) -> None:
    ours = _ours("onecycle", total, params, base=base, steps=total - 1)
    _assert_close(ours, _torch_onecycle(base, total, params), 1e-12)


def test_onecycle_shape() -> None:
    ours = _ours("onecycle", T, steps=T + 5)  # pct_start 0.3: peak at step 0.3 * T - 1 = 29
    assert math.isclose(ours[0], 1 / 25, rel_tol=1e-12)
    assert ours[29] == 1.0
    assert max(ours) == 1.0
    assert _strictly_increasing(ours[:30])
    assert _strictly_decreasing(ours[29:T])
    assert math.isclose(ours[T - 1], 1 / 25 / 1e4, rel_tol=1e-12)
    # after the last step it stays at the final LR (OneCycleLR itself would raise)
    assert all(lr == ours[T - 1] for lr in ours[T - 1 :])


@pytest.mark.parametrize(
    ("total", "pct_start"), [(1, 0.3), (3, 0.3), (100, 0.005), (10, 1.0), (2, 0.5)]
)
def test_onecycle_too_short_is_a_config_error(total: int, pct_start: float) -> None:
    with pytest.raises(ConfigError, match=r"onecycle.*pct_start"):
        create_scheduler(_optimizer(1.0), "onecycle", total, {"pct_start": pct_start})


# ----------------------------------------------------------------------------- warmup_cosine


def hf_cosine_with_warmup(
    step: int, num_warmup_steps: int, num_training_steps: int, min_lr_rate: float = 0.0
) -> float:
    """transformers' get_cosine_schedule_with_warmup (num_cycles=0.5), with its min-LR variant
    (get_cosine_with_min_lr_schedule_with_warmup), written out."""
    num_cycles = 0.5
    if step < num_warmup_steps:
        return float(step) / float(max(1, num_warmup_steps))
    progress = float(step - num_warmup_steps) / float(max(1, num_training_steps - num_warmup_steps))
    factor = 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress))
    factor = factor * (1 - min_lr_rate) + min_lr_rate
    return max(0.0, factor)


@pytest.mark.parametrize(
    ("params", "warmup"),
    [
        ({}, 5),
        ({"warmup_fraction": 0.1, "min_factor": 0.1}, 10),
        ({"warmup_fraction": 0.3, "min_factor": 0.02}, 30),
        ({"warmup_fraction": 0.0}, 0),
    ],
)
@pytest.mark.parametrize("base", [1.0, 0.2])
def test_warmup_cosine(params: dict, warmup: int, base: float) -> None:
    min_factor = params.get("min_factor", 0.0)
    ours = _ours("warmup_cosine", T, params, base=base, steps=T + 10)
    expected = [base * hf_cosine_with_warmup(t, warmup, T, min_factor) for t in range(T + 1)]
    _assert_close(ours[: T + 1], expected, 1e-12)
    if warmup:
        assert ours[0] == 0.0
        for t in range(warmup + 1):
            assert math.isclose(ours[t], base * t / warmup, rel_tol=1e-12, abs_tol=0.0)
    assert ours[warmup] == base
    assert max(ours) == base
    assert _strictly_decreasing(ours[warmup : T + 1])
    assert math.isclose(ours[T], base * min_factor, rel_tol=1e-12, abs_tol=0.0)
    # and stays there (transformers' version would rise again)
    assert all(lr == ours[T] for lr in ours[T:])


def test_warmup_steps_are_rounded_from_the_fraction() -> None:
    info = get_schedule_info("warmup_cosine")
    assert info.factor_fn(T).warmup_steps == 5
    assert info.factor_fn(T, {"warmup_fraction": 0.123}).warmup_steps == 12
    assert info.factor_fn(40, {"warmup_fraction": 0.3}).warmup_steps == 12
    assert info.factor_fn(T, {"warmup_fraction": 0.058}).warmup_steps == 6  # 5.8 rounds up
    ours = _ours("warmup_cosine", T, {"warmup_fraction": 0.058}, steps=7)
    assert ours[5] < ours[6] == 1.0 > ours[7]


# ----------------------------------------------------------------------------- param groups

RATIO_PARAMS: dict[str, dict[str, float]] = {
    "constant": {},
    "step": {"step_size": 9, "gamma": 0.5},
    "exponential": {"decay_rate": 0.2},
    "cosine": {"min_factor": 0.01},
    "onecycle": {"pct_start": 0.4},
    "warmup_cosine": {"warmup_fraction": 0.1},
}


def test_ratio_params_cover_the_registry() -> None:
    assert set(RATIO_PARAMS) == set(ALL)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("params", ["defaults", "custom"])
def test_param_group_ratios_are_preserved(name: str, params: str) -> None:
    schedule_params = RATIO_PARAMS[name] if params == "custom" else None
    optimizer = _optimizer(1.0, 0.1)
    scheduler = create_scheduler(optimizer, name, T, schedule_params)
    factor = get_schedule_info(name).factor_fn(T, schedule_params)
    for step in range(T + 3):
        first, second = (g["lr"] for g in optimizer.param_groups)
        assert math.isclose(first, factor(step), rel_tol=1e-15, abs_tol=0.0)
        assert math.isclose(first, 10 * second, rel_tol=1e-12, abs_tol=0.0), step
        optimizer.step()
        scheduler.step()


# ----------------------------------------------------------------------------- state


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip(name: str) -> None:
    total, params = 30, RATIO_PARAMS[name]
    optimizer = _optimizer(0.5, 0.05)
    scheduler = create_scheduler(optimizer, name, total, params)
    _trace(optimizer, scheduler, 7)

    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer)  # weights_only: the multipliers are saved as plain data
    assert state["last_epoch"] == 7

    # a fresh scheduler built with other settings: the state carries the multiplier
    restored_optimizer = _optimizer(0.5, 0.05)
    restored = create_scheduler(restored_optimizer, name, 2 * total)
    restored.load_state_dict(state)
    assert restored.last_epoch == 7
    assert restored.get_last_lr() == scheduler.get_last_lr()

    expected = _trace(optimizer, scheduler, total - 1 - 7)[1:]
    got = _trace(restored_optimizer, restored, total - 1 - 7)[1:]
    assert got == expected
    assert [g["lr"] for g in restored_optimizer.param_groups] == [
        g["lr"] for g in optimizer.param_groups
    ]


def test_state_dict_holds_the_schedule_parameters() -> None:
    scheduler = create_scheduler(_optimizer(1.0), "cosine", 50, {"min_factor": 0.2})
    assert scheduler.state_dict()["lr_lambdas"] == [{"total_steps": 50, "min_factor": 0.2}]


# ----------------------------------------------------------------------------- names, errors


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("one-cycle", "onecycle"),
        ("one_cycle", "onecycle"),
        ("1cycle", "onecycle"),
        ("OneCycle", "onecycle"),
        ("Warmup-Cosine", "warmup_cosine"),
        (" COSINE ", "cosine"),
    ],
)
def test_names_are_normalised(spelling: str, name: str) -> None:
    assert get_schedule_info(spelling) is SCHEDULES[name]


def test_unknown_schedule_lists_known_names() -> None:
    with pytest.raises(ConfigError) as excinfo:
        create_scheduler(_optimizer(1.0), "linear", T)
    assert str(excinfo.value) == (
        "unknown schedule 'linear'; known: constant, step, exponential, cosine, onecycle, "
        "warmup_cosine"
    )


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("cosine", {"gamma": 0.1}, "schedule 'cosine' takes no 'gamma' (it takes: min_factor)"),
        ("constant", {"gamma": 0.1}, "schedule 'constant' takes no 'gamma' (it takes: none)"),
        (
            "step",
            {"decay_rate": 0.1},
            "schedule 'step' takes no 'decay_rate' (it takes: step_size, gamma)",
        ),
        ("step", {"gamma": 0}, "gamma must be in (0, 1], got 0.0"),
        ("step", {"gamma": 1.5}, "gamma must be in (0, 1], got 1.5"),
        ("step", {"gamma": "x"}, "gamma must be a number, got 'x'"),
        ("step", {"step_size": -1}, "step_size must be in [0, inf), got -1.0"),
        ("step", {"step_size": 2.5}, "step_size must be a whole number of steps, got 2.5"),
        ("exponential", {"decay_rate": math.nan}, "decay_rate must be in (0, 1], got nan"),
        ("exponential", {"decay_rate": 0.0}, "decay_rate must be in (0, 1], got 0.0"),
        ("exponential", {"staircase": 2}, "staircase must be in [0, 1], got 2.0"),
        ("cosine", {"min_factor": -0.1}, "min_factor must be in [0, 1], got -0.1"),
        ("cosine", {"min_factor": 1.5}, "min_factor must be in [0, 1], got 1.5"),
        ("onecycle", {"pct_start": 0}, "pct_start must be in (0, 1], got 0.0"),
        ("onecycle", {"div_factor": 0.5}, "div_factor must be in [1, inf), got 0.5"),
        (
            "onecycle",
            {"final_div_factor": math.inf},
            "final_div_factor must be in [1, inf), got inf",
        ),
        ("warmup_cosine", {"warmup_fraction": 1.5}, "warmup_fraction must be in [0, 1], got 1.5"),
    ],
)
def test_bad_parameters_are_named(name: str, params: dict, message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        create_scheduler(_optimizer(1.0), name, T, params)
    assert str(excinfo.value) == message


@pytest.mark.parametrize("total", [0, -5])
def test_total_steps_must_be_positive(total: int) -> None:
    with pytest.raises(ConfigError) as excinfo:
        create_scheduler(_optimizer(1.0), "cosine", total)
    assert str(excinfo.value) == f"total_steps must be >= 1, got {total}"
