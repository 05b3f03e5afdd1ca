"""SIGKILL crash safety of ``lrtune search``, on a journal file and on PostgreSQL.

Each test kills a real search with SIGKILL at one point, then reruns it as a user would (the
CLI's ``search``, in-process, no hooks) and checks the storage:

1. during the ``lr: auto`` range tests (set-up lock held, ``lrtune.lr_auto`` not stored);
2. mid-trial (a trial RUNNING, in its second epoch);
3. between trials (the previous trial complete, the next not asked for);
4. one worker of ``--workers 2`` mid-trial: the other fails its trial, retries its
   parameters and finishes the study in that same run;
5. the ``--workers 2`` command itself mid-trial: its workers die with it.

Points 1-3 (and the stop inside a worker's trial for 4 and 5) come from
``tests/kill_driver.py``, which runs ``lrtune.study.search()`` with hooks that print a
``MARK`` line and sleep at the point; the test reads the driver's stdout and kills there.

After the rerun: exactly ``n_trials`` finished, nothing RUNNING or WAITING, every trial
finished at the kill (complete or pruned) unchanged, each killed trial FAIL with
``dead_worker`` and retried once (``retry_of``), no set-up lock left, and the storage still
readable by ``optuna trials`` and optuna-dashboard's API.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from lrtune.cli import main
from lrtune.study import open_storage

DRIVER = Path(__file__).with_name("kill_driver.py")
NAME = "kill"
N_TRIALS = 6
LOCK = NAME + ".lrtune-lock"
MARK_TIMEOUT = 300.0
"""Seconds to wait for a kill point (a cold start imports torch; the CPU is shared)."""
RETRY_TIMEOUT = 90.0
"""Seconds for the surviving worker to fail the dead one's trial (it looks every 10 s)."""
RUN_TIMEOUT = 300.0
"""Seconds for a run to finish its remaining trials."""
GONE_TIMEOUT = 10.0
"""Seconds for workers to die after their parent was killed."""
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

STUDY_YAML = """\
name: {name}
dataset: digits
model: mlp
model_options: {{width: 32}}
budget: {{epochs: 3}}
n_trials: {n_trials}
seed: 0
device: cpu
pruner: {{name: none}}
artifacts: {artifacts}
space:
  optimizers: [sgd, adam]
  lr: {{auto: true, num_steps: 20}}
"""


@pytest.fixture(
    params=[
        pytest.param("journal", id="journal"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The storage to kill searches on: a journal file, or a fresh PostgreSQL database."""
    if request.param == "journal":
        return str(tmp_path / "studies.journal")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def study_file(tmp_path: Path) -> Path:
    path = tmp_path / "kill.yaml"
    artifacts = json.dumps(str(tmp_path / "artifacts"))
    path.write_text(STUDY_YAML.format(name=NAME, n_trials=N_TRIALS, artifacts=artifacts))
    return path


# ----------------------------------------------------------------------------- helpers


def _worker(pid: int) -> str:
    """The ``worker`` / ``dead_worker`` attr of process ``pid`` on this host."""
    return f"{socket.gethostname()}:{pid}"


def _gone(pid: int) -> bool:
    """Has ``pid`` stopped running (no such process, or a zombie left to reap)?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def _children(pid: int) -> set[int]:
    """The child processes of ``pid`` (Linux ``/proc/PID/task/TID/children``)."""
    found: set[int] = set()
    for tasks in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found.update(int(child) for child in tasks.read_text().split())
    return found


@contextlib.contextmanager
def _opened(storage: str) -> Iterator[optuna.storages.BaseStorage]:
    """lrtune's own storage object for ``storage``; RDB connections closed afterwards."""
    opened = open_storage(storage)
    try:
        yield opened
    finally:
        if isinstance(opened, optuna.storages.RDBStorage):
            opened.engine.dispose()


def _state(storage: str) -> tuple[list[str], dict[str, Any], dict[int, FrozenTrial]]:
    """(study names, the study's user attrs, its trials by number) as stored now."""
    with _opened(storage) as opened:
        names = optuna.study.get_all_study_names(opened)
        if NAME not in names:
            return names, {}, {}
        study = optuna.load_study(study_name=NAME, storage=opened)
        return names, study.user_attrs, {t.number: t for t in study.get_trials()}


def _lock_owner(storage: str) -> str | None:
    with _opened(storage) as opened:
        return optuna.load_study(study_name=LOCK, storage=opened).user_attrs.get("owner")


class Driver:
    """``tests/kill_driver.py`` in a subprocess; its stdout read line by line."""

    def __init__(self, tmp_path: Path, study_file: Path, storage: str, *args: str) -> None:
        self.log = tmp_path / f"driver-{len(list(tmp_path.glob('driver-*.log')))}.log"
        self._stderr = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, str(DRIVER), str(study_file), storage, *args],
            stdout=subprocess.PIPE, stderr=self._stderr, text=True, cwd=tmp_path,
        )  # fmt: skip
        self.lines: list[str] = []
        self.marked: list[dict[str, str]] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def fail(self, message: str) -> NoReturn:
        self._stderr.flush()
        err = self.log.read_text().splitlines()[-40:]
        out = self.lines[-20:]
        pytest.fail(
            f"{message}\n--- driver stdout (last lines):\n" + "\n".join(out)
            + "\n--- driver stderr (last lines):\n" + "\n".join(err),
            pytrace=False,
        )  # fmt: skip

    def wait_marks(self, count: int, timeout: float = MARK_TIMEOUT) -> list[dict[str, str]]:
        """Wait for ``count`` MARK lines in all; each as ``{"point": ..., "pid": ..., ...}``."""
        deadline = time.monotonic() + timeout
        while len(self.marked) < count:
            try:
                line = self._queue.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.fail(f"no kill point reached within {timeout:.0f} s")
            if line is None:
                self.proc.wait()
                self.fail(f"the driver ended (exit {self.proc.returncode}) before its kill point")
            self.lines.append(line)
            if line.startswith("MARK "):
                point, *fields = line.split()[1:]
                self.marked.append({"point": point, **dict(f.split("=", 1) for f in fields)})
        return self.marked[:count]

    def wait(self, timeout: float) -> int | None:
        """The driver's exit code, with all its stdout read; ``None`` if still running."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        while (line := self._queue.get(timeout=60)) is not None:
            self.lines.append(line)
        return code

    def kill(self, pid: int | None = None) -> None:
        """SIGKILL the driver (default) or one of its processes (a worker)."""
        os.kill(self.proc.pid if pid is None else pid, signal.SIGKILL)
        if pid is None:
            self.proc.wait(timeout=60)

    def close(self) -> None:
        """Kill what is left of this driver (on a failed test) and close its files."""
        pids = [self.proc.pid] * (self.proc.poll() is None)
        pids += [int(m["pid"]) for m in self.marked if not _gone(int(m["pid"]))]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()


@pytest.fixture
def driver(tmp_path: Path, study_file: Path, storage: str) -> Iterator[Any]:
    """Start drivers with ``driver(*args)``; all of them are killed at the end of the test."""
    started: list[Driver] = []

    def start(*args: str) -> Driver:
        started.append(Driver(tmp_path, study_file, storage, *args))
        return started[-1]

    yield start
    for one in started:
        one.close()


def _finished(trials: dict[int, FrozenTrial]) -> dict[int, tuple[str, float | None]]:
    """State and value of each finished (complete or pruned) trial, by number."""
    return {n: (t.state.name, t.value) for n, t in trials.items() if t.state in FINISHED}


def _rerun(tmp_path: Path, study_file: Path, storage: str) -> None:
    """``lrtune search`` as a user reruns it (in-process CLI, no hooks)."""
    code = main(["search", str(study_file), "--storage", storage, "--quiet",
                 "--best-out", str(tmp_path / "best.yaml")])  # fmt: skip
    assert code == 0


def _check_optuna_cli(storage: str, trials: int) -> None:
    """Optuna's own CLI loads the storage (a journal file path works as --storage)."""
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "optuna"), "trials", "--storage", storage,
         "--study-name", NAME, "-f", "json"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == trials


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=120) as response:
        assert response.status == 200
        return json.loads(response.read())


def _check_dashboard(storage: str, artifacts: Path, trials: dict[int, FrozenTrial]) -> None:
    """optuna-dashboard's API lists the study and serves all its trials."""
    from lrtune.dashboard import dashboard_server

    with dashboard_server(storage, port=0, artifacts=artifacts) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            base = f"http://127.0.0.1:{server.server_port}/api/studies"
            studies = {s["study_name"]: s["study_id"] for s in _get_json(base)["study_summaries"]}
            assert NAME in studies
            detail = _get_json(f"{base}/{studies[NAME]}")
            served = {t["number"]: t["state"] for t in detail["trials"]}
            assert served == {n: t.state.name.capitalize() for n, t in trials.items()}
        finally:
            server.shutdown()
            thread.join(timeout=30)


def _check_recovered(
    tmp_path: Path,
    storage: str,
    finished: dict[int, tuple[str, float | None]],
    killed: dict[int, str],
) -> dict[int, FrozenTrial]:
    """The storage after recovery: see the module docstring. ``finished``: :func:`_finished`
    at the kill; ``killed``: the trials RUNNING then, and their worker (``host:pid``)."""
    names, attrs, trials = _state(storage)
    states = [t.state for t in trials.values()]
    assert sum(s in FINISHED for s in states) == N_TRIALS, states
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states, states
    assert _finished(trials).items() >= finished.items(), "a finished trial was lost or changed"
    for number, owner in killed.items():
        dead = trials[number]
        assert dead.state == TrialState.FAIL
        assert dead.user_attrs.get("dead_worker") == owner
        retries = [t for t in trials.values() if t.user_attrs.get("retry_of") == number]
        assert len(retries) == 1, f"trial {number} retried {len(retries)} times"
        assert retries[0].params == dead.params and retries[0].state in FINISHED
    for trial in trials.values():  # nothing else failed (a surplus trial ends unrun as FAIL)
        if trial.state == TrialState.FAIL:
            assert trial.number in killed or "surplus" in trial.user_attrs, trial.user_attrs
    assert set(attrs.get("lrtune.lr_auto", {})) == {"sgd", "adam"}
    assert not [n for n in names if n.endswith(".lrtune-lock")], names
    _check_optuna_cli(storage, len(trials))
    _check_dashboard(storage, tmp_path / "artifacts", trials)
    return trials


# ----------------------------------------------------------------------------- the tests


def test_kill_during_lr_range_test(
    tmp_path: Path, study_file: Path, storage: str, driver: Any
) -> None:
    run = driver("range-test")
    mark = run.wait_marks(1)[0]
    run.kill()
    names, attrs, trials = _state(storage)
    assert LOCK in names and _lock_owner(storage) == _worker(int(mark["pid"]))
    assert "lrtune.lr_auto" not in attrs and trials == {}
    _rerun(tmp_path, study_file, storage)  # breaks the dead worker's lock, tests again
    _check_recovered(tmp_path, storage, {}, {})


def test_kill_mid_trial(tmp_path: Path, study_file: Path, storage: str, driver: Any) -> None:
    run = driver("mid-trial", "--after", "2")
    mark = run.wait_marks(1)[0]
    run.kill()
    _, _, trials = _state(storage)
    number, owner = int(mark["trial"]), _worker(int(mark["pid"]))
    running = trials[number]
    assert running.state == TrialState.RUNNING and running.user_attrs["worker"] == owner
    assert running.intermediate_values, "killed before the trial reported its first epoch"
    finished = _finished(trials)
    assert len(finished) == 2
    _rerun(tmp_path, study_file, storage)
    _check_recovered(tmp_path, storage, finished, {number: owner})


def test_kill_between_trials(tmp_path: Path, study_file: Path, storage: str, driver: Any) -> None:
    run = driver("between", "--after", "2")
    run.wait_marks(1)
    run.kill()
    names, _, trials = _state(storage)
    assert [t.state in FINISHED for t in trials.values()] == [True, True]
    assert LOCK not in names  # released after the set-up
    _rerun(tmp_path, study_file, storage)
    _check_recovered(tmp_path, storage, _finished(trials), {})


def test_kill_during_the_test_pass(
    tmp_path: Path, study_file: Path, storage: str, driver: Any
) -> None:
    """Killed when every trial had finished but the test split of each optimizer's best
    trial was not yet evaluated (their weights die with the process): the rerun trains those
    trials again from their configs and stores their test metrics (they used to stay nan)."""
    from lrtune.results import best_per_optimizer, trials_with_tests

    run = driver("test-pass")
    run.wait_marks(1)
    run.kill()
    _, attrs, trials = _state(storage)
    finished = _finished(trials)
    assert len(finished) == N_TRIALS
    assert not any(key.startswith("lrtune.test.") for key in attrs)
    _rerun(tmp_path, study_file, storage)
    after = _check_recovered(tmp_path, storage, finished, {})
    assert {n: (t.state.name, t.value) for n, t in after.items()} == finished  # none ran again
    with _opened(storage) as opened:
        study = optuna.load_study(study_name=NAME, storage=opened)
        merged = {t.number: t for t in trials_with_tests(study)}
    complete = [t for t in after.values() if t.state == TrialState.COMPLETE]
    for name, best in best_per_optimizer(complete, True, default="").items():
        test_acc = merged[best.number].user_attrs.get("test_acc")
        assert test_acc is not None and 0.0 < test_acc <= 1.0, (name, merged[best.number])


def test_a_journal_torn_by_a_kill_mid_write_is_mended(
    tmp_path: Path, study_file: Path, storage: str, driver: Any
) -> None:
    """A kill in the middle of a journal write leaves a last line without its end; Optuna
    would append the next operation to it and lose that one. The rerun cuts the torn line
    (the operation it held was never applied) and finishes the study."""
    if "://" in storage:
        pytest.skip("a journal file")
    run = driver("between", "--after", "2")
    run.wait_marks(1)
    run.kill()
    journal = Path(storage)
    data = journal.read_bytes()
    journal.write_bytes(data[: data.rfind(b"\n", 0, len(data) - 1) + 40])  # torn mid-line
    _rerun(tmp_path, study_file, storage)
    assert journal.read_bytes().endswith(b"\n")
    _, _, trials = _state(storage)
    states = [t.state for t in trials.values()]
    assert sum(s in FINISHED for s in states) == N_TRIALS, states
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states, states
    _check_optuna_cli(storage, len(trials))


def test_kill_workers_command(tmp_path: Path, study_file: Path, storage: str, driver: Any) -> None:
    """SIGKILL ``search --workers 2`` while both workers run a trial: they die with it."""
    run = driver("mid-trial", "--after", "0", "--workers", "2")
    marks = run.wait_marks(2)
    workers = {int(m["pid"]) for m in marks}
    children = _children(run.proc.pid)  # the workers, and multiprocessing's resource tracker
    assert len(workers) == 2 and workers <= children
    run.kill()
    for pids, timeout in ((workers, GONE_TIMEOUT), (children, 3 * GONE_TIMEOUT)):
        deadline = time.monotonic() + timeout
        while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = sorted(pid for pid in pids if not _gone(pid))
        assert not left, f"processes of the killed command still running {timeout} s on: {left}"
    _, _, trials = _state(storage)
    killed = {int(m["trial"]): _worker(int(m["pid"])) for m in marks}
    assert {n for n, t in trials.items() if t.state == TrialState.RUNNING} == set(killed)
    _rerun(tmp_path, study_file, storage)
    _check_recovered(tmp_path, storage, _finished(trials), killed)


def test_kill_one_worker(tmp_path: Path, study_file: Path, storage: str, driver: Any) -> None:
    """SIGKILL worker w1 mid-trial: w0 fails that trial, retries it and finishes the study."""
    flag = tmp_path / "w1-stopped"  # w0 holds its first trial until w1 is in its own
    run = driver("mid-trial", "--after", "0", "--only", "lrtune-worker-1", "--workers", "2",
                 "--flag", str(flag))  # fmt: skip
    mark = run.wait_marks(1)[0]
    pid, number = int(mark["pid"]), int(mark["trial"])
    assert pid != run.proc.pid
    run.kill(pid)
    _, _, trials = _state(storage)
    assert trials[number].state == TrialState.RUNNING
    finished = _finished(trials)
    deadline = time.monotonic() + RETRY_TIMEOUT
    while _state(storage)[2][number].state == TrialState.RUNNING:
        if time.monotonic() > deadline:
            zombie = _gone(pid) and Path(f"/proc/{pid}").exists()
            run.fail(
                f"trial {number} of killed worker {pid} still RUNNING {RETRY_TIMEOUT:.0f} s "
                "later: the surviving worker did not fail it"
                + (" (the killed worker is a zombie its parent never reaped)" if zombie else "")
            )
        time.sleep(0.5)
    code = run.wait(RUN_TIMEOUT)
    if code is None:
        run.fail(f"the run did not finish within {RUN_TIMEOUT:.0f} s after the retry")
    assert code == 0 and run.lines and run.lines[-1] == "DONE"
    done = _check_recovered(tmp_path, storage, finished, {number: _worker(pid)})
    _rerun(tmp_path, study_file, storage)  # nothing left to do
    assert _state(storage)[2].keys() == done.keys()
