"""The suite's connection-leak check (tests/leaks.py, issue 26) fails the test that leaks,
by name, and never the innocent test that runs after it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests import leaks

ROOT = Path(__file__).resolve().parents[1]

LEAKY = """
from sqlalchemy import create_engine, text

from tests.conftest import _closes_its_connections  # noqa: F401  (the autouse check)

HELD = []


def test_leaks(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:  # back to the pool: open until the engine is disposed
        conn.execute(text("SELECT 1"))
    HELD.append(engine)  # never disposed


def test_closes(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'y.db'}")
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    engine.dispose()


def test_innocent():
    assert True
"""


def test_a_leaking_test_fails_by_name_and_the_next_one_passes(tmp_path: Path) -> None:
    (tmp_path / "test_leaky.py").write_text(LEAKY)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"--rootdir={tmp_path}", str(tmp_path / "test_leaky.py")],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "test_leaky.py::test_leaks left 1 database connection(s) open (sqlite3.Connection)" in (
        out
    ), out
    # test_leaks passes its call and errors at teardown; test_closes and test_innocent pass
    assert "3 passed, 1 error" in out, out
    assert "test_closes" not in out.split("short test summary")[-1], out


def test_is_open_knows_each_drivers_closed_state(tmp_path: Path) -> None:
    import sqlite3

    connection = sqlite3.connect(tmp_path / "z.db")
    assert leaks.is_open(connection)
    connection.close()
    assert not leaks.is_open(connection)

    class Psycopg:  # psycopg 3 (bool) and psycopg2 (int, 0 while open)
        closed: bool | int = 0

    class PyMySQL:
        open = True

    psycopg, pymysql = Psycopg(), PyMySQL()
    assert leaks.is_open(psycopg) and leaks.is_open(pymysql)
    psycopg.closed, pymysql.open = 1, False
    assert not leaks.is_open(psycopg) and not leaks.is_open(pymysql)
    assert not leaks.is_open(object())  # an unknown driver is never blamed


def test_the_ledger_sees_a_pool_connection(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    leaks.install()
    start = leaks.mark()
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    leaked = leaks.leaked_since(start)
    assert len(leaked) == 1 and leaks.describe(leaked[0]) == "sqlite3.Connection"
    engine.dispose()
    assert not leaks.is_open(leaked[0])
