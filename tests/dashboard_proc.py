"""Run ``lrtune dashboard`` as a real subprocess for tests: start, wait, query, stop.

A test utility, not a test file. Typical use::

    from tests.dashboard_proc import running_dashboard

    with running_dashboard("--storage", journal) as dash:
        studies = dash.get_json("/api/studies")["study_summaries"]

The server runs as ``python -m lrtune dashboard ... --port PORT`` on a free port; its stderr is
read line by line by a thread (so the pipe never fills) into :attr:`Dashboard.lines`. Leaving
the ``with`` block stops it with SIGINT (as Ctrl-C would) and, if that does not end it within
a few seconds, with SIGTERM and then SIGKILL, so no process outlives the test.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
"""The repository root (the subprocesses run there, so ``python -m lrtune`` imports it)."""

START_TIMEOUT_S = 30.0
"""How long to wait for the dashboard to answer ``GET /api/studies``."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on at ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _default_sigint() -> None:
    """In the child before exec: SIGINT back to its default action.

    A process started in the background by a non-interactive shell (``pytest &`` in a
    script, some CI runners) inherits SIGINT *ignored*; Python then installs no
    KeyboardInterrupt handler and the child would shrug off the SIGINT the tests send as
    Ctrl-C. With the default action restored, Python installs its handler as it does in a
    terminal.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def lrtune_command(*args: str) -> list[str]:
    """``python -m lrtune ARGS`` with this interpreter (the venv's)."""
    return [sys.executable, "-m", "lrtune", *args]


def run_lrtune(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``lrtune ARGS`` to completion (for commands that should fail fast)."""
    return subprocess.run(
        lrtune_command(*args),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_default_sigint,
    )


class Dashboard:
    """One running ``lrtune dashboard`` process."""

    def __init__(self, args: list[str], port: int) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.lines: list[str] = []
        """stderr lines so far (without the newline)."""
        self._changed = threading.Condition()
        self._eof = False
        self.process = subprocess.Popen(
            lrtune_command("dashboard", *args, "--port", str(port)),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            preexec_fn=_default_sigint,
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def stderr(self) -> str:
        """stderr so far, as one string."""
        with self._changed:
            return "\n".join(self.lines)

    def wait_for_line(self, predicate: Any, timeout: float = START_TIMEOUT_S) -> str:
        """The first stderr line for which ``predicate(line)`` is true; fails the test if
        the process ends or ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    break
                self._changed.wait(min(left, 0.5))
        rc = self.process.poll()
        why = f"exited with {rc}" if rc is not None else f"no such line after {timeout:.0f} s"
        pytest.fail(f"lrtune dashboard {why}; stderr:\n{self.stderr()}")

    def wait_until_serving(self, timeout: float = START_TIMEOUT_S) -> None:
        """Poll ``GET /api/studies`` until it answers; fail with stderr if the process dies
        or ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            rc = self.process.poll()
            if rc is not None:
                self._reader.join(timeout=5)
                pytest.fail(f"lrtune dashboard exited with {rc}; stderr:\n{self.stderr()}")
            try:
                self.get("/api/studies", timeout=2)
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
                last = error
                time.sleep(0.1)
        pytest.fail(
            f"lrtune dashboard did not answer on {self.base} within {timeout:.0f} s "
            f"(last error: {last}); stderr:\n{self.stderr()}"
        )

    def get(self, path: str, timeout: float = 30) -> tuple[int, str, bytes]:
        """``GET path`` -> (status, Content-Type, body); HTTP errors are returned, not raised."""
        try:
            with urllib.request.urlopen(self.base + path, timeout=timeout) as response:
                return response.status, response.headers.get("Content-Type", ""), response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get("Content-Type", ""), error.read()

    def get_json(self, path: str) -> Any:
        """``GET path`` and decode its JSON body (fails the test unless the status is 200)."""
        status, _, body = self.get(path)
        assert status == 200, f"GET {path}: HTTP {status}: {body[:300]!r}"
        return json.loads(body)

    def study_id(self, name: str) -> int:
        """The dashboard's id of the study called ``name``."""
        summaries = self.get_json("/api/studies")["study_summaries"]
        ids = {s["study_name"]: s["study_id"] for s in summaries}
        assert name in ids, f"study {name!r} not listed; listed: {sorted(ids)}"
        return int(ids[name])

    def interrupt(self, timeout: float = 10) -> int:
        """Send SIGINT (Ctrl-C) and return the exit code; fails if it has not ended within
        ``timeout`` seconds (the process is then killed by :meth:`stop`)."""
        self.process.send_signal(signal.SIGINT)
        try:
            rc = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"lrtune dashboard still running {timeout:.0f} s after SIGINT")
        self._reader.join(timeout=5)
        return rc

    def stop(self) -> None:
        """End the process however it is doing: SIGINT, then SIGTERM, then SIGKILL."""
        for send, wait_s in (
            (lambda: self.process.send_signal(signal.SIGINT), 5.0),
            (self.process.terminate, 5.0),
            (self.process.kill, 10.0),
        ):
            if self.process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                send()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=wait_s)
        self._reader.join(timeout=5)
        if self.process.stderr is not None:
            self.process.stderr.close()


@contextlib.contextmanager
def running_dashboard(
    *args: str, port: int | None = None, wait: bool = True
) -> Iterator[Dashboard]:
    """Start ``lrtune dashboard ARGS --port PORT`` (a free port unless given); with ``wait``,
    return once ``GET /api/studies`` answers. Stops the process on leaving."""
    dash = Dashboard(list(args), port if port is not None else free_port())
    try:
        if wait:
            dash.wait_until_serving()
        yield dash
    finally:
        dash.stop()
