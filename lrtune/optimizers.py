"""Registry of optimizers: what each takes, its defaults, and where to search.

Each entry is an :class:`OptimInfo` that declares the hyperparameters the optimizer takes
(β values, momentum, ε, weight decay, ...) as :class:`HyperParam` objects with a default, the
values that are valid at all, and a sensible search range. Code that builds or searches
optimizers asks the registry (``info.has_betas``, ``info.hyperparameters``) instead of
branching on optimizer names.

Example:
    >>> from lrtune.optimizers import get_optimizer_info
    >>> info = get_optimizer_info("adamw")
    >>> [h.name for h in info.hyperparameters]
    ['beta1', 'beta2', 'eps', 'weight_decay']
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from lrtune.errors import ConfigError

__all__ = [
    "OPTIMIZERS",
    "HyperParam",
    "OptimInfo",
    "create_optimizer",
    "get_optimizer_info",
    "list_optimizers",
]


@dataclass(frozen=True)
class HyperParam:
    """One hyperparameter of an optimizer.

    Args:
        name: lrtune's name for it (``beta1``, ``beta2``, ``momentum``, ``eps``, ...).
        default: Value used when the user does not set it.
        low: Lower end of the search range.
        high: Upper end of the search range.
        log: Search on a log scale.
        one_minus: Search ``1 - value`` on a log scale (for β and momentum, whose useful
            values crowd just below 1). ``low``/``high`` are still given as values.
        min_value: Smallest valid value.
        max_value: Largest valid value.
        min_inclusive: Whether ``min_value`` itself is valid.
        max_inclusive: Whether ``max_value`` itself is valid (``False`` for β < 1).
        tune: Whether a search includes it unless told otherwise.
        help: One line for ``--help`` and docs.
        integer: Whole numbers only (a step count); passed to the optimizer as an ``int``.
    """

    name: str
    default: float
    low: float
    high: float
    log: bool = False
    one_minus: bool = False
    min_value: float = 0.0
    max_value: float = math.inf
    min_inclusive: bool = True
    max_inclusive: bool = True
    tune: bool = True
    help: str = ""
    integer: bool = False

    @property
    def interval(self) -> str:
        """The valid values in interval notation, e.g. ``[0, 1)``."""
        lo = "[" if self.min_inclusive else "("
        hi = "]" if self.max_inclusive and math.isfinite(self.max_value) else ")"
        return f"{lo}{self.min_value:g}, {self.max_value:g}{hi}"

    def check(self, value: float, *, field_name: str | None = None) -> float:
        """Return ``value`` as a float, or raise :class:`ConfigError` naming the field."""
        name = field_name or self.name
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
        too_low = value < self.min_value or (not self.min_inclusive and value <= self.min_value)
        too_high = value > self.max_value or (not self.max_inclusive and value >= self.max_value)
        if not math.isfinite(value) or too_low or too_high:
            raise ConfigError(f"{name} must be in {self.interval}, got {value!r}")
        if self.integer and value != int(value):
            raise ConfigError(f"{name} must be a whole number, got {value!r}")
        return value


def _beta1(default: float = 0.9) -> HyperParam:
    return HyperParam(
        "beta1",
        default,
        0.5,
        0.99,
        one_minus=True,
        max_value=1.0,
        max_inclusive=False,
        help="decay of the first-moment (mean) estimate",
    )


def _beta2(default: float = 0.999) -> HyperParam:
    return HyperParam(
        "beta2",
        default,
        0.9,
        0.9999,
        one_minus=True,
        max_value=1.0,
        max_inclusive=False,
        help="decay of the second-moment (variance) estimate",
    )


def _eps(default: float = 1e-8) -> HyperParam:
    return HyperParam(
        "eps",
        default,
        1e-10,
        1e-6,
        log=True,
        min_value=1e-30,
        tune=False,
        help="term added to the denominator for numerical stability",
    )


def _weight_decay(default: float = 0.0, low: float = 1e-6, high: float = 1e-2) -> HyperParam:
    return HyperParam(
        "weight_decay",
        default,
        low,
        high,
        log=True,
        help="L2 penalty (decoupled for adamw)",
    )


def _momentum(default: float = 0.9, *, zero_ok: bool = True) -> HyperParam:
    return HyperParam(
        "momentum",
        default,
        0.5,
        0.99,
        one_minus=True,
        max_value=1.0,
        min_inclusive=zero_ok,  # Nesterov momentum needs momentum > 0
        max_inclusive=False,
        help="momentum factor",
    )


def _warmup_steps() -> HyperParam:
    return HyperParam("warmup_steps", 0, 0, 1000, max_value=1e9, tune=False, integer=True,
                      help="steps of linear LR warm-up (Schedule-Free's own)")  # fmt: skip


@dataclass(frozen=True)
class OptimInfo:
    """Declaration of one optimizer in the registry.

    Args:
        name: Lower-case registry name.
        cls: The optimizer class, or ``"package:Class"`` for one from an optional package
            (imported when first built; see ``extra``).
        description: One line for listings.
        lr_default: Learning rate used when none is given.
        lr_range: ``(low, high)`` log-scale search range for the learning rate.
        hyperparameters: What else it takes, in lrtune names.
        fixed: Keyword arguments always passed to ``cls`` (e.g. ``nesterov=True``).
        aliases: Other names accepted for it.
        extra: The ``pip install lrtune[extra]`` that brings its package (``""``: torch's).
        tuning_free: Meant to be used at its defaults (it finds its own step size or needs
            no schedule); what a study's ``baselines`` run.
        schedule_free: Needs ``optimizer.train()``/``optimizer.eval()`` around training and
            evaluation and takes no LR schedule (Schedule-Free).
        lr_note: What its ``lr`` means when not a plain step size (Prodigy: a multiplier).
        no_range_test: Why an LR range test does not apply to it, or ``""``.
    """

    name: str
    cls: type[torch.optim.Optimizer] | str
    description: str
    lr_default: float
    lr_range: tuple[float, float]
    hyperparameters: tuple[HyperParam, ...] = ()
    fixed: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    extra: str = ""
    tuning_free: bool = False
    schedule_free: bool = False
    lr_note: str = ""
    no_range_test: str = ""

    @property
    def package(self) -> str:
        """The package its class comes from (``torch`` for torch's own)."""
        return self.cls.partition(":")[0] if isinstance(self.cls, str) else "torch"

    def check_available(self) -> None:
        """Raise :class:`ConfigError` naming the ``pip install`` when its package is missing."""
        import importlib.util

        if isinstance(self.cls, str) and importlib.util.find_spec(self.package) is None:
            raise ConfigError(
                f"optimizer {self.name!r} needs the package {self.package!r}: "
                f"pip install 'lrtune[{self.extra}]'"
            )

    @property
    def optimizer_class(self) -> type[torch.optim.Optimizer]:
        """The optimizer class, imported from its package on first use."""
        if not isinstance(self.cls, str):
            return self.cls
        import importlib

        self.check_available()
        module, _, name = self.cls.partition(":")
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]

    @property
    def has_betas(self) -> bool:
        """Whether the optimizer takes ``betas`` (β1, β2)."""
        return "beta1" in self.hyperparameter_names

    @property
    def has_momentum(self) -> bool:
        """Whether the optimizer takes a ``momentum`` factor."""
        return "momentum" in self.hyperparameter_names

    @property
    def hyperparameter_names(self) -> tuple[str, ...]:
        """Names of the declared hyperparameters, in declaration order."""
        return tuple(h.name for h in self.hyperparameters)

    def hyperparameter(self, name: str) -> HyperParam:
        """Return the declaration of ``name``; :class:`ConfigError` if it takes none such."""
        for h in self.hyperparameters:
            if h.name == name:
                return h
        known = ", ".join(self.hyperparameter_names) or "none besides lr"
        raise ConfigError(f"optimizer {self.name!r} takes no {name!r} (it takes: {known})")

    def defaults(self) -> dict[str, float]:
        """Default value of every declared hyperparameter."""
        return {h.name: h.default for h in self.hyperparameters}

    def resolve(
        self, params: Mapping[str, float] | None = None, *, prefix: str = ""
    ) -> dict[str, float]:
        """Validate ``params`` and fill in defaults for the rest.

        Args:
            params: lrtune-named values.
            prefix: Put before a parameter's name in errors (e.g. ``"params."``).
        """
        resolved = self.defaults()
        for key, value in (params or {}).items():
            if prefix and key not in resolved:
                known = ", ".join(resolved) or "none besides lr"
                raise ConfigError(f"{prefix}{key} is not taken by {self.name} (it takes: {known})")
            resolved[key] = self.hyperparameter(key).check(value, field_name=prefix + key)
        return resolved

    def torch_kwargs(self, lr: float, params: Mapping[str, float] | None = None) -> dict[str, Any]:
        """Keyword arguments for ``cls``: lrtune names mapped to torch's (β1, β2 → betas)."""
        resolved = self.resolve(params)
        kwargs: dict[str, Any] = {"lr": lr, **self.fixed}
        if "beta1" in resolved:
            kwargs["betas"] = (resolved.pop("beta1"), resolved.pop("beta2"))
        kwargs.update(resolved)
        for hp in self.hyperparameters:
            if hp.integer:
                kwargs[hp.name] = int(kwargs[hp.name])
        return kwargs

    def create(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        hyperparameters: Mapping[str, float] | None = None,
    ) -> torch.optim.Optimizer:
        """Build the optimizer over ``params`` (tensors or param-group dicts).

        Where torch has a fused implementation for the optimizer and the parameters' device
        (Adam, AdamW, SGD on CPU and CUDA; Adagrad on CPU) it is used: one kernel per step
        instead of one per tensor (the CNN's Adam step: 77 us vs 243 us on a CPU).
        """
        if not (lr > 0 and math.isfinite(lr)):
            raise ConfigError(f"lr must be > 0, got {lr!r}")
        items: list[Any] = [
            {**item, "params": list(item["params"])} if isinstance(item, dict) else item
            for item in params
        ]
        kwargs = self.torch_kwargs(lr, hyperparameters)
        cls = self.optimizer_class
        if _fusable(cls, items):
            try:
                return cls(items, **kwargs, fused=True)  # type: ignore[call-arg]
            except (RuntimeError, ValueError):  # a device/dtype torch does not fuse for
                pass
        return cls(items, **kwargs)


_FUSED_DEVICES = {"Adam": {"cpu", "cuda"}, "AdamW": {"cpu", "cuda"}, "SGD": {"cpu", "cuda"},
                  "Adagrad": {"cpu"}}  # fmt: skip


def _fusable(cls: type[torch.optim.Optimizer], params: list[Any]) -> bool:
    """Does torch have a fused ``cls`` for these parameters (all on one supported device,
    floating point)?"""
    devices = _FUSED_DEVICES.get(cls.__name__)
    if devices is None or not params:
        return False
    tensors: list[torch.Tensor] = []
    for item in params:
        tensors.extend(item["params"] if isinstance(item, dict) else [item])
    kinds = {t.device.type for t in tensors if isinstance(t, torch.Tensor)}
    return len(kinds) == 1 and kinds <= devices and all(t.is_floating_point() for t in tensors)


OPTIMIZERS: dict[str, OptimInfo] = {
    info.name: info
    for info in (
        OptimInfo(
            "sgd",
            torch.optim.SGD,
            "plain stochastic gradient descent",
            lr_default=1e-2,
            lr_range=(1e-4, 1.0),
            hyperparameters=(_weight_decay(),),
        ),
        OptimInfo(
            "momentum",
            torch.optim.SGD,
            "SGD with (heavy-ball) momentum",
            lr_default=1e-2,
            lr_range=(1e-4, 1.0),
            hyperparameters=(_momentum(), _weight_decay()),
            aliases=("sgdm", "sgd_momentum"),
        ),
        OptimInfo(
            "nesterov",
            torch.optim.SGD,
            "SGD with Nesterov momentum",
            lr_default=1e-2,
            lr_range=(1e-4, 1.0),
            hyperparameters=(_momentum(zero_ok=False), _weight_decay()),
            fixed={"nesterov": True},
            aliases=("nag",),
        ),
        OptimInfo(
            "rmsprop",
            torch.optim.RMSprop,
            "RMSprop (Hinton); alpha is Keras' rho",
            lr_default=1e-3,
            lr_range=(1e-5, 1e-1),
            hyperparameters=(
                HyperParam(
                    "alpha",
                    0.99,
                    0.8,
                    0.999,
                    one_minus=True,
                    max_value=1.0,
                    max_inclusive=False,
                    help="smoothing constant of the squared-gradient average (Keras: rho)",
                ),
                _eps(),
                _weight_decay(),
            ),
        ),
        OptimInfo(
            "adagrad",
            torch.optim.Adagrad,
            "Adagrad",
            lr_default=1e-2,
            lr_range=(1e-4, 1.0),
            hyperparameters=(_eps(1e-10), _weight_decay()),
        ),
        OptimInfo(
            "adam",
            torch.optim.Adam,
            "Adam (Kingma & Ba)",
            lr_default=1e-3,
            lr_range=(1e-5, 1e-1),
            hyperparameters=(_beta1(), _beta2(), _eps(), _weight_decay()),
        ),
        OptimInfo(
            "adamw",
            torch.optim.AdamW,
            "Adam with decoupled weight decay",
            lr_default=1e-3,
            lr_range=(1e-5, 1e-1),
            hyperparameters=(_beta1(), _beta2(), _eps(), _weight_decay(1e-2, 1e-5, 1e-1)),
        ),
        OptimInfo(
            "adamax",
            torch.optim.Adamax,
            "Adamax: Adam with the infinity norm",
            lr_default=2e-3,
            lr_range=(1e-5, 1e-1),
            hyperparameters=(_beta1(), _beta2(), _eps(), _weight_decay()),
        ),
        OptimInfo(
            "nadam",
            torch.optim.NAdam,
            "Adam with Nesterov momentum",
            lr_default=2e-3,
            lr_range=(1e-5, 1e-1),
            hyperparameters=(_beta1(), _beta2(), _eps(), _weight_decay()),
        ),
        OptimInfo(
            "radam",
            torch.optim.RAdam,
            "rectified Adam",
            lr_default=1e-3,
            lr_range=(1e-5, 1e-1),
            hyperparameters=(_beta1(), _beta2(), _eps(), _weight_decay()),
        ),
        OptimInfo(
            "schedulefree_adamw",
            "schedulefree:AdamWScheduleFree",
            "Schedule-Free AdamW (Defazio et al.; AlgoPerf self-tuning winner): no schedule",
            lr_default=2.5e-3,
            lr_range=(1e-4, 1e-1),
            hyperparameters=(_beta1(), _beta2(), _eps(), _weight_decay(), _warmup_steps()),
            extra="lrfree",
            tuning_free=True,
            schedule_free=True,
        ),
        OptimInfo(
            "schedulefree_sgd",
            "schedulefree:SGDScheduleFree",
            "Schedule-Free SGD with momentum: no schedule",
            lr_default=1.0,
            lr_range=(1e-3, 10.0),
            hyperparameters=(_momentum(), _weight_decay(), _warmup_steps()),
            extra="lrfree",
            schedule_free=True,
        ),
        OptimInfo(
            "prodigy",
            "prodigyopt:Prodigy",
            "Prodigy (Mishchenko & Defazio): Adam that estimates its own step size",
            lr_default=1.0,
            lr_range=(0.1, 10.0),
            hyperparameters=(
                _beta1(),
                _beta2(),
                _eps(),
                _weight_decay(),
                HyperParam(
                    "d_coef",
                    1.0,
                    0.1,
                    10.0,
                    log=True,
                    min_value=1e-6,
                    tune=False,
                    help="scale of the estimated step size",
                ),
            ),
            extra="lrfree",
            tuning_free=True,
            lr_note="a multiplier of the step size Prodigy estimates (default 1)",
            no_range_test=(
                "Prodigy estimates its own step size, which grows from d0=1e-6 during the "
                "sweep, so the loss would follow that estimate, not the multiplier being "
                "swept; search lr (a multiplier, default 1) in a study instead"
            ),
        ),
    )
}

_ALIASES: dict[str, str] = {
    alias: info.name for info in OPTIMIZERS.values() for alias in (info.name, *info.aliases)
}


def list_optimizers() -> list[str]:
    """Registry names of all optimizers, in registry order."""
    return list(OPTIMIZERS)


def get_optimizer_info(name: str) -> OptimInfo:
    """Look up an optimizer by name or alias (case-insensitive).

    Raises:
        ConfigError: ``name`` is unknown (the message lists the known names), or its
            package is not installed (the message names the ``pip install``).
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in _ALIASES:
        raise ConfigError(f"unknown optimizer {name!r}; known: {', '.join(list_optimizers())}")
    info = OPTIMIZERS[_ALIASES[key]]
    info.check_available()
    return info


def create_optimizer(
    name: str,
    params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
    lr: float,
    hyperparameters: Mapping[str, float] | None = None,
) -> torch.optim.Optimizer:
    """Build optimizer ``name`` over ``params`` with learning rate ``lr``.

    Args:
        name: Registry name or alias, e.g. ``"adam"`` or ``"nesterov"``.
        params: Model parameters or param-group dicts.
        lr: Learning rate (> 0).
        hyperparameters: lrtune-named values (``beta1``, ``momentum``, ...); the rest default.
    """
    return get_optimizer_info(name).create(params, lr, hyperparameters)
