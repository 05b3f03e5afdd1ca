"""Built-in classifier networks, by name.

Every model is built from the datamodule's ``input_shape`` ``(C, H, W)`` and ``num_classes``,
plus a few options (``width``, ``activation``, ...) that a study may search.

=======  ==================================================================================
mlp      flatten, ``depth`` hidden layers of ``width`` units
cnn      LeNet-style: two conv(3x3)-act-maxpool blocks of ``width`` and 2x``width``
         channels, a hidden layer, a classifier; works on 8x8 (digits) up to 32x32 (CIFAR)
resnet   ResNet-9 in the DAWNBench/airbench style (conv-BN-act, three pooled stages, two
         residual blocks, max-pool head, scaled logits); ``width`` is the first stage's
         channels (64 in the original)
=======  ==================================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lrtune._compat._core import uncompiled
from lrtune.errors import ConfigError

__all__ = [
    "MODELS",
    "ModelInfo",
    "compiled_model",
    "create_model",
    "get_model_info",
    "list_models",
]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError(
            f"model.activation: unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}"
        )
    return ACTIVATIONS[name]()


class MLP(nn.Sequential):
    """Flatten, then ``depth`` x (Linear(width) + activation), then Linear(num_classes)."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        *,
        width: int = 256,
        depth: int = 2,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        in_features = input_shape[0] * input_shape[1] * input_shape[2]
        layers: list[nn.Module] = [nn.Flatten()]
        for _ in range(depth):
            layers += [nn.Linear(in_features, width), _activation(activation)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_features = width
        layers.append(nn.Linear(in_features, num_classes))
        super().__init__(*layers)


class CNN(nn.Sequential):
    """conv-act-pool x2 (``width``, 2x``width`` channels), Linear(hidden), Linear(classes)."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        *,
        width: int = 32,
        hidden: int = 128,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        channels, height, width_px = input_shape
        if min(height, width_px) < 4:
            raise ConfigError(f"model cnn needs inputs of at least 4x4, got {height}x{width_px}")
        out_hw = (height // 4) * (width_px // 4)
        super().__init__(
            nn.Conv2d(channels, width, 3, padding=1),
            _activation(activation),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            _activation(activation),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Linear(2 * width * out_hw, hidden),
            _activation(activation),
            nn.Linear(hidden, num_classes),
        )


def _conv_bn(c_in: int, c_out: int, activation: str, pool: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    layers += [nn.BatchNorm2d(c_out), _activation(activation)]
    return nn.Sequential(*layers)


class _Residual(nn.Module):
    def __init__(self, channels: int, activation: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn(channels, channels, activation), _conv_bn(channels, channels, activation)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9(nn.Module):
    """ResNet-9 (Myrtle.ai DAWNBench, as in airbench's ancestors) for 32x32 inputs.

    prep conv(w) -> [conv(2w), pool, res] -> [conv(4w), pool] -> [conv(8w), pool, res]
    -> global max-pool -> Linear(num_classes, no bias) -> x ``logit_scale``.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        *,
        width: int = 64,
        activation: str = "relu",
        logit_scale: float = 0.125,
    ) -> None:
        super().__init__()
        channels, height, width_px = input_shape
        if min(height, width_px) < 8:
            raise ConfigError(f"model resnet needs inputs of at least 8x8, got {height}x{width_px}")
        w = width
        self.features = nn.Sequential(
            _conv_bn(channels, w, activation),
            _conv_bn(w, 2 * w, activation, pool=True),
            _Residual(2 * w, activation),
            _conv_bn(2 * w, 4 * w, activation, pool=True),
            _conv_bn(4 * w, 8 * w, activation, pool=True),
            _Residual(8 * w, activation),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(8 * w, num_classes, bias=False)
        self.logit_scale = logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x)) * self.logit_scale


@dataclass(frozen=True)
class ModelInfo:
    """Declaration of one model in the registry.

    Args:
        name: Registry name.
        cls: ``cls(input_shape, num_classes, **options)`` builds it.
        description: One line for listings.
        options: The options it takes, with their defaults.
        search: Search choices a study may use for each option, off unless asked.
        limits: ``[low, high)`` of valid values for float options (default ``[0, inf)``).
    """

    name: str
    cls: Callable[..., nn.Module]
    description: str
    options: dict[str, Any] = field(default_factory=dict)
    search: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    limits: dict[str, tuple[float, float]] = field(default_factory=dict)

    def resolve(self, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Validate option names and types, fill in defaults."""
        resolved = dict(self.options)
        for key, value in (options or {}).items():
            if key not in self.options:
                known = ", ".join(self.options)
                raise ConfigError(f"model {self.name!r} takes no option {key!r} (known: {known})")
            default = self.options[key]
            if isinstance(default, bool) or not isinstance(default, int | float):
                ok = isinstance(value, type(default))
            else:
                ok = isinstance(value, int | float) and not isinstance(value, bool)
                if ok and isinstance(default, int):
                    ok = float(value).is_integer() and value >= 1
                    value = int(value) if ok else value
                elif ok:
                    lo, hi = self.limits.get(key, (0.0, math.inf))
                    if not (lo <= value < hi):
                        raise ConfigError(f"model.{key} must be in [{lo:g}, {hi:g}), got {value!r}")
            if not ok:
                raise ConfigError(f"model.{key} has an invalid value {value!r}")
            if key == "activation" and value not in ACTIVATIONS:
                raise ConfigError(
                    f"model.activation: unknown activation {value!r}; "
                    f"known: {', '.join(ACTIVATIONS)}"
                )
            resolved[key] = value
        return resolved


_ACTS = tuple(ACTIVATIONS)
MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        ModelInfo(
            "mlp",
            MLP,
            "multi-layer perceptron",
            {"width": 256, "depth": 2, "activation": "relu", "dropout": 0.0},
            {"width": (64, 128, 256, 512), "depth": (1, 2, 3), "activation": _ACTS},
            {"dropout": (0.0, 1.0)},
        ),
        ModelInfo(
            "cnn",
            CNN,
            "small LeNet-style CNN (8x8 to 32x32 inputs)",
            {"width": 32, "hidden": 128, "activation": "relu", "dropout": 0.0},
            {"width": (16, 32, 64), "hidden": (64, 128, 256), "activation": _ACTS},
            {"dropout": (0.0, 1.0)},
        ),
        ModelInfo(
            "resnet",
            ResNet9,
            "ResNet-9 with BatchNorm (CIFAR-sized inputs)",
            {"width": 64, "activation": "relu", "logit_scale": 0.125},
            {"width": (16, 32, 64), "activation": ("relu", "gelu", "silu")},
            {"logit_scale": (1e-6, math.inf)},
        ),
    )
}


def list_models() -> list[str]:
    """Registry names of all models."""
    return list(MODELS)


def get_model_info(name: str) -> ModelInfo:
    """Look up a model by name (case-insensitive).

    Raises:
        ConfigError: ``name`` is unknown; the message lists the known names.
    """
    key = str(name).strip().lower()
    if key not in MODELS:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    return MODELS[key]


def create_model(
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    **options: Any,
) -> nn.Module:
    """Build model ``name`` for inputs of ``input_shape`` (C, H, W) and ``num_classes``.

    Args:
        name: ``mlp``, ``cnn`` or ``resnet``.
        input_shape: Shape of one input, channels first.
        num_classes: Number of output logits.
        **options: Model options (``width``, ``activation``, ...); unknown ones are errors.
    """
    info = get_model_info(name)
    return info.cls(tuple(input_shape), num_classes, **info.resolve(options))


# one compiled network per (model, options, shape, classes, layout) in this process
_COMPILED: dict[tuple[Any, ...], nn.Module] = {}


def compiled_model(
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    channels_last: bool = False,
    **options: Any,
) -> nn.Module:
    """Model ``name`` under ``torch.compile``, compiled once per process and reused.

    The first call builds and wraps the network; every later call with the same arguments
    returns the *same* compiled module with its weights (and buffers) replaced, in place,
    by those of a freshly built one, so it starts exactly where :func:`create_model` would
    (seed torch first, as for ``create_model``) and nothing is recompiled. Its parameters
    keep their identity, so a new optimizer per run is fine. Only one run at a time may use
    it: the weights are shared.

    Args:
        name: As for :func:`create_model`.
        input_shape: As for :func:`create_model`.
        num_classes: As for :func:`create_model`.
        channels_last: Keep the conv weights channels-last (default ``False``).
        **options: Model options, as for :func:`create_model`.
    """
    info = get_model_info(name)
    resolved = info.resolve(options)
    layout = (tuple(input_shape), num_classes, channels_last)
    key = (info.name, *layout, repr(sorted(resolved.items())))
    fresh = create_model(name, input_shape, num_classes, **resolved)
    if channels_last:
        fresh = fresh.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    cached = _COMPILED.get(key)
    if cached is None:
        compiled: nn.Module = torch.compile(fresh)  # type: ignore[assignment]
        _COMPILED[key] = compiled
        return compiled
    original = uncompiled(cached)
    with torch.no_grad():
        original.load_state_dict(fresh.state_dict())
    original.train()
    return cached
