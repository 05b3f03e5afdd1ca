"""Old import path of the range test's callback: use ``lrtune.LRRangeTest``.

Kept so that code written against lrtune 0.1's module layout goes on working.
"""

from __future__ import annotations

from lrtune.range_test._callback import LRFinder, LRRangeTest

__all__ = ["LRFinder", "LRRangeTest"]
