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


def study_note(study: Any, config: Any, lr_auto: dict[str, Any] | None = None) -> str:
    """Markdown note for optuna-dashboard: question, space, best so far, best per optimizer.

    Args:
        study: The ``optuna.Study``.
        config: Its :class:`~lrtune.config.StudyConfig`.
        lr_auto: Per-optimizer LR ranges found by ``lr: auto`` (as stored in the study).
    """
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    count = {state: sum(t.state == state for t in trials) for state in TrialState}
    diverged = sum("diverged" in t.user_attrs for t in trials)
    space = config.space
    lines = [f"# {config.name}", ""]
    if config.question:
        lines += [f"**Question:** {config.question}", ""]
    lines += [
        f"- data: `{config.dataset}`, model: `{config.model}`, budget: "
        f"{config.budget.epochs or config.budget.steps} "
        f"{'epochs' if config.budget.epochs else 'steps'} per trial",
        f"- objective: {config.objective.resolved_direction} `{config.objective.metric}`",
        f"- optimizers: {', '.join(space.optimizers)}",
        f"- LR: {'auto (range test per optimizer)' if space.lr.auto else 'fixed bounds'}"
        f"{', one parameter per optimizer' if space.lr.linked else ', shared'}",
        f"- schedules: {', '.join(s.name for s in space.schedules)}; clipping: "
        f"{', '.join(space.clip)}",
        f"- sampler: {config.sampler.name}, pruner: {config.pruner.name}, seed {config.seed}",
        "",
        f"**Trials:** {count[TrialState.COMPLETE]} complete, {count[TrialState.PRUNED]} pruned "
        f"({diverged} diverged), {count[TrialState.FAIL]} failed, "
        f"{count[TrialState.RUNNING]} running",
        "",
    ]
    if lr_auto:
        lines += ["## LR ranges from the range test", "", "| optimizer | range | source |",
                  "|---|---|---|"]  # fmt: skip
        for name, entry in lr_auto.items():
            low, high = entry["range"]
            lines.append(f"| {name} | {low:.3g} – {high:.3g} | {entry['source']} |")
        lines.append("")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        return "\n".join([*lines, "No complete trial yet."])
    maximize = config.objective.resolved_direction == "maximize"
    ordered = sorted(complete, key=lambda t: t.value, reverse=maximize)
    best = ordered[0]
    cfg = best.user_attrs.get("config", {})
    lines += [
        f"## Best so far: trial {best.number}, {config.objective.metric} = {best.value:.4f}",
        "",
        f"`{cfg.get('optimizer', {}).get('name')}` lr={cfg.get('optimizer', {}).get('lr', 0):.3g}"
        f", schedule `{cfg.get('schedule', {}).get('name')}`, clip "
        f"`{cfg.get('clip', {}).get('kind')}`; test_acc "
        f"{best.user_attrs.get('test_acc', float('nan')):.4f}",
        "",
        "## Best per optimizer",
        "",
        f"| optimizer | trial | {config.objective.metric} | test_acc | lr |",
        "|---|---|---|---|---|",
    ]
    seen: set[str] = set()
    for trial in ordered:
        name = str(trial.params.get("optimizer"))
        if name in seen:
            continue
        seen.add(name)
        lr = trial.user_attrs.get("config", {}).get("optimizer", {}).get("lr", float("nan"))
        lines.append(
            f"| {name} | {trial.number} | {trial.value:.4f} | "
            f"{trial.user_attrs.get('test_acc', float('nan')):.4f} | {lr:.3g} |"
        )
    return "\n".join(lines) + "\n"
