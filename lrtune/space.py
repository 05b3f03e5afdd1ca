"""Define-by-run search space: an Optuna trial becomes a resolved training configuration.

Conditional on the registries, with no per-optimizer branches: β only for optimizers that
declare betas, momentum only where it applies, a schedule's parameters only for that
schedule, the clipping threshold only when clipping.

Parameter names (what Optuna, its dashboard and ``lrtune best`` show):

=============================  =============================================================
``optimizer``                  categorical over ``space.optimizers``
``<opt>.lr``                   log-uniform, one per optimizer (``space.lr.linked``, default),
                               so TPE's grouped multivariate model learns LR per optimizer;
                               ``lr`` when not linked
``<opt>.1-beta1`` ...          ``1 - β`` (and ``1 - momentum``, ``1 - alpha``) on a log scale
``<opt>.weight_decay`` ...     other hyperparameters, on the registry's scale
``schedule``                   categorical; ``schedule.<name>.<param>`` for searched params
``clip``                       categorical; ``clip.<kind>.threshold`` (log) when clipping
``batch_size``                 categorical (only when ``space.batch_size`` is set)
``model.<option>``             categorical (only for ``space.model_options``)
=============================  =============================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lrtune.config import Range, ScheduleChoice, SpaceConfig, StudyConfig, TrainConfig
from lrtune.optimizers import HyperParam, OptimInfo, get_optimizer_info

if TYPE_CHECKING:
    import optuna

__all__ = [
    "TRIALS_PER_DIMENSION",
    "baseline_config",
    "default_params",
    "describe_space",
    "lr_ranges",
    "suggest_config",
    "trials_to_open",
]


TRIALS_PER_DIMENSION = 10
"""``space.grow``: an optimizer's other tunable hyperparameters join the search when the
study's ``n_trials`` gives that optimizer this many trials per dimension it would search
(its LR plus each hyperparameter). 10 is Optuna's default number of random start-up trials
of TPE: fewer observations than that per dimension leave a model-based sampler guessing."""


def _searchable(space: SpaceConfig, info: OptimInfo) -> list[HyperParam]:
    """The hyperparameters of ``info`` that the study would search with the space open."""
    return [
        hp
        for hp in info.hyperparameters
        if space.hyperparameters.get(hp.name) is not False
        and (isinstance(space.hyperparameters.get(hp.name), Range) or hp.tune)
    ]


def trials_to_open(study: StudyConfig, optimizer: str) -> int:
    """The ``n_trials`` from which ``optimizer``'s registry hyperparameters are searched
    under ``space.grow`` (0: from the first trial, e.g. it has none to add)."""
    searchable = _searchable(study.space, get_optimizer_info(optimizer))
    if all(hp.name in study.space.hyperparameters for hp in searchable):
        return 0  # nothing the rule holds back: what the study names is always searched
    dimensions = 1 + len(searchable)
    return TRIALS_PER_DIMENSION * dimensions * len(study.space.optimizers)


def _is_open(study: StudyConfig, info: OptimInfo) -> bool:
    """Does the study search ``info``'s registry hyperparameters (see ``space.grow``)?"""
    if not study.space.grow or study.n_trials is None:  # a timeout alone: no budget to size
        return True
    return study.n_trials >= trials_to_open(study, info.name)


def _hyperparameter_range(study: StudyConfig, info: OptimInfo, hp: HyperParam) -> Range | None:
    """The range searched for ``hp``, or ``None`` to keep its default."""
    chosen = study.space.hyperparameters.get(hp.name)
    if chosen is False:
        return None
    if isinstance(chosen, Range):
        return chosen
    if not hp.tune or not _is_open(study, info):
        return None
    return Range(low=hp.low, high=hp.high, log=hp.log or hp.one_minus)


def describe_space(study: StudyConfig) -> list[str]:
    """One line per optimizer: what its trials search, and (``space.grow``) why."""
    lines = []
    for name in study.space.optimizers:
        info = get_optimizer_info(name)
        searched = [
            hp.name for hp in info.hyperparameters if _hyperparameter_range(study, info, hp)
        ]
        held = [hp.name for hp in _searchable(study.space, info) if hp.name not in searched]
        line = f"{name}: lr" + "".join(f", {h}" for h in searched)
        if held:
            line += (
                f"; {', '.join(held)} at registry defaults until n_trials >= "
                f"{trials_to_open(study, name)} ({TRIALS_PER_DIMENSION} trials per searched "
                f"dimension per optimizer; space.grow)"
            )
        lines.append(line)
    return lines


def _param_name(space: SpaceConfig, info: OptimInfo, name: str) -> str:
    return f"{info.name}.{name}" if space.lr.linked else name


def lr_ranges(
    study: StudyConfig, auto: Mapping[str, tuple[float, float]] | None = None
) -> dict[str, tuple[float, float]]:
    """The LR range searched for each optimizer of the study.

    Args:
        study: The study; ``space.lr`` gives fixed bounds or ``auto``.
        auto: Per-optimizer ranges found by the range test (for ``lr: auto``).
    """
    lr = study.space.lr
    ranges = {}
    for name in study.space.optimizers:
        if auto is not None and name in auto:
            ranges[name] = auto[name]
        elif lr.low is not None and lr.high is not None:
            ranges[name] = (lr.low, lr.high)
        else:
            ranges[name] = get_optimizer_info(name).lr_range
    return ranges


def _suggest_range(trial: optuna.Trial, name: str, rng: Range, one_minus: bool) -> float:
    if one_minus:  # search 1 - x on a log scale: resolution where x crowds just below 1
        return 1.0 - trial.suggest_float(f"{name}", 1.0 - rng.high, 1.0 - rng.low, log=True)
    return trial.suggest_float(name, rng.low, rng.high, log=rng.log)


def suggest_config(
    trial: optuna.Trial, study: StudyConfig, lr_range: Mapping[str, tuple[float, float]]
) -> TrainConfig:
    """Ask ``trial`` for every searched value and return the resolved training config.

    Args:
        trial: The Optuna trial (define-by-run).
        study: The validated study.
        lr_range: LR bounds per optimizer (see :func:`lr_ranges`).
    """
    space = study.space
    info = get_optimizer_info(trial.suggest_categorical("optimizer", space.optimizers))
    low, high = lr_range[info.name]
    lr = trial.suggest_float(_param_name(space, info, "lr"), low, high, log=True)
    params: dict[str, float] = {}
    for hp in info.hyperparameters:
        rng = _hyperparameter_range(study, info, hp)
        if rng is None:
            continue
        label = f"1-{hp.name}" if hp.one_minus else hp.name
        params[hp.name] = _suggest_range(trial, _param_name(space, info, label), rng, hp.one_minus)

    by_name = {choice.name: choice for choice in space.schedules}
    if info.schedule_free:  # no schedule of its own to combine with: constant, not searched
        schedule = ScheduleChoice(name="constant")
    else:
        schedule = by_name[trial.suggest_categorical("schedule", list(by_name))]
    schedule_params: dict[str, float] = {}
    for key, value in schedule.params.items():
        if isinstance(value, Range):
            schedule_params[key] = trial.suggest_float(
                f"schedule.{schedule.name}.{key}", value.low, value.high, log=value.log
            )
        else:
            schedule_params[key] = value

    clip_kind = trial.suggest_categorical("clip", space.clip)
    clip: dict[str, Any] = {"kind": clip_kind}
    if clip_kind != "none":
        rng = space.clip_threshold
        clip["threshold"] = trial.suggest_float(
            f"clip.{clip_kind}.threshold", rng.low, rng.high, log=rng.log
        )

    base = study.base_train_config().to_dict()
    base.update(
        optimizer={"name": info.name, "lr": lr, "params": params},
        schedule={"name": schedule.name, "params": schedule_params},
        clip=clip,
    )
    if space.batch_size is not None:
        base["batch_size"] = trial.suggest_categorical("batch_size", space.batch_size)
    # lrtune's model options, or (with your own module) keys of its init_args
    target = base["module"]["init_args"] if study.module is not None else base["model_options"]
    for key, choices in space.model_options.items():
        target[key] = trial.suggest_categorical(f"model.{key}", choices)
    return TrainConfig.model_validate(base)


def baseline_config(study: StudyConfig, optimizer: str) -> TrainConfig:
    """The training config of a ``baselines`` trial: ``optimizer`` at its registry defaults
    (its own LR, or multiplier), a constant schedule and no clipping."""
    base = study.base_train_config().to_dict()
    base.update(optimizer={"name": optimizer}, schedule={"name": "constant"}, clip={"kind": "none"})
    return TrainConfig.model_validate(base)


def default_params(
    study: StudyConfig,
    optimizer: str,
    lr_range: Mapping[str, tuple[float, float]],
    lr: float | None = None,
) -> dict[str, Any]:
    """Optuna params that put ``optimizer`` at its registry defaults (for enqueueing).

    Args:
        study: The validated study.
        optimizer: Registry name of the optimizer.
        lr_range: LR bounds per optimizer (see :func:`lr_ranges`).
        lr: The LR (default: the registry default), clipped into the searched range.
            Hyperparameters are at their defaults (clipped likewise); the schedule and
            clipping kind are the first listed.
    """
    space = study.space
    info = get_optimizer_info(optimizer)
    low, high = lr_range[info.name]
    params: dict[str, Any] = {
        "optimizer": info.name,
        _param_name(space, info, "lr"): min(max(info.lr_default if lr is None else lr, low), high),
    }
    for hp in info.hyperparameters:
        rng = _hyperparameter_range(study, info, hp)
        if rng is None:
            continue
        value = min(max(hp.default, rng.low), rng.high)
        label = f"1-{hp.name}" if hp.one_minus else hp.name
        params[_param_name(space, info, label)] = 1.0 - value if hp.one_minus else value
    if not info.schedule_free:  # a schedule-free optimizer's schedule is not searched
        params["schedule"] = space.schedules[0].name
    params["clip"] = space.clip[0]
    return params
