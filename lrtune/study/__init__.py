"""Optuna studies over optimizers, LRs, β, weight decay, schedules and clipping.

:func:`search` loads a study file (or a :class:`~lrtune.config.StudyConfig`), opens the
storage, resumes the study of that name (failing and retrying trials left RUNNING by a dead
process), runs the LR range tests once per study for ``lr: auto``, enqueues the optimizers'
defaults when asked, and runs trials until ``n_trials`` trials have finished (complete or
pruned) or the timeout passes. Each trial trains with Lightning and reports its metric to
Optuna after every validation through optuna-integration's ``PyTorchLightningPruningCallback``;
a NaN/inf or exploding loss ends the trial at once as pruned, with the reason in its user
attrs.

One concept per module:

* ``_search``: :func:`search`, validation before anything is written, the default hooks.
* ``_runner``: open/resume, the set-up under the set-up lock, the loop to exactly
  ``n_trials``, the failure streak.
* ``_objective``: one trial (parameters -> ``TrainConfig`` -> Lightning), divergence stop,
  pruning callback.
* ``_auto_lr``: ``lr: auto``'s range tests, once per study, each at its optimizer's first use.
* ``_test_pass``: ``test: end``'s held weights and test pass.
* ``_progress``: the progress line and the summary.
* ``_workers``, ``_coordination``: worker processes and how they share one storage.
* ``_factories``: sampler and pruner.

Storages (:mod:`lrtune.storage`), reading results (:mod:`lrtune.results`) and the hook
interface (:mod:`lrtune.hooks`) are core modules below this package; their public names are
re-exported here.
"""

from lrtune.hooks import SearchCallback
from lrtune.results import best_config, trials_with_tests
from lrtune.storage import (
    DEFAULT_STORAGE,
    close_storage,
    closing_storage,
    load_study,
    mask_url,
    open_existing_storage,
    open_storage,
)
from lrtune.study._factories import create_pruner, create_sampler
from lrtune.study._search import search
from lrtune.study._workers import run_workers, worker_plan

__all__ = [
    "DEFAULT_STORAGE",
    "SearchCallback",
    "best_config",
    "close_storage",
    "closing_storage",
    "create_pruner",
    "create_sampler",
    "load_study",
    "mask_url",
    "open_existing_storage",
    "open_storage",
    "run_workers",
    "search",
    "trials_with_tests",
    "worker_plan",
]
