"""Fresh PostgreSQL and MariaDB/MySQL databases for tests of Optuna studies on real RDB storages.

A test utility, not a test file. Typical use, through the fixtures in ``tests/conftest.py``::

    @pytest.mark.postgres
    def test_study_on_postgres(postgres_url: str) -> None:
        storage = optuna.storages.RDBStorage(postgres_url)  # a new, empty database
        ...

or directly::

    from tests.dbs import fresh_postgres_db, require_postgres

    require_postgres()
    with fresh_postgres_db() as url:  # postgresql+psycopg2://postgres@127.0.0.1:5432/lrtune_t_...
        ...

Each fresh database gets a unique name (``lrtune_t_`` + 8 hex digits), is created through an
autocommit admin connection and dropped on exit, after ending any connection still open on
it (an Optuna storage's pooled connections, say). The admin URLs come from
``$LRTUNE_TEST_POSTGRES`` (default ``postgresql+psycopg2://postgres@127.0.0.1:5432/test``) and
``$LRTUNE_TEST_MYSQL`` (default ``mysql+pymysql://root@127.0.0.1:3306/test``); a URL without a
driver gets the installed one (``postgresql://`` -> ``postgresql+psycopg2://``, because
SQLAlchemy 2.1's default PostgreSQL driver is psycopg 3; ``mysql://`` ->
``mysql+pymysql://``).

When a server or its driver is missing, :func:`require_postgres` / :func:`require_mysql` skip
the test, except under CI (``CI=true`` or ``1``), where they fail instead so that a CI
machine without the database cannot pass by skipping. Mark every test that uses a real
database with ``@pytest.mark.postgres`` / ``@pytest.mark.mysql``; the fixtures fail a test
that is not marked.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import NullPool

from tests.browser import in_ci

POSTGRES_ENV = "LRTUNE_TEST_POSTGRES"
MYSQL_ENV = "LRTUNE_TEST_MYSQL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
DEFAULT_MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/test"

CONNECT_TIMEOUT = 2
"""Seconds to wait for a server, in the TCP probe and in every admin connection."""

DB_PREFIX = "lrtune_t_"
"""Prefix of every database these helpers create (then 8 hex digits)."""

POSTGRES_START_HINT = (
    "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
)
MYSQL_START_HINT = "start it with: service mariadb start"

_DRIVERS = {"postgresql": "psycopg2", "mysql": "pymysql", "mariadb": "pymysql"}
_DRIVER_PACKAGES = {"psycopg2": "psycopg2-binary", "pymysql": "PyMySQL"}
_EXTRAS = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}


# --- URLs -----------------------------------------------------------------------------------


def _with_driver(url: str | URL) -> URL:
    """``url`` as a SQLAlchemy URL, with the installed driver where it names none."""
    parsed = make_url(url)
    backend = "postgresql" if parsed.get_backend_name() == "postgres" else parsed.get_backend_name()
    if "+" not in parsed.drivername and backend in _DRIVERS:
        parsed = parsed.set(drivername=f"{backend}+{_DRIVERS[backend]}")
    return parsed


def postgres_admin_url() -> URL:
    """The PostgreSQL admin URL: ``$LRTUNE_TEST_POSTGRES`` or the local default."""
    return _with_driver(os.environ.get(POSTGRES_ENV) or DEFAULT_POSTGRES_URL)


def mysql_admin_url() -> URL:
    """The MariaDB/MySQL admin URL: ``$LRTUNE_TEST_MYSQL`` or the local default."""
    return _with_driver(os.environ.get(MYSQL_ENV) or DEFAULT_MYSQL_URL)


def url_string(url: URL) -> str:
    """``url`` as a string that keeps its password (``str(URL)`` masks it as ``***``)."""
    return url.render_as_string(hide_password=False)


def new_db_name() -> str:
    """A new database name: ``lrtune_t_`` + 8 random hex digits (safe unquoted in both)."""
    return f"{DB_PREFIX}{uuid.uuid4().hex[:8]}"


def admin_engine(url: URL) -> Engine:
    """An engine for CREATE/DROP DATABASE: autocommit, no pool, short connect timeout."""
    return create_engine(
        url,
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args={"connect_timeout": CONNECT_TIMEOUT},
    )


# --- availability ---------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    """The first non-empty line of the DBAPI error behind ``exc`` (SQLAlchemy wraps it)."""
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    return lines[0] if lines else type(orig).__name__


def _available(url: URL, product: str, start_hint: str) -> str | None:
    backend = url.get_backend_name()
    host = url.host or "127.0.0.1"
    port = url.port or (5432 if backend == "postgresql" else 3306)
    where = f"{product} at {host}:{port}"

    driver = url.get_driver_name()
    try:
        importlib.import_module(driver)
    except ImportError:
        package = _DRIVER_PACKAGES.get(driver, driver)
        return (
            f"{product} driver {driver} is not installed "
            f"(pip install {package}, or pip install -e '.[{_EXTRAS.get(backend, 'dev')}]')"
        )

    try:
        if url.host:  # no host: a Unix socket, which the driver's own connect checks below
            with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
                pass
    except TimeoutError:
        return f"{where} not answering (timed out after {CONNECT_TIMEOUT} s); {start_hint}"
    except ConnectionRefusedError:
        return f"{where} not answering (connection refused); {start_hint}"
    except OSError as exc:
        return f"{where} not answering ({exc.strerror or exc}); {start_hint}"

    engine = admin_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        shown = url.render_as_string(hide_password=True)
        return f"{where} answers, but connecting as {shown} failed: {_first_line(exc)}"
    finally:
        engine.dispose()
    return None


def postgres_available() -> str | None:
    """None if the PostgreSQL server answers and psycopg2 imports, else a one-line reason."""
    return _available(postgres_admin_url(), "PostgreSQL", POSTGRES_START_HINT)


def mysql_available() -> str | None:
    """None if the MariaDB/MySQL server answers and PyMySQL imports, else a one-line reason."""
    return _available(mysql_admin_url(), "MariaDB/MySQL", MYSQL_START_HINT)


def _require(reason: str | None, what: str) -> None:
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"{reason}; CI must provide {what} rather than skip its tests", pytrace=False)
    pytest.skip(reason)


def require_postgres() -> None:
    """Skip the calling test when PostgreSQL is unavailable; fail instead under CI."""
    _require(postgres_available(), "PostgreSQL")


def require_mysql() -> None:
    """Skip the calling test when MariaDB/MySQL is unavailable; fail instead under CI."""
    _require(mysql_available(), "MariaDB/MySQL")


def check_marked(node: Any, marker: str, fixture: str) -> None:
    """Fail a test that uses a real-database fixture without its marker (``-m`` selects it)."""
    if node.get_closest_marker(marker) is None:
        pytest.fail(
            f"{node.nodeid} uses the {fixture} fixture but is not marked @pytest.mark.{marker}",
            pytrace=False,
        )


# --- fresh databases ------------------------------------------------------------------------


def drop_postgres_db(engine: Engine, name: str) -> None:
    """End every other connection to database ``name``, then drop it (if it exists)."""
    with engine.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        )
        # DROP waits up to 5 s for the terminated backends to exit; FORCE (PostgreSQL 13+)
        # also ends any connection that arrived in between.
        force = " WITH (FORCE)" if (conn.dialect.server_version_info or (0,)) >= (13,) else ""
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"{force}'))


def drop_mysql_db(engine: Engine, name: str) -> None:
    """Kill every other connection using database ``name``, then drop it (if it exists).

    An open transaction elsewhere holds metadata locks that would make DROP DATABASE wait
    (``lock_wait_timeout`` defaults to a year), hence the KILLs.
    """
    with engine.connect() as conn:
        ids = conn.execute(
            text(
                "SELECT ID FROM information_schema.PROCESSLIST"
                " WHERE DB = :name AND ID <> CONNECTION_ID()"
            ),
            {"name": name},
        ).scalars()
        for conn_id in list(ids):
            with contextlib.suppress(Exception):  # it may have ended meanwhile
                conn.execute(text(f"KILL CONNECTION {int(conn_id)}"))
        conn.execute(text("SET SESSION lock_wait_timeout = 30"))
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))


@contextlib.contextmanager
def fresh_postgres_db(admin_url: str | URL | None = None) -> Iterator[str]:
    """Create a new, empty PostgreSQL database; yield its SQLAlchemy URL; drop it on exit.

    ``admin_url`` (default :func:`postgres_admin_url`) is any database the admin user can
    connect to. The yielded URL is the admin URL with the new database's name, e.g.
    ``postgresql+psycopg2://postgres@127.0.0.1:5432/lrtune_t_1a2b3c4d``.
    """
    admin = postgres_admin_url() if admin_url is None else _with_driver(admin_url)
    name = new_db_name()
    engine = admin_engine(admin)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield url_string(admin.set(database=name))
        finally:
            drop_postgres_db(engine, name)
    finally:
        engine.dispose()


@contextlib.contextmanager
def fresh_mysql_db(admin_url: str | URL | None = None) -> Iterator[str]:
    """Create a new, empty MariaDB/MySQL database; yield its SQLAlchemy URL; drop it on exit.

    The database is created with ``CHARACTER SET utf8mb4`` whatever the server's default, so
    non-ASCII study names and attributes round-trip. The yielded URL is the admin URL with
    the new database's name, e.g. ``mysql+pymysql://root@127.0.0.1:3306/lrtune_t_1a2b3c4d``.
    """
    admin = mysql_admin_url() if admin_url is None else _with_driver(admin_url)
    name = new_db_name()
    engine = admin_engine(admin)
    try:
        with engine.connect() as conn:
            conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        try:
            yield url_string(admin.set(database=name))
        finally:
            drop_mysql_db(engine, name)
    finally:
        engine.dispose()
