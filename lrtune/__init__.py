"""lrtune: learning-rate range tests and Optuna studies for PyTorch Lightning models.

The public API is re-exported here and imported on first use, so ``import lrtune`` stays
cheap (Lightning alone takes seconds to import).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from lrtune._trainer import TrainerOptions
    from lrtune.config import (
        ClipConfig,
        OptimizerConfig,
        ScheduleConfig,
        StudyConfig,
        TrainConfig,
        train_config_from,
    )
    from lrtune.errors import ConfigError, DataError, LrtuneError
    from lrtune.hooks import SearchCallback
    from lrtune.module import ClassifierModule
    from lrtune.range_test import LRFinderResult, RangeTestResult
    from lrtune.range_test._callback import LRFinder, LRRangeTest
    from lrtune.range_test._find import compare_optimizers, find_lr
    from lrtune.range_test._tuner import lr_find
    from lrtune.range_test._verify import Verification
    from lrtune.report import write_report
    from lrtune.study import search
    from lrtune.training import TrainResult, build_trainer, train

_EXPORTS = {
    "search": "lrtune.study",
    "SearchCallback": "lrtune.hooks",
    "StudyConfig": "lrtune.config",
    "LRRangeTest": "lrtune.range_test._callback",
    "Verification": "lrtune.range_test._verify",
    "find_lr": "lrtune.range_test._find",
    "lr_find": "lrtune.range_test._tuner",
    "LRFinder": "lrtune.range_test._callback",
    "compare_optimizers": "lrtune.range_test._find",
    "RangeTestResult": "lrtune.range_test",
    "LRFinderResult": "lrtune.range_test",
    "TrainerOptions": "lrtune._trainer",
    "ClipConfig": "lrtune.config",
    "OptimizerConfig": "lrtune.config",
    "ScheduleConfig": "lrtune.config",
    "TrainConfig": "lrtune.config",
    "train_config_from": "lrtune.config",
    "ConfigError": "lrtune.errors",
    "DataError": "lrtune.errors",
    "LrtuneError": "lrtune.errors",
    "ClassifierModule": "lrtune.module",
    "TrainResult": "lrtune.training",
    "build_trainer": "lrtune.training",
    "train": "lrtune.training",
    "write_report": "lrtune.report",
}

__all__ = [
    "ClassifierModule",
    "ClipConfig",
    "ConfigError",
    "DataError",
    "LRFinder",
    "LRFinderResult",
    "LRRangeTest",
    "LrtuneError",
    "OptimizerConfig",
    "RangeTestResult",
    "ScheduleConfig",
    "SearchCallback",
    "StudyConfig",
    "TrainConfig",
    "TrainResult",
    "TrainerOptions",
    "Verification",
    "__version__",
    "build_trainer",
    "compare_optimizers",
    "find_lr",
    "lr_find",
    "search",
    "train",
    "train_config_from",
    "write_report",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lrtune' has no attribute {name!r}")
