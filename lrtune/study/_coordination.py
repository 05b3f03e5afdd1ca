"""Coordination between workers that share one Optuna storage, through the storage only.

Nothing here needs a scheduler or a network of its own: every worker (a process on this
machine or another) reads and writes the same Optuna storage, and these helpers use what
the storages guarantee.

* :func:`setup_lock` -- one worker at a time does a study's set-up (failing trials of dead
  workers, ``lr: auto``'s range tests, enqueueing defaults). The lock is a second study
  named ``<study>.lrtune-lock``: creating a study of an existing name fails atomically in
  every Optuna storage (a unique key in RDB storages, the file lock in journal storages).
  Its holder beats a heartbeat into it; a lock whose holder died (its pid is gone on this
  host, or its heartbeat is stale) is broken.
* :func:`fail_dead_trials` -- RUNNING trials whose worker died: its pid is gone on this host,
  or its heartbeat (:class:`TrialHeartbeat`, written every ``HEARTBEAT_S`` seconds) is older
  than ``STALE_S``. They are failed and their parameters enqueued again.
* :func:`trials_ahead` -- how many trials numbered before this one are finished or running,
  so a worker whose trial would exceed ``n_trials`` ends it unrun (see ``SURPLUS``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator

import optuna
from optuna.trial import TrialState

from lrtune._compat._core import study_id, study_storage, trial_id
from lrtune.errors import ConfigError
from lrtune.storage import LOCK_SUFFIX

log = logging.getLogger("lrtune.study")

HEARTBEAT_S = 20.0
"""Seconds between heartbeats of a running trial (user attr ``heartbeat``, unix time)."""
STALE_S = 120.0
"""A RUNNING trial (or a set-up lock) whose heartbeat is older than this is dead."""
LOCK_BEAT_S = 2.0
SURPLUS = "surplus"
"""User attr of a trial ended unrun because ``n_trials`` were already finished or running
(several workers asked for a trial at the same moment; Optuna cannot take a trial back, so
it ends as FAIL, which no count includes)."""

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def worker_id() -> str:
    """``host:pid`` of this process (trial user attr ``worker``)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a killed process is a zombie until its parent reaps it: it runs nothing any more
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state not in (b"Z", b"X")


def _dead(owner: str, beat: float | None, now: float) -> bool:
    """Is the worker ``owner`` (``host:pid``) with last heartbeat ``beat`` gone?"""
    host, _, pid = owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return not _pid_alive(int(pid))
    return beat is not None and now - beat > STALE_S


# ----------------------------------------------------------------------------- set-up lock


class _Beat:
    """A daemon thread calling ``beat()`` every ``interval`` seconds until stopped."""

    def __init__(self, beat: object, interval: float) -> None:
        self._beat = beat
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="lrtune-heartbeat")

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._beat()  # type: ignore[operator]
            except Exception as error:  # storage hiccup: the next beat may work
                log.debug("heartbeat failed: %s", error)

    def __enter__(self) -> _Beat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


LOCK_ATTR = "lrtune.lock"
"""System attr that marks a study as a set-up lock (its name alone could be anyone's)."""


def _is_lock(study: optuna.Study) -> bool:
    """May ``study`` be broken as a stale set-up lock? A lock carries :data:`LOCK_ATTR`
    from the moment after its creation; a study without it counts only while it holds
    nothing a lock would not (no trials, no attrs but ``owner`` and ``beat``): the moment
    between a worker's ``create_study`` and its first attr, or a lock of an older lrtune."""
    if study_storage(study).get_study_system_attrs(study_id(study)).get(LOCK_ATTR):
        return True
    return not study.get_trials(deepcopy=False) and set(study.user_attrs) <= {"owner", "beat"}


@contextlib.contextmanager
def setup_lock(
    storage: optuna.storages.BaseStorage, study_name: str, *, poll_s: float = 0.5
) -> Iterator[None]:
    """Hold the study's set-up lock (wait for it; break it if its holder died)."""
    name = study_name + LOCK_SUFFIX
    me = worker_id()
    waited_since: float | None = None
    announced = False
    while True:
        try:
            lock = optuna.create_study(storage=storage, study_name=name)
        except optuna.exceptions.DuplicatedStudyError:
            pass
        else:
            storage.set_study_system_attr(study_id(lock), LOCK_ATTR, True)
            lock.set_user_attr("owner", me)
            lock.set_user_attr("beat", time.time())
            break
        try:
            held = optuna.load_study(study_name=name, storage=storage)
            owner = held.user_attrs.get("owner")
            beat = held.user_attrs.get("beat")
        except KeyError:  # released between our try and our look
            continue
        now = time.time()
        waited_since = waited_since or now
        if not _is_lock(held):  # someone's study: never delete it
            raise ConfigError(
                f"study {name!r} is in the storage and is not an lrtune set-up lock (it has "
                f"{len(held.get_trials(deepcopy=False))} trials); lrtune needs that name for "
                f"the set-up of study {study_name!r}: rename that study or choose another "
                "study name"
            )
        ownerless_too_long = owner is None and now - waited_since > STALE_S / 4
        if ownerless_too_long or (owner is not None and _dead(str(owner), beat, now)):
            log.info("set-up lock of %s held by %s, which is gone: breaking it", study_name, owner)
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=name, storage=storage)
            continue
        if not announced:
            log.info("waiting for %s to finish the study's set-up", owner or "another worker")
            announced = True
        time.sleep(poll_s)
    try:
        with _Beat(lambda: lock.set_user_attr("beat", time.time()), LOCK_BEAT_S):
            yield
    finally:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=storage)


# ----------------------------------------------------------------------------- dead trials


class TrialHeartbeat(_Beat):
    """Writes the trial's ``heartbeat`` user attr every :data:`HEARTBEAT_S` seconds, so
    workers on other machines can tell a running trial from one whose worker died (RDB
    storages also get Optuna's own heartbeat; journal files have none)."""

    def __init__(self, trial: optuna.Trial) -> None:
        trial.set_user_attr("heartbeat", time.time())
        super().__init__(lambda: trial.set_user_attr("heartbeat", time.time()), HEARTBEAT_S)


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """Fail RUNNING trials whose worker died and enqueue their parameters again.

    Returns:
        The numbers of the trials failed.
    """
    now = time.time()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        start = trial.datetime_start.timestamp() if trial.datetime_start else now
        # no heartbeat yet (or a trial lrtune did not start): judge by its start time
        beat = float(trial.user_attrs.get("heartbeat", start))
        owner = str(trial.user_attrs.get("worker", "?:?"))
        if not _dead(owner, beat, now):
            continue
        try:  # the reason first: a finished trial's attrs cannot change
            study_storage(study).set_trial_user_attr(trial_id(trial), "dead_worker", owner)
            study_storage(study).set_trial_state_values(trial_id(trial), TrialState.FAIL)
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker got there first
        kept = {k: v for k, v in trial.user_attrs.items() if k == "baseline"}  # its role
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number, **kept})
        failed.append(trial.number)
    return failed


# ----------------------------------------------------------------------------- counting


def count(study: optuna.Study) -> tuple[int, int]:
    """(finished trials (complete + pruned), running trials)."""
    trials = study.get_trials(deepcopy=False, states=(*_FINISHED, TrialState.RUNNING))
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return len(trials) - running, running


def trials_ahead(study: optuna.Study, number: int) -> int:
    """Trials numbered before ``number`` that are finished or still running."""
    trials = study.get_trials(deepcopy=False, states=(*_FINISHED, TrialState.RUNNING))
    return sum(t.number < number for t in trials)


def others_running(study: optuna.Study) -> bool:
    """Is another worker running a trial of this study right now?"""
    me = worker_id()
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return any(t.user_attrs.get("worker", me) != me for t in running)
