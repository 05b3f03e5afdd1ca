"""The real-database helpers (tests/dbs.py) and fixtures: fresh databases, Optuna round trips."""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace

import optuna
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests import dbs

CLOSED_POSTGRES = "postgresql://postgres@127.0.0.1:1/test"
CLOSED_MYSQL = "mysql://root@127.0.0.1:1/test"


def _postgres_db_exists(name: str) -> bool:
    engine = dbs.admin_engine(dbs.postgres_admin_url())
    try:
        with engine.connect() as conn:
            query = text("SELECT count(*) FROM pg_database WHERE datname = :name")
            return bool(conn.execute(query, {"name": name}).scalar())
    finally:
        engine.dispose()


def _mysql_db_exists(name: str) -> bool:
    engine = dbs.admin_engine(dbs.mysql_admin_url())
    try:
        with engine.connect() as conn:
            query = text("SELECT count(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :n")
            return bool(conn.execute(query, {"n": name}).scalar())
    finally:
        engine.dispose()


# --- fresh databases ------------------------------------------------------------------------


@pytest.mark.postgres
def test_fresh_postgres_db_is_new_empty_and_dropped_despite_open_connections() -> None:
    dbs.require_postgres()
    with dbs.fresh_postgres_db() as url:
        name = make_url(url).database
        assert name is not None and name.startswith(dbs.DB_PREFIX) and len(name) == 17
        assert make_url(url).drivername == "postgresql+psycopg2"
        assert _postgres_db_exists(name)
        engine = create_engine(url)
        conn = engine.connect()  # left open, inside a transaction, as a careless test would
        assert conn.execute(text("SELECT current_database()")).scalar() == name
        tables = conn.execute(
            text("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        ).scalar()
        assert tables == 0
        conn.execute(text("CREATE TABLE t (x int)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
        with dbs.fresh_postgres_db() as other:
            assert make_url(other).database != name
    assert not _postgres_db_exists(name)
    assert not _postgres_db_exists(make_url(other).database or "")
    conn.invalidate()  # its server process was terminated by the drop
    engine.dispose()


@pytest.mark.mysql
def test_fresh_mysql_db_is_new_empty_utf8mb4_and_dropped_despite_open_transactions() -> None:
    dbs.require_mysql()
    with dbs.fresh_mysql_db() as url:
        name = make_url(url).database
        assert name is not None and name.startswith(dbs.DB_PREFIX)
        assert make_url(url).drivername == "mysql+pymysql"
        assert _mysql_db_exists(name)
        engine = create_engine(url)
        conn = engine.connect()
        assert conn.execute(text("SELECT DATABASE()")).scalar() == name
        assert conn.execute(text("SELECT @@character_set_database")).scalar() == "utf8mb4"
        tables = conn.execute(
            text("SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = :n"),
            {"n": name},
        ).scalar()
        assert tables == 0
        conn.execute(text("CREATE TABLE t (x int) ENGINE=InnoDB"))
        conn.execute(text("INSERT INTO t VALUES (1)"))  # open transaction: a metadata lock on t
        start = time.monotonic()
    assert time.monotonic() - start < 10  # the drop killed the connection instead of waiting
    assert not _mysql_db_exists(name)
    conn.invalidate()
    engine.dispose()


# --- Optuna round trips through the fixtures ------------------------------------------------


def _round_trip(url: str) -> None:
    """A study with params, intermediate values, attributes (non-ASCII), then load it back."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(
        study_name="round-trip β", storage=storage, direction="minimize", sampler=None
    )
    study.set_user_attr("question", "Which β₁ — Adam or NAdam?")

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-5, 1.0, log=True)
        opt = trial.suggest_categorical("optimizer", ["sgd", "adam"])
        for step in range(3):
            trial.report(lr * (3 - step), step)
        trial.set_user_attr("note", f"{opt} über alles")
        return lr * (2.0 if opt == "sgd" else 1.0)

    study.optimize(objective, n_trials=3)
    study.add_trial(
        optuna.trial.create_trial(
            params={"lr": 0.1234567890123, "optimizer": "adam"},
            distributions={
                "lr": optuna.distributions.FloatDistribution(1e-5, 1.0, log=True),
                "optimizer": optuna.distributions.CategoricalDistribution(["sgd", "adam"]),
            },
            value=0.1234567890123,
        )
    )
    expected = [(t.number, t.state, t.value, t.params, t.user_attrs) for t in study.trials]
    expected_steps = [t.intermediate_values for t in study.trials]
    storage.remove_session()
    storage.engine.dispose()

    other = optuna.storages.RDBStorage(url)  # a new engine: nothing cached in memory
    try:
        loaded = optuna.load_study(study_name="round-trip β", storage=other)
        assert loaded.user_attrs == {"question": "Which β₁ — Adam or NAdam?"}
        got = [(t.number, t.state, t.value, t.params, t.user_attrs) for t in loaded.trials]
        assert got == expected  # float64 values and params exactly (DOUBLE on MySQL)
        assert [t.intermediate_values for t in loaded.trials] == expected_steps
        assert loaded.trials[-1].value == 0.1234567890123
        assert [s.study_name for s in optuna.get_all_study_summaries(other)] == ["round-trip β"]
    finally:
        other.remove_session()
        other.engine.dispose()


@pytest.mark.postgres
def test_optuna_study_round_trip_on_postgres(postgres_url: str) -> None:
    _round_trip(postgres_url)


@pytest.mark.mysql
def test_optuna_study_round_trip_on_mysql(mysql_url: str) -> None:
    _round_trip(mysql_url)


# --- skip locally, fail under CI ------------------------------------------------------------


@pytest.fixture
def closed_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point both admin URLs at a closed port."""
    monkeypatch.setenv(dbs.POSTGRES_ENV, CLOSED_POSTGRES)
    monkeypatch.setenv(dbs.MYSQL_ENV, CLOSED_MYSQL)


@pytest.mark.usefixtures("closed_servers")
def test_unavailable_reasons_name_the_server_and_how_to_start_it() -> None:
    pg = dbs.postgres_available()
    assert pg is not None and "\n" not in pg
    assert pg.startswith("PostgreSQL at 127.0.0.1:1 not answering (connection refused)")
    assert "pg_ctlcluster" in pg
    my = dbs.mysql_available()
    assert my is not None and "\n" not in my
    assert my.startswith("MariaDB/MySQL at 127.0.0.1:1 not answering (connection refused)")
    assert "service mariadb start" in my


@pytest.mark.usefixtures("closed_servers")
@pytest.mark.parametrize("ci", [None, "", "false", "0"])
@pytest.mark.parametrize("require", [dbs.require_postgres, dbs.require_mysql])
def test_require_skips_outside_ci(monkeypatch: pytest.MonkeyPatch, ci, require) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="not answering"):
        require()


@pytest.mark.usefixtures("closed_servers")
@pytest.mark.parametrize("ci", ["true", "1", "TRUE"])
@pytest.mark.parametrize("require", [dbs.require_postgres, dbs.require_mysql])
def test_require_fails_under_ci(monkeypatch: pytest.MonkeyPatch, ci, require) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match=r"not answering.*CI must provide"):
        require()


def test_missing_driver_is_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # import psycopg2 -> ImportError
    monkeypatch.setitem(sys.modules, "pymysql", None)
    pg = dbs.postgres_available()
    assert pg is not None and "driver psycopg2 is not installed" in pg and "[postgres]" in pg
    my = dbs.mysql_available()
    assert my is not None and "driver pymysql is not installed" in my and "[mysql]" in my


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h:5/d", "postgresql+psycopg2://u@h:5/d"),
        ("postgres://u@h/d", "postgresql+psycopg2://u@h/d"),
        ("postgresql+psycopg2://u:pw@h/d", "postgresql+psycopg2://u:pw@h/d"),
        ("mysql://root@h:3306/d", "mysql+pymysql://root@h:3306/d"),
        ("mariadb://root@h/d", "mariadb+pymysql://root@h/d"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_urls_get_the_installed_driver(given: str, expected: str) -> None:
    assert dbs.url_string(dbs._with_driver(given)) == expected


def test_fixtures_fail_unmarked_tests() -> None:
    node = SimpleNamespace(nodeid="t.py::test_x", get_closest_marker=lambda name: None)
    with pytest.raises(pytest.fail.Exception, match=r"not marked @pytest\.mark\.postgres"):
        dbs.check_marked(node, "postgres", "postgres_url")
    marked = SimpleNamespace(nodeid="t.py::test_x", get_closest_marker=lambda name: object())
    dbs.check_marked(marked, "postgres", "postgres_url")
