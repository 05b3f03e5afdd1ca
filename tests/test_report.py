"""The study report (offline HTML), the study note, and what a search publishes for the
dashboard. Synthetic studies (built with ``optuna.trial.create_trial``) pin the report's
contents; ``finished_study`` (conftest) is a real search."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState, create_trial

from lrtune.cli import main
from lrtune.config import StudyConfig
from lrtune.errors import ConfigError
from lrtune.range_test import RangeTestResult
from lrtune.report import lr_curves_figure, study_note, study_report, write_report
from lrtune.study import load_study

optuna.logging.set_verbosity(optuna.logging.WARNING)

CONFIG = StudyConfig.model_validate(
    {
        "name": "synthetic",
        "question": "Does <Adam> beat SGD & friends?",
        "budget": {"epochs": 3},
        "n_trials": 10,
        "space": {"optimizers": ["sgd", "adam"], "lr": "auto"},
    }
)


def _range_result(label: str, center: float) -> RangeTestResult:
    lrs = np.geomspace(1e-5, 10, 60)
    x = np.log10(lrs) - math.log10(center)
    losses = 2.3 - 1.5 / (1 + np.exp(-3 * (x + 1))) + np.where(x > 0.5, 3 * (x - 0.5) ** 2, 0)
    return RangeTestResult.from_sweep(
        lrs.tolist(), losses.tolist(), beta=0.5, method="bracket", target="constant",
        stop_reason=None, num_steps=60, seconds=0.1, label=label,
    )  # fmt: skip


def _trial(
    number: int, optimizer: str, lr: float, state: TrialState, curve: list[float], **attrs: Any
) -> optuna.trial.FrozenTrial:
    params = {"optimizer": optimizer, f"{optimizer}.lr": lr, "schedule": "constant"}
    dists = {
        "optimizer": CategoricalDistribution(["sgd", "adam"]),
        f"{optimizer}.lr": FloatDistribution(1e-5, 10, log=True),
        "schedule": CategoricalDistribution(["constant", "cosine"]),
    }
    config = {
        "optimizer": {"name": optimizer, "lr": lr, "params": {"weight_decay": 1e-4 * (number + 1)}},
        "schedule": {"name": "constant", "params": {}},
        "clip": {"kind": "none", "threshold": None},
        "batch_size": 64,
    }
    return create_trial(
        state=state,
        value=curve[-1] if state == TrialState.COMPLETE else None,
        params=params,
        distributions=dists,
        user_attrs={"config": config, "seconds": 1.5, **attrs},
        intermediate_values=dict(enumerate(curve)),
    )


def _synthetic(tmp_path: Path, *, trials: int = 6, running: bool = False) -> optuna.Study:
    tmp_path.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "s.journal")))
    study = optuna.create_study(storage=storage, study_name="synthetic", direction="maximize")
    study.set_user_attr("lrtune.study_config", CONFIG.to_dict())
    auto = {}
    for name, center in (("sgd", 0.1), ("adam", 0.003)):
        result = _range_result(name, center)
        assert result.bracket is not None
        auto[name] = {"range": [result.bracket[0] / 3, result.bracket[1] * 3],
                      "source": "range test bracket", "result": result.to_dict()}  # fmt: skip
    study.set_user_attr("lrtune.lr_auto", auto)
    specs = [
        ("sgd", 0.1, TrialState.COMPLETE, [0.5, 0.8, 0.90], {"test_acc": 0.89}),
        ("adam", 0.003, TrialState.COMPLETE, [0.6, 0.85, 0.95], {"test_acc": 0.94}),
        ("adam", 0.0001, TrialState.PRUNED, [0.2], {"pruned": "Trial was pruned at epoch 0"}),
        ("sgd", 5.0, TrialState.PRUNED, [0.1], {"diverged": "diverged at step 3: loss is nan"}),
        ("adam", 0.01, TrialState.COMPLETE, [0.5, 0.7, 0.80], {"test_acc": 0.79}),
        ("sgd", 0.03, TrialState.FAIL, [], {}),
    ]
    for number, (opt, lr, state, curve, attrs) in enumerate(specs[:trials]):
        study.add_trial(_trial(number, opt, lr, state, curve, **attrs))
    if running:
        trial = study.ask()
        trial.report(0.4, 0)
    return study


def _section(page: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S)
    assert match, f"no section {anchor}"
    return match.group(1)


def test_report_has_every_part_and_opens_offline(tmp_path: Path) -> None:
    page = study_report(_synthetic(tmp_path), storage="s.journal")
    # offline: plotly.js inlined once, no script or stylesheet from the network
    assert page.count('<script type="text/javascript">/**') <= 1
    assert len(re.findall(r"plotly\.js v\d", page)) >= 1
    assert not re.search(r"<(script|link)[^>]+(src|href)=\"https?://", page)
    for anchor in ("history", "by-optimizer", "importance", "parallel", "lr", "curves",
                   "range-test", "timeline"):  # fmt: skip
        assert f'id="fig-{anchor}"' in page, anchor
    glance = _section(page, "glance")
    # 3 complete, 1 pruned (+1 diverged, counted apart), 1 failed, wall time
    for number, label in ((3, "complete"), (1, "pruned"), (1, "diverged"), (1, "failed")):
        assert f"<b>{number}</b><span>{label}</span>" in glance, label
    assert "0.95" in glance and "trial 1, adam" in glance and "wall time" in glance
    best = _section(page, "best")
    assert "name: adam" in best and "lrtune train --config" in best
    per_opt = _section(page, "per-optimizer")
    assert per_opt.index(">adam<") < per_opt.index(">sgd<")  # best optimizer first
    assert "1 diverged" in per_opt and "1 failed" in per_opt
    top = _section(page, "top")
    assert top.count("<tr>") == 1 + 3 and "full config" in top
    # the question is escaped, not injected
    assert "Does &lt;Adam&gt; beat SGD &amp; friends?" in page
    assert "<Adam>" not in page


def test_report_figures_mark_pruned_diverged_and_bracket(tmp_path: Path) -> None:
    from lrtune.report import _view, learning_curves_figure, lr_vs_metric_figure

    view = _view(_synthetic(tmp_path))
    lr_fig = lr_vs_metric_figure(view)
    names = {trace.name for trace in lr_fig.data}
    assert {"complete", "pruned", "diverged", "range-test bracket"} <= names
    diverged = next(t for t in lr_fig.data if t.name == "diverged")
    assert list(diverged.x) == [5.0] and "loss is nan" in diverged.text[0]
    assert lr_fig.layout.xaxis.type == "log"
    bracket = next(t for t in lr_fig.data if t.name == "range-test bracket")
    sgd_bracket = view.lr_auto["sgd"]["result"]["bracket"]
    assert min(bracket.x) == pytest.approx(sgd_bracket[0])
    curves = learning_curves_figure(view)
    styles = {t.name: t.line.dash for t in curves.data}
    assert styles["pruned"] == "dot" and styles["diverged"] == "dash"
    assert styles["adam (complete)"] is None
    assert len(curves.data) == 5  # every trial that reported, the failed one had nothing


def test_report_of_empty_single_and_running_studies(tmp_path: Path) -> None:
    empty = study_report(_synthetic(tmp_path / "a", trials=0))
    assert "This study has no trials yet." in empty
    assert "needs at least one complete trial" in empty
    assert 'id="fig-' not in empty.replace('id="fig-range-test"', "")

    single = study_report(_synthetic(tmp_path / "b", trials=1))
    assert "<b>1</b><span>complete</span>" in single
    assert "needs at least two complete trials" in single  # importances cannot be computed
    assert 'id="fig-history"' in single and 'id="fig-lr"' in single

    running = study_report(_synthetic(tmp_path / "c", trials=2, running=True))
    assert "running (1 trial in progress); snapshot at" in running
    assert "<b>1</b><span>running</span>" in running


def test_report_of_a_plain_optuna_study(tmp_path: Path) -> None:
    """A study lrtune did not create still gets Optuna's plots and the tables."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: (t.suggest_float("x", -3, 3) - 1) ** 2, n_trials=8)
    page = study_report(study)
    assert 'id="fig-history"' in page and 'id="fig-timeline"' in page
    assert 'id="fig-lr"' not in page and "Best configuration" in page


def test_multi_objective_study_is_a_config_error() -> None:
    study = optuna.create_study(directions=["minimize", "minimize"])
    with pytest.raises(ConfigError, match="2 objectives"):
        study_report(study)


def test_finder_figure_code_is_shared(tmp_path: Path) -> None:
    """`find-lr --out`, RangeTestResult.plot() and the report draw the same figure."""
    result = _range_result("adam", 0.003)
    assert result.plot().to_dict() == lr_curves_figure([result]).to_dict()  # type: ignore[attr-defined]


def test_study_note_names_question_best_and_optimizers(tmp_path: Path) -> None:
    study = _synthetic(tmp_path)
    note = study_note(study, CONFIG, study.user_attrs["lrtune.lr_auto"])
    assert note.startswith("# synthetic")
    assert "**Question:** Does <Adam> beat SGD & friends?" in note
    assert "## Best so far: trial 1, val_acc = 0.9500" in note
    assert "| adam | 1 | 0.9500 | 0.9400 |" in note and "| sgd | 0 | 0.9000 |" in note
    assert "3 complete, 2 pruned (1 diverged), 1 failed" in note


# ----------------------------------------------------------------------------- CLI


def test_cli_report_writes_the_file(
    finished_study: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sub" / "r.html"
    code = main(["report", "--storage", str(finished_study["storage"]), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert f"report: {out} (study finished, 8 trials)" in capsys.readouterr().out
    page = out.read_text()
    assert "Study finished" in page and "Which of SGD and Adam" in page
    assert 'id="fig-range-test"' in page  # the study ran lr: auto


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--storage", "{tmp}/none.journal"], ["--storage: no journal file at", "none.journal"]),
        (["--storage", "sqlite:///{tmp}/none.db"], ["--storage: no SQLite database at"]),
        (
            ["--storage", "postgresql://me:hunter2@127.0.0.1:1/x"],
            ["storage postgresql://me:***@127.0.0.1:1/x: cannot open"],
        ),
        (
            ["--storage", "{journal}", "--study-name", "nope"],
            ["--study-name: no study 'nope'", "studies there: finished"],
        ),
        (["--storage", "{journal}", "--out", "{tmp}"], ["--out:", "is a folder"]),
        (["--storage", "{journal}", "--top", "0"], ["--top"]),
    ],
    ids=["no-journal", "no-sqlite", "bad-url", "unknown-study", "out-is-dir", "top-zero"],
)
def test_cli_report_bad_input(
    finished_study: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    fragments: list[str],
) -> None:
    journal = Path(str(finished_study["storage"]))
    before = journal.read_bytes()
    filled = [a.format(tmp=tmp_path, journal=journal) for a in args]
    if "--out" not in args:
        filled += ["--out", str(tmp_path / "r.html")]
    code = main(["report", *filled])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("lrtune: error: "), err
    for fragment in fragments:
        assert fragment in err
    assert "hunter2" not in err
    assert journal.read_bytes() == before  # nothing written to the study
    assert not (tmp_path / "none.journal").exists() and not (tmp_path / "none.db").exists()


def test_cli_report_picks_the_only_study_or_asks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "two.journal"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    optuna.create_study(storage=storage, study_name="one")
    assert main(["report", "--storage", str(journal), "--out", str(tmp_path / "1.html")]) == 0
    assert "no trials yet" in (tmp_path / "1.html").read_text()
    optuna.create_study(storage=storage, study_name="two")
    capsys.readouterr()
    assert main(["report", "--storage", str(journal), "--out", str(tmp_path / "2.html")]) == 2
    err = capsys.readouterr().err
    assert "holds 2 studies (one, two); name one" in err


# ----------------------------------------------------------------------------- publishing


def test_search_publishes_note_curves_and_report(finished_study: dict[str, Any]) -> None:
    from optuna.artifacts import get_all_artifact_meta
    from optuna_dashboard import get_note

    study = load_study(str(finished_study["storage"]), "finished")
    note = get_note(study)
    assert note.startswith("# finished") and "## Best so far" in note
    assert "**Trials:** " in note and "0 running" in note  # the final version
    versions = study._storage.get_study_system_attrs(study._study_id)["dashboard:note_ver"]
    assert versions >= 3  # at the start, during (best changed), at the end
    names = sorted(meta.filename for meta in get_all_artifact_meta(study))
    assert names == ["lr-range-test.html", "report-8-trials.html"]
    folder = Path(str(finished_study["artifacts"]))
    assert study.user_attrs["lrtune.artifacts"] == str(folder.absolute())
    files = list(folder.iterdir())
    assert len(files) == 2 and all(f.stat().st_size > 100_000 for f in files)
    assert study.metric_names == ["val_acc"]  # the dashboard labels the objective
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned and all("pruner" in t.user_attrs["pruned"] for t in pruned
                          if "diverged" not in t.user_attrs)  # fmt: skip


def test_resumed_search_does_not_duplicate_artifacts(
    finished_study: dict[str, Any], tmp_path: Path
) -> None:
    import shutil

    from optuna.artifacts import get_all_artifact_meta

    from lrtune.study import search

    journal = tmp_path / "studies.journal"
    shutil.copy(str(finished_study["storage"]), journal)
    study = search(
        Path(str(finished_study["study_file"])), storage=str(journal),
        artifacts=str(tmp_path / "art"), progress=None,
    )  # fmt: skip
    names = [meta.filename for meta in get_all_artifact_meta(study)]
    assert names.count("report-8-trials.html") == 1 and names.count("lr-range-test.html") == 1
    assert study.user_attrs["lrtune.artifacts"] == str((tmp_path / "art").absolute())


def test_publish_false_writes_nothing(tmp_path: Path) -> None:
    from lrtune.study import search

    config = CONFIG.to_dict()
    config.update(n_trials=1, storage=str(tmp_path / "q.journal"))
    config["space"]["lr"] = {"auto": False}
    config["space"]["optimizers"] = ["adam"]
    config["model_options"] = {"width": 16}
    config["budget"] = {"epochs": 1}
    study = search(StudyConfig.model_validate(config), progress=None, publish=False)
    assert not (tmp_path / "q.artifacts").exists()
    assert "dashboard:note_ver" not in study._storage.get_study_system_attrs(study._study_id)


def test_bad_artifact_folder_is_refused_before_the_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], finished_study: dict[str, Any]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    journal = tmp_path / "new.journal"
    code = main(["search", str(finished_study["study_file"]), "--storage", str(journal),
                 "--artifacts", str(blocker / "sub")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "artifacts" in err and "is not a folder" in err
    assert not journal.exists()


def test_write_report_leaves_no_temp_file(tmp_path: Path) -> None:
    path = write_report(_synthetic(tmp_path), tmp_path / "r.html")
    assert path.read_text().startswith("<!DOCTYPE html>")
    assert not (tmp_path / "r.html.tmp").exists()
