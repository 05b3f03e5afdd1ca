"""The model registry: every model builds for every dataset shape it supports, options work."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrtune.datasets import DATASETS
from lrtune.errors import ConfigError
from lrtune.models import (
    ACTIVATIONS,
    MODELS,
    ModelInfo,
    create_model,
    get_model_info,
    list_models,
)

ALL = list_models()
SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
# options that keep every model tiny
SMALL: dict[str, dict[str, object]] = {
    "mlp": {"width": 16},
    "cnn": {"width": 4, "hidden": 16},
    "resnet": {"width": 8},
}


# (shape, num_classes) of every built-in dataset
DATASET_SHAPES = sorted({(info.input_shape, info.num_classes) for info in DATASETS.values()})


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _logits(model: nn.Module, shape: tuple[int, int, int], batch: int = 2) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(torch.randn(batch, *shape))


def test_registry() -> None:
    assert ALL == ["mlp", "cnn", "resnet"]
    assert set(SMALL) == set(ALL)
    for name in ALL:
        info = get_model_info(name)
        assert info.name == name
        assert info.description
        assert info.resolve() == info.options


def test_dataset_shapes_are_the_ones_tested() -> None:
    assert {info.input_shape for info in DATASETS.values()} == set(SHAPES)


@pytest.mark.parametrize("name", ALL)
def test_search_choices_are_valid_options(name: str) -> None:
    info = get_model_info(name)
    assert set(info.search) <= set(info.options)
    for key, choices in info.search.items():
        assert choices
        for choice in choices:
            assert info.resolve({key: choice})[key] == choice


@pytest.mark.parametrize(
    ("shape", "num_classes"),
    DATASET_SHAPES,
    ids=[f"{'x'.join(map(str, s))}-{c}" for s, c in DATASET_SHAPES],
)
@pytest.mark.parametrize("name", ALL)
def test_builds_for_every_dataset_shape_and_returns_logits(
    name: str, shape: tuple[int, int, int], num_classes: int
) -> None:
    torch.manual_seed(0)
    model = create_model(name, shape, num_classes, **SMALL[name])
    logits = _logits(model, shape)
    assert logits.shape == (2, num_classes)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("shape", SHAPES, ids=["x".join(map(str, s)) for s in SHAPES])
@pytest.mark.parametrize("name", ALL)
def test_train_mode_forward_and_backward(name: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = create_model(name, shape, 10, **SMALL[name]).train()
    logits = model(torch.randn(2, *shape))
    assert logits.shape == (2, 10)
    nn.functional.cross_entropy(logits, torch.tensor([1, 2])).backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", ALL)
def test_default_options_build(name: str) -> None:
    model = create_model(name, (1, 8, 8), 10)
    assert _logits(model, (1, 8, 8)).shape == (2, 10)


def test_smallest_supported_inputs() -> None:
    assert _logits(create_model("cnn", (1, 4, 4), 3, width=2), (1, 4, 4)).shape == (2, 3)
    assert _logits(create_model("cnn", (2, 5, 7), 3, width=2), (2, 5, 7)).shape == (2, 3)
    assert _logits(create_model("mlp", (1, 1, 1), 3, width=2), (1, 1, 1)).shape == (2, 3)
    resnet = create_model("resnet", (1, 8, 8), 3, width=2)
    assert _logits(resnet, (1, 8, 8)).shape == (2, 3)


# ----------------------------------------------------------------------------- options


def test_mlp_parameter_count() -> None:
    # 64 -> 16 -> 16 -> 10
    model = create_model("mlp", (1, 8, 8), 10, width=16, depth=2)
    assert _count(model) == (64 * 16 + 16) + (16 * 16 + 16) + (16 * 10 + 10)
    model = create_model("mlp", (3, 32, 32), 100, width=8, depth=1)
    assert _count(model) == (3072 * 8 + 8) + (8 * 100 + 100)


def test_cnn_parameter_count() -> None:
    # 28x28 -> two 2x2 pools -> 7x7
    w, h, c = 4, 16, 10
    model = create_model("cnn", (1, 28, 28), c, width=w, hidden=h)
    expected = (1 * w * 9 + w) + (w * 2 * w * 9 + 2 * w) + (2 * w * 49 * h + h) + (h * c + c)
    assert _count(model) == expected


@pytest.mark.parametrize("name", ALL)
def test_width_changes_the_model(name: str) -> None:
    options = dict(SMALL[name])
    narrow = create_model(name, (3, 32, 32), 10, **{**options, "width": 4})
    wide = create_model(name, (3, 32, 32), 10, **{**options, "width": 8})
    assert _count(narrow) < _count(wide)


def test_resnet_width_is_the_first_stage() -> None:
    model = create_model("resnet", (3, 32, 32), 10, width=8)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].in_channels == 3
    assert convs[0].out_channels == 8
    assert max(c.out_channels for c in convs) == 64
    assert model.classifier.in_features == 64
    assert model.classifier.bias is None
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == len(convs)
    # three 2x2 pools: 32x32 -> 4x4 before the global max-pool
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3
    features = model.features[:-2].eval()
    with torch.no_grad():
        assert features(torch.randn(2, 3, 32, 32)).shape == (2, 64, 4, 4)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_mlp_depth(depth: int) -> None:
    model = create_model("mlp", (1, 8, 8), 10, width=16, depth=depth)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == depth + 1
    assert [m.out_features for m in linears] == [16] * depth + [10]


def test_cnn_hidden() -> None:
    model = create_model("cnn", (1, 8, 8), 10, width=4, hidden=24)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8 * 2 * 2, 24), (24, 10)]


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("name", ALL)
def test_activation(name: str, activation: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, (1, 8, 8), 10, **SMALL[name], activation=activation)
    kinds = {type(m) for m in model.modules()}
    expected = type(ACTIVATIONS[activation]())
    assert expected in kinds
    other = {type(factory()) for factory in ACTIVATIONS.values()} - {expected}
    assert not kinds & other
    assert _logits(model, (1, 8, 8)).shape == (2, 10)


def test_leaky_relu_slope() -> None:
    model = create_model("mlp", (1, 8, 8), 10, width=4, activation="leaky_relu")
    leaky = [m for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(leaky) == 2
    assert all(m.negative_slope == 0.1 for m in leaky)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_dropout(name: str) -> None:
    with_dropout = create_model(name, (1, 8, 8), 10, **SMALL[name], dropout=0.5)
    without = create_model(name, (1, 8, 8), 10, **SMALL[name])
    assert any(isinstance(m, nn.Dropout) and m.p == 0.5 for m in with_dropout.modules())
    assert not any(isinstance(m, nn.Dropout) for m in without.modules())


def test_resnet_logit_scale_scales_the_logits() -> None:
    torch.manual_seed(0)
    one = create_model("resnet", (3, 8, 8), 10, width=4, logit_scale=1.0)
    torch.manual_seed(0)
    half = create_model("resnet", (3, 8, 8), 10, width=4, logit_scale=0.5)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(half.eval()(x), 0.5 * one.eval()(x))


def test_integral_float_width_becomes_int() -> None:
    assert get_model_info("mlp").resolve({"width": 8.0})["width"] == 8
    assert isinstance(get_model_info("mlp").resolve({"width": 8.0})["width"], int)
    model = create_model("mlp", (1, 8, 8), 10, width=8.0)
    assert model[1].out_features == 8


def test_name_is_case_insensitive() -> None:
    assert get_model_info(" MLP ") is MODELS["mlp"]
    assert isinstance(get_model_info("ResNet"), ModelInfo)


# ----------------------------------------------------------------------------- errors


def test_unknown_model_lists_known() -> None:
    with pytest.raises(ConfigError) as excinfo:
        create_model("transformer", (1, 8, 8), 10)
    assert str(excinfo.value) == "unknown model 'transformer'; known: mlp, cnn, resnet"


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        (
            "mlp",
            {"hidden": 8},
            "model 'mlp' takes no option 'hidden' (known: width, depth, activation, dropout)",
        ),
        (
            "resnet",
            {"depth": 3},
            "model 'resnet' takes no option 'depth' (known: width, activation, logit_scale)",
        ),
        (
            "cnn",
            {"activation": "swish"},
            "model.activation: unknown activation 'swish'; known: relu, gelu, silu, tanh, "
            "leaky_relu",
        ),
        (
            "mlp",
            {"activation": "ReLU"},
            "model.activation: unknown activation 'ReLU'; known: relu, gelu, silu, tanh, "
            "leaky_relu",
        ),
        ("mlp", {"activation": 3}, "model.activation has an invalid value 3"),
        ("mlp", {"width": 0}, "model.width has an invalid value 0"),
        ("cnn", {"width": -4}, "model.width has an invalid value -4"),
        ("resnet", {"width": 2.5}, "model.width has an invalid value 2.5"),
        ("mlp", {"width": True}, "model.width has an invalid value True"),
        ("mlp", {"width": "8"}, "model.width has an invalid value '8'"),
        ("mlp", {"depth": 0}, "model.depth has an invalid value 0"),
        ("cnn", {"hidden": 0}, "model.hidden has an invalid value 0"),
        ("mlp", {"dropout": -0.1}, "model.dropout must be in [0, 1), got -0.1"),
        ("resnet", {"logit_scale": "big"}, "model.logit_scale has an invalid value 'big'"),
    ],
)
def test_bad_options(name: str, options: dict, message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        create_model(name, (3, 32, 32), 10, **options)
    assert str(excinfo.value) == message


@pytest.mark.parametrize(
    ("name", "shape", "message"),
    [
        ("cnn", (1, 2, 2), "model cnn needs inputs of at least 4x4, got 2x2"),
        ("cnn", (3, 32, 3), "model cnn needs inputs of at least 4x4, got 32x3"),
        ("resnet", (1, 4, 4), "model resnet needs inputs of at least 8x8, got 4x4"),
        ("resnet", (3, 7, 32), "model resnet needs inputs of at least 8x8, got 7x32"),
    ],
)
def test_inputs_too_small(name: str, shape: tuple[int, int, int], message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        create_model(name, shape, 10, width=4)
    assert str(excinfo.value) == message


def test_dropout_above_one_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="dropout"):
        create_model("mlp", (1, 8, 8), 10, dropout=1.5)
