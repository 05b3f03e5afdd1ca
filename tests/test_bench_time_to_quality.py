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


def _tested(seconds: float, value: float, test: float | None) -> dict[str, Any]:
    return {"seconds": seconds, "state": "COMPLETE", "value": value, "test_acc": test}


def test_test_targets_follow_the_model_a_user_would_take() -> None:
    """On the test split the clock stops when the best trial *by validation* tests well
    enough, not when some trial does: a trial that tests well but validates worse than
    the best so far is never handed over."""
    events = [_tested(1, 0.90, 0.95), _tested(2, 0.85, 0.99), _tested(3, 0.92, 0.97)]
    assert ttq.chosen_curve(events) == [(1, 0.95), (3, 0.97)]
    assert ttq.test_time_to(events, 0.97) == 3  # not 2: trial 2 was never the best
    assert ttq.test_time_to(events, 0.98) is None
    assert not ttq.fully_tested([_tested(1, 0.9, None)])
    with pytest.raises(ValueError, match="no test accuracy"):
        ttq.test_time_to([_tested(1, 0.9, None)], 0.5)


def test_summary_test_targets_only_for_fully_tested_sides() -> None:
    runs = [
        _run("loop", 0, [_tested(5, 0.90, 0.96), _tested(10, 0.98, 0.97)]),
        _run("lrtune-tested", 0, [_tested(2, 0.97, 0.975), _tested(4, 0.96, 0.99)]),
        _run("lrtune", 0, [_tested(2, 0.97, None), _tested(3, 0.975, 0.97)]),
    ]
    summary = ttq.summarise(runs)["m"]
    assert summary["pooled_test"] == 0.975  # 0.99 was never a chosen model
    sides = summary["sides"]
    assert sides["loop"]["test_times_0.5"] == {0: 10}  # 0.97 and up
    assert sides["lrtune-tested"]["test_times_0.5"] == {0: 2}
    assert sides["loop"]["test_times_2"] == {0: 5}
    assert "test_times_2" not in sides["lrtune"]  # an untested best on the way
