"""The outcome of one LR range test: :class:`RangeTestResult`, its analysis and JSON form."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lrtune.range_test._math import Target, analyze

__all__ = ["LRFinderResult", "RangeTestResult"]


@dataclass(eq=False)
class RangeTestResult:
    """The outcome of one LR range test.

    Attributes:
        lrs: LR of each recorded step (first param group).
        losses: Training loss at each step (mean over an accumulation window).
        smoothed: Zero-lag smoothed losses.
        suggestion: Suggested LR, or ``None`` (then ``reason`` says why).
        reason: How the suggestion was made, or why there is none.
        suggestions: LR per suggestion method (``None`` where a method has none).
        bracket: ``(low, high)``: LRs where the loss falls well, or ``None``.
        method: The method behind ``suggestion``.
        target: ``constant`` (a working LR) or ``max`` (a one-cycle/warm-up peak LR).
        stop_reason: Why the sweep ended early (divergence), or ``None``.
        num_steps: Steps the sweep was asked for.
        seconds: Wall time of the sweep, restore included (and the probes').
        label: A name for plots and tables (e.g. the optimizer).
        probes: The verification stage's probes (``verify=True``): one dict per probe run
            with ``lr``, ``steps`` and ``loss`` (held-out loss after the probe), the last
            rung's winner becoming ``suggestion``; empty without verification.
        sweep_suggestion: The sweep's own suggestion (what ``verify=False`` gives).
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float | None
    reason: str
    suggestions: dict[str, float | None]
    bracket: tuple[float, float] | None
    method: str
    target: str
    stop_reason: str | None
    num_steps: int
    seconds: float
    label: str = ""
    probes: list[dict[str, float]] = field(default_factory=list)
    sweep_suggestion: float | None = None

    @classmethod
    def from_sweep(
        cls,
        lrs: Sequence[float],
        losses: Sequence[float],
        *,
        beta: float = 0.9,
        method: str,
        target: Target,
        stop_reason: str | None,
        num_steps: int,
        seconds: float,
        label: str = "",
    ) -> RangeTestResult:
        """Analyse a finished sweep (see :func:`analyze`)."""
        analysis = analyze(lrs, losses, beta=beta, method=method, target=target)
        return cls(
            lrs=[float(v) for v in lrs],
            losses=[float(v) for v in losses],
            smoothed=[float(v) for v in analysis.smoothed],
            suggestion=analysis.suggestion,
            reason=analysis.reason,
            suggestions=analysis.suggestions,
            bracket=analysis.bracket,
            method=method,
            target=target,
            stop_reason=stop_reason,
            num_steps=num_steps,
            seconds=seconds,
            label=label,
            sweep_suggestion=analysis.suggestion,
        )

    def __eq__(self, other: object) -> bool:
        """Equal when the JSON forms are (so a skipped point's NaN equals a NaN)."""
        return isinstance(other, RangeTestResult) and self.to_dict() == other.to_dict()

    @property
    def min_loss(self) -> float | None:
        """Lowest smoothed loss of the sweep (``None`` if no finite loss)."""
        finite = [v for v in self.smoothed if math.isfinite(v)]
        return min(finite) if finite else None

    def to_dict(self) -> dict[str, object]:
        """JSON-able dict (non-finite numbers become ``None``)."""

        def clean(value: float | None) -> float | None:
            return value if value is not None and math.isfinite(value) else None

        return {
            "label": self.label,
            "suggestion": self.suggestion,
            "reason": self.reason,
            "bracket": list(self.bracket) if self.bracket else None,
            "suggestions": self.suggestions,
            "method": self.method,
            "target": self.target,
            "stop_reason": self.stop_reason,
            "num_steps": self.num_steps,
            "steps_run": len(self.lrs),
            "min_loss": self.min_loss,
            "seconds": self.seconds,
            "lrs": self.lrs,
            "losses": [clean(v) for v in self.losses],
            "smoothed": [clean(v) for v in self.smoothed],
            "probes": [{**p, "loss": clean(p["loss"])} for p in self.probes],
            "sweep_suggestion": self.sweep_suggestion,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RangeTestResult:
        """Inverse of :meth:`to_dict` (its ``None`` for a non-finite number becomes NaN)."""

        def num(value: Any) -> float:
            return math.nan if value is None else float(value)

        def maybe(value: Any) -> float | None:
            return None if value is None else float(value)

        bracket, stop = data.get("bracket"), data.get("stop_reason")
        return cls(
            lrs=[num(v) for v in data["lrs"]],
            losses=[num(v) for v in data["losses"]],
            smoothed=[num(v) for v in data["smoothed"]],
            suggestion=maybe(data.get("suggestion")),
            reason=str(data.get("reason", "")),
            suggestions={str(k): maybe(v) for k, v in (data.get("suggestions") or {}).items()},
            bracket=(num(bracket[0]), num(bracket[1])) if bracket else None,
            method=str(data.get("method", "bracket")),
            target=str(data.get("target", "constant")),
            stop_reason=None if stop is None else str(stop),
            num_steps=int(data.get("num_steps", len(data["lrs"]))),
            seconds=float(data.get("seconds", 0.0)),
            label=str(data.get("label", "")),
            probes=[
                {str(k): num(v) for k, v in probe.items()} for probe in data.get("probes") or []
            ],
            sweep_suggestion=maybe(data.get("sweep_suggestion", data.get("suggestion"))),
        )

    def plot(self, *, title: str | None = None) -> object:
        """Loss vs LR (log axis) as a plotly ``Figure``, the bracket shaded, suggestion marked.

        Drawn by :func:`lrtune.report.plot_lr_range`, imported here when called: this module
        is core and never imports plotly itself (the one upward import the layer test
        allows, ``tests/test_architecture.py``).
        """
        from lrtune.report import plot_lr_range

        return plot_lr_range(self, title=title)


LRFinderResult = RangeTestResult  # the name before the range test became one package
