"""Typed, frozen configuration objects, validated once at the edge.

Raw input (CLI flags, YAML files, dicts from a notebook) becomes a :class:`TrainConfig` or
a :class:`StudyConfig` here; everything after this package trusts these objects.
Validation errors become one :class:`~lrtune.errors.ConfigError` whose message names the
field (and the file, when one was read), e.g. ``run.yaml: optimizer.lr must be > 0, got
-1.0``.

One concept per module, imported one way (``_base`` <- ``_train`` <- ``_study``):

- ``_base``: the frozen base model, one-line validation errors, the strict YAML loader.
- ``_train``: :class:`TrainConfig` and its optimizer, schedule and clipping parts.
- ``_study``: :class:`StudyConfig`, its search space, budget, objective, sampler, pruner.

This is the core layer: it imports no Lightning, no plotly and no other lrtune layer above
the registries (``lrtune.datasets``, ``lrtune.models``, ``lrtune.optimizers``,
``lrtune.schedules``).
"""

from __future__ import annotations

from lrtune.config._base import format_validation_error, load_yaml
from lrtune.config._study import (
    Budget,
    LRSpace,
    Objective,
    PrunerConfig,
    Range,
    SamplerConfig,
    ScheduleChoice,
    SpaceConfig,
    StudyConfig,
    study_config_from,
)
from lrtune.config._train import (
    ClipConfig,
    ComponentConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    train_config_from,
)

__all__ = [
    "Budget",
    "ClipConfig",
    "ComponentConfig",
    "LRSpace",
    "Objective",
    "OptimizerConfig",
    "PrunerConfig",
    "Range",
    "SamplerConfig",
    "ScheduleChoice",
    "ScheduleConfig",
    "SpaceConfig",
    "StudyConfig",
    "TrainConfig",
    "format_validation_error",
    "load_yaml",
    "study_config_from",
    "train_config_from",
]
