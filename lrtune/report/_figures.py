"""The plotly figures: LR range-test curves (:func:`lr_curves_figure`,
:func:`plot_lr_range`), the study's own figures (metric per optimizer, LR vs metric with the
range-test bracket, learning curves with pruned and diverged trials marked), Optuna's plots
over a derived study, and :func:`write_html` for one figure as an offline file.

plotly is imported inside each function, when a figure is made, so importing this module
stays light.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrtune.report._view import (
    _cfg,
    _fmt,
    _last_value,
    _lr,
    _optimizer,
    _optimizer_order,
    _outcome,
    _View,
)

if TYPE_CHECKING:
    import optuna
    import plotly.graph_objects as go

    from lrtune.range_test import RangeTestResult


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _y_range(results: Sequence[RangeTestResult]) -> list[float] | None:
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


def lr_curves_figure(results: Sequence[RangeTestResult], *, title: str | None = None) -> go.Figure:
    """Loss vs LR (log axis) for one or more range tests, overlaid.

    Each result gets its raw losses (faint points), its smoothed curve, its bracket (the LRs
    where the loss falls well) shaded, its suggestion marked by a dashed line, and, when it
    was verified, its probes' held-out losses (crosses; larger: the longest probes).
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
        if result.probes:  # the verification stage: each probe's held-out loss
            steps = [int(p["steps"]) for p in result.probes]
            fig.add_trace(
                go.Scatter(
                    x=[p["lr"] for p in result.probes], y=[p["loss"] for p in result.probes],
                    mode="markers", name=f"{name} probes (held-out loss)", legendgroup=name,
                    marker={"symbol": "x", "size": [6 + 6 * (s == max(steps)) for s in steps],
                            "color": color},
                    customdata=steps,
                    hovertemplate=(f"{name} probe<br>lr %{{x:.3g}}<br>%{{customdata}} steps"
                                   "<br>held-out loss %{y:.4g}<extra></extra>"),
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


def plot_lr_range(result: RangeTestResult, *, title: str | None = None) -> go.Figure:
    """Loss vs LR (log axis) for one range test: :func:`lr_curves_figure` of ``[result]``,
    the bracket shaded, the suggestion marked (what :meth:`RangeTestResult.plot` returns)."""
    return lr_curves_figure([result], title=title)


def write_html(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as one self-contained HTML file (plotly.js inlined: opens offline)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(path, include_plotlyjs=True, full_html=True)
    return path


def _palette(names: Sequence[str]) -> dict[str, str]:
    from plotly.colors import qualitative

    colors = qualitative.Plotly + qualitative.D3
    return {name: colors[i % len(colors)] for i, name in enumerate(names)}


def metric_by_optimizer_figure(view: _View) -> go.Figure:
    """The metric of every complete trial per optimizer (box + points), best optimizer first."""
    import plotly.graph_objects as go

    groups: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for trial in view.complete:  # best first, so groups come out best optimizer first
        groups.setdefault(_optimizer(trial), []).append(trial)
    colors = _palette(_optimizer_order(view))
    fig = go.Figure()
    for name, trials in groups.items():
        fig.add_trace(
            go.Box(
                y=[t.value for t in trials], name=name, boxpoints="all", jitter=0.4,
                pointpos=0, marker={"color": colors[name], "size": 7},
                text=[f"trial {t.number}, lr {_fmt(_lr(t), '.3g')}" for t in trials],
                hovertemplate="%{text}<br>" + view.metric + " %{y:.4f}<extra></extra>",
            )
        )  # fmt: skip
    fig.update_layout(
        title=f"{view.metric} of complete trials, per optimizer",
        yaxis_title=view.metric, showlegend=False, template="plotly_white", height=420,
    )  # fmt: skip
    return fig


def lr_vs_metric_figure(view: _View) -> go.Figure:
    """Metric vs LR (log axis), one panel per optimizer, with the range test's bracket.

    Complete trials are dots; pruned trials are grey crosses at their last reported value;
    diverged trials are red crosses along the panel's floor. The shaded band is the
    LR range test's bracket, the dotted lines the LR range the study searched.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = [n for n in _optimizer_order(view) if any(_optimizer(t) == n for t in view.trials)]
    cols = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=names, shared_yaxes=True,
        horizontal_spacing=0.05, vertical_spacing=0.14 if rows > 1 else 0.1,
    )  # fmt: skip
    values = [v for t in view.trials if (v := _last_value(t)) is not None]
    low = min(values) if values else 0.0
    high = max(values) if values else 1.0
    pad = 0.05 * max(high - low, 1e-9)
    floor, top = low - 2 * pad, high + pad
    colors = _palette(_optimizer_order(view))
    legend: set[str] = set()
    for i, name in enumerate(names):
        row, col = i // cols + 1, i % cols + 1
        mine = [t for t in view.trials if _optimizer(t) == name and _lr(t) is not None]
        kinds = {
            "complete": ([t for t in mine if _outcome(t) == "complete"], colors[name], "circle"),
            "pruned": ([t for t in mine if _outcome(t) == "pruned"], "#9e9e9e", "x-thin-open"),
            "diverged": ([t for t in mine if _outcome(t) == "diverged"], "#d62728", "x"),
        }
        for kind, (trials, color, symbol) in kinds.items():
            if not trials:
                continue
            ys = [floor if kind == "diverged" else _last_value(t) for t in trials]
            first = kind not in legend
            legend.add(kind)
            text = [
                f"trial {t.number} ({kind}) "
                + str(t.user_attrs.get("diverged") or t.user_attrs.get("pruned") or "")
                for t in trials
            ]
            fig.add_trace(
                go.Scatter(
                    x=[_lr(t) for t in trials], y=ys, mode="markers", name=kind,
                    legendgroup=kind, showlegend=first,
                    marker={"color": color, "symbol": symbol, "size": 8,
                            "line": {"width": 1.5, "color": color}},
                    text=text,
                    hovertemplate="%{text}<br>lr %{x:.3g}<br>" + view.metric
                    + " %{y:.4f}<extra></extra>",
                ),
                row=row, col=col,
            )  # fmt: skip
        entry = view.lr_auto.get(name) or {}
        bracket = (entry.get("result") or {}).get("bracket")
        if bracket:
            lo, hi = bracket
            first = "bracket" not in legend
            legend.add("bracket")
            fig.add_trace(
                go.Scatter(
                    x=[lo, hi, hi, lo, lo], y=[floor, floor, top, top, floor], fill="toself",
                    fillcolor=colors[name], opacity=0.15, line={"width": 0}, mode="lines",
                    name="range-test bracket", legendgroup="bracket",
                    showlegend=first, hoverinfo="name",
                ),
                row=row, col=col,
            )  # fmt: skip
        searched = entry.get("range")
        if searched:
            first = "range" not in legend
            legend.add("range")
            for x in searched:
                fig.add_trace(
                    go.Scatter(
                        x=[x, x], y=[floor, top], mode="lines", name="searched LR range",
                        legendgroup="range", showlegend=first and x == searched[0],
                        line={"color": "#555", "dash": "dot", "width": 1}, hoverinfo="name",
                    ),
                    row=row, col=col,
                )  # fmt: skip
    fig.update_xaxes(type="log", title_text="learning rate")
    fig.update_yaxes(range=[floor - pad, top + pad])
    fig.update_yaxes(title_text=view.metric, col=1)
    fig.update_layout(
        title=f"{view.metric} vs learning rate, per optimizer", template="plotly_white",
        height=320 * rows + 100,
    )  # fmt: skip
    return fig


def learning_curves_figure(view: _View) -> go.Figure:
    """The reported metric per step for every trial, coloured by optimizer; pruned trials
    dotted and faint, diverged trials red, running trials grey."""
    import plotly.graph_objects as go

    colors = _palette(_optimizer_order(view))
    fig = go.Figure()
    shown: set[str] = set()
    for trial in view.trials:
        if not trial.intermediate_values:
            continue
        steps = sorted(trial.intermediate_values)
        outcome = _outcome(trial)
        name = _optimizer(trial)
        color = {"diverged": "#d62728", "running": "#9e9e9e"}.get(outcome, colors[name])
        dash = {"pruned": "dot", "diverged": "dash", "running": "dashdot"}.get(outcome)
        group = name if outcome == "complete" else outcome
        label = f"{name} (complete)" if outcome == "complete" else outcome
        fig.add_trace(
            go.Scatter(
                x=steps, y=[trial.intermediate_values[s] for s in steps], mode="lines+markers",
                line={"color": color, "dash": dash, "width": 2 if outcome == "complete" else 1},
                marker={"size": 4}, opacity=1.0 if outcome == "complete" else 0.55,
                name=label, legendgroup=group, showlegend=group not in shown,
                hovertemplate=f"trial {trial.number} {name} lr {_fmt(_lr(trial), '.3g')} "
                f"({outcome})<br>step %{{x}}<br>{view.metric} %{{y:.4f}}<extra></extra>",
            )
        )  # fmt: skip
        shown.add(group)
    unit = "epoch"
    if view.config is not None and view.config.budget.epochs is None:
        unit = "step"
    else:
        fig.update_xaxes(dtick=1)  # whole epochs, not 0.5
    fig.update_layout(
        title=f"Learning curves: {view.metric} per {unit} (pruned dotted, diverged red)",
        xaxis_title=unit, yaxis_title=view.metric, template="plotly_white", height=460,
    )  # fmt: skip
    return fig


def _derived_study(view: _View) -> optuna.Study | None:
    """The complete trials as an in-memory study over what every trial has (optimizer, LR,
    weight decay, schedule, clipping, ...), so Optuna's importance and parallel-coordinate
    plots see the LR as one parameter rather than one per optimizer (``adam.lr``, ...)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    rows: list[tuple[optuna.trial.FrozenTrial, dict[str, Any]]] = []
    for trial in view.complete:
        cfg = _cfg(trial)
        if not cfg:
            return None
        opt = cfg.get("optimizer", {})
        rows.append(
            (
                trial,
                {
                    "optimizer": opt.get("name"),
                    "lr": opt.get("lr"),
                    "weight_decay": (opt.get("params") or {}).get("weight_decay"),
                    "schedule": (cfg.get("schedule") or {}).get("name"),
                    "clip": (cfg.get("clip") or {}).get("kind"),
                    "batch_size": cfg.get("batch_size"),
                    **{f"model.{k}": v for k, v in (cfg.get("model_options") or {}).items()},
                },
            )
        )
    if len(rows) < 2:
        return None
    names = [k for k in rows[0][1] if all(r[1].get(k) is not None for r in rows)]
    dists: dict[str, Any] = {}
    for name in names:
        values = [r[1][name] for r in rows]
        if len({repr(v) for v in values}) < 2:
            continue  # the same in every trial: nothing to attribute
        if all(isinstance(v, float) for v in values):
            lo, hi = min(values), max(values)
            dists[name] = FloatDistribution(lo, hi, log=lo > 0)
        else:
            dists[name] = CategoricalDistribution(sorted({str(v) for v in values}))
    if not dists:
        return None
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line
    try:
        derived = optuna.create_study(direction=view.study.direction)
    finally:
        optuna.logging.set_verbosity(verbosity)
    for trial, resolved in rows:
        params = {k: (resolved[k] if isinstance(d, FloatDistribution) else str(resolved[k]))
                  for k, d in dists.items()}  # fmt: skip
        derived.add_trial(
            optuna.trial.create_trial(params=params, distributions=dists, value=trial.value)
        )
    return derived


def _optuna_figure(name: str, *args: Any, **kwargs: Any) -> go.Figure | str:
    """An ``optuna.visualization`` plot, or a one-line reason it cannot be drawn."""
    import optuna

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return getattr(optuna.visualization, name)(*args, **kwargs)  # type: ignore[no-any-return]
    except (ValueError, RuntimeError, ZeroDivisionError) as error:
        return f"{name.replace('plot_', '').replace('_', ' ')}: not available ({error})"


def _figures(view: _View) -> list[tuple[str, str, go.Figure | str]]:
    """(section id, heading, figure or a message) for each plot of the report."""
    import optuna

    from lrtune.range_test import RangeTestResult

    complete = view.complete
    need = "needs at least one complete trial"
    out: list[tuple[str, str, go.Figure | str]] = []
    if complete:
        history = _optuna_figure("plot_optimization_history", view.study, target_name=view.metric)
        if not isinstance(history, str):
            history.update_layout(template="plotly_white", height=420)
        out.append(("history", "Optimization history", history))
        out.append(
            ("by-optimizer", f"{view.metric} per optimizer", metric_by_optimizer_figure(view))
        )
    else:
        out.append(("history", "Optimization history", need))
    derived = _derived_study(view)
    if derived is None:
        why = "needs at least two complete trials that differ in a hyperparameter"
        out.append(("importance", "Hyperparameter importance", why))
        out.append(("parallel", "Parallel coordinates", why))
    else:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        importance = _optuna_figure(
            "plot_param_importances", derived, evaluator=evaluator, target_name=view.metric
        )
        parallel = _optuna_figure("plot_parallel_coordinate", derived, target_name=view.metric)
        for figure in (importance, parallel):
            if not isinstance(figure, str):
                figure.update_layout(template="plotly_white", height=440)
        out.append(("importance", "Hyperparameter importance (fANOVA)", importance))
        out.append(("parallel", "Parallel coordinates", parallel))
    if any(_lr(t) is not None for t in view.trials):
        out.append(("lr", "Learning rate vs metric", lr_vs_metric_figure(view)))
    if any(t.intermediate_values for t in view.trials):
        out.append(("curves", "Learning curves", learning_curves_figure(view)))
    results = [
        RangeTestResult.from_dict(entry["result"])
        for entry in view.lr_auto.values()
        if isinstance(entry, dict) and entry.get("result")
    ]
    if results:
        out.append(("range-test", "LR range tests (lr: auto)",
                    lr_curves_figure(results, title="LR range test per optimizer")))  # fmt: skip
    if view.trials:
        timeline = _optuna_figure("plot_timeline", view.study)
        if not isinstance(timeline, str):
            timeline.update_layout(template="plotly_white", height=360)
        out.append(("timeline", "Timeline (workers, pruning)", timeline))
    return out
