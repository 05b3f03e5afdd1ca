"""Old import path of ``lr_find``: use ``lrtune.lr_find``.

Kept so that code written against lrtune 0.1's module layout goes on working.
"""

from __future__ import annotations

from lrtune.range_test._tuner import lr_find

__all__ = ["lr_find"]
