"""CPU threads that fit the machine as it is now, not as it was when torch started.

torch runs each operation on as many threads as the machine has cores. When another job
keeps some of those cores busy (a noisy neighbour), every parallel operation waits for its
slowest thread, which shares a core with the neighbour: on 2 cores with both busy, a range
test ran 3.4x slower on 2 threads than on 1 (docs/BENCHMARKS.md, issue 20), while a plain
loop on one thread slows only by the share of the core it gets.

:class:`ThreadFit` counts the cores that are idle right now (Linux ``/proc/stat`` over a
tenth of a second, taken between trials, when lrtune itself computes nothing) and gives
torch that many threads, at least one and at most what it had. It looks again at most
every :data:`PROBE_EVERY_S` seconds, so a neighbour that comes or goes during a study is
noticed. Where ``/proc/stat`` does not exist it changes nothing.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

__all__ = ["PROBE_EVERY_S", "ThreadFit", "idle_cores"]

PROBE_EVERY_S = 30.0
"""Seconds between two looks at the machine (each takes :data:`WINDOW_S`)."""
WINDOW_S = 0.1
"""Seconds over which idle time is counted."""


def _cpu_times() -> tuple[int, int, int] | None:
    """(idle jiffies, total jiffies, CPUs) from ``/proc/stat``; ``None`` elsewhere."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    fields = [int(v) for v in lines[0].split()[1:9]]  # user nice system idle iowait irq ...
    cpus = sum(1 for line in lines[1:] if line.startswith("cpu"))
    return fields[3] + fields[4], sum(fields), cpus


def idle_cores(window: float = WINDOW_S) -> float | None:
    """How many cores were idle over the last ``window`` seconds (``None``: unknown)."""
    first = _cpu_times()
    if first is None:
        return None
    time.sleep(window)
    second = _cpu_times()
    if second is None or second[1] <= first[1]:
        return None
    return second[2] * (second[0] - first[0]) / (second[1] - first[1])


class ThreadFit:
    """Sets torch's intra-op thread count to the idle cores (see the module docstring).

    Args:
        most: The most threads to use (default: torch's count when this is made).
    """

    def __init__(self, most: int | None = None) -> None:
        self.most = most or torch.get_num_threads()
        self.threads = torch.get_num_threads()
        self._next = 0.0

    def adjust(self) -> int:
        """Look (unless looked in the last :data:`PROBE_EVERY_S` s) and set the count."""
        if self.most <= 1 or time.monotonic() < self._next:
            return self.threads
        self._next = time.monotonic() + PROBE_EVERY_S
        idle = idle_cores()
        if idle is None:
            return self.threads
        # a core idle 60 % of the time still runs a thread well; a busier one does not
        threads = max(1, min(self.most, math.floor(idle + 0.4)))
        if threads != self.threads:
            torch.set_num_threads(threads)
            self.threads = threads
        return threads
