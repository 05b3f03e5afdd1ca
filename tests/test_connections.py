"""lrtune closes every database connection it opens (issue 26).

Counted on the server: the connections to the test's own database before and after
``lrtune search``, ``best``, ``report``, the Python API and the dashboard, all in this
process. The garbage collector is off meanwhile (lrtune's own explicit collections still
run), so an engine that lrtune forgot is not closed by chance before the count: it shows.
"""

from __future__ import annotations

import gc
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from lrtune.cli import main
from lrtune.storage import close_storage, load_study, open_storage
from lrtune.study import search
from tests.dbs import admin_engine, mysql_admin_url, postgres_admin_url

STUDY = """\
name: conn
dataset: digits
model: mlp
model_options: {width: 16}
budget: {epochs: 1}
n_trials: 2
pruner: none
test: end
space:
  optimizers: [adam]
  lr: {auto: true, num_steps: 20}
"""

KINDS = [
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]


class _Server:
    """Counts the connections to one database, from the admin database (not counted)."""

    def __init__(self, kind: str, url: str) -> None:
        self._name = make_url(url).database
        admin = postgres_admin_url() if kind == "postgres" else mysql_admin_url()
        self._engine = admin_engine(admin)
        self._query = text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = :name"
            if kind == "postgres"
            else "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = :name"
        )

    def connections(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(self._query, {"name": self._name}).scalar_one())

    def close(self) -> None:
        self._engine.dispose()


@pytest.fixture(params=KINDS)
def db(request: pytest.FixtureRequest) -> Iterator[tuple[str, _Server]]:
    """(URL of a fresh database, its connection counter), with the garbage collector off."""
    kind = request.param
    url = str(request.getfixturevalue(f"{kind}_url"))
    server = _Server(kind, url)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield url, server
    finally:
        if was_enabled:
            gc.enable()
        server.close()


def _study_file(tmp_path: Path) -> Path:
    path = tmp_path / "conn.yaml"
    path.write_text(STUDY)
    return path


def test_the_cli_closes_what_it_opens(
    db: tuple[str, _Server],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, server = db
    monkeypatch.chdir(tmp_path)  # best-conn.yaml and ./lrtune-artifacts land here
    assert server.connections() == 0
    assert main(["search", str(_study_file(tmp_path)), "--storage", url, "-q"]) == 0
    assert server.connections() == 0, "lrtune search left connections open"
    assert main(["best", "--storage", url]) == 0
    assert server.connections() == 0, "lrtune best left connections open"
    assert main(["report", "--storage", url, "--out", str(tmp_path / "r.html")]) == 0
    assert server.connections() == 0, "lrtune report left connections open"
    assert main(["best", "--storage", url, "--study-name", "nope"]) == 2
    assert server.connections() == 0, "a refused lrtune best left connections open"
    capsys.readouterr()


def test_the_python_api_closes_what_it_opens(db: tuple[str, _Server], tmp_path: Path) -> None:
    url, server = db
    study = search(_study_file(tmp_path), storage=url, progress=None, publish=True)
    assert server.connections() == 0, "search() left connections open"
    assert len(study.trials) == 2  # the returned study reconnects when read...
    assert server.connections() >= 1
    close_storage(study)  # ...and close_storage closes that again
    assert server.connections() == 0
    loaded = load_study(url, "conn")
    assert loaded.best_trial.number in (0, 1)
    close_storage(loaded)
    assert server.connections() == 0, "close_storage(load_study(...)) left connections open"


def test_a_storage_that_fails_to_open_closes_its_connection(
    db: tuple[str, _Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """RDBStorage connects, then fails (here: checking Optuna's tables); the connection it
    made is closed, not left to the garbage collector."""
    url, server = db

    def fail(*_args: object, **_kwargs: object) -> None:
        # connect first, as create_all does, then fail as a racing worker would
        raise RuntimeError("table studies already exists (simulated)")

    from optuna.storages._rdb import models

    original = models.BaseModel.metadata.create_all

    def connect_then_fail(bind: object, *args: object, **kwargs: object) -> None:
        with bind.connect():  # type: ignore[attr-defined]
            pass
        fail()

    monkeypatch.setattr(models.BaseModel.metadata, "create_all", connect_then_fail)
    with pytest.raises(Exception, match="cannot open"):
        open_storage(url)
    monkeypatch.setattr(models.BaseModel.metadata, "create_all", original)
    assert server.connections() == 0


def test_the_dashboard_closes_what_it_opens(db: tuple[str, _Server], tmp_path: Path) -> None:
    from lrtune.dashboard import dashboard_server

    url, server = db
    storage = open_storage(url)
    optuna.create_study(storage=storage, study_name="shown").optimize(lambda t: 1.0, n_trials=1)
    close_storage(storage)
    with dashboard_server(url, port=0, artifacts=tmp_path / "art") as app:
        thread = threading.Thread(target=app.serve_forever, daemon=True)
        thread.start()
        try:
            port = app.server_address[1]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=30) as r:
                assert b"shown" in r.read()
        finally:
            app.shutdown()
            thread.join(timeout=30)
    assert server.connections() == 0, "the dashboard left connections open"
