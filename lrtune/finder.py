"""Old import path of ``find_lr``: use ``lrtune.find_lr`` and ``lrtune.compare_optimizers``.

Kept so that code written against lrtune 0.1's module layout goes on working.
"""

from __future__ import annotations

from lrtune.range_test._find import compare_optimizers, find_lr

__all__ = ["compare_optimizers", "find_lr"]
