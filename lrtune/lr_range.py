"""Old import path of the range test's math and result: use :mod:`lrtune.range_test`.

Kept so that code written against lrtune 0.1's module layout goes on working.
"""

from __future__ import annotations

import lrtune.range_test as _home
from lrtune.range_test import *  # noqa: F403  (the same names, the same objects)

__all__ = list(_home.__all__)
