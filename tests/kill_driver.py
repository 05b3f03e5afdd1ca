"""Driver for tests/test_kill.py: ``lrtune.study.search()`` that stops at a kill point.

    python tests/kill_driver.py STUDY.yaml STORAGE POINT [--after K] [--only NAME]
                                [--workers N] [--flag FILE]

POINT is where the process stops, announces itself and waits to be killed:

``range-test``
    after the first optimizer's LR range test of ``lr: auto``: the set-up lock is held and
    ``lrtune.lr_auto`` is not stored yet (``lrtune.range_test._find.compare_optimizers`` is
    wrapped to pass a ``progress`` callback; ``_auto_lr`` imports it at call time).
``between``
    after the progress line of the K-th finished trial. Progress lines are written by
    lrtune's Optuna trial callback: that trial is already COMPLETE and the next one is not
    asked for yet.
``mid-trial``
    in ``training_step`` of the second epoch of the (K+1)-th trial this process trains
    (``lrtune.study._objective._train_trial`` is wrapped to count trials;
    ``ClassifierModule.training_step`` to stop): the trial is RUNNING, has its ``worker``
    attr and has reported epoch 1.

At the point it prints one line to stdout, flushed::

    MARK POINT pid=PID [trial=N] [optimizer=NAME]

and sleeps until killed (its heartbeat threads go on); with ``--flag FILE`` it first creates
FILE. With ``--only NAME`` only the process of that multiprocessing name stops
(``lrtune-worker-1``); at ``mid-trial`` the others hold their first trial until FILE exists
(so the stopping worker is sure to get a trial before they finish the study), then run
normally. With ``--workers N`` the hooks reach the worker processes through the environment:
multiprocessing spawn imports this file in each worker as ``__mp_main__``, which installs them
again. Progress lines of the main process go to stdout too; ``DONE`` is printed at a normal end.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import time
from typing import Any, TextIO, cast

ENV = "LRTUNE_KILL_DRIVER"
POINTS = ("range-test", "between", "mid-trial", "test-pass")
_TRIAL_LINE = re.compile(r"^(?:w\d+ )?\[\d+(?:/\d+)?\] trial (\d+) ")


_FLAG: str | None = None


def mark(point: str, **info: object) -> None:
    """Announce the kill point on stdout (and in the flag file), then wait to be killed."""
    if _FLAG:
        with open(_FLAG, "a") as flag:
            flag.write(f"{os.getpid()}\n")
    fields = "".join(f" {key}={value}" for key, value in info.items())
    sys.stdout.write(f"MARK {point} pid={os.getpid()}{fields}\n")
    sys.stdout.flush()
    while True:
        time.sleep(60)


class Progress(io.TextIOBase):
    """The ``progress`` stream: echoes to stdout; stops after the ``after``-th trial line
    when ``stop`` is set."""

    def __init__(self, after: int, stop: bool) -> None:
        self._after = after
        self._stop = stop
        self._seen = 0
        self._buffer = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        sys.stdout.write(text)
        sys.stdout.flush()
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            match = _TRIAL_LINE.match(line)
            if match is None:
                continue
            self._seen += 1
            if self._stop and self._seen == self._after:
                mark("between", trial=match.group(1))
        return len(text)


def install(spec: dict[str, Any]) -> None:
    """Install the hooks of ``spec`` (``point``, ``after``, ``only``) in this process."""
    import multiprocessing

    global _FLAG
    _FLAG = spec.get("flag")
    point, after, only = spec["point"], int(spec["after"]), spec.get("only")
    if only and multiprocessing.current_process().name != only:
        if point == "mid-trial" and _FLAG:
            _hold_first_trial(_FLAG)
        return
    if point == "range-test":
        import lrtune.range_test._find

        compare = lrtune.range_test._find.compare_optimizers

        def compare_then_stop(*args: Any, **kwargs: Any) -> Any:
            def progress(result: Any) -> None:
                mark("range-test", optimizer=result.label)

            return compare(*args, **{**kwargs, "progress": progress})

        lrtune.range_test._find.compare_optimizers = compare_then_stop
    elif point == "test-pass":  # every trial finished; the best ones' test split not yet
        from lrtune.study._test_pass import HeldWeights

        test = HeldWeights.test

        def marking_test(self: Any, *args: Any, **kwargs: Any) -> Any:
            if self.by_optimizer:
                mark("test-pass", held=len(self.by_optimizer))
            return test(self, *args, **kwargs)

        HeldWeights.test = marking_test  # type: ignore[method-assign]
    elif point == "mid-trial":
        import lrtune.study
        from lrtune.module import ClassifierModule

        state: dict[str, Any] = {"trained": 0, "trial": None}
        train_trial = lrtune.study._objective._train_trial
        training_step = ClassifierModule.training_step

        def counting_train_trial(trial: Any, *args: Any, **kwargs: Any) -> Any:
            state["trial"] = trial.number if state["trained"] == after else None
            state["trained"] += 1
            return train_trial(trial, *args, **kwargs)

        def stopping_training_step(self: Any, batch: Any, batch_idx: int) -> Any:
            if state["trial"] is not None and self.current_epoch >= 1:
                mark("mid-trial", trial=state["trial"])
            return training_step(self, batch, batch_idx)

        lrtune.study._objective._train_trial = counting_train_trial
        ClassifierModule.training_step = stopping_training_step  # type: ignore[method-assign]


def _hold_first_trial(flag: str, timeout: float = 600.0) -> None:
    """Make this process wait, in its first trial, until ``flag`` exists."""
    import lrtune.study

    train_trial = lrtune.study._objective._train_trial
    held: list[bool] = []

    def holding_train_trial(*args: Any, **kwargs: Any) -> Any:
        if not held:
            held.append(True)
            deadline = time.monotonic() + timeout
            while not os.path.exists(flag) and time.monotonic() < deadline:
                time.sleep(0.1)
        return train_trial(*args, **kwargs)

    lrtune.study._objective._train_trial = holding_train_trial


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study")
    parser.add_argument("storage")
    parser.add_argument("point", choices=POINTS)
    parser.add_argument("--after", type=int, default=2)
    parser.add_argument("--only", default=None)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--flag", default=None)
    args = parser.parse_args(argv)
    spec = {"point": args.point, "after": args.after, "only": args.only, "flag": args.flag}
    os.environ[ENV] = json.dumps(spec)  # spawned workers inherit it
    install(spec)
    from lrtune.study import search

    progress = Progress(args.after, stop=args.point == "between" and not args.only)
    search(args.study, storage=args.storage, progress=cast(TextIO, progress), workers=args.workers)
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
elif __name__ == "__mp_main__" and os.environ.get(ENV):  # a spawned worker process
    install(json.loads(os.environ[ENV]))
