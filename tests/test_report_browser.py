"""The HTML report and optuna-dashboard in headless Chromium: they render, offline, no errors.

Screenshots go to ``$LRTUNE_SCREENSHOTS`` when set (e.g. ``docs/img``), else to tmp_path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import check_page, require_browser
from tests.dashboard_proc import Dashboard, running_dashboard

FIGURES = [
    "fig-history",
    "fig-by-optimizer",
    "fig-importance",
    "fig-parallel",
    "fig-lr",
    "fig-curves",
    "fig-range-test",
    "fig-timeline",
]
SECTIONS = ["glance", "best", "per-optimizer", "top", "study-file"]

# Run in the page after it settled: which plotly figures drew an SVG, the element ids on the
# page, and how tall the page is.
RENDERED = """() => ({
    plots: [...document.querySelectorAll('.js-plotly-plot')]
        .filter((el) => el.querySelector('.main-svg') !== null)
        .map((el) => el.id),
    ids: [...document.querySelectorAll('[id]')].map((el) => el.id),
    height: document.documentElement.scrollHeight,
})"""


def shot(tmp_path: Path, name: str) -> Path:
    """Where to save screenshot ``name``: ``$LRTUNE_SCREENSHOTS/name`` if set, else tmp_path."""
    folder = os.environ.get("LRTUNE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        return Path(folder) / name
    return tmp_path / name


# --- the report ----------------------------------------------------------------------------


def test_report_renders_every_figure_offline(
    finished_study: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_browser()
    from lrtune.cli import main

    out = tmp_path / "report.html"
    storage = str(finished_study["storage"])
    rc = main(["report", "--storage", storage, "--study-name", "finished", "--out", str(out)])
    assert rc == 0
    assert f"report: {out}" in capsys.readouterr().out
    html = out.read_text(encoding="utf-8")
    for fig in FIGURES:
        assert f'id="{fig}"' in html, fig

    check = check_page(
        out.as_uri(),
        shot(tmp_path, "report.png"),
        wait_for="#fig-lr .main-svg",
        full_page=True,
        evaluate=RENDERED,
    )
    assert check.errors == []
    assert check.external_requests == []
    assert check.nonblank_fraction() > 0.05
    for heading in ("At a glance", "Best per optimizer", "Top"):
        assert heading in check.text, heading
    assert "finished" in check.text
    rendered = check.evaluated
    assert sorted(rendered["plots"]) == sorted(FIGURES), rendered["plots"]
    for section in SECTIONS:
        assert section in rendered["ids"], section
    # Eight figures one under another: far taller than one screen.
    assert rendered["height"] > 8 * 300, rendered["height"]


def test_report_of_an_empty_study_renders(tmp_path: Path) -> None:
    require_browser()
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from lrtune.report import write_report
    from lrtune.study import load_study

    journal = tmp_path / "empty.journal"
    optuna.create_study(
        storage=JournalStorage(JournalFileBackend(str(journal))),
        study_name="empty",
        direction="maximize",
    )
    out = write_report(
        load_study(str(journal), "empty"), tmp_path / "empty.html", storage=str(journal)
    )
    check = check_page(out.as_uri(), shot(tmp_path, "report-empty.png"), evaluate=RENDERED)
    assert check.errors == []
    assert check.external_requests == []
    assert "no trials yet" in check.text.lower()
    assert "empty" in check.text
    assert check.nonblank_fraction() > 0.01
    assert check.evaluated["plots"] == []  # each figure says what it needs instead
    assert "needs at least one complete trial" in check.text


# --- optuna-dashboard ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard(finished_study: dict[str, Any]) -> Iterator[tuple[Dashboard, int]]:
    """A dashboard on the finished study (the journal is only read) and the study's id."""
    with running_dashboard("--storage", str(finished_study["storage"])) as dash:
        yield dash, dash.study_id("finished")


def test_dashboard_study_page_renders(dashboard: tuple[Dashboard, int], tmp_path: Path) -> None:
    require_browser()
    dash, study_id = dashboard
    check = check_page(
        f"{dash.base}/dashboard/studies/{study_id}",
        shot(tmp_path, "dashboard.png"),
        # The last card on the study's page lists the artifacts lrtune uploaded.
        wait_for=r"text=/report-\d+-trials\.html/",
        settle_ms=1500,
    )
    # optuna-dashboard ships its own bundle (no CDN): nothing is ignored here.
    assert check.errors == []
    assert check.external_requests == []
    assert check.nonblank_fraction() > 0.05
    assert f"finished (id={study_id})" in check.text
    for text in ("History", "Hyperparameter Importance", "Best Trial", "Study Artifacts"):
        assert text in check.text, text
    assert "lr-range-test.html" in check.text


def test_dashboard_note_page_shows_lrtune_note(
    dashboard: tuple[Dashboard, int], tmp_path: Path
) -> None:
    """The note is on the study's Note tab (the study's main page does not show it)."""
    require_browser()
    dash, study_id = dashboard
    check = check_page(
        f"{dash.base}/dashboard/studies/{study_id}/note",
        shot(tmp_path, "dashboard-note.png"),
        wait_for="text=Best per optimizer",
        settle_ms=500,
    )
    assert check.errors == []
    assert check.external_requests == []
    assert check.nonblank_fraction() > 0.05
    assert "finished" in check.text
    for text in (
        "Question: Which of SGD and Adam",
        "LR ranges from the range test",
        "Best so far: trial",
        "Best per optimizer",
    ):
        assert text in check.text, text
