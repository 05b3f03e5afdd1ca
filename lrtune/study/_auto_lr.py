"""``lr: auto``: per-optimizer LR ranges from one range test each, once per study.

The range tests run under the study's set-up lock; their results (ranges, where each came
from, the curves) are stored in the study's user attr ``lrtune.lr_auto``, so every worker
and every rerun uses the same ranges.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import optuna

from lrtune.config import StudyConfig
from lrtune.results import ATTR_LR_AUTO
from lrtune.space import lr_ranges

__all__ = ["auto_lr"]

log = logging.getLogger("lrtune.study")


def auto_lr(study: optuna.Study, config: StudyConfig) -> dict[str, Any]:
    """Per-optimizer LR ranges from one range test each, once per study (stored in it)."""
    stored = study.user_attrs.get(ATTR_LR_AUTO)
    if stored is not None and set(config.space.optimizers) <= set(stored):
        return dict(stored)
    from lrtune.range_test._find import compare_optimizers

    widen = config.space.lr.widen
    base = config.base_train_config()
    log.info(
        "lr auto: running the LR range tests of %d optimizer(s), once for the study",
        len(config.space.optimizers),
    )
    results = compare_optimizers(
        base, config.space.optimizers, num_steps=config.space.lr.num_steps,
        verify=config.space.lr.verify,
    )  # fmt: skip
    found: dict[str, Any] = {}
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
        found[result.label] = {"range": [low, high], "source": source, "result": result.to_dict()}
        log.info("lr auto: %s in [%.3g, %.3g] from the %s", result.label, low, high, source)
    study.set_user_attr(ATTR_LR_AUTO, found)
    return found
