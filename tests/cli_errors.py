"""Shared by the bad-input tests: run the CLI in-process and check its one-line errors."""

from __future__ import annotations

import warnings

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
