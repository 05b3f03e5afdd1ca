"""Optuna storages: URLs and journal files, their drivers, password masking, and opening an
existing study for reading.

This module owns everything lrtune knows about *where* studies live. It imports Optuna and
SQLAlchemy, never Lightning: the report, the dashboard and ``lrtune best`` read studies
through it without loading the study runner.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import optuna

from lrtune._compat._core import (
    journal_op_codes,
    pymysql_unbounded_reads,
    storage_backend,
    study_storage,
)
from lrtune.errors import ConfigError, LrtuneError

log = logging.getLogger("lrtune.storage")

__all__ = [
    "DEFAULT_STORAGE",
    "LOCK_SUFFIX",
    "check_target",
    "close_storage",
    "closing_storage",
    "is_lock_study",
    "load_study",
    "mask_url",
    "nearest_existing_parent",
    "open_existing_storage",
    "open_storage",
]

DEFAULT_STORAGE = "lrtune-studies.journal"
"""Default storage: an Optuna journal file in the working directory (optuna-dashboard opens
it: ``optuna-dashboard lrtune-studies.journal``)."""


LOCK_SUFFIX = ".lrtune-lock"
"""A study named ``<study>.lrtune-lock`` is the set-up lock of ``<study>`` (see
:mod:`lrtune.study._coordination`); listings hide it."""


def is_lock_study(name: str) -> bool:
    """Is ``name`` a set-up lock (hidden from study listings)?"""
    return name.endswith(LOCK_SUFFIX)


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs, notes and errors).

    Everything up to the last ``@`` of the address counts as the password, so a password
    with an unescaped ``@`` is masked whole too.
    """
    return re.sub(r"(://[^:/@\s]+:)[^/\s]*@", r"\1***@", url)


def _with_driver(url: str) -> str:
    """``postgresql://`` and ``mysql://`` URLs get the driver that is installed.

    SQLAlchemy's defaults (psycopg 3, mysqlclient) are often not the installed ones;
    ``pip install lrtune[postgres]`` brings psycopg2, ``lrtune[mysql]`` PyMySQL.
    """
    import importlib.util

    scheme, sep, rest = url.partition("://")
    if not sep or "+" in scheme:
        return url
    choices = {
        "postgresql": (("psycopg", "psycopg"), ("psycopg2", "psycopg2")),
        "postgres": (("psycopg", "psycopg"), ("psycopg2", "psycopg2")),
        "mysql": (("MySQLdb", "mysqldb"), ("pymysql", "pymysql")),
        "mariadb": (("MySQLdb", "mysqldb"), ("pymysql", "pymysql")),
    }.get(scheme)
    for module, driver in choices or ():
        if importlib.util.find_spec(module) is not None:
            base = "postgresql" if scheme == "postgres" else scheme
            return f"{base}+{driver}://{rest}"
    return url


class _RDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage that closes its connections when it fails to open.

    ``RDBStorage.__init__`` makes its engine, then connects (to create or check Optuna's
    tables); when that fails (no server, a racing worker, an old schema), the engine and any
    connection it opened were left to the garbage collector.
    """

    def __init__(self, url: str, **kwargs: Any) -> None:
        try:
            super().__init__(url, **kwargs)
            if "+pymysql" in url.partition("://")[0]:
                _unbounded_reads(self)
        except BaseException:
            engine = getattr(self, "engine", None)
            if engine is not None:
                engine.dispose()
            raise


def close_storage(storage: optuna.storages.BaseStorage | optuna.Study) -> None:
    """Close the database connections a storage (or a study's storage) holds in this process.

    lrtune calls this when a search, ``lrtune best``, ``lrtune report`` or the dashboard is
    done with a storage it opened, so a worker or a notebook does not pile up connections.
    The storage stays usable: reading the study again opens a connection, which a second
    call closes. Journal files and in-memory storages hold nothing open (nothing to do).

    Args:
        storage: An Optuna storage, or a study (its storage is closed).
    """
    if isinstance(storage, optuna.Study):
        storage = study_storage(storage)
    backend = storage_backend(storage)
    if isinstance(backend, optuna.storages.RDBStorage):
        backend.remove_session()
        backend.engine.dispose()


_Closable = TypeVar("_Closable", optuna.storages.BaseStorage, optuna.Study)


@contextlib.contextmanager
def closing_storage(storage: _Closable) -> Iterator[_Closable]:
    """``with closing_storage(load_study(url)) as study:``: :func:`close_storage` on exit."""
    try:
        yield storage
    finally:
        close_storage(storage)


CONNECT_TIMEOUT_S = 10
"""Seconds a database connection may take to open (connect and handshake): a host that
does not answer, or a port where no database speaks, ends in one line, not a hang."""


def _engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy engine arguments that bound how long a connection takes to open."""
    driver = url.partition("://")[0].partition("+")[2]
    if driver in ("psycopg", "psycopg2", "mysqldb"):  # libpq / libmysqlclient: handshake too
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    if driver == "pymysql":  # its connect_timeout ends at TCP; the handshake reads with
        # read_timeout, which _unbounded_reads lifts again once the connection is open
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S,
                                 "read_timeout": CONNECT_TIMEOUT_S}}  # fmt: skip
    return {}


def _unbounded_reads(storage: optuna.storages.RDBStorage) -> None:
    """PyMySQL connections: no read timeout once open (a long query may take its time)."""
    from sqlalchemy import event

    def opened(dbapi_connection: Any, _record: Any) -> None:
        pymysql_unbounded_reads(dbapi_connection)

    event.listen(storage.engine, "connect", opened)
    storage.engine.dispose()  # the connection __init__ pooled was opened before the listener


def _rdb_storage(url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """An RDBStorage with Optuna's heartbeat (trials of dead workers failed and retried).

    Workers that open a new database at the same moment race to create Optuna's tables
    ("table already exists", "duplicate key"): the loser waits and opens it again.
    """
    import random

    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():  # heartbeats are marked experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return _RDBStorage(
                    url,
                    engine_kwargs=_engine_kwargs(url),
                    heartbeat_interval=60,
                    grace_period=180,
                    heartbeat_stale_trial_callback=(
                        optuna.storages.RetryHeartbeatStaleTrialCallback(3)
                    ),
                )
        except Exception as error:
            text = str(error).lower()
            racing = "already exists" in text or "duplicate" in text
            if not racing or attempt == attempts - 1:
                raise
            time.sleep(0.2 + random.random() * 0.5)
    raise AssertionError("unreachable")


def open_storage(url: str | None) -> optuna.storages.BaseStorage:
    """Open an Optuna storage: a URL (``sqlite:///x.db``, ``postgresql://...``) or a
    journal file path (default :data:`DEFAULT_STORAGE`).

    RDB storages get Optuna's heartbeat, so trials of a dead worker are failed and retried.

    Raises:
        ConfigError: The storage cannot be opened (the URL's password is masked).
    """
    target = url or DEFAULT_STORAGE
    try:
        if "://" in target:
            _check_url(target)
            return _rdb_storage(_with_driver(target))
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = _check_journal_path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            _mend_torn_tail(path)
            return JournalStorage(JournalFileBackend(str(path)))
        except Exception:
            problem = journal_problem(path)
            if problem is None:
                raise
            raise ConfigError(f"storage {target}: cannot open ({problem})") from None
    except LrtuneError:
        raise
    except Exception as error:  # SQLAlchemy, driver and OS errors come in many types
        reason = _db_error(error, target)
        raise ConfigError(f"storage {mask_url(target)}: cannot open ({reason})") from None


def _db_error(error: BaseException, url: str | None = None) -> str:
    """The first line of the driver's own message (not SQLAlchemy's wrapping), masked.

    mysqlclient says only "Can't connect to server on 'host' (errno)": the reason from
    connecting to the address once more is added (e.g. ``Connection refused``).
    """
    if "Can't load plugin: sqlalchemy.dialects:" in str(error):
        scheme = str(error).rsplit(":", 1)[-1].strip()
        return (
            f"unknown storage scheme {scheme!r}; use sqlite:///, postgresql://, mysql:// or "
            "a journal file path"
        )
    orig = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(orig).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(orig).__name__
    if url is not None and "Can't connect to" in text:
        reason = _connect_reason(url)
        if reason:
            text = f"{text}: {reason}"
    return mask_url(text)[:200]


def _connect_reason(url: str) -> str | None:
    """Why a TCP connection to the URL's host and port fails (``None``: it does not)."""
    import socket

    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
        host, port = parsed.host or "localhost", parsed.port or 3306
        with socket.create_connection((host, port), timeout=2.0):
            return None
    except OSError as error:
        return error.strerror or type(error).__name__
    except Exception:  # an address SQLAlchemy cannot parse: nothing more to say
        return None


def _check_url(url: str) -> None:
    """Refuse URLs the drivers would misread, before connecting."""
    rest = url.partition("://")[2]
    address = rest.split("/", 1)[0]
    if address.count("@") > 1:
        raise ConfigError(f"storage {mask_url(url)}: the password contains '@'; write it as %40")


_SCHEME_TYPO = re.compile(r"^(sqlite|postgres|postgresql|mysql|mariadb)(\+\w+)?:/*(?!//)", re.I)


def nearest_existing_parent(path: Path) -> Path:
    """The closest folder above ``path`` that exists (the one a new file would go under,
    once its missing folders are made); a file there means ``path`` cannot be written."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def _mend_torn_tail(path: Path) -> None:
    """A journal whose last write was cut short (its process killed mid-write) ends without
    a newline; Optuna would append the next operation to that torn line and lose it. Under
    the journal's own lock (no live writer is mid-write then), a torn tail that is a whole
    operation gets its newline; one that is not is cut off (it was never applied)."""
    import json

    from optuna.storages.journal import JournalFileSymlinkLock

    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb") as file:
        file.seek(-1, os.SEEK_END)
        if file.read(1) == b"\n":
            return
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        data = path.read_bytes()
        if data.endswith(b"\n"):
            return  # mended by another process meanwhile
        start = data.rfind(b"\n") + 1
        tail = data[start:]
        try:
            whole = isinstance(json.loads(tail), dict)
        except ValueError:
            whole = False
        with path.open("r+b") as file:
            if whole:
                file.seek(0, os.SEEK_END)
                file.write(b"\n")
            else:
                file.truncate(start)
        log.warning(
            "%s: %s a torn last line (%d bytes) left by a process killed while writing",
            path, "ended" if whole else "dropped", len(tail),
        )  # fmt: skip
    finally:
        lock.release()


def journal_problem(path: Path) -> str | None:
    """What is wrong with a journal file, in words and at its line (``None``: nothing this
    finds). Each line of an Optuna journal is one JSON operation with an ``op_code``."""
    import json

    known = journal_op_codes()
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                torn = "" if raw.endswith(b"\n") else ", the last line, without its end"
                text = raw[:60].rstrip().decode("utf-8", "replace")
                return (
                    f"line {number} is not a whole JSON operation{torn} (a write cut short, "
                    f"or an edit: {text!r}); restore the file from a copy, or delete that "
                    "line to keep the operations before it"
                )
            op = entry.get("op_code") if isinstance(entry, dict) else None
            if op not in known:
                return (
                    f"line {number} holds an unknown operation (op_code {op!r}; Optuna "
                    f"{optuna.__version__} knows {min(known)} to {max(known)}): written by "
                    "another Optuna version, or edited"
                )
    return None


def _check_journal_path(target: str) -> Path:
    """A journal file path that can be used: not a folder, its parent is (or can be) a
    folder, and an existing file is an Optuna journal (never append to another file).
    A database URL with a slash missing (``sqlite:/x.db``) is refused, not taken for a
    journal file in a folder named ``sqlite:``."""
    if _SCHEME_TYPO.match(target):
        scheme = target.split(":", 1)[0]
        hint = "sqlite:///studies.db" if scheme.lower() == "sqlite" else f"{scheme}://..."
        raise ConfigError(
            f"storage {mask_url(target)}: looks like a database URL without '://' "
            f"(write e.g. {hint}), or give a journal file path"
        )
    path = Path(target)
    if path.is_dir():
        raise ConfigError(f"storage {target}: is a directory, expected a journal file")
    parent = nearest_existing_parent(path)
    if not parent.is_dir():
        raise ConfigError(f"storage {target}: {parent} is not a folder")
    if path.is_file() and path.stat().st_size > 0:
        with path.open("rb") as handle:
            head = handle.read(64).lstrip()
        if not head.startswith(b'{"op_code"'):
            raise ConfigError(
                f"storage {target}: not an Optuna journal file (give a new file name, or a "
                "storage URL such as sqlite:///studies.db)"
            )
    return path


def check_target(url: str | None) -> None:
    """Refuse a storage URL or journal path that cannot work, without opening it.

    Raises:
        ConfigError: A URL the drivers would misread, or a journal path that is a folder,
            lies under a file, or is another kind of file.
    """
    target = url or DEFAULT_STORAGE
    if "://" in target:
        _check_url(target)
    else:
        _check_journal_path(target)


def open_existing_storage(url: str | None) -> optuna.storages.BaseStorage:
    """Open a storage that must already exist (for reading: reports, best, dashboard).

    Unlike :func:`open_storage`, a missing journal file is an error, not a new empty file.

    Raises:
        ConfigError: No journal file there, or the storage cannot be opened.
    """
    target = url or DEFAULT_STORAGE
    if "://" not in target:
        if Path(target).is_dir():
            raise ConfigError(f"--storage: {target} is a directory, expected a journal file")
        if not Path(target).is_file():
            hint = "" if url else "; give --storage"
            raise ConfigError(f"--storage: no journal file at {target}{hint}")
        return open_storage(url)
    if target.startswith("sqlite:///") and not Path(target[len("sqlite:///") :]).is_file():
        raise ConfigError(f"--storage: no SQLite database at {target[len('sqlite:///') :]}")
    _check_url(target)
    try:  # reading must not create Optuna's tables in a database that has none
        import sqlalchemy

        engine = sqlalchemy.create_engine(_with_driver(target))
        try:
            has_studies = sqlalchemy.inspect(engine).has_table("studies")
        finally:
            engine.dispose()
    except Exception as error:
        reason = _db_error(error, target)
        raise ConfigError(f"storage {mask_url(target)}: cannot open ({reason})") from None
    if not has_studies:
        raise ConfigError(f"--storage: {mask_url(target)} holds no Optuna study")
    return open_storage(url)


def load_study(url: str | None, study_name: str | None = None) -> optuna.Study:
    """Load an existing study; with no name, the storage's only study.

    The study's database connections stay open while you use it: :func:`close_storage`
    closes them (they are closed already when this raises).

    Raises:
        ConfigError: The storage is missing, has no such study, or (with no name) holds
            none or several (the message lists them).
    """
    storage = open_existing_storage(url)
    try:
        return _load_study(storage, url, study_name)
    except BaseException:
        close_storage(storage)
        raise


def _load_study(
    storage: optuna.storages.BaseStorage, url: str | None, study_name: str | None
) -> optuna.Study:
    shown = mask_url(url or DEFAULT_STORAGE)
    names = [n for n in optuna.study.get_all_study_names(storage) if not is_lock_study(n)]
    if study_name is None:
        if not names:
            raise ConfigError(f"--storage: {shown} holds no study yet")
        if len(names) > 1:
            raise ConfigError(
                f"--study-name: {shown} holds {len(names)} studies ({', '.join(names)}); name one"
            )
        study_name = names[0]
    if study_name not in names:
        known = ", ".join(names) or "none"
        raise ConfigError(
            f"--study-name: no study {study_name!r} in {shown} (studies there: {known})"
        )
    return optuna.load_study(study_name=study_name, storage=storage)
