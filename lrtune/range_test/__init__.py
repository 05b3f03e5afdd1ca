"""The LR range test, in one package.

A range test runs in two stages: the **sweep** (the LR rises step by step until the loss
diverges) and the **verification** (short constant-LR probes check the sweep's answer).

Core layer (numpy, no Lightning), re-exported here:

- ``_math``: the sweep's LRs, smoothing, the divergence rule, the suggestion methods, the
  verification's candidates;
- ``_result``: :class:`RangeTestResult` (what a test hands back) and its JSON form.

Lightning layer (import them from :mod:`lrtune`; this package's ``__init__`` stays core, so
a core module may import the math without importing Lightning):

- ``_steps``: the inner loop (optimizer steps without Lightning's loop, device batches, the
  in-memory snapshot);
- ``_verify``: :class:`~lrtune.Verification` and its probes;
- ``_callback``: :class:`~lrtune.LRRangeTest` (the test inside ``Trainer.fit``) and
  :class:`~lrtune.LRFinder` (Lightning's ``_LRFinder`` interface);
- ``_find``: :func:`~lrtune.find_lr` and :func:`~lrtune.compare_optimizers`;
- ``_tuner``: :func:`~lrtune.lr_find`, Lightning's ``Tuner.lr_find`` arguments.
"""

from __future__ import annotations

from lrtune.range_test._math import (
    METHODS,
    SKIP_END,
    Analysis,
    DivergenceRule,
    Mode,
    Target,
    analyze,
    bracket_indices,
    ema,
    fit_probe,
    lr_sweep,
    probe_candidates,
    zero_lag_smooth,
)
from lrtune.range_test._result import LRFinderResult, RangeTestResult

__all__ = [
    "METHODS",
    "SKIP_END",
    "Analysis",
    "DivergenceRule",
    "LRFinderResult",
    "Mode",
    "RangeTestResult",
    "Target",
    "analyze",
    "bracket_indices",
    "ema",
    "fit_probe",
    "lr_sweep",
    "probe_candidates",
    "zero_lag_smooth",
]
