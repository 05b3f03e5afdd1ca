"""What the report reads from a study: the :class:`_View` (the study, its lrtune config,
metric, direction and trials, read once) and the small accessors on trials that the figures,
the HTML tables and the dashboard's note share (optimizer, LR, outcome, formatting, counts,
wall time). No plotly here.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from lrtune.config import StudyConfig


@dataclass
class _View:
    """What the report needs from a study, read once."""

    study: optuna.Study
    config: StudyConfig | None
    metric: str
    maximize: bool
    trials: list[optuna.trial.FrozenTrial]
    lr_auto: dict[str, Any] = field(default_factory=dict)

    def state(self, name: str) -> list[optuna.trial.FrozenTrial]:
        return [t for t in self.trials if t.state.name == name]

    @property
    def complete(self) -> list[optuna.trial.FrozenTrial]:
        """Complete trials, best first."""
        done = [t for t in self.state("COMPLETE") if t.value is not None]
        return sorted(done, key=lambda t: float(t.value), reverse=self.maximize)  # type: ignore[arg-type]

    @property
    def diverged(self) -> list[optuna.trial.FrozenTrial]:
        return [t for t in self.trials if "diverged" in t.user_attrs]


def _view(study: optuna.Study) -> _View:
    from lrtune.config import StudyConfig
    from lrtune.errors import ConfigError
    from lrtune.results import trials_with_tests

    if len(study.directions) != 1:
        raise ConfigError(
            f"study {study.study_name!r} has {len(study.directions)} objectives; "
            "the report covers single-objective studies"
        )
    stored = study.user_attrs.get("lrtune.study_config")
    config = None
    if stored is not None:
        try:
            config = StudyConfig.model_validate(stored)
        except ValueError:  # written by another lrtune version: report it as a plain study
            config = None
    metric = config.objective.metric if config is not None else "value"
    return _View(
        study=study,
        config=config,
        metric=metric,
        maximize=study.direction.name == "MAXIMIZE",
        trials=trials_with_tests(study),
        lr_auto=dict(study.user_attrs.get("lrtune.lr_auto") or {}),
    )


def _cfg(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return dict(trial.user_attrs.get("config") or {})


def _optimizer(trial: optuna.trial.FrozenTrial) -> str:
    name = _cfg(trial).get("optimizer", {}).get("name") or trial.params.get("optimizer")
    return str(name) if name is not None else "trials"


def _lr(trial: optuna.trial.FrozenTrial) -> float | None:
    lr = _cfg(trial).get("optimizer", {}).get("lr")
    if lr is None:
        lr = next((v for k, v in trial.params.items() if k == "lr" or k.endswith(".lr")), None)
    return float(lr) if isinstance(lr, (int, float)) else None


def _outcome(trial: optuna.trial.FrozenTrial) -> str:
    if "diverged" in trial.user_attrs:
        return "diverged"
    return {"FAIL": "failed"}.get(trial.state.name, trial.state.name.lower())


def _last_value(trial: optuna.trial.FrozenTrial) -> float | None:
    if trial.value is not None:
        return float(trial.value)
    if trial.intermediate_values:
        value = trial.intermediate_values[max(trial.intermediate_values)]
        return float(value) if math.isfinite(value) else None
    return None


def _fmt(value: Any, spec: str = ".4g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def _optimizer_order(view: _View) -> list[str]:
    """Optimizers in the order of the study file, then any others in trial order."""
    names = list(view.config.space.optimizers) if view.config is not None else []
    for trial in view.trials:
        name = _optimizer(trial)
        if name not in names:
            names.append(name)
    return names


def _counts(view: _View) -> dict[str, int]:
    states = [t.state.name for t in view.trials]
    return {
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED")
        - len([t for t in view.diverged if t.state.name == "PRUNED"]),
        "diverged": len(view.diverged),
        # trials ended unrun because n_trials was reached (several workers) are not failures
        "failed": sum(
            t.state.name == "FAIL" and "surplus" not in t.user_attrs for t in view.trials
        ),
        "running": states.count("RUNNING"),
        "waiting": states.count("WAITING"),
    }


def _wall_time(view: _View) -> tuple[float, float]:
    """(first start to last finish or now, summed trial durations), in seconds."""
    now = _dt.datetime.now()
    starts = [t.datetime_start for t in view.trials if t.datetime_start is not None]
    ends = [t.datetime_complete or now for t in view.trials if t.datetime_start is not None]
    if not starts:
        return 0.0, 0.0
    wall = (max(ends) - min(starts)).total_seconds()
    busy = sum(
        ((t.datetime_complete or now) - t.datetime_start).total_seconds()
        for t in view.trials
        if t.datetime_start is not None
    )
    return wall, busy


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
