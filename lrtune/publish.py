"""Publishing a search to optuna-dashboard: the study note kept current while trials run,
the ``lr: auto`` range-test curves and, at the end, the study report as Optuna artifacts.

:class:`DashboardPublisher` is a :class:`~lrtune.hooks.SearchCallback`: the study runner
calls it and knows nothing of the report or the dashboard. :func:`lrtune.study.search` adds
one by default (``publish=True``).
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna

from lrtune.artifacts import (
    ATTR_ARTIFACTS,
    check_artifact_dir,
    configured_artifact_dir,
    upload_artifact,
)
from lrtune.config import StudyConfig
from lrtune.hooks import SearchCallback
from lrtune.range_test import RangeTestResult
from lrtune.report import lr_curves_figure, study_note, write_html, write_report
from lrtune.results import ATTR_LR_AUTO, finished_count
from lrtune.storage import DEFAULT_STORAGE, mask_url

__all__ = ["DashboardPublisher", "publish_note"]

log = logging.getLogger("lrtune.study")


class DashboardPublisher(SearchCallback):
    """Keeps a study's note and artifacts current in optuna-dashboard during a search.

    The note is saved when a worker starts, after a trial when the best trial changed or
    ``interval`` seconds have passed, and at the end. Failures to save or upload are logged,
    never raised: publishing must not end a search.

    Args:
        interval: Seconds after which a finished trial saves the note even when the best
            trial did not change (default 10).
    """

    def __init__(self, *, interval: float = 10.0) -> None:
        self._interval = interval
        self._config: StudyConfig | None = None
        self._auto: Mapping[str, Any] = {}
        self._last = -math.inf
        self._best: int | None = None

    def check(self, config: StudyConfig) -> None:
        """The artifact folder must be (or can be made) a writable folder."""
        check_artifact_dir(configured_artifact_dir(config))

    def on_setup(
        self, study: optuna.Study, config: StudyConfig, lr_auto: Mapping[str, Any]
    ) -> None:
        """Upload ``lr: auto``'s range-test curves as an HTML artifact (again, replacing it,
        when more range tests have run)."""
        self._auto = dict(lr_auto)
        results = [RangeTestResult.from_dict(v["result"]) for v in lr_auto.values()
                   if v.get("result")]  # fmt: skip
        if not results:
            return
        with tempfile.TemporaryDirectory() as tmp:
            path = write_html(
                lr_curves_figure(results, title=f"LR range tests: study {study.study_name}"),
                Path(tmp) / "lr-range-test.html",
            )
            upload_artifact(study, _folder(study, config), path, replace=True)

    def on_start(
        self, study: optuna.Study, config: StudyConfig, lr_auto: Mapping[str, Any]
    ) -> None:
        """Save the note before this worker's first trial."""
        self._config, self._auto = config, dict(lr_auto)
        self._publish(study)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Save the note when the best trial changed or ``interval`` seconds passed."""
        try:
            best: int | None = study.best_trial.number
        except ValueError:
            best = None
        if best != self._best or time.perf_counter() - self._last >= self._interval:
            self._best = best
            self._publish(study)

    def on_end(self, study: optuna.Study, config: StudyConfig) -> None:
        """Save the final note and upload the study report, named after the trials it
        covers (``report-N-trials.html``)."""
        self._config = config
        self._auto = dict(study.user_attrs.get(ATTR_LR_AUTO) or {})
        self._publish(study)
        storage = config.storage or DEFAULT_STORAGE
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"report-{finished_count(study)}-trials.html"
            try:
                write_report(study, path, storage=mask_url(storage))
            except Exception as error:  # a report that failed must not end the search
                log.warning("could not write the study report: %s", error)
                return
            upload_artifact(study, _folder(study, config), path, replace=True)

    def _publish(self, study: optuna.Study) -> None:
        try:
            publish_note(study, study_note(study, self._config, dict(self._auto)))
        except Exception as error:  # a note that did not save must not end the search
            log.warning("could not save the study note: %s", error)
        self._last = time.perf_counter()


def publish_note(study: optuna.Study, body: str) -> None:
    """Save ``body`` (markdown) as the study note optuna-dashboard shows."""
    from optuna_dashboard import save_note

    save_note(study, body)


def _folder(study: optuna.Study, config: StudyConfig) -> Path:
    """The artifact folder the study recorded, else the configured or default one."""
    recorded = study.user_attrs.get(ATTR_ARTIFACTS)
    return Path(recorded) if recorded else configured_artifact_dir(config)
