"""Many workers on one study: real processes on the default journal storage, PostgreSQL
and MariaDB; failing trials; passwords never shown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from lrtune.config import StudyConfig
from lrtune.errors import StudyFailedError
from lrtune.study import closing_storage, open_storage, search

optuna.logging.set_verbosity(optuna.logging.WARNING)

STUDY = """\
name: parallel
dataset: digits
model: mlp
model_options: {width: 32}
batch_size: 64
budget: {epochs: 12}
objective: {metric: val_acc}
n_trials: 12
pruner: none
seed: 0
space:
  optimizers: [sgd, adam]
  lr: {auto: true, num_steps: 20}
"""
RANGE_TEST_LINE = "running the LR range test"
WORKERS = 3
# A start barrier, as the sitecustomize.py of the workers' processes (spawned workers
# inherit PYTHONPATH): each process, at its first trial, waits until every worker holds
# one, so that the trials are shared out however the processes are scheduled (the first
# worker up would otherwise start at once, and under load might run every trial alone).
BARRIER = f"""\
import os
if os.environ.get("LRTUNE_TEST_BARRIER"):
    import time
    from pathlib import Path

    import lrtune.study._objective as objective

    train, here, waited = objective._train_trial, Path(os.environ["LRTUNE_TEST_BARRIER"]), []

    def _train_trial(*args, **kwargs):
        if not waited:
            waited.append(True)
            (here / str(os.getpid())).touch()
            deadline = time.monotonic() + 120  # a worker that never comes: go on, and fail
            while len(list(here.iterdir())) < {WORKERS} and time.monotonic() < deadline:
                time.sleep(0.05)
        return train(*args, **kwargs)

    objective._train_trial = _train_trial
"""


def _lrtune(*args: str, cwd: Path, barrier: Path | None = None) -> subprocess.Popen[str]:
    """``lrtune ARGS`` in ``cwd`` (best-*.yaml and ./lrtune-artifacts of URL storages go
    there, not into the repository); with ``barrier``, behind the start barrier kept
    in that folder."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if barrier is not None:
        site = cwd / "barrier-site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(BARRIER)
        barrier.mkdir(exist_ok=True)
        path = [str(site), str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")]
        env.update(
            PYTHONPATH=os.pathsep.join(p for p in path if p), LRTUNE_TEST_BARRIER=str(barrier)
        )
    return subprocess.Popen(
        [sys.executable, "-m", "lrtune", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"lrtune search did not finish in {timeout}s:\n{err[-3000:]}")
    return proc.returncode, out, err


def _check_study(storage: str, stderr: str, n_trials: int = 12) -> list[optuna.trial.FrozenTrial]:
    with closing_storage(open_storage(storage)) as opened:
        study = optuna.load_study(study_name="parallel", storage=opened)
        trials = study.get_trials(deepcopy=False)
        finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        # exactly n_trials finished, none left running; with pruner none, a trial ends pruned
        # only when it diverges (parallel workers sample at random, so one may)
        assert len(finished) == n_trials, [(t.number, t.state.name) for t in trials]
        pruned = [t for t in finished if t.state == TrialState.PRUNED]
        assert all("diverged" in t.user_attrs for t in pruned), [t.user_attrs for t in pruned]
        assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        # the only other trials are ones ended unrun because n_trials was reached
        others = [t for t in trials if t not in finished]
        assert all("surplus" in t.user_attrs for t in others), [t.user_attrs for t in others]
        assert len({t.number for t in trials}) == len(trials)
        # workers with distinct samplers: no two trials with the same parameters
        assert len({tuple(sorted(t.params.items())) for t in finished}) == n_trials
        # each range test ran once for the whole study, and their record is in it
        for name in ("sgd", "adam"):
            assert stderr.count(f"{RANGE_TEST_LINE} of {name}\n") == 1, stderr[-4000:]
        assert set(study.user_attrs["lrtune.lr_auto"]) == {"sgd", "adam"}
        names = optuna.study.get_all_study_names(opened)
        assert not [n for n in names if n.endswith(".lrtune-lock")]
        return finished


def _run_parallel(storage: str, tmp_path: Path) -> None:
    """3 workers: `--workers 2` and a second command (another machine) started together,
    each holding its first trial until all three hold one."""
    study_file = tmp_path / "parallel.yaml"
    study_file.write_text(STUDY)
    args = ("search", str(study_file), "--storage", storage)
    barrier = tmp_path / "barrier"
    first = _lrtune(*args, "--workers", "2", cwd=tmp_path, barrier=barrier)
    second = _lrtune(*args, cwd=tmp_path, barrier=barrier)
    code1, _, err1 = _finish(first)
    code2, _, err2 = _finish(second)
    assert code1 == 0, err1[-3000:]
    assert code2 == 0, err2[-3000:]
    finished = _check_study(storage, err1 + err2)
    # the trials really were shared out: each worker process finished one at least
    pids = {path.name for path in barrier.iterdir()}
    assert {t.user_attrs["worker"].rsplit(":", 1)[1] for t in finished} == pids
    assert len(pids) == WORKERS, pids


def test_three_workers_on_the_journal_file(tmp_path: Path) -> None:
    _run_parallel(str(tmp_path / "studies.journal"), tmp_path)


@pytest.mark.postgres
def test_three_workers_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    _run_parallel(postgres_url, tmp_path)


@pytest.mark.mysql
def test_three_workers_on_mariadb(mysql_url: str, tmp_path: Path) -> None:
    _run_parallel(mysql_url, tmp_path)


# ----------------------------------------------------------------------------- failing trials


def _config(tmp_path: Path, **changes: Any) -> StudyConfig:
    data = {
        "name": "failing", "dataset": "digits", "model": "mlp", "model_options": {"width": 16},
        "budget": {"epochs": 1}, "n_trials": 6, "pruner": "none",
        "storage": str(tmp_path / "f.journal"),
        "space": {"optimizers": ["adam"], "lr": {"low": 1e-3, "high": 1e-2}},
    }  # fmt: skip
    data.update(changes)
    return StudyConfig.model_validate(data)


def broken_module(config: Any) -> Any:
    """A user's module factory with a bug (module-level: picklable for workers)."""
    raise TypeError(f"MyModule.__init__() got an unexpected keyword 'lr' ({config.seed})")


_calls = {"n": 0}


def flaky_module(config: Any) -> Any:
    """Fails every other trial, with a message that changes (the sizes of an OOM, say)."""
    from lrtune.module import ClassifierModule

    _calls["n"] += 1
    if _calls["n"] % 2 == 0:
        raise RuntimeError(f"out of memory: tried to allocate {_calls['n']}.5 GiB")
    return ClassifierModule.from_config(config, (1, 8, 8), 10)


def test_repeated_failure_stops_the_study(tmp_path: Path) -> None:
    with pytest.raises(StudyFailedError) as caught:
        search(_config(tmp_path), module_factory=broken_module, progress=None)
    message = str(caught.value)
    assert "3 trials in a row failed with TypeError: MyModule.__init__()" in message
    assert "(trials 0, 1, 2)" in message and "rerun" in message
    study = optuna.load_study(
        study_name="failing", storage=open_storage(str(tmp_path / "f.journal"))
    )
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL] * 3  # not the whole budget
    assert all(t.user_attrs["error"].startswith("TypeError: MyModule") for t in trials)


def test_scattered_failures_are_recorded_and_the_study_goes_on(tmp_path: Path) -> None:
    _calls["n"] = 0
    study = search(_config(tmp_path, n_trials=4), module_factory=flaky_module, progress=None)
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(finished) == 4 and len(failed) >= 3
    assert all(t.user_attrs["error"].startswith("RuntimeError: out of memory") for t in failed)


def test_cli_exit_code_1_when_trials_keep_failing(tmp_path: Path) -> None:
    """The CLI path: a study file whose model cannot be built fails every trial."""
    study_file = tmp_path / "s.yaml"
    study_file.write_text(STUDY.replace("n_trials: 12", "n_trials: 4").replace(
        "lr: {auto: true, num_steps: 20}", "lr: {low: 0.001, high: 0.01}"
    ))  # fmt: skip
    code = subprocess.run(
        [sys.executable, "-c", (
            "import sys, tests.study.test_workers as t, lrtune.study._objective as s\n"
            "s._train_trial = lambda *a, **k: t.broken_module(type('C', (), {'seed': 0}))\n"
            "from lrtune.cli import main\n"
            f"sys.exit(main(['search', {str(study_file)!r}, '--storage', "
            f"{str(tmp_path / 'c.journal')!r}, '--quiet']))"
        )],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )  # fmt: skip
    assert code.returncode == 1, code.stderr[-2000:]
    last = code.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "lrtune: error: study 'parallel': 3 trials in a row failed with TypeError"
    )


# ----------------------------------------------------------------------------- passwords


@pytest.mark.postgres
def test_password_in_the_url_is_never_shown(
    postgres_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostgreSQL here trusts local connections, so any password works; it must never be
    printed, stored in the study, or written into the note or the report."""
    from optuna_dashboard import get_note

    from lrtune.cli import main

    monkeypatch.chdir(tmp_path)  # best-parallel.yaml and ./lrtune-artifacts land here
    secret = "s3cr3t-pw"
    url = postgres_url.replace("postgres@", f"postgres:{secret}@")
    study_file = tmp_path / "s.yaml"
    study_file.write_text(STUDY.replace("n_trials: 12", "n_trials: 2"))
    out_report = tmp_path / "r.html"
    assert main(["search", str(study_file), "--storage", url]) == 0
    assert main(["report", "--storage", url, "--out", str(out_report)]) == 0
    printed = capsys.readouterr()
    with closing_storage(open_storage(url)) as opened:
        study = optuna.load_study(study_name="parallel", storage=opened)
        shown = [printed.out, printed.err, str(study.user_attrs), get_note(study),
                 out_report.read_text()]  # fmt: skip
        stored = study.user_attrs["lrtune.study_config"]["storage"]
    for text in shown:
        assert secret not in text
    assert "postgres:***@" in printed.out
    assert "postgres:***@" in stored
