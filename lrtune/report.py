"""Figures and self-contained HTML (plotly is imported here, when a figure is made)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from lrtune.lr_range import LRFinderResult

__all__ = ["lr_curves_figure", "write_html"]


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _y_range(results: Sequence[LRFinderResult]) -> list[float] | None:
    """Show the fall and the bottom; don't let an exploding tail flatten the curve."""
    lows, highs = [], []
    for result in results:
        smooth = _finite(result.smoothed)
        if not smooth:
            continue
        start = max(smooth[: max(2, len(smooth) // 10)])
        lows.append(min(smooth))
        highs.append(start)
    if not lows:
        return None
    low, high = min(lows), max(highs)
    span = max(high - low, 1e-12)
    return [low - 0.1 * span, high + 0.4 * span]


def lr_curves_figure(results: Sequence[LRFinderResult], *, title: str | None = None) -> go.Figure:
    """Loss vs LR (log axis) for one or more range tests, overlaid.

    Each result gets its raw losses (faint points), its smoothed curve, its bracket (the LRs
    where the loss falls well) shaded, and its suggestion marked by a dashed line.
    """
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    fig = go.Figure()
    palette = qualitative.Plotly
    y_range = _y_range(results)
    y0, y1 = y_range if y_range is not None else (0.0, 1.0)
    for i, result in enumerate(results):
        color = palette[i % len(palette)]
        name = result.label or f"run {i + 1}"
        fig.add_trace(
            go.Scatter(
                x=result.lrs, y=result.losses, mode="markers", name=f"{name} (raw)",
                marker={"size": 4, "color": color, "opacity": 0.3}, legendgroup=name,
                showlegend=False, hovertemplate="lr %{x:.3g}<br>loss %{y:.4g}<extra></extra>",
            )
        )  # fmt: skip
        fig.add_trace(
            go.Scatter(
                x=result.lrs, y=result.smoothed, mode="lines", name=name,
                line={"color": color, "width": 2}, legendgroup=name,
                hovertemplate=f"{name}<br>lr %{{x:.3g}}<br>smoothed %{{y:.4g}}<extra></extra>",
            )
        )  # fmt: skip
        if result.bracket is not None:
            lo, hi = result.bracket
            fig.add_trace(
                go.Scatter(
                    x=[lo, hi, hi, lo, lo], y=[y0, y0, y1, y1, y0], fill="toself",
                    fillcolor=color, opacity=0.12, line={"width": 0}, mode="lines",
                    name=f"{name} bracket {lo:.2g}–{hi:.2g}", legendgroup=name,
                    hoverinfo="name",
                )
            )  # fmt: skip
        if result.suggestion is not None:
            fig.add_trace(
                go.Scatter(
                    x=[result.suggestion, result.suggestion], y=[y0, y1], mode="lines",
                    line={"color": color, "dash": "dash", "width": 1.5},
                    name=f"{name} suggestion {result.suggestion:.3g}", legendgroup=name,
                    hoverinfo="name",
                )
            )  # fmt: skip
    fig.update_xaxes(type="log", title_text="learning rate (log scale)")
    fig.update_yaxes(title_text="training loss", range=y_range)
    fig.update_layout(
        title=title or "LR range test",
        template="plotly_white",
        legend={"groupclick": "togglegroup"},
        hovermode="closest",
    )
    return fig


def write_html(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as one self-contained HTML file (plotly.js inlined: opens offline)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(path, include_plotlyjs=True, full_html=True)
    return path
