"""What a search prints: one line per finished trial (count, outcome, best so far, pruned,
elapsed, ETA) and the summary table of the best trial per optimizer at the end."""

from __future__ import annotations

import math
import time
from typing import TextIO

import optuna
from optuna.trial import TrialState

from lrtune.results import (
    ATTR_CONFIG,
    FINISHED,
    best_per_optimizer,
    describe_tuned_vs_tuning_free,
    trials_with_tests,
    tuned_vs_tuning_free,
)
from lrtune.study import _coordination as coord

__all__ = ["Progress", "print_summary"]


class Progress:
    """One line per finished trial: count, outcome, best so far, pruned, elapsed, ETA."""

    def __init__(
        self, stream: TextIO | None, n_trials: int | None, start_count: int, tag: str = ""
    ) -> None:
        self._stream = stream
        self._tag = tag
        self._n = n_trials
        self._start_count = start_count
        self._start = time.perf_counter()

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if self._stream is None or coord.SURPLUS in trial.user_attrs:
            return
        trials = study.get_trials(deepcopy=False)
        done = sum(t.state in FINISHED for t in trials)
        pruned = sum(t.state == TrialState.PRUNED for t in trials)
        failed = sum(t.state == TrialState.FAIL and coord.SURPLUS not in t.user_attrs
                     for t in trials)  # fmt: skip
        elapsed = time.perf_counter() - self._start
        ran = max(1, done - self._start_count)
        eta = ""
        if self._n is not None and done < self._n:
            eta = f", ETA {_clock(elapsed / ran * (self._n - done))}"
        cfg = trial.user_attrs.get("config", {})
        opt = cfg.get("optimizer", {})
        what = f"{opt.get('name', '?')} lr={opt.get('lr', float('nan')):.3g}"
        what += f" {cfg.get('schedule', {}).get('name', '')}"
        if trial.state == TrialState.COMPLETE:
            outcome = f"{study.direction.name.lower()[:3]} {trial.value:.4g}"
        elif trial.state == TrialState.PRUNED:
            outcome = "diverged" if "diverged" in trial.user_attrs else "pruned"
        elif trial.state == TrialState.FAIL:
            outcome = f"failed ({trial.user_attrs.get('error', 'see the log above')})"
        else:
            outcome = trial.state.name.lower()
        try:
            best = f"best {study.best_value:.4g} (#{study.best_trial.number})"
        except ValueError:
            best = "no complete trial yet"
        total = f"/{self._n}" if self._n else ""
        print(
            f"{self._tag}[{done}{total}] trial {trial.number} {what}: {outcome} | {best} | "
            f"{pruned} pruned, {failed} failed | {_clock(elapsed)}{eta}",
            file=self._stream,
            flush=True,
        )


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def print_summary(study: optuna.Study, stream: TextIO) -> None:
    """The trial counts, what each optimizer's trials searched, and the best trial per
    optimizer."""
    from lrtune.config import StudyConfig
    from lrtune.space import describe_space

    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    trials = trials_with_tests(study)  # one read of the storage for the whole summary
    best_per = best_per_optimizer(trials, maximize)
    states = [t.state for t in trials]
    print(
        f"study {study.study_name}: {states.count(TrialState.COMPLETE)} complete, "
        f"{states.count(TrialState.PRUNED)} pruned, {states.count(TrialState.FAIL)} failed",
        file=stream,
    )
    stored = study.user_attrs.get(ATTR_CONFIG)
    if stored is not None:
        for line in describe_space(StudyConfig.model_validate(stored)):
            print(f"searched: {line}", file=stream)
    width = max([10, *(len(name) for name in best_per)])
    print(
        f"{'optimizer':<{width}} {'trial':>5} {'value':>8} {'test_acc':>8} {'lr':>9}  schedule",
        file=stream,
    )
    ordered = sorted(best_per.items(), key=lambda kv: kv[1].value or 0.0, reverse=maximize)
    for name, trial in ordered:
        cfg = trial.user_attrs.get("config", {})
        test_acc = trial.user_attrs.get("test_acc", math.nan)
        print(
            f"{name:<{width}} {trial.number:>5} {trial.value:>8.4f} {test_acc:>8.4f} "
            f"{cfg.get('optimizer', {}).get('lr', math.nan):>9.3g}  "
            f"{cfg.get('schedule', {}).get('name', '')}",
            file=stream,
        )
    comparison = tuned_vs_tuning_free(trials, maximize)
    if comparison is not None:
        metric = study.metric_names[0] if study.metric_names else "value"
        print(describe_tuned_vs_tuning_free(comparison, metric), file=stream)
