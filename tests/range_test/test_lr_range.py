"""The LR range test's math on synthetic loss curves: pure numpy, no Lightning."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lrtune.errors import ConfigError
from lrtune.range_test import (
    METHODS,
    DivergenceRule,
    RangeTestResult,
    analyze,
    ema,
    lr_sweep,
    zero_lag_smooth,
)

LR_STAR = 1e-3  # where the synthetic loss falls fastest (in log LR)
LRS = lr_sweep(1e-6, 10.0, 100)

# the loss transformed by a shift and/or a positive scale: no rule may notice
TRANSFORMS = {
    "identity": lambda v: v,
    "plus 1000": lambda v: v + 1000.0,
    "times 37": lambda v: 37.0 * v,
    "0.001x + 5": lambda v: 0.001 * v + 5.0,
}


def synthetic_loss(seed: int = 0, noise: float = 0.02) -> np.ndarray:
    """Plateau at 2.3, a sigmoid fall by 2.0 centred on LR_STAR, then an exponential blow-up."""
    x = np.log10(LRS)
    fall = 2.0 / (1.0 + np.exp(-4.0 * (x - math.log10(LR_STAR))))
    blow_up = 0.1 * np.exp(4.0 * (x + 1.0))  # 0.1 at lr 0.1, 5.5 at lr 2.7
    return 2.3 - fall + blow_up + np.random.default_rng(seed).normal(0.0, noise, len(x))


def stop_step(losses: np.ndarray, **rule_kwargs: float) -> int | None:
    """The index at which a fresh DivergenceRule stops the sweep (``None``: never)."""
    rule = DivergenceRule(**rule_kwargs)
    for i, loss in enumerate(losses):
        if rule.update(float(loss)) is not None:
            return i
    return None


# ----------------------------------------------------------------------------- lr_sweep


def test_exponential_sweep_hits_both_ends_with_a_constant_ratio() -> None:
    lrs = lr_sweep(1e-7, 10.0, 100)
    assert len(lrs) == 100
    assert lrs[0] == 1e-7 and lrs[-1] == 10.0
    ratios = lrs[1:] / lrs[:-1]
    np.testing.assert_allclose(ratios, 10 ** (8 / 99), rtol=1e-12)


def test_linear_sweep_hits_both_ends_with_a_constant_step() -> None:
    lrs = lr_sweep(0.01, 1.0, 12, "linear")
    assert len(lrs) == 12
    assert lrs[0] == 0.01 and lrs[-1] == 1.0
    np.testing.assert_allclose(np.diff(lrs), 0.09, rtol=1e-12)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((1e-3, 1e-3, 20), "max_lr"),
        ((1.0, 1e-3, 20), "max_lr"),
        ((0.0, 1.0, 20), "min_lr"),
        ((-1e-3, 1.0, 20), "min_lr"),
        ((float("nan"), 1.0, 20), "min_lr"),
        ((1e-3, float("inf"), 20), "max_lr"),
        ((1e-3, 1.0, 9), "num_steps"),
        ((1e-3, 1.0, 20, "cosine"), "mode"),
    ],
)
def test_sweep_rejects_bad_input(args: tuple, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        lr_sweep(*args)


def test_ten_steps_is_the_minimum() -> None:
    assert len(lr_sweep(1e-3, 1.0, 10)) == 10


# ----------------------------------------------------------------------------- smoothing


def test_ema_is_bias_corrected() -> None:
    values = [5.0, 3.0, 4.0, 10.0, -2.0, 0.5]
    beta = 0.9
    out = ema(values, beta)
    # the first value is the first input: no pull toward the zero the average starts from
    assert out[0] == pytest.approx(5.0, rel=1e-14)
    for i in range(len(values)):
        average = sum((1 - beta) * beta ** (i - k) * values[k] for k in range(i + 1))
        expected = average / (1 - beta ** (i + 1))
        assert out[i] == pytest.approx(expected, rel=1e-12), i
    # a constant input stays constant from the first point on
    np.testing.assert_allclose(ema([7.0] * 20, 0.98), 7.0, rtol=1e-12)


def test_zero_lag_smooth_does_not_shift_a_symmetric_bump() -> None:
    i = np.arange(101)
    bump = np.exp(-(((i - 50) / 6.0) ** 2))
    smooth = zero_lag_smooth(bump, 0.9)
    assert len(smooth) == 101
    assert int(np.argmax(smooth)) == 50
    np.testing.assert_allclose(smooth[:50], smooth[51:][::-1], rtol=1e-9, atol=1e-15)
    assert smooth[50] < bump[50]  # it did smooth
    # a one-sided EMA of the same strength moves the peak to the right: the check can fail
    assert int(np.argmax(ema(bump, 0.9))) > 52


def test_zero_lag_smooth_keeps_a_constant_and_a_line() -> None:
    np.testing.assert_allclose(zero_lag_smooth([3.0] * 40, 0.98), 3.0, rtol=1e-12)
    line = np.linspace(0.0, 1.0, 40)
    # away from the ends a symmetric kernel reproduces a straight line exactly
    np.testing.assert_allclose(zero_lag_smooth(line, 0.9)[10:30], line[10:30], atol=1e-12)


# ----------------------------------------------------------------------------- divergence


def test_divergence_rule_stops_in_the_blow_up() -> None:
    losses = synthetic_loss()
    step = stop_step(losses)
    assert step is not None
    assert 0.3 < LRS[step] < 10.0  # after the blow-up started, before the sweep's end
    assert 0.1 * np.exp(4.0 * (math.log10(LRS[step]) + 1.0)) > 2.0  # the loss really rose


@pytest.mark.parametrize("seed", range(3))
def test_divergence_stop_ignores_the_loss_offset_and_scale(seed: int) -> None:
    losses = synthetic_loss(seed)
    steps = {name: stop_step(fn(losses)) for name, fn in TRANSFORMS.items()}
    assert steps["identity"] is not None
    assert set(steps.values()) == {steps["identity"]}, steps


@pytest.mark.parametrize("seed", range(20))
def test_divergence_rule_does_not_fire_on_a_flat_noisy_start(seed: int) -> None:
    # a sweep starting far below any useful LR: loss flat at ln(10) with batch-to-batch noise
    flat = 2.3 + np.random.default_rng(seed).normal(0.0, 0.05, 100)
    assert stop_step(flat) is None


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_divergence_rule_stops_at_a_non_finite_loss(bad: float) -> None:
    rule = DivergenceRule()
    assert rule.update(2.0) is None
    reason = rule.update(bad)
    assert reason is not None and str(bad) in reason and "step 1" in reason


def test_divergence_threshold_moves_the_stop() -> None:
    losses = synthetic_loss()
    early, late = stop_step(losses, threshold=1.0), stop_step(losses, threshold=10.0)
    assert early is not None and late is not None and early < stop_step(losses) < late


# ----------------------------------------------------------------------------- analyze


def _analyze_until_stop(losses: np.ndarray, **kwargs: object):
    step = stop_step(losses)
    assert step is not None
    return analyze(LRS[: step + 1], losses[: step + 1], **kwargs)


@pytest.mark.parametrize("target", ["constant", "max"])
@pytest.mark.parametrize("seed", range(3))
def test_suggestions_and_bracket_ignore_the_loss_offset_and_scale(seed: int, target: str) -> None:
    losses = synthetic_loss(seed)
    reference = _analyze_until_stop(losses, target=target)
    assert reference.suggestion is not None and reference.bracket is not None
    assert all(v is not None for v in reference.suggestions.values())
    for name, fn in TRANSFORMS.items():
        got = _analyze_until_stop(fn(losses), target=target)
        assert got.suggestion == reference.suggestion, name
        assert got.bracket == reference.bracket, name
        assert got.suggestions == reference.suggestions, name
        assert got.usable == reference.usable, name


@pytest.mark.parametrize("seed", range(3))
def test_bracket_and_suggestion_sit_on_the_fall(seed: int) -> None:
    result = _analyze_until_stop(synthetic_loss(seed))
    assert result.bracket is not None and result.suggestion is not None
    low, high = result.bracket
    # the sigmoid has done 20% of its fall at 4.5e-4 and 90% at 3.5e-3
    assert 2e-4 < low < LR_STAR < high < 1e-2
    assert low <= result.suggestion <= high
    assert LR_STAR / 3 < result.suggestion < 3 * LR_STAR
    assert result.reason == "bracket method, for a constant LR"
    # the steepest point of the fall (against log LR) is LR_STAR itself
    steepest = result.suggestions["steepest"]
    assert steepest is not None and 10**-3.2 < steepest < 10**-2.8
    assert set(result.suggestions) == set(METHODS)
    # smoothed curve: one value per loss, all but the last (the blow-up that stopped it)
    assert len(result.smoothed) == result.usable + 1
    assert np.isfinite(result.smoothed[:-1]).all() and np.isnan(result.smoothed[-1])


def test_target_max_suggests_the_top_of_the_bracket() -> None:
    losses = synthetic_loss()
    constant = _analyze_until_stop(losses, target="constant")
    peak = _analyze_until_stop(losses, target="max")
    assert constant.suggestion is not None and peak.suggestion is not None
    assert peak.bracket is not None
    assert peak.suggestion >= constant.suggestion
    assert peak.suggestion == max(peak.bracket[1], constant.suggestion)
    assert peak.suggestion > 2 * constant.suggestion  # a real difference on this curve
    assert "peak" in peak.reason


@pytest.mark.parametrize("seed", range(5))
def test_flat_noisy_curve_has_no_suggestion(seed: int) -> None:
    flat = 2.3 + np.random.default_rng(seed).normal(0.0, 0.05, 100)
    result = analyze(LRS, flat)
    assert result.suggestion is None
    assert result.bracket is None
    assert "within" not in result.reason and "did not fall" not in result.reason
    assert "no more than the loss's step-to-step noise" in result.reason or (
        "never fell below its starting level" in result.reason
    )
    assert result.suggestions["bracket"] is None


def test_a_fall_within_the_noise_is_reported_as_what_it_was() -> None:
    """The loss fell (1.5 -> ~0.7) but no more than its step-to-step noise: the reason says
    so with the numbers, never "the loss did not fall"."""
    rng = np.random.default_rng(0)
    losses = np.linspace(1.5, 0.69, 100) + rng.normal(0.0, 3.0, 100)
    result = analyze(LRS, losses)
    assert result.suggestion is None
    assert "did not fall" not in result.reason
    assert "the smoothed loss fell from" in result.reason and "noise" in result.reason
    rising = analyze(LRS, np.linspace(1.0, 2.0, 100) + rng.normal(0.0, 0.01, 100))
    assert "never fell below its starting level (1" in rising.reason


def test_leading_non_finite_losses_are_passed_over() -> None:
    """A NaN warm-up step does not end the curve at step 0 (Lightning skips it too): the
    points after it give the same answer as the curve without it."""
    losses = synthetic_loss()
    losses[0] = float("nan")
    losses[1] = float("inf")
    result = analyze(LRS, losses)
    clean = analyze(LRS[2:], losses[2:])
    assert result.suggestion == clean.suggestion is not None
    assert result.bracket == clean.bracket
    assert result.usable == clean.usable
    assert np.isnan(result.smoothed[:2]).all() and np.isfinite(result.smoothed[2:-1]).all()


def test_the_last_point_is_left_out_whatever_it_is() -> None:
    """Lightning's "non-finite values do not alter results": the last loss made NaN, or
    blown up a thousandfold, gives the same suggestion (lrtune leaves the last point out,
    the step that fired the stop rule)."""
    losses = synthetic_loss()[:90]
    reference = analyze(LRS[:90], losses)
    for last in (float("nan"), float("inf"), losses[-1] * 1000):
        changed = losses.copy()
        changed[-1] = last
        got = analyze(LRS[:90], changed)
        assert got.suggestion == reference.suggestion is not None, last
        assert got.bracket == reference.bracket
    kept = analyze(LRS[:90], losses, skip_end=0)  # the last point used: it moves the answer
    assert kept.usable == reference.usable + 1


def test_a_non_finite_point_inside_the_curve_is_left_out() -> None:
    losses = synthetic_loss()
    losses[40] = float("inf")
    result = analyze(LRS, losses)
    assert result.suggestion is not None and np.isnan(result.smoothed[40])
    assert np.isfinite(result.smoothed[41:60]).all()


def test_a_curve_that_is_never_finite_says_so() -> None:
    result = analyze(LRS[:20], np.full(20, np.nan))
    assert result.suggestion is None and result.bracket is None
    assert result.reason == "no suggestion: the loss was never finite"
    assert all(v is None for v in result.suggestions.values())
    assert np.isnan(result.smoothed).all()


def test_too_few_points_give_no_suggestion() -> None:
    result = analyze(LRS[:7], synthetic_loss()[:7])
    assert result.suggestion is None
    assert "too few steps (7 recorded, 7 with a finite loss; at least 8" in result.reason


def test_unknown_method_and_target_are_config_errors() -> None:
    losses = synthetic_loss()
    with pytest.raises(ConfigError, match="unknown suggestion method 'best'"):
        analyze(LRS, losses, method="best")
    with pytest.raises(ConfigError, match="target"):
        analyze(LRS, losses, target="peak")  # type: ignore[arg-type]


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_becomes_the_suggestion_when_chosen(method: str) -> None:
    result = _analyze_until_stop(synthetic_loss(), method=method)
    assert result.suggestion == result.suggestions[method] is not None
    assert result.reason.startswith(method)


# ----------------------------------------------------------------------------- result


def _result(losses: np.ndarray, stop_reason: str | None = None) -> RangeTestResult:
    return RangeTestResult.from_sweep(
        LRS[: len(losses)],
        losses,
        beta=0.9,
        method="bracket",
        target="constant",
        stop_reason=stop_reason,
        num_steps=100,
        seconds=1.25,
        label="adam",
    )


def test_result_round_trips_through_json() -> None:
    losses = synthetic_loss()[:91]
    result = _result(losses, "loss diverged at step 90")
    assert result.suggestion is not None and result.bracket is not None
    data = result.to_dict()
    text = json.dumps(data, allow_nan=False)
    back = RangeTestResult.from_dict(json.loads(text))
    assert back.to_dict() == data and back.suggestion == result.suggestion
    assert back.losses == result.losses
    assert isinstance(back.bracket, tuple)
    assert data["steps_run"] == 91 and data["min_loss"] == result.min_loss
    assert result.min_loss == min(result.smoothed[:-1])  # the last point is left out


def test_result_with_non_finite_losses_round_trips_through_json() -> None:
    losses = synthetic_loss()[:30]
    losses[-1] = float("nan")
    result = _result(losses, "loss is nan at step 29")
    data = result.to_dict()
    assert data["losses"][-1] is None and data["smoothed"][-1] is None
    back = RangeTestResult.from_dict(json.loads(json.dumps(data, allow_nan=False)))
    assert math.isnan(back.losses[-1]) and math.isnan(back.smoothed[-1])
    assert back.losses[:-1] == result.losses[:-1]
    assert back.smoothed[:-1] == result.smoothed[:-1]
    for name in ("lrs", "suggestion", "reason", "suggestions", "bracket", "stop_reason", "label"):
        assert getattr(back, name) == getattr(result, name), name


def test_result_of_a_nan_start_is_json_able() -> None:
    result = _result(np.array([float("nan")]), "loss is nan at step 0")
    assert result.suggestion is None and "never finite" in result.reason
    assert result.min_loss is None
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["suggestion"] is None and data["min_loss"] is None and data["losses"] == [None]


def test_valley_never_wraps_to_the_last_lr() -> None:
    """fastai's valley index can be -1 (the highest LR); lrtune clamps it."""
    lrs = np.geomspace(1e-6, 1.0, 20)
    losses = np.r_[2.0, 2.0, 2.0, 1.9, np.linspace(2.0, 2.05, 16)]
    valley = analyze(lrs, losses, beta=0.0, method="valley", skip_start=0).suggestions["valley"]
    assert valley is not None and valley < 1e-4


def test_steepest_ignores_a_collapse_after_the_minimum() -> None:
    """A steep fall back from a blow-up past the minimum is not a good LR."""
    lrs = np.geomspace(1e-6, 1.0, 60)
    losses = np.r_[np.linspace(2.3, 2.2, 20), np.linspace(2.2, 1.0, 10), np.linspace(1.0, 6.0, 15),
                   np.linspace(6.0, 2.3, 15)]  # fmt: skip
    steepest = analyze(lrs, losses, beta=0.0, method="steepest").suggestions["steepest"]
    minimum_at = lrs[int(np.argmin(losses))]
    assert steepest is not None and steepest <= minimum_at


def _reference_rule(losses: list[float], beta: float, threshold: float, warmup: int) -> list:
    """The stop rule recomputed from scratch at every step (what DivergenceRule keeps up
    to date incrementally)."""
    from lrtune.range_test._math import _noise, ema

    out = []
    for n in range(1, len(losses) + 1):
        if n <= warmup:
            out.append(None)
            continue
        smooth = ema(losses[:n], beta)
        start = float(np.mean(smooth[: max(2, warmup)]))
        best = float(smooth.min())
        head = int(np.argmin(smooth)) + 1
        noise = _noise(np.asarray(losses[: max(head, warmup)]))
        scale = max(start - best, 3 * noise, 1e-12 * max(1.0, abs(best)))
        out.append(float(smooth[-1]) - best > threshold * scale)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_divergence_rule_matches_recomputing_everything(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 120
    curve = np.concatenate([np.linspace(2.3, 0.4, 80), np.linspace(0.4, 3.0, n - 80) ** 2])
    losses = [float(v) for v in curve + rng.normal(0, 0.05 * (seed % 3), n)]
    beta, threshold, warmup = (0.9, 3.0, 10) if seed % 2 else (0.6, 1.5, 5)
    rule = DivergenceRule(beta=beta, threshold=threshold, warmup=warmup)
    got = [rule.update(loss) is not None for loss in losses]
    want = [bool(x) for x in _reference_rule(losses, beta, threshold, warmup)]
    assert got == want
    assert any(got)  # the curve does blow up
