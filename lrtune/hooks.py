"""The hooks a search calls at its fixed points: :class:`SearchCallback`.

The interface lives in the core so that both sides depend on it and not on each other: the
study runner (:mod:`lrtune.study`) calls it, the edges (:mod:`lrtune.publish`) implement it.

Publishing (the study note, the range-test curves, the end-of-search report) reaches the
runner this way, in the style of Optuna's ``callbacks=`` on ``study.optimize``: the runner
knows when, the callback knows what. :func:`lrtune.study.search` hands in
:class:`lrtune.publish.DashboardPublisher` by default (``publish=True``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from lrtune.config import StudyConfig

__all__ = ["SearchCallback"]


class SearchCallback:
    """Override the hooks you need; each does nothing by default.

    An instance is also an Optuna trial callback (``__call__``). With ``workers > 1`` the
    callbacks are pickled to each worker process, so define the class at module level; each
    worker then has its own copy (its own state).
    """

    def check(self, config: StudyConfig) -> None:
        """Before the storage is touched: raise :class:`~lrtune.errors.ConfigError` for input
        this callback cannot work with (nothing has been written yet)."""

    def on_setup(
        self, study: optuna.Study, config: StudyConfig, lr_auto: Mapping[str, Any]
    ) -> None:
        """In each worker, under the study's set-up lock, after ``lr: auto``'s range tests
        (``lr_auto``: their stored ranges and curves; empty without ``lr: auto``). With
        ``range_tests: first_use`` the set-up may have run none of them yet: this is called
        again, under the lock, each time more have run (``lr_auto`` then holds them all)."""

    def on_start(
        self, study: optuna.Study, config: StudyConfig, lr_auto: Mapping[str, Any]
    ) -> None:
        """In each worker, after the set-up, before its first trial."""

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """After each trial this worker ran, whatever its state."""

    def on_end(self, study: optuna.Study, config: StudyConfig) -> None:
        """Once, in the process that called the search, after every worker ended (also when
        the search stops because trials kept failing)."""
