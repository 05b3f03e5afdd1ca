"""`lrtune dashboard` as a real process: what optuna-dashboard serves, errors, Ctrl-C."""

from __future__ import annotations

import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard_proc import Dashboard, free_port, run_lrtune, running_dashboard

URL_LINE = re.compile(
    r"^lrtune: optuna-dashboard on http://127\.0\.0\.1:(?P<port>\d+)/dashboard/ "
    r"\(storage (?P<storage>.+), artifacts (?P<artifacts>.+)\); Ctrl-C stops it$"
)


@pytest.fixture(scope="module")
def served(
    finished_study: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Dashboard, Path]]:
    """One dashboard for the module, on a copy of the finished study's journal.

    The copy lives in a folder of its own, so the artifacts it serves must come from the
    folder the study recorded (its user attr), not from beside the storage.
    """
    folder = tmp_path_factory.mktemp("dashboard-copy")
    journal = folder / "copy.journal"
    shutil.copyfile(str(finished_study["storage"]), journal)
    with running_dashboard("--storage", str(journal)) as dash:
        yield dash, journal


@pytest.fixture(scope="module")
def study(served: tuple[Dashboard, Path]) -> dict[str, Any]:
    """``GET /api/studies/<id>`` of the study "finished"."""
    dash, _ = served
    return dash.get_json(f"/api/studies/{dash.study_id('finished')}")


def test_lists_the_finished_study(served: tuple[Dashboard, Path]) -> None:
    dash, _ = served
    summaries = dash.get_json("/api/studies")["study_summaries"]
    assert [s["study_name"] for s in summaries] == ["finished"]


def test_first_line_has_url_port_storage_and_recorded_artifacts(
    served: tuple[Dashboard, Path], finished_study: dict[str, Any]
) -> None:
    dash, journal = served
    first = dash.lines[0]
    assert f"http://127.0.0.1:{dash.port}/dashboard/" in first
    match = URL_LINE.match(first)
    assert match, first
    assert int(match["port"]) == dash.port
    assert match["storage"] == str(journal)
    # Default artifact folder: the one the study recorded, not one beside the copied journal.
    artifacts = Path(finished_study["artifacts"])
    assert Path(match["artifacts"]).resolve() == artifacts.resolve()
    assert not journal.with_suffix(".artifacts").exists()
    # Loopback: no warning, and nothing else on stderr while it serves.
    assert dash.lines == [first]


def test_note_has_title_best_and_per_optimizer(study: dict[str, Any]) -> None:
    body = study["note"]["body"]
    assert study["note"]["version"] >= 1
    assert body.startswith("# finished\n")
    assert "**Question:**" in body
    assert "## Best so far" in body
    assert "## Best per optimizer" in body


def test_artifacts_are_listed_and_served(
    served: tuple[Dashboard, Path], study: dict[str, Any]
) -> None:
    dash, _ = served
    by_name = {a["filename"]: a for a in study["artifacts"]}
    assert "lr-range-test.html" in by_name, sorted(by_name)
    reports = [name for name in by_name if re.fullmatch(r"report-\d+-trials\.html", name)]
    assert reports, sorted(by_name)
    study_id = dash.study_id("finished")
    for name in ["lr-range-test.html", *reports]:
        meta = by_name[name]
        assert meta["mimetype"] == "text/html"
        status, content_type, body = dash.get(f"/artifacts/{study_id}/{meta['artifact_id']}")
        assert status == 200, (name, status, body[:200])
        assert content_type.startswith("text/html"), (name, content_type)
        html = body.decode("utf-8")
        assert html.lstrip().lower().startswith("<!doctype html"), (name, html[:100])
        assert "plotly" in html.lower(), name


def test_unknown_artifact_is_404(served: tuple[Dashboard, Path]) -> None:
    dash, _ = served
    status, _, _ = dash.get(f"/artifacts/{dash.study_id('finished')}/no-such-artifact")
    assert status == 404


def test_pruned_trials_say_why(study: dict[str, Any]) -> None:
    states = [t["state"] for t in study["trials"]]
    assert len(states) == 8
    assert "Complete" in states
    pruned = [t for t in study["trials"] if t["state"] == "Pruned"]
    assert pruned, states
    for trial in pruned:  # by the pruner, or ended early because its loss diverged
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        assert "pruned" in attrs or "diverged" in attrs, (trial["number"], sorted(attrs))
        if "pruned" in attrs:
            assert "pruner" in attrs["pruned"], attrs["pruned"]
        else:
            assert "loss" in attrs["diverged"] or "nan" in attrs["diverged"], attrs["diverged"]


def test_port_in_use_is_one_line_exit_2(finished_study: dict[str, Any]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_lrtune(
            "dashboard", "--storage", str(finished_study["storage"]), "--port", str(port)
        )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lrtune: error: --port"), lines[0]
    assert f"127.0.0.1:{port}" in lines[0]
    assert "in use" in lines[0]
    assert result.stdout == ""


def test_missing_storage_is_one_line_exit_2_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here.journal"
    result = run_lrtune("dashboard", "--storage", str(missing), "--port", str(free_port()))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lrtune: error: --storage"), lines[0]
    assert str(missing) in lines[0]
    assert not missing.exists()
    assert list(tmp_path.iterdir()) == []  # no journal, lock file or artifact folder either


def test_open_host_warns_then_ctrl_c_exits_0(finished_study: dict[str, Any]) -> None:
    storage = str(finished_study["storage"])
    port = free_port("0.0.0.0")
    with running_dashboard(
        "--storage", storage, "--host", "0.0.0.0", port=port, wait=False
    ) as dash:
        warning = dash.wait_for_line(lambda line: line.startswith("lrtune: warning:"))
        assert warning.startswith("lrtune: warning: listening on 0.0.0.0, not only this machine")
        assert "no login" in warning
        first = dash.lines[0]
        assert f"http://0.0.0.0:{port}/dashboard/" in first
        dash.wait_until_serving()  # 0.0.0.0 includes 127.0.0.1
        # Ctrl-C while serving: the server stops within its 0.5 s poll, exit 0, no more output.
        rc = dash.interrupt()
        assert rc == 0, dash.stderr()
        assert dash.lines == [first, warning]


def test_port_zero_prints_the_port_it_got(
    finished_study: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process: --port 0 asks the OS for a free port; the printed URL names that port."""
    import io
    from wsgiref.simple_server import WSGIServer

    from lrtune.dashboard import serve

    bound: list[int] = []

    def serve_once(self: WSGIServer) -> None:  # stands in for Ctrl-C at once
        bound.append(self.server_port)
        raise KeyboardInterrupt

    monkeypatch.setattr(WSGIServer, "serve_forever", serve_once)
    stream = io.StringIO()
    serve(str(finished_study["storage"]), port=0, stream=stream)
    assert bound and bound[0] > 0
    assert f"http://127.0.0.1:{bound[0]}/dashboard/" in stream.getvalue().splitlines()[0]


def test_ipv6_loopback(finished_study: dict[str, Any]) -> None:
    import socket

    from lrtune.dashboard import dashboard_server

    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError as error:
        pytest.skip(f"cannot bind ::1 here ({error})")
    with dashboard_server(str(finished_study["storage"]), host="::1", port=0) as server:
        assert server.address_family == socket.AF_INET6 and server.server_port > 0
