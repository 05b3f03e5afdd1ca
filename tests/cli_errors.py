"""Shared by the bad-input tests: run the CLI in-process and check its one-line errors."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from lrtune.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str, list[str]]:
    """Run the CLI; also return the warnings it raised (the real CLI prints them on stderr)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    shown = [
        f"{w.category.__name__}: {w.message}"
        for w in caught
        if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))
    ]
    return code, out, err, shown


def assert_one_line_error(
    code: int, out: str, err: str, shown: list[str], *fragments: str, secret: str | None = None
) -> str:
    """Exit 2, one ``lrtune: error:`` line holding every fragment (and never ``secret``),
    nothing on stdout, no traceback, no warnings. Returns the line."""
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    line = lines[0]
    assert line.startswith("lrtune: error: "), line
    assert "Traceback" not in err and out == "", (out, err)
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    assert secret is None or secret not in err, err
    assert not shown, shown
    return line


@contextmanager
def fresh_lrtune_logger() -> Iterator[None]:
    """The `lrtune` logger with no handlers, restored afterwards.

    The CLI attaches a handler bound to the sys.stderr of the moment, once per process; an
    earlier test's capsys stream would be closed by now ("--- Logging error ---").
    """
    logger = logging.getLogger("lrtune")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    logger.handlers.clear()
    logger.setLevel(logging.NOTSET)
    logger.propagate = True
    try:
        yield
    finally:
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]
