"""``SearchCallback``: the hooks a search calls, in order, in this process and in workers;
and the publisher that ``publish=True`` hands in, seen from its effects."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import pytest

from lrtune import SearchCallback
from lrtune.config import StudyConfig
from lrtune.errors import ConfigError
from lrtune.study import search


class Recorder(SearchCallback):
    """Appends each hook call to a file (workers are other processes)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _log(self, *event: Any) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps([os.getpid(), *event]) + "\n")

    def check(self, config: StudyConfig) -> None:
        self._log("check", config.name)

    def on_setup(
        self, study: optuna.Study, config: StudyConfig, lr_auto: Mapping[str, Any]
    ) -> None:
        self._log("setup", sorted(lr_auto))

    def on_start(
        self, study: optuna.Study, config: StudyConfig, lr_auto: Mapping[str, Any]
    ) -> None:
        self._log("start")

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self._log("trial", trial.number, trial.state.name)

    def on_end(self, study: optuna.Study, config: StudyConfig) -> None:
        self._log("end", len(study.trials))


class Refuses(SearchCallback):
    def check(self, config: StudyConfig) -> None:
        raise ConfigError("refuses: this study is not for me")


def _config(tmp_path: Path, **fields: Any) -> StudyConfig:
    data: dict[str, Any] = {
        "name": "hooks", "dataset": "digits", "model": "mlp", "model_options": {"width": 16},
        "budget": {"epochs": 1}, "n_trials": 3, "pruner": "none", "test": "never",
        "storage": str(tmp_path / "s.journal"),
        "space": {"optimizers": ["adam", "sgd"], "lr": {"low": 1e-3, "high": 1e-1}},
    }  # fmt: skip
    data.update(fields)
    return StudyConfig.model_validate(data)


def _events(path: Path) -> list[list[Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_hooks_run_in_order_with_plain_trial_callbacks(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    plain: list[int] = []
    search(
        _config(tmp_path), progress=None, publish=False,
        callbacks=[Recorder(str(log)), lambda study, trial: plain.append(trial.number)],
    )  # fmt: skip
    events = [e[1:] for e in _events(log)]
    assert events == [
        ["check", "hooks"], ["setup", []], ["start"],
        ["trial", 0, "COMPLETE"], ["trial", 1, "COMPLETE"], ["trial", 2, "COMPLETE"],
        ["end", 3],
    ]  # fmt: skip
    assert plain == [0, 1, 2]


def test_setup_sees_lr_auto_and_every_worker_gets_its_own_copy(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    config = _config(
        tmp_path, n_trials=4,
        space={"optimizers": ["adam", "sgd"], "lr": {"auto": True, "num_steps": 20}},
    )  # fmt: skip
    search(config, progress=None, publish=False, workers=2, callbacks=[Recorder(str(log))])
    events = _events(log)
    main = os.getpid()
    ours = [e[1:] for e in events if e[0] == main]
    assert ours[0] == ["check", "hooks"] and ours[1][0] == "end" and len(ours) == 2
    workers = {e[0] for e in events} - {main}
    assert len(workers) == 2
    for pid in workers:
        mine = [e[1:] for e in events if e[0] == pid]
        assert mine[0][0] == "setup" and mine[1] == ["start"]
        # range tests run at each optimizer's first use: each later set-up call sees more
        seen = [set(e[1]) for e in mine if e[0] == "setup"]
        assert all(a < b for a, b in itertools.pairwise(seen))
        assert all(e[0] in ("trial", "setup") for e in mine[2:])
    assert {n for e in events if e[1] == "setup" for n in e[2]} == {"adam", "sgd"}
    finished = [e for e in events if e[1] == "trial" and e[3] != "FAIL"]
    assert len(finished) == 4


def test_a_callback_that_refuses_the_input_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="refuses: this study is not for me"):
        search(_config(tmp_path), progress=None, publish=False, callbacks=[Refuses()])
    assert not (tmp_path / "s.journal").exists()


def test_callbacks_for_workers_must_pickle(tmp_path: Path) -> None:
    class Local(SearchCallback):  # defined in a function: cannot be sent to a worker
        pass

    with pytest.raises(ConfigError, match="cannot be sent to worker processes"):
        search(_config(tmp_path), progress=None, publish=False, workers=2, callbacks=[Local()])
    assert not (tmp_path / "s.journal").exists()


def test_publish_true_is_the_dashboard_publisher(tmp_path: Path) -> None:
    """The default hook: the note saved in the study and the report uploaded as an artifact."""
    from optuna.artifacts import get_all_artifact_meta

    study = search(_config(tmp_path), progress=None)
    assert "dashboard:note_ver" in study._storage.get_study_system_attrs(study._study_id)
    names = [m.filename for m in get_all_artifact_meta(study)]
    assert names == ["report-3-trials.html"]
