"""Threads fitted to the idle cores (a noisy neighbour must not stall every operation)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from lrtune import _threads
from lrtune._threads import ThreadFit, idle_cores


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("idle", "expected"), [(0.0, 1), (0.5, 1), (0.7, 1), (1.7, 2), (3.9, 4), (12.0, 4)]
)
def test_threads_follow_the_idle_cores(
    monkeypatch: pytest.MonkeyPatch, idle: float, expected: int
) -> None:
    monkeypatch.setattr(_threads, "idle_cores", lambda: idle)
    fit = ThreadFit(most=4)
    assert fit.adjust() == expected and torch.get_num_threads() == expected


def test_it_looks_again_only_after_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    looks = []
    monkeypatch.setattr(_threads, "idle_cores", lambda: looks.append(1) or 0.0)
    fit = ThreadFit(most=2)
    fit.adjust()
    fit.adjust()
    assert len(looks) == 1
    monkeypatch.setattr(_threads, "PROBE_EVERY_S", 0.0)
    fit._next = 0.0
    fit.adjust()
    assert len(looks) == 2


def test_unknown_idle_time_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_threads, "idle_cores", lambda: None)
    torch.set_num_threads(2)
    assert ThreadFit(most=2).adjust() == 2 and torch.get_num_threads() == 2


def test_idle_cores_reads_this_machine() -> None:
    idle = idle_cores(0.05)
    if idle is None:
        pytest.skip("no /proc/stat here")
    assert 0.0 <= idle <= (torch.get_num_threads() + 64)
