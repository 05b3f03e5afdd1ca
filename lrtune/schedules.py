"""Registry of learning-rate schedules, stepped once per optimizer step.

A schedule is a closed-form multiplier ``factor(step)`` of each param group's base LR,
wrapped in ``torch.optim.lr_scheduler.LambdaLR``. Multiplying (instead of setting) keeps the
ratios between param groups, and the multiplier objects are dataclasses, so the scheduler's
``state_dict`` carries them.

Durations are counted in optimizer steps. Those that default to ``0`` are derived from the
run's total number of steps (e.g. ``step_size=0`` drops the LR twice in a run).

==============  ===========================================================================
name            factor at step t of T
==============  ===========================================================================
constant        1
step            gamma ** floor(t / step_size)
exponential     decay_rate ** (t / decay_steps)   (Keras ``ExponentialDecay``; ``staircase``
                floors the exponent)
cosine          m + (1 - m) * (1 + cos(pi * min(t, T) / T)) / 2,   m = ``min_factor``
onecycle        ``torch.optim.lr_scheduler.OneCycleLR`` (cos annealing, two phases): from
                1/div_factor up to 1 over pct_start of the run, then down to
                1/(div_factor * final_div_factor)
warmup_cosine   t / W during the W = round(warmup_fraction * T) warm-up steps, then cosine
                from 1 to ``min_factor`` over the remaining T - W steps
==============  ===========================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR

from lrtune.errors import ConfigError

__all__ = [
    "SCHEDULES",
    "ScheduleInfo",
    "ScheduleParam",
    "create_scheduler",
    "get_schedule_info",
    "list_schedules",
    "lr_factor",
]


@dataclass(frozen=True)
class ScheduleParam:
    """One parameter of a schedule.

    Args:
        name: Parameter name.
        default: Value used when not given (``0`` for a duration means "derive from T").
        low: Lower end of the search range.
        high: Upper end of the search range.
        log: Search on a log scale.
        integer: Whether the value is a whole number of steps.
        min_value: Smallest valid value.
        max_value: Largest valid value.
        min_inclusive: Whether ``min_value`` itself is valid.
        tune: Whether a search includes it unless told otherwise.
        help: One line for docs.
    """

    name: str
    default: float
    low: float
    high: float
    log: bool = False
    integer: bool = False
    min_value: float = 0.0
    max_value: float = math.inf
    min_inclusive: bool = True
    tune: bool = True
    help: str = ""

    def check(self, value: float | bool, *, field_name: str | None = None) -> float:
        """Return ``value`` validated, or raise :class:`ConfigError` naming the field."""
        name = field_name or self.name
        if isinstance(value, bool):
            value = float(value)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
        too_low = value < self.min_value or (not self.min_inclusive and value <= self.min_value)
        if not math.isfinite(value) or too_low or value > self.max_value:
            open_ = "[" if self.min_inclusive else "("
            close = "]" if math.isfinite(self.max_value) else ")"
            raise ConfigError(
                f"{name} must be in {open_}{self.min_value:g}, {self.max_value:g}{close}, "
                f"got {value!r}"
            )
        if self.integer and value != int(value):
            raise ConfigError(f"{name} must be a whole number of steps, got {value!r}")
        return int(value) if self.integer else value


# ----------------------------------------------------------------------------- closed forms
# Each is a picklable callable: step -> multiplier of the base LR.


@dataclass(frozen=True)
class Constant:
    """factor = 1."""

    def __call__(self, step: int) -> float:
        return 1.0


@dataclass(frozen=True)
class StepDecay:
    """factor = gamma ** floor(step / step_size)."""

    step_size: int  # optimizer steps between drops
    gamma: float  # multiplier per drop

    def __call__(self, step: int) -> float:
        return self.gamma ** (step // self.step_size)


@dataclass(frozen=True)
class ExponentialDecay:
    """factor = decay_rate ** (step / decay_steps), as Keras' ``ExponentialDecay``."""

    decay_rate: float  # multiplier per decay_steps
    decay_steps: int  # optimizer steps
    staircase: bool = False

    def __call__(self, step: int) -> float:
        exponent = step / self.decay_steps
        return self.decay_rate ** (math.floor(exponent) if self.staircase else exponent)


@dataclass(frozen=True)
class CosineDecay:
    """Cosine from 1 at step 0 to ``min_factor`` at ``total_steps``, then flat."""

    total_steps: int
    min_factor: float = 0.0

    def __call__(self, step: int) -> float:
        progress = min(step, self.total_steps) / self.total_steps
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class OneCycle:
    """The two-phase cosine one-cycle policy of ``torch.optim.lr_scheduler.OneCycleLR``."""

    total_steps: int
    pct_start: float = 0.3  # fraction of the run spent warming up
    div_factor: float = 25.0  # initial LR = max LR / div_factor
    final_div_factor: float = 1e4  # final LR = initial LR / final_div_factor

    def __call__(self, step: int) -> float:
        start = 1.0 / self.div_factor
        end = start / self.final_div_factor
        peak_step = float(self.pct_start * self.total_steps) - 1
        last_step = self.total_steps - 1
        step = min(step, last_step)
        if step <= peak_step:
            pct, lo, hi = step / peak_step, start, 1.0
        else:
            pct, lo, hi = (step - peak_step) / (last_step - peak_step), 1.0, end
        return hi + (lo - hi) / 2.0 * (math.cos(math.pi * pct) + 1)


@dataclass(frozen=True)
class WarmupCosine:
    """Linear warm-up from 0 over ``warmup_steps``, then cosine down to ``min_factor``."""

    total_steps: int
    warmup_steps: int
    min_factor: float = 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / self.warmup_steps
        progress = min(
            1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        )
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


# ----------------------------------------------------------------------------- builders


def _build_constant(total_steps: int) -> Constant:
    return Constant()


def _build_step(total_steps: int, step_size: int, gamma: float) -> StepDecay:
    return StepDecay(step_size or max(1, math.ceil(total_steps / 3)), gamma)


def _build_exponential(
    total_steps: int, decay_rate: float, decay_steps: int, staircase: float
) -> ExponentialDecay:
    return ExponentialDecay(decay_rate, decay_steps or max(1, total_steps), bool(staircase))


def _build_cosine(total_steps: int, min_factor: float) -> CosineDecay:
    return CosineDecay(max(1, total_steps), min_factor)


def _build_onecycle(
    total_steps: int, pct_start: float, div_factor: float, final_div_factor: float
) -> OneCycle:
    peak_step = pct_start * total_steps - 1  # as OneCycleLR computes it
    if not 0 < peak_step < total_steps - 1:
        raise ConfigError(
            f"schedule onecycle needs pct_start * total_steps in (1, total_steps); got "
            f"pct_start={pct_start} with {total_steps} total steps"
        )
    return OneCycle(total_steps, pct_start, div_factor, final_div_factor)


def _build_warmup_cosine(
    total_steps: int, warmup_fraction: float, min_factor: float
) -> WarmupCosine:
    total = max(1, total_steps)
    return WarmupCosine(total, round(warmup_fraction * total), min_factor)


@dataclass(frozen=True)
class ScheduleInfo:
    """Declaration of one schedule in the registry.

    Args:
        name: Registry name.
        description: One line for listings.
        params: Its parameters, with defaults and search ranges.
        build: ``build(total_steps, **params) -> factor(step)`` callable.
    """

    name: str
    description: str
    params: tuple[ScheduleParam, ...]
    build: Callable[..., Callable[[int], float]]

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names of the declared parameters."""
        return tuple(p.name for p in self.params)

    def param(self, name: str) -> ScheduleParam:
        """Return the declaration of ``name``; :class:`ConfigError` if it has none such."""
        for p in self.params:
            if p.name == name:
                return p
        known = ", ".join(self.param_names) or "none"
        raise ConfigError(f"schedule {self.name!r} takes no {name!r} (it takes: {known})")

    def resolve(
        self, params: Mapping[str, float] | None = None, *, prefix: str = ""
    ) -> dict[str, float]:
        """Validate ``params`` and fill in defaults for the rest.

        Args:
            params: Schedule parameters.
            prefix: Put before a parameter's name in errors (e.g. ``"params."``).
        """
        resolved = {p.name: p.default for p in self.params}
        for key, value in (params or {}).items():
            if prefix and key not in resolved:
                known = ", ".join(resolved) or "none"
                raise ConfigError(f"{prefix}{key} is not taken by {self.name} (it takes: {known})")
            resolved[key] = self.param(key).check(value, field_name=prefix + key)
        return resolved

    def factor_fn(
        self, total_steps: int, params: Mapping[str, float] | None = None
    ) -> Callable[[int], float]:
        """The closed-form multiplier for a run of ``total_steps`` optimizer steps."""
        if total_steps < 1:
            raise ConfigError(f"total_steps must be >= 1, got {total_steps}")
        return self.build(total_steps, **self.resolve(params))


_P = ScheduleParam
SCHEDULES: dict[str, ScheduleInfo] = {
    info.name: info
    for info in (
        ScheduleInfo("constant", "the same LR throughout", (), _build_constant),
        ScheduleInfo(
            "step",
            "multiply by gamma every step_size steps",
            (
                _P(
                    "step_size",
                    0,
                    0,
                    0,
                    integer=True,
                    tune=False,
                    help="optimizer steps between drops (0: a third of the run)",
                ),
                _P(
                    "gamma",
                    0.1,
                    0.05,
                    0.5,
                    log=True,
                    max_value=1.0,
                    min_inclusive=False,
                    help="multiplier per drop",
                ),
            ),
            _build_step,
        ),
        ScheduleInfo(
            "exponential",
            "decay_rate ** (step / decay_steps) (Keras ExponentialDecay)",
            (
                _P(
                    "decay_rate",
                    0.1,
                    0.01,
                    0.9,
                    log=True,
                    max_value=1.0,
                    min_inclusive=False,
                    help="multiplier per decay_steps",
                ),
                _P(
                    "decay_steps",
                    0,
                    0,
                    0,
                    integer=True,
                    tune=False,
                    help="optimizer steps per decay_rate (0: the whole run)",
                ),
                _P(
                    "staircase",
                    0,
                    0,
                    1,
                    integer=True,
                    max_value=1,
                    tune=False,
                    help="1: decay in whole steps of decay_steps",
                ),
            ),
            _build_exponential,
        ),
        ScheduleInfo(
            "cosine",
            "cosine annealing to min_factor over the run",
            (_P("min_factor", 0.0, 0.0, 0.1, max_value=1.0, help="final LR / initial LR"),),
            _build_cosine,
        ),
        ScheduleInfo(
            "onecycle",
            "one-cycle policy: warm up to the LR, then anneal far below it",
            (
                _P(
                    "pct_start",
                    0.3,
                    0.1,
                    0.5,
                    min_inclusive=False,
                    max_value=1.0,
                    help="fraction of the run spent increasing the LR",
                ),
                _P(
                    "div_factor",
                    25.0,
                    5.0,
                    100.0,
                    log=True,
                    min_value=1.0,
                    help="peak LR / initial LR",
                ),
                _P(
                    "final_div_factor",
                    1e4,
                    10.0,
                    1e5,
                    log=True,
                    min_value=1.0,
                    help="initial LR / final LR",
                ),
            ),
            _build_onecycle,
        ),
        ScheduleInfo(
            "warmup_cosine",
            "linear warm-up from 0, then cosine annealing",
            (
                _P(
                    "warmup_fraction",
                    0.05,
                    0.0,
                    0.3,
                    max_value=1.0,
                    help="fraction of the run spent warming up",
                ),
                _P("min_factor", 0.0, 0.0, 0.1, max_value=1.0, help="final LR / peak LR"),
            ),
            _build_warmup_cosine,
        ),
    )
}


def list_schedules() -> list[str]:
    """Registry names of all schedules."""
    return list(SCHEDULES)


def get_schedule_info(name: str) -> ScheduleInfo:
    """Look up a schedule (case-insensitive, ``-`` and ``_`` alike).

    Raises:
        ConfigError: ``name`` is unknown; the message lists the known names.
    """
    key = str(name).strip().lower().replace("-", "_")
    if key in ("one_cycle", "1cycle"):
        key = "onecycle"
    if key not in SCHEDULES:
        raise ConfigError(f"unknown schedule {name!r}; known: {', '.join(list_schedules())}")
    return SCHEDULES[key]


def lr_factor(
    name: str, step: int, total_steps: int, params: Mapping[str, float] | None = None
) -> float:
    """Multiplier of the base LR at ``step`` of a ``total_steps`` run (for plots and tests)."""
    return get_schedule_info(name).factor_fn(total_steps, params)(step)


def create_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    total_steps: int,
    params: Mapping[str, float] | None = None,
) -> LambdaLR:
    """A ``LambdaLR`` over ``optimizer`` for schedule ``name``; step it once per optimizer step.

    Args:
        optimizer: The optimizer whose param groups' LRs it scales.
        name: Registry name, e.g. ``"cosine"``.
        total_steps: Optimizer steps in the whole run.
        params: Schedule parameters; the rest default.
    """
    return LambdaLR(optimizer, get_schedule_info(name).factor_fn(total_steps, params))
