"""The optimizer registry: declarations, validation, and what reaches ``torch.optim``."""

from __future__ import annotations

import math
import re

import prodigyopt
import pytest
import schedulefree
import torch
from torch import nn

from lrtune.errors import ConfigError
from lrtune.optimizers import (
    OPTIMIZERS,
    HyperParam,
    create_optimizer,
    get_optimizer_info,
    list_optimizers,
)

ALL = list_optimizers()

EXPECTED_CLASS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "momentum": torch.optim.SGD,
    "nesterov": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adamax": torch.optim.Adamax,
    "nadam": torch.optim.NAdam,
    "radam": torch.optim.RAdam,
    # the lrfree extra (a dev dependency, so installed wherever the tests run)
    "schedulefree_adamw": schedulefree.AdamWScheduleFree,
    "schedulefree_sgd": schedulefree.SGDScheduleFree,
    "prodigy": prodigyopt.Prodigy,
}
WITH_BETAS = {"adam", "adamw", "adamax", "nadam", "radam", "schedulefree_adamw", "prodigy"}
WITH_MOMENTUM = {"momentum", "nesterov", "schedulefree_sgd"}

HYPERPARAMS = [(name, h) for name in ALL for h in OPTIMIZERS[name].hyperparameters]
HYPERPARAM_IDS = [f"{name}-{h.name}" for name, h in HYPERPARAMS]


def _linear(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(3, 2)


def _torch_value(group: dict, hp: str) -> float:
    """What torch holds for lrtune's hyperparameter ``hp`` (betas are a tuple)."""
    if hp == "beta1":
        return group["betas"][0]
    if hp == "beta2":
        return group["betas"][1]
    return group[hp]


# ----------------------------------------------------------------------------- registry


def test_registry_is_the_expected_set() -> None:
    assert list(OPTIMIZERS) == ALL
    assert set(ALL) == set(EXPECTED_CLASS)


@pytest.mark.parametrize("name", ALL)
def test_info_is_consistent(name: str) -> None:
    info = get_optimizer_info(name)
    assert info.name == name
    assert info.optimizer_class is EXPECTED_CLASS[name]
    assert info.description
    names = info.hyperparameter_names
    assert len(set(names)) == len(names)
    assert ("beta1" in names) == ("beta2" in names)
    assert info.defaults() == {h.name: h.default for h in info.hyperparameters}
    low, high = info.lr_range
    assert 0 < low < high
    assert low <= info.lr_default <= high


@pytest.mark.parametrize("name", ALL)
def test_has_betas_and_has_momentum(name: str) -> None:
    info = get_optimizer_info(name)
    assert info.has_betas is (name in WITH_BETAS)
    assert info.has_momentum is (name in WITH_MOMENTUM)


def test_betas_and_momentum_sets_exactly() -> None:
    assert {n for n in ALL if OPTIMIZERS[n].has_betas} == WITH_BETAS
    assert {n for n in ALL if OPTIMIZERS[n].has_momentum} == WITH_MOMENTUM


@pytest.mark.parametrize(("optimizer", "hp"), HYPERPARAMS, ids=HYPERPARAM_IDS)
def test_hyperparameter_ranges_are_valid(optimizer: str, hp: HyperParam) -> None:
    assert hp.low < hp.high
    # the default and both ends of the search range are valid values
    assert hp.check(hp.default) == hp.default
    assert hp.check(hp.low) == hp.low
    assert hp.check(hp.high) == hp.high
    assert hp.min_value <= hp.low
    assert hp.high <= hp.max_value
    if hp.log or hp.one_minus:
        assert hp.low > 0
    if hp.one_minus:
        assert hp.high < 1
        assert 1 - hp.high > 0
    assert not (hp.log and hp.one_minus)
    assert isinstance(hp.tune, bool)
    assert hp.help


@pytest.mark.parametrize(("optimizer", "hp"), HYPERPARAMS, ids=HYPERPARAM_IDS)
def test_hyperparameter_rejects_out_of_range(optimizer: str, hp: HyperParam) -> None:
    opening = re.escape(hp.interval)
    for bad in (math.nan, math.inf, -math.inf, hp.min_value - 1.0):
        with pytest.raises(ConfigError, match=rf"^{hp.name} must be in {opening}, got"):
            hp.check(bad)
    if not hp.min_inclusive:
        with pytest.raises(ConfigError):
            hp.check(hp.min_value)
    if not math.isinf(hp.max_value):
        with pytest.raises(ConfigError, match=rf"^{hp.name} must be in {opening}, got"):
            hp.check(hp.max_value + 1.0)
        if not hp.max_inclusive:
            with pytest.raises(ConfigError):
                hp.check(hp.max_value)


def test_one_minus_hyperparameters_exclude_one() -> None:
    # beta1, beta2, momentum and alpha are decay factors: 1.0 means no update at all
    one_minus = [h for _, h in HYPERPARAMS if h.one_minus]
    assert {h.name for h in one_minus} == {"beta1", "beta2", "momentum", "alpha"}
    for h in one_minus:
        assert h.max_value == 1.0
        assert h.max_inclusive is False, h.name


# ----------------------------------------------------------------------------- creation


@pytest.mark.parametrize("name", ALL)
def test_create_builds_the_torch_class_with_defaults(name: str) -> None:
    info = get_optimizer_info(name)
    model = _linear()
    opt = create_optimizer(name, model.parameters(), lr=0.05)
    assert type(opt) is EXPECTED_CLASS[name]
    group = opt.param_groups[0]
    assert group["lr"] == 0.05
    assert len(group["params"]) == 2
    for hp in info.hyperparameters:
        assert _torch_value(group, hp.name) == hp.default, hp.name
    if info.has_betas:
        assert group["betas"] == (info.hyperparameter("beta1").default, 0.999)
    if EXPECTED_CLASS[name] is torch.optim.SGD:
        assert group["nesterov"] is (name == "nesterov")
        assert group["momentum"] == (0.9 if name in WITH_MOMENTUM else 0)
    assert group["weight_decay"] == info.hyperparameter("weight_decay").default


def test_declared_defaults() -> None:
    adam = get_optimizer_info("adam")
    assert adam.defaults() == {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
    assert get_optimizer_info("adamw").defaults()["weight_decay"] == 1e-2
    assert get_optimizer_info("adagrad").defaults()["eps"] == 1e-10
    assert get_optimizer_info("rmsprop").defaults() == {
        "alpha": 0.99,
        "eps": 1e-8,
        "weight_decay": 0.0,
    }
    assert get_optimizer_info("sgd").hyperparameter_names == ("weight_decay",)
    assert get_optimizer_info("nesterov").fixed == {"nesterov": True}


@pytest.mark.parametrize("name", ALL)
def test_given_hyperparameters_reach_torch(name: str) -> None:
    info = get_optimizer_info(name)
    values = {h.name: h.high for h in info.hyperparameters}
    assert all(values[h.name] != h.default for h in info.hyperparameters)
    opt = create_optimizer(name, _linear().parameters(), lr=0.01, hyperparameters=values)
    group = opt.param_groups[0]
    for key, value in values.items():
        assert _torch_value(group, key) == value, key
    if info.has_betas:
        assert group["betas"] == (values["beta1"], values["beta2"])
        assert isinstance(group["betas"], tuple)


@pytest.mark.parametrize("name", ALL)
def test_partial_hyperparameters_keep_other_defaults(name: str) -> None:
    info = get_optimizer_info(name)
    first = info.hyperparameters[0]
    opt = info.create(_linear().parameters(), 0.01, {first.name: first.low})
    group = opt.param_groups[0]
    assert _torch_value(group, first.name) == first.low
    for hp in info.hyperparameters[1:]:
        assert _torch_value(group, hp.name) == hp.default


def test_torch_kwargs_maps_betas() -> None:
    kwargs = get_optimizer_info("adam").torch_kwargs(0.1, {"beta2": 0.95})
    assert kwargs == {"lr": 0.1, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.0}
    kwargs = get_optimizer_info("nesterov").torch_kwargs(0.1)
    assert kwargs == {"lr": 0.1, "nesterov": True, "momentum": 0.9, "weight_decay": 0.0}


def test_resolve_converts_to_float() -> None:
    resolved = get_optimizer_info("momentum").resolve({"momentum": 0, "weight_decay": "1e-4"})
    assert resolved == {"momentum": 0.0, "weight_decay": 1e-4}
    assert all(type(v) is float for v in resolved.values())


def test_param_groups_are_accepted() -> None:
    model = _linear()
    groups = [{"params": [model.weight]}, {"params": [model.bias], "lr": 0.5}]
    opt = create_optimizer("adamw", groups, lr=0.01)
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.5]
    assert all(g["weight_decay"] == 1e-2 for g in opt.param_groups)


@pytest.mark.parametrize("name", ALL)
def test_one_step_changes_parameters_and_lowers_the_loss(name: str) -> None:
    model = _linear(seed=1)
    torch.manual_seed(2)
    x, y = torch.randn(16, 3), torch.randn(16, 2)
    opt = create_optimizer(name, model.parameters(), get_optimizer_info(name).lr_default)
    if get_optimizer_info(name).schedule_free:
        opt.train()  # type: ignore[attr-defined]  # Schedule-Free steps in train mode only
    before = [p.detach().clone() for p in model.parameters()]

    loss = nn.functional.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()

    after = list(model.parameters())
    assert all(not torch.equal(b, a) for b, a in zip(before, after, strict=True))
    assert all(torch.isfinite(a).all() for a in after)
    with torch.no_grad():
        assert nn.functional.mse_loss(model(x), y) < loss


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("sgdm", "momentum"),
        ("sgd_momentum", "momentum"),
        ("SGD-Momentum", "momentum"),
        ("nag", "nesterov"),
        ("NAG", "nesterov"),
        ("AdamW", "adamw"),
        ("  adam ", "adam"),
        ("RMSProp", "rmsprop"),
    ],
)
def test_aliases_resolve(alias: str, name: str) -> None:
    assert get_optimizer_info(alias) is OPTIMIZERS[name]


def test_alias_creates_the_aliased_optimizer() -> None:
    opt = create_optimizer("nag", _linear().parameters(), 0.1)
    assert type(opt) is torch.optim.SGD
    assert opt.param_groups[0]["nesterov"] is True
    assert opt.param_groups[0]["momentum"] == 0.9
    opt = create_optimizer("AdamW", _linear().parameters(), 0.1)
    assert type(opt) is torch.optim.AdamW


def test_unknown_optimizer_lists_known_names() -> None:
    with pytest.raises(ConfigError) as excinfo:
        get_optimizer_info("lion")
    message = str(excinfo.value)
    assert message == (
        "unknown optimizer 'lion'; known: sgd, momentum, nesterov, rmsprop, adagrad, adam, "
        "adamw, adamax, nadam, radam, schedulefree_adamw, schedulefree_sgd, prodigy"
    )
    with pytest.raises(ConfigError, match=r"^unknown optimizer 'lion'; known: sgd, "):
        create_optimizer("lion", _linear().parameters(), 0.1)


# ----------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("name", "hyperparameters", "message"),
    [
        ("adam", {"beta1": 1.0}, "beta1 must be in [0, 1), got 1.0"),
        ("adamw", {"beta2": 1.0}, "beta2 must be in [0, 1), got 1.0"),
        ("nadam", {"beta1": -0.5}, "beta1 must be in [0, 1), got -0.5"),
        ("radam", {"beta1": math.nan}, "beta1 must be in [0, 1), got nan"),
        ("momentum", {"momentum": -0.1}, "momentum must be in [0, 1), got -0.1"),
        ("nesterov", {"momentum": 1.0}, "momentum must be in (0, 1), got 1.0"),
        ("rmsprop", {"alpha": 1.0}, "alpha must be in [0, 1), got 1.0"),
        ("adam", {"eps": 0}, "eps must be in [1e-30, inf), got 0.0"),
        ("adagrad", {"eps": -1e-8}, "eps must be in [1e-30, inf), got -1e-08"),
        ("sgd", {"weight_decay": -1}, "weight_decay must be in [0, inf), got -1.0"),
        ("adamw", {"weight_decay": math.inf}, "weight_decay must be in [0, inf), got inf"),
        ("adam", {"beta1": "high"}, "beta1 must be a number, got 'high'"),
        ("adam", {"eps": None}, "eps must be a number, got None"),
        ("sgd", {"beta1": 0.9}, "optimizer 'sgd' takes no 'beta1' (it takes: weight_decay)"),
        (
            "adam",
            {"momentum": 0.9},
            "optimizer 'adam' takes no 'momentum' (it takes: beta1, beta2, eps, weight_decay)",
        ),
        (
            "momentum",
            {"nesterov": 1},
            "optimizer 'momentum' takes no 'nesterov' (it takes: momentum, weight_decay)",
        ),
    ],
)
def test_invalid_hyperparameter_names_it(name: str, hyperparameters: dict, message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        create_optimizer(name, _linear().parameters(), 0.1, hyperparameters)
    assert str(excinfo.value) == message


@pytest.mark.parametrize(
    ("lr", "message"),
    [
        (0, "lr must be > 0, got 0"),
        (0.0, "lr must be > 0, got 0.0"),
        (-1e-3, "lr must be > 0, got -0.001"),
        (math.nan, "lr must be > 0, got nan"),
        (math.inf, "lr must be > 0, got inf"),
    ],
)
@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_invalid_lr(name: str, lr: float, message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        create_optimizer(name, _linear().parameters(), lr)
    assert str(excinfo.value) == message


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        create_optimizer("adam", _linear().parameters(), 0.1, {"beta1": 2})


def test_nesterov_without_momentum_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="momentum"):
        create_optimizer("nesterov", _linear().parameters(), 0.1, {"momentum": 0.0})


def test_fused_implementation_where_torch_has_one() -> None:
    """Adam, AdamW, SGD and Adagrad use torch's fused kernels on a CPU; the others do not
    have one; param groups (even as generators) still work, and the fused step computes
    the same update as the per-tensor one."""
    from lrtune.optimizers import create_optimizer

    def params() -> list[torch.nn.Parameter]:
        torch.manual_seed(0)
        return [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(3))]

    for name in ("adam", "adamw", "sgd", "momentum", "nesterov", "adagrad"):
        assert create_optimizer(name, params(), 0.1).defaults.get("fused") is True, name
    for name in ("adamax", "rmsprop", "nadam", "radam"):
        assert not create_optimizer(name, params(), 0.1).defaults.get("fused"), name
    groups = create_optimizer("adam", [{"params": iter(params()), "lr": 0.5}], 0.1)
    assert len(groups.param_groups[0]["params"]) == 2 and groups.defaults["fused"] is True
    fused, plain = params(), params()
    a = create_optimizer("adam", fused, 0.1, {"weight_decay": 0.01})
    b = torch.optim.Adam(plain, lr=0.1, weight_decay=0.01)
    for _ in range(3):
        for p, q in zip(fused, plain, strict=True):
            p.grad = q.grad = torch.ones_like(p) * 0.3
        a.step()
        b.step()
    for p, q in zip(fused, plain, strict=True):
        assert torch.allclose(p, q, atol=1e-6)
