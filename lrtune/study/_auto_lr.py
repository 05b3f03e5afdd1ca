"""``lr: auto``: per-optimizer LR ranges from one range test each, once per study.

The range tests run under the study's set-up lock; their results (ranges, where each came
from, the curves) are stored in the study's user attr ``lrtune.lr_auto``, so every worker
and every rerun uses the same ranges.

When they run is ``space.lr.range_tests``: ``first_use`` (default) runs an optimizer's range
test just before its first trial (:class:`AutoRanges`), so the first model trains after one
range test instead of all of them, and an optimizer the search never samples costs nothing;
``upfront`` runs them all in the study's set-up.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import optuna

from lrtune.config import StudyConfig
from lrtune.results import ATTR_LR_AUTO
from lrtune.space import lr_ranges
from lrtune.study import _coordination as coord

__all__ = ["AutoRanges", "auto_lr"]

log = logging.getLogger("lrtune.study")


def auto_lr(
    study: optuna.Study,
    config: StudyConfig,
    optimizers: Sequence[str] | None = None,
    before: Callable[[], object] | None = None,
) -> dict[str, Any]:
    """Run the range tests of ``optimizers`` (default: the study's) that the study has not
    stored yet, store them, and return every stored entry (``before`` is called first when
    one runs). Call it under the set-up lock."""
    stored = dict(study.user_attrs.get(ATTR_LR_AUTO) or {})
    wanted = [n for n in (optimizers or config.space.optimizers) if n not in stored]
    if not wanted:
        return stored
    if before is not None:
        before()
    from lrtune.range_test._find import compare_optimizers

    widen = config.space.lr.widen
    base = config.base_train_config()
    log.info(
        "lr auto: running the LR range test%s of %s", "s" * (len(wanted) > 1), ", ".join(wanted)
    )
    results = compare_optimizers(
        base, wanted, num_steps=config.space.lr.num_steps, verify=config.space.lr.verify
    )
    for result in results:
        info_range = lr_ranges(config)[result.label]
        if result.bracket is not None and result.probes and result.suggestion is not None:
            # the verified LR in the middle, the widened bracket's width (in decades)
            half = math.sqrt(result.bracket[1] * widen / (result.bracket[0] / widen))
            low, high = result.suggestion / half, result.suggestion * half
            source = "verified range test"
        elif result.bracket is not None:
            low, high = result.bracket[0] / widen, result.bracket[1] * widen
            source = "range test bracket"
        else:
            low, high = info_range
            source = f"registry range (range test: {result.reason})"
        stored[result.label] = {
            "range": [low, high], "source": source, "result": result.to_dict()
        }  # fmt: skip
        log.info("lr auto: %s in [%.3g, %.3g] from the %s", result.label, low, high, source)
    study.set_user_attr(ATTR_LR_AUTO, stored)
    return stored


class AutoRanges(Mapping[str, tuple[float, float]]):
    """The LR range of each of the study's optimizers under ``lr: auto``, tested on demand.

    Reading the range of an optimizer that no range test has covered yet runs its range test
    under the study's set-up lock (a worker that waited for the lock reads what the holder
    stored instead of testing again), stores it, and calls ``on_new`` with every stored
    entry. The objective reads the range of the optimizer a trial sampled, so with
    ``range_tests: first_use`` a range test runs just before its optimizer's first trial.

    Args:
        study: The study (its ``lrtune.lr_auto`` user attr holds the results).
        config: The validated study, with ``space.lr.auto``.
        storage: The study's opened storage (for the set-up lock).
        on_new: Called under the lock with all stored entries after new range tests
            (an attribute: the runner sets it once the set-up has published the first ones).
        before: Called before a range test runs (e.g. fit torch's threads to the machine).
    """

    def __init__(
        self,
        study: optuna.Study,
        config: StudyConfig,
        storage: optuna.storages.BaseStorage,
        on_new: Callable[[dict[str, Any]], None] | None = None,
        before: Callable[[], object] | None = None,
    ) -> None:
        self._study, self._config, self._storage = study, config, storage
        self.on_new, self._before = on_new, before
        self._auto: dict[str, Any] = dict(study.user_attrs.get(ATTR_LR_AUTO) or {})

    @property
    def entries(self) -> dict[str, Any]:
        """The stored entries (range, source, result) of the optimizers tested so far."""
        return dict(self._auto)

    def ensure(self, names: Sequence[str], *, locked: bool = False) -> None:
        """Run the range tests of ``names`` not run yet (``locked``: the caller holds the
        set-up lock)."""
        if all(n in self._auto for n in names):
            return
        if locked:
            self._run(names)
            return
        with coord.setup_lock(self._storage, self._config.name):
            self._run(names)

    def _run(self, names: Sequence[str]) -> None:
        known = set(self._auto)  # auto_lr reads what other workers stored too
        self._auto = auto_lr(self._study, self._config, names, before=self._before)
        if set(self._auto) != known and self.on_new is not None:
            self.on_new(dict(self._auto))

    def __getitem__(self, name: str) -> tuple[float, float]:
        if name not in self._config.space.optimizers:
            raise KeyError(name)
        self.ensure([name])
        low, high = self._auto[name]["range"]
        return float(low), float(high)

    def __contains__(self, name: object) -> bool:  # without running a range test
        return name in self._config.space.optimizers

    def __iter__(self) -> Iterator[str]:
        return iter(self._config.space.optimizers)

    def __len__(self) -> int:
        return len(self._config.space.optimizers)
