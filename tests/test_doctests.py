"""The examples in the public entry points' docstrings run (as doctests) and give what they
say."""

from __future__ import annotations

import doctest
import importlib

import pytest

# module -> the public entry points whose docstrings hold examples
ENTRY_POINTS = {
    "lrtune.range_test._find": ("find_lr",),
    "lrtune.range_test._callback": ("LRRangeTest",),
    "lrtune.range_test._tuner": ("lr_find",),
    "lrtune.training": ("train",),
    "lrtune.study._search": ("search",),
}


@pytest.mark.parametrize("module_name", sorted(ENTRY_POINTS))
def test_docstring_examples_run(module_name: str) -> None:
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for name in ENTRY_POINTS[module_name]:
        tests = [t for t in finder.find(getattr(module, name), name) if t.examples]
        assert tests, f"{module_name}.{name} has no example"
        for test in tests:
            runner.run(test)
    assert runner.failures == 0, f"{runner.failures} example(s) failed in {module_name}"
