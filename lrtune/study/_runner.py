"""The study runner: open or resume the study, its one-time set-up under the set-up lock,
and the loop that runs trials until exactly ``n_trials`` have finished across all workers,
the timeout passes, or trials keep failing the same way.

The runner publishes nothing itself: notes, artifacts and reports reach it as
:class:`~lrtune.hooks.SearchCallback` hooks handed in by the caller.
"""

from __future__ import annotations

import gc
import logging
import re
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import optuna
from optuna.trial import TrialState

from lrtune.artifacts import ATTR_ARTIFACTS, configured_artifact_dir
from lrtune.config import StudyConfig, TrainConfig
from lrtune.errors import ConfigError, StudyFailedError
from lrtune.hooks import SearchCallback
from lrtune.results import ATTR_BASELINE, ATTR_CONFIG, finished_count
from lrtune.space import default_params, lr_ranges
from lrtune.storage import DEFAULT_STORAGE, close_storage, mask_url, open_storage
from lrtune.study import _coordination as coord
from lrtune.study._auto_lr import AutoRanges
from lrtune.study._factories import create_pruner, create_sampler
from lrtune.study._objective import ATTR_INPUT_ERROR, _objective
from lrtune.study._progress import Progress
from lrtune.study._test_pass import HeldWeights

if TYPE_CHECKING:
    import lightning.pytorch as pl

    from lrtune._threads import ThreadFit

__all__ = ["open_study", "run_worker"]

_ATTR_ENQUEUED = "lrtune.defaults_enqueued"
_ATTR_FINDER_ENQUEUED = "lrtune.finder_enqueued"
_ATTR_BASELINES_ENQUEUED = "lrtune.baselines_enqueued"

log = logging.getLogger("lrtune.study")

TrialCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


def _comparable(config: StudyConfig) -> dict[str, Any]:
    """What must stay the same for a rerun to continue a study (not: stopping rules, where
    things are, the test policy, speed switches that leave the trials' meaning alone)."""
    data = config.to_dict()
    for key in (
        "n_trials", "timeout", "storage", "artifacts", "question", "expected_cost", "data_dir",
        "test", "channels_last", "compile", "code_dir", "workers", "trials_per_gpu",
    ):  # fmt: skip
        data.pop(key, None)
    data["space"]["lr"].pop("range_tests", None)  # when they run, not what they find
    return data


def _check_same_study(study: optuna.Study, config: StudyConfig, storage: str) -> None:
    """Store the config in a new study; a rerun must bring the same one. While no trial has
    finished (say the first one failed on a misnamed metric), a fixed config takes over."""
    stored = study.user_attrs.get(ATTR_CONFIG)
    trials = study.get_trials(deepcopy=False)
    if stored is None and trials:
        params = sorted({name for t in trials for name in t.params})
        raise ConfigError(  # another tool's study: adding lrtune trials would damage it
            f"study {config.name!r} in {mask_url(storage)} already holds {len(trials)} trials "
            f"and was not made by lrtune (direction {study.direction.name.lower()}, "
            f"parameters: {', '.join(params) or 'none'}); use another --study-name"
        )
    if stored is not None:
        old = StudyConfig.model_validate(stored)
        before, after = _comparable(old), _comparable(config)
        if before == after:
            return
        same_direction = old.objective.resolved_direction == config.objective.resolved_direction
        if not same_direction or finished_count(study) > 0:
            changed = sorted(k for k, v in after.items() if before.get(k) != v)
            raise ConfigError(
                f"study {config.name!r} in {mask_url(storage)} was created with a different "
                f"configuration (changed: {', '.join(changed)}); use another --study-name"
            )
        log.info("study %s: no trial has finished; it takes the new configuration", config.name)
    data = config.to_dict()
    if data.get("storage"):  # the dashboard and reports show this: no passwords
        data["storage"] = mask_url(str(data["storage"]))
    study.set_user_attr(ATTR_CONFIG, data)


def _name_objective(study: optuna.Study, config: StudyConfig) -> None:
    """Label the objective with its metric in optuna-dashboard (not "Objective 0")."""
    if study.metric_names != [config.objective.metric]:
        with warnings.catch_warnings():  # set_metric_names is marked experimental
            warnings.simplefilter("ignore")
            study.set_metric_names([config.objective.metric])


def _artifact_folder(study: optuna.Study, config: StudyConfig) -> Path:
    """The study's artifact folder (``artifacts:`` or beside the storage), recorded in the
    study so ``lrtune dashboard`` finds it."""
    folder = configured_artifact_dir(config).absolute()
    if study.user_attrs.get(ATTR_ARTIFACTS) != str(folder):
        study.set_user_attr(ATTR_ARTIFACTS, str(folder))
    return folder


def _enqueue_defaults(
    study: optuna.Study, config: StudyConfig, ranges: Mapping[str, tuple[float, float]]
) -> None:
    if not config.enqueue_defaults or study.user_attrs.get(_ATTR_ENQUEUED):
        return
    for name in config.space.optimizers:
        study.enqueue_trial(default_params(config, name, ranges), user_attrs={"defaults": True})
    study.set_user_attr(_ATTR_ENQUEUED, True)


def _enqueue_baselines(study: optuna.Study, config: StudyConfig) -> None:
    """``baselines``: one trial per tuning-free optimizer at its defaults, queued once per
    study, before any other (the objective builds their config: they sample nothing)."""
    if not config.baselines or study.user_attrs.get(_ATTR_BASELINES_ENQUEUED):
        return
    for name in config.baselines:
        study.enqueue_trial({}, user_attrs={ATTR_BASELINE: name})
    study.set_user_attr(_ATTR_BASELINES_ENQUEUED, True)


def _finder_queued(study: optuna.Study, config: StudyConfig) -> list[str]:
    """The optimizers whose ``enqueue_finder`` trial was queued (``True``: all of them, as
    studies stored it before range tests ran on first use)."""
    queued = study.user_attrs.get(_ATTR_FINDER_ENQUEUED)
    return list(config.space.optimizers) if queued is True else list(queued or [])


def _enqueue_finder(
    study: optuna.Study, config: StudyConfig, ranges: AutoRanges, names: Sequence[str]
) -> bool:
    """``enqueue_finder``: a trial for each optimizer of ``names`` at its range test's
    suggested LR (other hyperparameters at registry defaults), each queued once per study.
    Their range tests must have run. Returns whether a trial was queued."""
    queued = _finder_queued(study, config)
    todo = [n for n in names if n not in queued]
    if not config.enqueue_finder or not todo:
        return False
    added = False
    for name in todo:
        lr = (ranges.entries.get(name) or {}).get("result", {}).get("suggestion")
        if lr is not None:  # else the range test found no LR: the sampler starts this one
            study.enqueue_trial(
                default_params(config, name, ranges, lr=lr), user_attrs={"start": "lr finder"}
            )
            added = True
    study.set_user_attr(_ATTR_FINDER_ENQUEUED, [*queued, *todo])
    return added


class _FinderQueue:
    """``range_tests: first_use`` with ``enqueue_finder``: before a trial, when no queued
    trial waits, run the range test of the next optimizer (in the study's order) whose
    finder trial is not queued yet and queue it. The first model then trains after one range
    test instead of all of them; the sampler takes over once every optimizer had its turn."""

    def __init__(
        self,
        study: optuna.Study,
        config: StudyConfig,
        storage: optuna.storages.BaseStorage,
        ranges: AutoRanges,
    ) -> None:
        self._study, self._config, self._storage, self._ranges = study, config, storage, ranges
        self._done = not config.enqueue_finder

    def __call__(self) -> None:
        if self._done or self._study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return
        with coord.setup_lock(self._storage, self._config.name):
            queued = _finder_queued(self._study, self._config)
            for name in [n for n in self._config.space.optimizers if n not in queued]:
                self._ranges.ensure([name], locked=True)
                if _enqueue_finder(self._study, self._config, self._ranges, [name]):
                    return
            self._done = True


def open_study(
    config: StudyConfig, storage: optuna.storages.BaseStorage | None = None
) -> optuna.Study:
    """Create or load the study and check it was made with the same configuration.

    Args:
        config: The validated study.
        storage: The opened storage (default: open ``config.storage``; the caller closes
            it with :func:`lrtune.storage.close_storage`).
    """
    if storage is None:
        storage = open_storage(config.storage)
    study = optuna.create_study(
        storage=storage,
        sampler=create_sampler(config),
        pruner=create_pruner(config),
        study_name=config.name,
        direction=config.objective.resolved_direction,  # type: ignore[arg-type]
        load_if_exists=True,
    )
    _check_same_study(study, config, config.storage or DEFAULT_STORAGE)
    return study


class _FailureStreak:
    """Stops a worker when ``limit`` trials in a row fail with the same error."""

    def __init__(self, study_name: str, limit: int = 3) -> None:
        self._study_name = study_name
        self._limit = limit
        self._kind: str | None = None
        self._trials: list[int] = []

    def update(self, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state != TrialState.FAIL:
            self._kind, self._trials = None, []
            return
        if coord.SURPLUS in trial.user_attrs:
            return
        error = str(trial.user_attrs.get("error") or trial.system_attrs.get("fail_reason", "?"))
        error = error.strip().splitlines()[0] if error.strip() else "?"
        kind = re.sub(r"\d+(\.\d+)?", "#", error)  # "tried to allocate 2.1 GiB" ~ "3.4 GiB"
        if kind != self._kind:
            self._kind, self._trials = kind, []
        self._trials.append(trial.number)
        if len(self._trials) >= self._limit:
            raise StudyFailedError(
                f"study {self._study_name!r}: {len(self._trials)} trials in a row failed with "
                f"{error} (trials {', '.join(map(str, self._trials))}); stopped instead of "
                "spending the budget on failures. Fix the cause and rerun: finished trials "
                "are kept"
            )


def _optimize(
    study: optuna.Study,
    config: StudyConfig,
    objective: Callable[[optuna.Trial], float],
    callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]],
    progress: TextIO | None,
    tag: str = "",
    deadline: float | None = None,
    before_trial: Callable[[], object] | None = None,
) -> None:
    """Run trials one at a time until ``n_trials`` have finished across all workers, the
    ``deadline`` (``time.monotonic()``; ``timeout`` counts from the worker's start, set-up
    included) passes, or trials keep failing.

    Before each trial: fail the trials of dead workers (any worker may), then stop if
    enough trials have finished, or wait while the running ones would make enough (one of
    them may still fail). ``study.optimize(n_trials=1)`` runs the trial, so Optuna's
    heartbeat (RDB storages), failure recording and callbacks all apply.
    """
    streak = _FailureStreak(config.name)
    ran: list[optuna.trial.FrozenTrial] = []
    next_check = time.monotonic() + 10.0  # the set-up just failed dead workers' trials
    reseeded = False
    while deadline is None or time.monotonic() < deadline:
        if time.monotonic() >= next_check:
            retried = coord.fail_dead_trials(study)
            if retried and progress is not None:
                numbers = ", ".join(map(str, retried))
                print(f"{tag}lrtune: trial(s) {numbers} left running by a dead worker: "
                      "failed, their parameters queued again", file=progress)  # fmt: skip
            next_check = time.monotonic() + 10.0
        finished, running = coord.count(study)
        if not reseeded and (tag or coord.others_running(study)):
            # workers with the same seed would sample the same parameters: a single
            # process is reproducible from the seed, parallel ones are not (as in Optuna)
            study.sampler.reseed_rng()
            reseeded = True
        if config.n_trials is not None:
            if finished >= config.n_trials:
                break
            if finished + running >= config.n_trials:
                time.sleep(0.5)
                continue
        ran.clear()
        if before_trial is not None:
            before_trial()
        study.optimize(
            objective,
            n_trials=1,
            callbacks=[*callbacks, lambda _s, t: ran.append(t)],
            gc_after_trial=False,  # the objective collects after every trial
            catch=(Exception,),
        )
        if ran and ATTR_INPUT_ERROR in ran[-1].user_attrs:  # every trial would fail so
            raise ConfigError(f"study {config.name!r}: {ran[-1].user_attrs[ATTR_INPUT_ERROR]}")
        if ran:
            streak.update(ran[-1])


def run_worker(
    config: StudyConfig,
    *,
    module_factory: Callable[[TrainConfig], pl.LightningModule] | None,
    datamodule_factory: Callable[[TrainConfig], pl.LightningDataModule] | None,
    progress: TextIO | None,
    callbacks: Sequence[SearchCallback | TrialCallback] = (),
    tag: str = "",
    storage: optuna.storages.BaseStorage | None = None,
) -> optuna.Study:
    """One worker: the study's set-up (under the set-up lock), then trials.

    Args:
        config: The validated study.
        module_factory: Builds the trial's module (default: lrtune's ``ClassifierModule``).
        datamodule_factory: Builds the trial's datamodule (default: the study's dataset).
        progress: Stream for one line per finished trial (``None``: quiet).
        callbacks: :class:`~lrtune.hooks.SearchCallback` hooks and plain Optuna trial
            callbacks, called in order.
        tag: Prefix of this worker's progress lines (``"w0 "``, ...).
        storage: The opened storage, which the caller closes (default: open
            ``config.storage`` and close its connections before returning).
    """
    if storage is not None:
        return _run_worker(config, storage, module_factory, datamodule_factory, progress,
                           callbacks, tag)  # fmt: skip
    opened = open_storage(config.storage)
    try:
        return _run_worker(config, opened, module_factory, datamodule_factory, progress,
                           callbacks, tag)  # fmt: skip
    finally:
        close_storage(opened)


def _thread_fit(config: StudyConfig) -> ThreadFit | None:
    """Threads fitted to the idle cores before the range tests and each trial, when the
    trials run on the CPU (a GPU trial's CPU threads matter little)."""
    import torch

    from lrtune._threads import ThreadFit

    if config.device not in ("auto", "cpu") or (
        config.device == "auto" and torch.cuda.is_available()
    ):
        return None
    return ThreadFit()


def _run_worker(
    config: StudyConfig,
    storage: optuna.storages.BaseStorage,
    module_factory: Callable[[TrainConfig], pl.LightningModule] | None,
    datamodule_factory: Callable[[TrainConfig], pl.LightningDataModule] | None,
    progress: TextIO | None,
    callbacks: Sequence[SearchCallback | TrialCallback],
    tag: str,
) -> optuna.Study:
    # timeout: counts from here, the range tests and the rest of the set-up included
    deadline = None if config.timeout is None else time.monotonic() + config.timeout
    hooks = [c for c in callbacks if isinstance(c, SearchCallback)]
    threads = _thread_fit(config)
    study = open_study(config, storage)
    with coord.setup_lock(storage, config.name):
        retried = coord.fail_dead_trials(study)
        if retried and progress is not None:
            print(f"lrtune: {len(retried)} trial(s) left running by a dead process: failed, "
                  "retrying", file=progress)  # fmt: skip
        _name_objective(study, config)
        _artifact_folder(study, config)
        auto: dict[str, Any] = {}
        ranges: Mapping[str, tuple[float, float]] = lr_ranges(config)
        auto_ranges: AutoRanges | None = None
        # enqueue_defaults' trials need every optimizer's range: all range tests run now
        upfront = config.space.lr.range_tests == "upfront" or config.enqueue_defaults
        if config.space.lr.auto:
            auto_ranges = AutoRanges(
                study, config, storage, before=None if threads is None else threads.adjust
            )
            if upfront:
                auto_ranges.ensure(config.space.optimizers, locked=True)
            ranges, auto = auto_ranges, auto_ranges.entries
        for hook in hooks:
            hook.on_setup(study, config, auto)
        _enqueue_baselines(study, config)
        if auto_ranges is not None and upfront:
            _enqueue_finder(study, config, auto_ranges, config.space.optimizers)
        _enqueue_defaults(study, config, ranges)
    before: list[Callable[[], object]] = [] if threads is None else [threads.adjust]
    if auto_ranges is not None:

        def publish(entries: dict[str, Any]) -> None:  # range tests run on first use
            for hook in hooks:
                hook.on_setup(study, config, entries)

        auto_ranges.on_new = publish
        if not upfront:
            before.append(_FinderQueue(study, config, storage, auto_ranges))

    def before_trial() -> None:
        for step in before:
            step()

    for hook in hooks:
        hook.on_start(study, config, auto)
    trial_callbacks: list[TrialCallback] = [
        Progress(progress, config.n_trials, finished_count(study), tag),
        *callbacks,
    ]
    # Everything alive now (torch, Lightning, the data) lives for the whole search: freeze it
    # out of the garbage collector, so the full collection after each trial (which frees the
    # trial's module, optimizer and Trainer, and their device memory) scans only what the
    # trial made: 190 ms -> ~5 ms per collection with Lightning loaded.
    gc.collect()
    gc.freeze()
    held = HeldWeights()
    failure: StudyFailedError | None = None
    try:
        _optimize(
            study, config, _objective(config, ranges, module_factory, datamodule_factory, held),
            trial_callbacks, progress, tag=tag, deadline=deadline,
            before_trial=before_trial,
        )  # fmt: skip
    except StudyFailedError as error:  # the finished trials still get their test pass
        failure = error
    except KeyboardInterrupt:
        if held.by_optimizer and progress is not None:
            print(f"{tag}lrtune: interrupted: the test split was not evaluated for the best "
                  "trials (test: end)", file=progress)  # fmt: skip
        raise
    finally:
        gc.unfreeze()
    held.test(study, config, progress, tag)
    if config.test == "end" and module_factory is None and datamodule_factory is None:
        held.retrain_untested(study, config, progress, tag)  # a killed run's best trials
    if failure is not None:
        raise failure
    return study
