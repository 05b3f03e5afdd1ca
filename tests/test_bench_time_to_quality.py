"""The time-to-quality benchmark's bookkeeping (``benchmarks/bench_time_to_quality.py``):
targets, time to each, the first model, and the summary, on made-up events."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import bench_time_to_quality as ttq


def _event(seconds: float, value: float | None, state: str = "COMPLETE") -> dict[str, Any]:
    return {"seconds": seconds, "state": state, "value": value, "test_acc": value}


def _run(side: str, seed: int, events: list[dict[str, Any]]) -> dict[str, Any]:
    return {"model": "m", "seed": seed, "side": side, "events": events, "seconds": 30.0}


def test_time_to_counts_complete_trials_only() -> None:
    events = [_event(1, 0.90), _event(2, 0.99, "PRUNED"), _event(3, 0.95), _event(4, 0.97)]
    assert ttq.time_to(events, 0.95) == 3
    assert ttq.time_to(events, 0.98) is None
    assert ttq.first_model([_event(1, None, "PRUNED"), *events]) == 1
    assert ttq.final(events) == (0.97, 0.97)


def test_summary_targets_come_from_the_pooled_best() -> None:
    runs = [
        _run("loop", 0, [_event(5, 0.90), _event(10, 0.98)]),
        _run("lrtune", 0, [_event(2, 0.975), _event(4, 0.96)]),
        _run("loop", 1, [_event(5, 0.95)]),
        _run("lrtune", 1, [_event(3, 0.97)]),
    ]
    summary = ttq.summarise(runs)["m"]
    assert summary["pooled_best"] == 0.98
    loop, lrtune = summary["sides"]["loop"], summary["sides"]["lrtune"]
    assert loop["times_2"] == {0: 10, 1: None}  # 0.96 and up
    assert lrtune["times_2"] == {0: 2, 1: 3}
    assert lrtune["reached_0.5"] == 1 and loop["reached_0.5"] == 1
    assert lrtune["median_s_first"] == pytest.approx(2.5)
    assert loop["median_s_2"] is None  # unreached counts as infinite: the median is too
    assert lrtune["test_acc"] == pytest.approx((0.975 + 0.97) / 2)
