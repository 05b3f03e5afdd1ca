"""The LR range test's math: LR sweep, smoothing, divergence rule, suggestion methods.

Pure numpy, no Lightning: :class:`~lrtune.LRRangeTest` feeds it losses and asks it when to
stop and what to suggest, so every rule here is testable on synthetic curves.

Conventions:

- The sweep visits ``num_steps`` LRs from ``min_lr`` to ``max_lr`` (exponentially spaced by
  default), one per optimizer step.
- Every rule is invariant to shifting the loss by a constant and to scaling it by a positive
  factor: it looks at *differences* of losses measured in units of how much the loss fell
  (or of its noise), never at ratios to the loss itself.
- Suggestions are computed on a zero-lag smoothed curve (an exponential moving average run
  forwards and backwards), so smoothing does not shift features toward larger LRs the way a
  one-sided EMA with β = 0.98 over 100 points does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from lrtune.errors import ConfigError

__all__ = [
    "METHODS",
    "Analysis",
    "DivergenceRule",
    "analyze",
    "ema",
    "lr_sweep",
    "zero_lag_smooth",
]

Mode = Literal["exponential", "linear"]
Target = Literal["constant", "max"]


def lr_sweep(
    min_lr: float, max_lr: float, num_steps: int, mode: Mode = "exponential"
) -> np.ndarray:
    """The ``num_steps`` learning rates of a sweep from ``min_lr`` to ``max_lr`` inclusive.

    Raises:
        ConfigError: ``min_lr`` >= ``max_lr``, a bound <= 0, ``num_steps`` < 10 or an
            unknown ``mode``.
    """
    if not (math.isfinite(min_lr) and min_lr > 0):
        raise ConfigError(f"min_lr must be > 0, got {min_lr!r}")
    if not (math.isfinite(max_lr) and max_lr > min_lr):
        raise ConfigError(f"max_lr must be > min_lr ({min_lr!r}), got {max_lr!r}")
    if num_steps < 10:
        raise ConfigError(f"num_steps must be >= 10, got {num_steps!r}")
    if mode == "exponential":
        return np.geomspace(min_lr, max_lr, num_steps)
    if mode == "linear":
        return np.linspace(min_lr, max_lr, num_steps)
    raise ConfigError(f"mode must be 'exponential' or 'linear', got {mode!r}")


def ema(values: Sequence[float] | np.ndarray, beta: float) -> np.ndarray:
    """Bias-corrected exponential moving average: ``s_i / (1 - beta ** (i + 1))``."""
    out = np.empty(len(values))
    avg = 0.0
    for i, value in enumerate(values):
        avg = beta * avg + (1 - beta) * value
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def zero_lag_smooth(values: Sequence[float] | np.ndarray, beta: float) -> np.ndarray:
    """Centered Gaussian moving average: smooth, with no shift in position.

    Its width matches the EMA with factor ``beta`` (standard deviation of the EMA's lag,
    ``sqrt(beta) / (1 - beta)``, halved because it looks both ways); the kernel is cut at two
    standard deviations, so a blow-up at the end of a sweep cannot leak far back.
    """
    values = np.asarray(values, dtype=float)
    n = len(values)
    if beta <= 0 or n < 3:
        return values.copy()
    sigma = max(0.5, math.sqrt(beta) / (1 - beta) / 2)  # in points
    half = min(math.ceil(2 * sigma), (n - 1) // 2)
    offsets = np.arange(-half, half + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    return np.convolve(values, kernel, mode="same") / np.convolve(np.ones(n), kernel, mode="same")


def _noise(values: np.ndarray) -> float:
    """Robust standard deviation of one step's loss, from step-to-step differences.

    1.4826 x the median absolute deviation of the differences, divided by sqrt(2): immune to
    the trend of the curve and to a few outliers, and meaningful from a handful of points.
    """
    if len(values) < 3:
        return 0.0
    diffs = np.diff(np.asarray(values, dtype=float))
    return float(1.4826 * np.median(np.abs(diffs - np.median(diffs))) / math.sqrt(2))


@dataclass
class DivergenceRule:
    """Online stop rule, invariant to the loss's offset and scale.

    The loss has diverged when its smoothed value rises above its best smoothed value by
    more than ``threshold`` times the larger of (a) how far it had fallen from its starting
    level and (b) its noise level; or when a loss is NaN or infinite.

    Args:
        beta: EMA factor of the online smoothing (default 0.9).
        threshold: Allowed rise, in units of the fall so far (default 3.0).
        warmup: Steps before the rule can fire (default 10).
    """

    beta: float = 0.9
    threshold: float = 3.0
    warmup: int = 10
    _losses: list[float] = field(default_factory=list, repr=False)
    # the EMA, its best value and where, and the noise, kept up to date step by step (the
    # same numbers as recomputing them from all losses, without O(steps) work per step)
    _smooth: list[float] = field(default_factory=list, repr=False)
    _avg: float = field(default=0.0, repr=False)
    _best: float = field(default=math.inf, repr=False)
    _head: int = field(default=0, repr=False)
    _noise_at: tuple[int, float] = field(default=(-1, 0.0), repr=False)

    def update(self, loss: float) -> str | None:
        """Add one loss; return why the sweep must stop, or ``None`` to go on."""
        if not math.isfinite(loss):
            return f"loss is {loss} at step {len(self._losses)}"
        self._losses.append(loss)
        n = len(self._losses)
        self._avg = self.beta * self._avg + (1 - self.beta) * loss
        self._smooth.append(self._avg / (1 - self.beta**n))
        if self._smooth[-1] < self._best:
            self._best, self._head = self._smooth[-1], n  # noise of the falling part only
        if n <= self.warmup:
            return None
        start = float(np.mean(self._smooth[: max(2, self.warmup)]))
        best = self._best
        prefix = max(self._head, self.warmup)
        if self._noise_at[0] != prefix:
            self._noise_at = (prefix, _noise(np.asarray(self._losses[:prefix])))
        noise = self._noise_at[1]
        scale = max(start - best, 3 * noise, 1e-12 * max(1.0, abs(best)))
        rise = float(self._smooth[-1]) - best
        if rise > self.threshold * scale:
            return (
                f"loss diverged at step {n - 1}: smoothed loss rose {rise:.3g} above its best, "
                f"more than {self.threshold:g}x the fall of {start - best:.3g}"
            )
        return None


# ----------------------------------------------------------------------------- methods
# Each takes (log10 LRs, smoothed losses, noise level) of the usable part of the sweep and
# returns an index, or raises _NoSuggestion with the reason.


class _NoSuggestion(Exception):
    pass


def _steepest(log_lrs: np.ndarray, smooth: np.ndarray, noise: float) -> int:
    """Most negative slope of the loss against log10(LR) (not against LR itself), looked
    for up to the loss minimum: a collapse past it can fall steeply too, from a worse loss.
    """
    end = int(np.argmin(smooth)) + 1
    if end < 2:
        return 0
    slope = np.gradient(smooth[:end], log_lrs[:end])
    return int(np.argmin(slope))


def _valley(log_lrs: np.ndarray, smooth: np.ndarray, noise: float) -> int:
    """fastai's ``valley``: about halfway along the longest decreasing run of the curve."""
    n = len(smooth)
    lds = [1] * n
    max_start, max_end = 0, 0
    for i in range(1, n):
        for j in range(i):
            if smooth[i] < smooth[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max(0, max_end - lds[max_end])  # fastai can reach -1: wraps
    sections = (max_end - max_start) / 3
    return int(max_start + int(sections) + int(sections / 2))


def _minimum(log_lrs: np.ndarray, smooth: np.ndarray, noise: float) -> int:
    """Index of the lowest smoothed loss."""
    return int(np.argmin(smooth))


@dataclass(frozen=True)
class _Levels:
    start: float  # starting level of the smoothed loss
    best: float  # lowest smoothed loss
    i_best: int


def _start_points(n: int) -> int:
    """How many leading points make up the starting level of a curve of ``n`` points."""
    return max(2, n // 20)


def _levels(smooth: np.ndarray) -> _Levels:
    k = _start_points(len(smooth))
    i_best = int(np.argmin(smooth))
    return _Levels(float(np.mean(smooth[:k])), float(smooth[i_best]), i_best)


def bracket_indices(
    smooth: np.ndarray, noise: float, *, low_fall: float = 0.2, high_fall: float = 0.9
) -> tuple[int, int]:
    """Where the loss falls well: from ``low_fall`` to ``high_fall`` of its total fall.

    No bracket when the total fall is within one noise level (robust std of a single
    step's loss, from step-to-step differences).

    ``low`` is the first point whose smoothed loss has fallen by ``low_fall`` of the whole
    fall (start level to minimum); ``high`` the first point that has fallen by
    ``high_fall`` of it. Both are found by level crossing, so noise in the slope does not
    move them.

    Raises:
        _NoSuggestion: The loss did not fall by more than its noise.
    """
    lv = _levels(smooth)
    fall = lv.start - lv.best
    if fall <= 1e-12 * max(1.0, abs(lv.best)) or lv.i_best < _start_points(len(smooth)):
        raise _NoSuggestion(
            f"the smoothed loss never fell below its starting level ({lv.start:.4g}, its "
            f"step-to-step noise {noise:.3g}) during the sweep (a lower min_lr or a higher "
            "max_lr, or check that the model learns)"
        )
    if fall <= noise:
        raise _NoSuggestion(
            f"the smoothed loss fell from {lv.start:.4g} to {lv.best:.4g}, no more than the "
            f"loss's step-to-step noise ({noise:.3g}): too little to place an LR (more "
            "num_steps, a wider min_lr..max_lr, or larger batches)"
        )
    head = smooth[: lv.i_best + 1]
    low = int(np.argmax(head <= lv.start - low_fall * fall))
    high = int(np.argmax(head <= lv.start - high_fall * fall))
    return low, max(low, high)


def _robust(fraction: float) -> Callable[[np.ndarray, np.ndarray, float], int]:
    def method(log_lrs: np.ndarray, smooth: np.ndarray, noise: float) -> int:
        low, high = bracket_indices(smooth, noise)
        target = log_lrs[low] + fraction * (log_lrs[high] - log_lrs[low])
        return int(np.argmin(np.abs(log_lrs - target)))

    method.__doc__ = (
        f"lrtune's method: {fraction:g} of the way (in log LR) from the start of the fall "
        "to its 90% point."
    )
    return method


METHODS: dict[str, Callable[[np.ndarray, np.ndarray, float], int]] = {
    "steepest": _steepest,
    "valley": _valley,
    "minimum": _minimum,
    "bracket": _robust(0.5),
}
"""Suggestion methods by name; ``minimum`` is reported divided by 10 (fastai's rule)."""

_DIVISORS = {"minimum": 10.0}


def _clip_blow_up(losses: np.ndarray) -> np.ndarray:
    """Cap losses at the start level plus the whole fall, so a blow-up cannot dominate.

    Points above that cap lie past the useful range anyway; capping them (a shift- and
    scale-invariant rule) keeps their huge values out of their neighbours' smoothing.
    """
    if len(losses) < 3:
        return losses
    start = float(np.median(losses[: max(3, len(losses) // 20)]))
    cap = start + max(start - float(losses.min()), 0.0)
    return np.minimum(losses, cap)


@dataclass(frozen=True)
class Analysis:
    """What a sweep's losses say.

    Attributes:
        smoothed: Zero-lag smoothed losses (same length as the losses; NaN at the points
            left out: non-finite losses and the last ``skip_end``).
        usable: Number of points the suggestions look at.
        suggestions: LR suggested by each method (``None`` where it has none).
        suggestion: The chosen method's LR, adjusted for ``target``, or ``None``.
        reason: Why there is no suggestion, or how it was made.
        bracket: ``(low, high)`` LRs where the loss falls well, or ``None``.
    """

    smoothed: np.ndarray
    usable: int
    suggestions: dict[str, float | None]
    suggestion: float | None
    reason: str
    bracket: tuple[float, float] | None


SKIP_END = 1
"""Points at the end of a sweep :func:`analyze` leaves out (Lightning's ``skip_end``): the
step that fired the stop rule (docs/BENCHMARKS.md, issue 22: no regret lost, a little won)."""


def analyze(
    lrs: Sequence[float],
    losses: Sequence[float],
    *,
    beta: float = 0.9,
    method: str = "bracket",
    target: Target = "constant",
    skip_start: int = 2,
    skip_end: int | None = None,
) -> Analysis:
    """Smooth the sweep's losses and compute every method's suggestion.

    Args:
        lrs: LRs of the recorded steps.
        losses: Loss at each recorded step. Non-finite values are left out wherever they
            are (a NaN warm-up step at the start, a final NaN), as Lightning does.
        beta: Smoothing factor (default 0.9).
        method: Which method's LR becomes ``suggestion`` (see :data:`METHODS`).
        target: ``constant`` for a working constant LR; ``max`` for the peak LR of a
            one-cycle or warm-up schedule: the bracket's upper end (where the loss has done
            90% of its fall), or the method's LR if that is higher.
        skip_start: Finite points at the start ignored by the methods (default 2).
        skip_end: Recorded points at the end left out (default :data:`SKIP_END`, 1).
    """
    if method not in METHODS:
        raise ConfigError(f"unknown suggestion method {method!r}; known: {', '.join(METHODS)}")
    if target not in ("constant", "max"):
        raise ConfigError(f"target must be 'constant' or 'max', got {target!r}")
    lrs_a = np.asarray(lrs, dtype=float)
    losses_a = np.asarray(losses, dtype=float)
    n = len(losses_a)
    end = SKIP_END if skip_end is None else skip_end
    keep = np.isfinite(losses_a)
    keep[max(0, n - end) :] = False
    kept = np.flatnonzero(keep)
    usable = len(kept)
    smoothed = np.full(n, np.nan)
    smoothed[kept] = zero_lag_smooth(_clip_blow_up(losses_a[kept]), beta)
    empty: dict[str, float | None] = {name: None for name in METHODS}
    if usable - skip_start < 5:
        finite = int(np.isfinite(losses_a).sum())
        reason = (
            "the loss was never finite"
            if finite == 0
            else f"too few steps ({n} recorded, {finite} with a finite loss; at least "
            f"{skip_start + 5 + end} needed)"
        )
        return Analysis(smoothed, usable, empty, None, f"no suggestion: {reason}", None)
    lrs_a, losses_a, smoothed_kept = lrs_a[kept], losses_a[kept], smoothed[kept]
    swept = lrs_a[skip_start:]  # suggestions are these LRs exactly, not 10 ** log10(lr)
    log_lrs = np.log10(swept)
    smooth = smoothed_kept[skip_start:]
    head = slice(0, max(int(np.argmin(smooth)) + 1, 10))  # the fall, not the blow-up
    noise = _noise(losses_a[skip_start:][head])
    suggestions: dict[str, float | None] = {}
    reasons: dict[str, str] = {}
    for name, fn in METHODS.items():
        try:
            index = fn(log_lrs, smooth, noise)
            suggestions[name] = float(swept[index]) / _DIVISORS.get(name, 1.0)
        except _NoSuggestion as why:
            suggestions[name] = None
            reasons[name] = str(why)
    try:
        low, high = bracket_indices(smooth, noise)
        bracket: tuple[float, float] | None = (float(swept[low]), float(swept[high]))
    except _NoSuggestion as why:
        bracket = None
        reasons.setdefault("bracket", str(why))
    chosen = suggestions[method]
    if chosen is not None and target == "max" and bracket is not None:
        chosen = max(bracket[1], chosen)
    if chosen is None:
        reason = "no suggestion: " + reasons.get(method, "the method found none")
    else:
        reason = f"{method} method, for a {'peak' if target == 'max' else 'constant'} LR"
    return Analysis(smoothed, usable, suggestions, chosen, reason, bracket)


def probe_candidates(
    lrs: Sequence[float],
    smoothed: Sequence[float],
    suggestion: float,
    *,
    count: int = 5,
    spacing: float = 1 / 3,
    below: int = 0,
    reach: float = 1.0,
    grid: bool = False,
    offset: float = 0.0,
) -> list[float]:
    """Constant LRs to verify a sweep's suggestion with: ``count`` LRs ``spacing`` decades
    apart, ``below`` of them under ``suggestion`` and the rest above it, none above
    ``reach`` times the stability edge (the LR where the smoothed loss was lowest: beyond
    it the loss rose). With ``grid`` the candidates lie on the fixed log grid
    ``10 ** ((k + offset) * spacing)`` (``suggestion`` rounded to its nearest point first),
    so that runs whose sweeps differ a little probe the same LRs.

    A range test changes the LR every step and favours LRs that are too small (a greedy,
    short-horizon signal); short constant-LR probes are biased the other way, so the
    candidates reach above the suggestion. None is below it by default (``below=0``): the
    one below won 3 of 90 benchmark runs (docs/benchmarks-history.md, issue 14, third round).
    """
    if count < 1 or spacing <= 0 or below < 0:
        raise ConfigError(
            f"probe candidates need count >= 1, spacing > 0, below >= 0; got {count}, "
            f"{spacing}, {below}"
        )
    finite = [(s, lr) for lr, s in zip(lrs, smoothed, strict=False) if math.isfinite(s)]
    edge = min(finite)[1] if finite else suggestion
    edge = max(edge * reach, suggestion)
    if grid:
        k = round(math.log10(suggestion) / spacing - offset)
        anchor = 10 ** (spacing * (k + offset))
    else:
        anchor = suggestion
    out = [anchor * 10 ** (spacing * k) for k in range(-below, count - below)]
    kept = [lr for lr in out if lr <= edge * (1 + 1e-9)]
    return kept if len(kept) >= 2 else out[: below + 2]


def fit_probe(
    probes: Sequence[Mapping[str, float]], winner: float, *, spacing: float = 1 / 3
) -> float:
    """Refine ``winner`` between its neighbouring candidates: the vertex of the parabola
    through the held-out losses (vs log10 LR) of the winner and the candidates ``spacing``
    decades below and above it, from the longest probes that scored all three, kept within
    half a spacing of ``winner``. ``winner`` itself when it has no scored neighbour on both
    sides or the three losses are not convex.

    Candidates a third of a decade apart quantise the answer: seeds that agree up to noise
    land on neighbouring candidates. The vertex moves with the losses continuously.
    """
    centre = math.log10(winner)
    by_steps: dict[float, dict[int, float]] = {}
    for probe in probes:
        offset = (math.log10(probe["lr"]) - centre) / spacing
        if abs(offset - round(offset)) < 1e-6 and abs(round(offset)) <= 1:
            by_steps.setdefault(probe["steps"], {})[round(offset)] = probe["loss"]
    for steps in sorted(by_steps, reverse=True):
        scores = by_steps[steps]
        if all(k in scores and math.isfinite(scores[k]) for k in (-1, 0, 1)):
            low, mid, high = scores[-1], scores[0], scores[1]
            curvature = low - 2 * mid + high
            if curvature <= 0:
                return winner
            vertex = 0.5 * (low - high) / curvature  # in units of spacing
            return float(10 ** (centre + spacing * min(0.5, max(-0.5, vertex))))
    return winner
