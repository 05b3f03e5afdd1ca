"""Database connections left open, found in the test that opened them.

A test utility, not a test file. Every DBAPI connection that a SQLAlchemy pool opens in this
process (an Optuna ``RDBStorage``, lrtune's storage checks, the test helpers) is recorded by
a pool ``connect`` listener. At the end of each test, :func:`leaked_since` lists the ones
opened during the test that are still open on the client side: nobody closed them, and
nobody disposed of their engine. The autouse fixture in ``tests/conftest.py`` closes them
and fails that test by name.

Why not wait for the driver's own ``ResourceWarning``: psycopg 3 warns only when the
garbage collector finalises the connection, and an engine in a reference cycle is finalised
at a random later moment, in whichever test happens to run then (issue 26: an innocent
CLI-error test failed on another test's connection). psycopg2, PyMySQL and sqlite3 (before
Python 3.13) do not warn at all. Holding the connections here keeps them from being
finalised before the check, so the check does not depend on the garbage collector.
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy.pool import Pool

_opened: list[Any] = []
"""Every DBAPI connection opened since :func:`install` (trimmed by :func:`leaked_since`)."""

_installed = False


def _record(dbapi_connection: Any, _record: Any) -> None:
    _opened.append(dbapi_connection)


def install() -> None:
    """Start recording the connections every SQLAlchemy pool opens (idempotent)."""
    global _installed
    if not _installed:
        event.listen(Pool, "connect", _record)
        _installed = True


def mark() -> int:
    """A position in the record: pass it to :func:`leaked_since` after the test."""
    return len(_opened)


def is_open(connection: Any) -> bool:
    """Is a DBAPI connection still open on the client side?

    psycopg 3 and psycopg2 have ``closed`` (a bool, or an int that is 0 while open), PyMySQL
    and mysqlclient ``open``; a closed sqlite3 connection refuses every call.
    """
    if isinstance(connection, sqlite3.Connection):
        try:
            connection.total_changes  # noqa: B018  (raises once closed)
        except sqlite3.ProgrammingError:
            return False
        return True
    if hasattr(connection, "closed"):
        return not connection.closed
    if hasattr(connection, "open"):
        return bool(connection.open)
    return False  # an unknown driver: never blame a test for it


def describe(connection: Any) -> str:
    """``psycopg.Connection`` and the like: the driver's class, to name in a failure."""
    kind = type(connection)
    return f"{kind.__module__.split('.')[0]}.{kind.__qualname__}"


def leaked_since(position: int) -> list[Any]:
    """The connections opened after ``position`` that are still open; forget them all.

    The caller closes the leaked ones (so they do not warn in a later test).
    """
    new = _opened[position:]
    del _opened[position:]
    return [c for c in new if is_open(c)]


def close_quietly(connections: list[Any]) -> None:
    """Close leaked connections (errors ignored: the server may have ended them already)."""
    for connection in connections:
        with contextlib.suppress(Exception):  # best effort: the test fails on the leak anyway
            connection.close()
