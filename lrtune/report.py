"""Figures, the study report (one offline HTML file) and the dashboard's study note.

plotly is imported here, when a figure is made, so ``import lrtune`` stays light. The study
report uses Optuna's own plots where they fit (optimization history, importances, parallel
coordinates, timeline) and adds what they lack for an LR study: the metric per optimizer,
LR vs metric with the range-test bracket, learning curves with pruned and diverged trials
marked, and the range-test curves. ``lrtune find-lr --out``, :meth:`LRFinderResult.plot`
and the report all draw range tests with :func:`lr_curves_figure`.
"""

from __future__ import annotations

import datetime as _dt
import html
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    import plotly.graph_objects as go

    from lrtune.config import StudyConfig
    from lrtune.lr_range import LRFinderResult

__all__ = ["lr_curves_figure", "study_note", "study_report", "write_html", "write_report"]


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

    from lrtune.study import trials_with_tests

    trials = trials_with_tests(study)
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
        f"({diverged} diverged), "
        f"{sum(t.state == TrialState.FAIL and 'surplus' not in t.user_attrs for t in trials)} "
        "failed, "
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
    lines += [
        "**Figures:** the study's artifacts hold the LR range-test curves and, when a search "
        "ends, the full report (`lrtune report` writes one at any time).",
        "",
    ]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        return "\n".join([*lines, "No complete trial yet."])
    maximize = config.objective.resolved_direction == "maximize"
    ordered = sorted(complete, key=lambda t: float(t.value or 0.0), reverse=maximize)
    best = ordered[0]
    cfg = best.user_attrs.get("config", {})
    lines += [
        f"## Best so far: trial {best.number}, {config.objective.metric} = {best.value:.4f}",
        "",
        f"`{cfg.get('optimizer', {}).get('name')}` lr={cfg.get('optimizer', {}).get('lr', 0):.3g}"
        f", schedule `{cfg.get('schedule', {}).get('name')}`, clip "
        f"`{cfg.get('clip', {}).get('kind')}`; test_acc "
        f"{_fmt(best.user_attrs.get('test_acc'), '.4f')}",
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
            f"{_fmt(trial.user_attrs.get('test_acc'), '.4f')} | {lr:.3g} |"
        )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- study report


@dataclass
class _View:
    """What the report needs from a study, read once."""

    study: optuna.Study
    config: StudyConfig | None
    metric: str
    maximize: bool
    trials: list[optuna.trial.FrozenTrial]
    lr_auto: dict[str, Any] = field(default_factory=dict)

    def state(self, name: str) -> list[optuna.trial.FrozenTrial]:
        return [t for t in self.trials if t.state.name == name]

    @property
    def complete(self) -> list[optuna.trial.FrozenTrial]:
        """Complete trials, best first."""
        done = [t for t in self.state("COMPLETE") if t.value is not None]
        return sorted(done, key=lambda t: float(t.value), reverse=self.maximize)  # type: ignore[arg-type]

    @property
    def diverged(self) -> list[optuna.trial.FrozenTrial]:
        return [t for t in self.trials if "diverged" in t.user_attrs]


def _view(study: optuna.Study) -> _View:
    from lrtune.config import StudyConfig
    from lrtune.errors import ConfigError
    from lrtune.study import trials_with_tests

    if len(study.directions) != 1:
        raise ConfigError(
            f"study {study.study_name!r} has {len(study.directions)} objectives; "
            "the report covers single-objective studies"
        )
    stored = study.user_attrs.get("lrtune.study_config")
    config = None
    if stored is not None:
        try:
            config = StudyConfig.model_validate(stored)
        except ValueError:  # written by another lrtune version: report it as a plain study
            config = None
    metric = config.objective.metric if config is not None else "value"
    return _View(
        study=study,
        config=config,
        metric=metric,
        maximize=study.direction.name == "MAXIMIZE",
        trials=trials_with_tests(study),
        lr_auto=dict(study.user_attrs.get("lrtune.lr_auto") or {}),
    )


def _cfg(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return dict(trial.user_attrs.get("config") or {})


def _optimizer(trial: optuna.trial.FrozenTrial) -> str:
    name = _cfg(trial).get("optimizer", {}).get("name") or trial.params.get("optimizer")
    return str(name) if name is not None else "trials"


def _lr(trial: optuna.trial.FrozenTrial) -> float | None:
    lr = _cfg(trial).get("optimizer", {}).get("lr")
    if lr is None:
        lr = next((v for k, v in trial.params.items() if k == "lr" or k.endswith(".lr")), None)
    return float(lr) if isinstance(lr, (int, float)) else None


def _outcome(trial: optuna.trial.FrozenTrial) -> str:
    if "diverged" in trial.user_attrs:
        return "diverged"
    return {"FAIL": "failed"}.get(trial.state.name, trial.state.name.lower())


def _last_value(trial: optuna.trial.FrozenTrial) -> float | None:
    if trial.value is not None:
        return float(trial.value)
    if trial.intermediate_values:
        value = trial.intermediate_values[max(trial.intermediate_values)]
        return float(value) if math.isfinite(value) else None
    return None


def _fmt(value: Any, spec: str = ".4g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def _palette(names: Sequence[str]) -> dict[str, str]:
    from plotly.colors import qualitative

    colors = qualitative.Plotly + qualitative.D3
    return {name: colors[i % len(colors)] for i, name in enumerate(names)}


def _optimizer_order(view: _View) -> list[str]:
    """Optimizers in the order of the study file, then any others in trial order."""
    names = list(view.config.space.optimizers) if view.config is not None else []
    for trial in view.trials:
        name = _optimizer(trial)
        if name not in names:
            names.append(name)
    return names


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

    from lrtune.lr_range import LRFinderResult

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
        LRFinderResult.from_dict(entry["result"])
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


def _counts(view: _View) -> dict[str, int]:
    states = [t.state.name for t in view.trials]
    return {
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED")
        - len([t for t in view.diverged if t.state.name == "PRUNED"]),
        "diverged": len(view.diverged),
        # trials ended unrun because n_trials was reached (several workers) are not failures
        "failed": sum(
            t.state.name == "FAIL" and "surplus" not in t.user_attrs for t in view.trials
        ),
        "running": states.count("RUNNING"),
        "waiting": states.count("WAITING"),
    }


def _wall_time(view: _View) -> tuple[float, float]:
    """(first start to last finish or now, summed trial durations), in seconds."""
    now = _dt.datetime.now()
    starts = [t.datetime_start for t in view.trials if t.datetime_start is not None]
    ends = [t.datetime_complete or now for t in view.trials if t.datetime_start is not None]
    if not starts:
        return 0.0, 0.0
    wall = (max(ends) - min(starts)).total_seconds()
    busy = sum(
        ((t.datetime_complete or now) - t.datetime_start).total_seconds()
        for t in view.trials
        if t.datetime_start is not None
    )
    return wall, busy


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _yaml(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None).rstrip()


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _best_per_optimizer_table(view: _View) -> str:
    best: dict[str, optuna.trial.FrozenTrial] = {}
    for trial in view.complete:
        best.setdefault(_optimizer(trial), trial)
    counts: dict[str, dict[str, int]] = {}
    for trial in view.trials:
        row = counts.setdefault(_optimizer(trial), {})
        row[_outcome(trial)] = row.get(_outcome(trial), 0) + 1
    rows = []
    for name in [*best, *(n for n in _optimizer_order(view) if n not in best)]:
        if name not in counts:
            continue
        c = counts[name]
        tried = ", ".join(f"{v} {k}" for k, v in sorted(c.items()))
        if name not in best:
            rows.append(f"<tr><td>{_esc(name)}</td><td colspan=5>no complete trial</td>"
                        f"<td>{_esc(tried)}</td></tr>")  # fmt: skip
            continue
        trial = best[name]
        cfg = _cfg(trial)
        rows.append(
            f"<tr><td>{_esc(name)}</td><td>{trial.number}</td><td>{_fmt(trial.value)}</td>"
            f"<td>{_fmt(trial.user_attrs.get('test_acc'))}</td>"
            f"<td>{_fmt(_lr(trial), '.3g')}</td>"
            f"<td>{_esc((cfg.get('schedule') or {}).get('name', '–'))}</td>"
            f"<td>{_esc(tried)}</td></tr>"
        )
    return (
        f"<table><thead><tr><th>optimizer</th><th>best trial</th><th>{_esc(view.metric)}</th>"
        "<th>test_acc</th><th>lr</th><th>schedule</th><th>trials</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _top_trials_table(view: _View, top: int) -> str:
    rows = []
    for rank, trial in enumerate(view.complete[:top], start=1):
        cfg = _cfg(trial)
        opt = cfg.get("optimizer") or {}
        params = ", ".join(f"{k}={_fmt(v, '.3g')}" for k, v in (opt.get("params") or {}).items())
        clip = cfg.get("clip") or {}
        clip_text = clip.get("kind", "–")
        if clip.get("threshold") is not None:
            clip_text += f" {_fmt(clip['threshold'], '.3g')}"
        detail = _yaml(cfg) if cfg else _yaml(trial.params)
        rows.append(
            f"<tr><td>{rank}</td><td>{trial.number}</td><td>{_fmt(trial.value)}</td>"
            f"<td>{_fmt(trial.user_attrs.get('test_acc'))}</td><td>{_esc(_optimizer(trial))}</td>"
            f"<td>{_fmt(_lr(trial), '.3g')}</td><td>{_esc(params)}</td>"
            f"<td>{_esc((cfg.get('schedule') or {}).get('name', '–'))}</td>"
            f"<td>{_esc(clip_text)}</td><td>{_fmt(trial.user_attrs.get('seconds'), '.1f')}</td>"
            f"<td><details><summary>config</summary><pre>{_esc(detail)}</pre></details></td></tr>"
        )
    return (
        f"<table><thead><tr><th>#</th><th>trial</th><th>{_esc(view.metric)}</th>"
        "<th>test_acc</th><th>optimizer</th><th>lr</th><th>optimizer params</th>"
        "<th>schedule</th><th>clip</th><th>seconds</th><th>full config</th></tr></thead>"
        "<tbody>" + "".join(rows) + "</tbody></table>"
    )


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;
background:#f6f7f9}
header{background:#1f2937;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:22px} header p{margin:2px 0;color:#cbd5e1;font-size:14px}
main{padding:16px 28px;max-width:1400px}
section{background:#fff;border:1px solid #e3e6ea;border-radius:8px;margin:14px 0;
padding:14px 18px}
h2{font-size:17px;margin:0 0 10px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #e3e6ea;border-radius:8px;padding:10px 16px;
min-width:130px}
.card b{display:block;font-size:22px} .card span{color:#555;font-size:13px}
.best b{color:#047857}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{border-bottom:1px solid #e3e6ea;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f1f3f5} pre{background:#f6f8fa;padding:8px;font-size:12px;overflow:auto;margin:4px 0}
.note{color:#666;font-style:italic} nav a{margin-right:12px;color:#cbd5e1;font-size:13px}
"""


def study_report(
    study: optuna.Study, *, storage: str | None = None, top: int = 10, plotlyjs: str = "inline"
) -> str:
    """The study as one HTML page: at a glance, the figures, the top trials.

    Args:
        study: Any single-objective ``optuna.Study``; lrtune's studies get the full report
            (their config, LRs and range tests are in the study's attrs), others the
            Optuna plots and tables.
        storage: Storage shown in the header (mask passwords first; default: not shown).
        top: Rows in the top-trials table (default 10).
        plotlyjs: ``"inline"`` (default) puts plotly.js in the page, so it opens offline;
            ``"cdn"`` links it instead (a small file that needs the network).

    Raises:
        ConfigError: The study has several objectives.
    """
    view = _view(study)
    counts = _counts(view)
    wall, busy = _wall_time(view)
    complete = view.complete
    config = view.config
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    status = (
        f"running ({counts['running']} trial{'s' * (counts['running'] != 1)} in progress); "
        f"snapshot at {now}"
        if counts["running"]
        else f"generated {now}"
    )
    header = [f"<h1>Study {_esc(study.study_name)}</h1>"]
    if config is not None and config.question:
        header.append(f"<p><b>Question:</b> {_esc(config.question)}</p>")
    if config is not None:
        budget = config.budget
        unit = f"{budget.epochs} epochs" if budget.epochs else f"{budget.steps} steps"
        header.append(
            f"<p>{_esc(config.dataset)} / {_esc(config.model)}, {unit} per trial; "
            f"{'maximize' if view.maximize else 'minimize'} {_esc(view.metric)}; sampler "
            f"{_esc(config.sampler.name)}, pruner {_esc(config.pruner.name)}, "
            f"seed {config.seed}</p>"
        )
    where = f"storage {_esc(storage)} · " if storage else ""
    header.append(f"<p>{where}{_esc(status)}</p>")

    cards = []
    if complete:
        best = complete[0]
        cards.append(
            f'<div class="card best"><b>{_fmt(best.value)}</b><span>best {_esc(view.metric)} '
            f"(trial {best.number}, {_esc(_optimizer(best))}, "
            f"lr {_fmt(_lr(best), '.3g')})</span></div>"
        )
        if "test_acc" in best.user_attrs:
            cards.append(f'<div class="card"><b>{_fmt(best.user_attrs["test_acc"])}</b>'
                         "<span>its test_acc</span></div>")  # fmt: skip
    for key in ("complete", "pruned", "diverged", "failed", "running"):
        cards.append(f'<div class="card"><b>{counts[key]}</b><span>{key}</span></div>')
    cards.append(f'<div class="card"><b>{_clock(wall)}</b><span>wall time '
                 f"({_clock(busy)} in trials)</span></div>")  # fmt: skip

    sections = [
        f'<section id="glance"><h2>At a glance</h2><div class="cards">{"".join(cards)}</div>'
    ]
    if not view.trials:
        sections.append('<p class="note">This study has no trials yet.</p>')
    elif not complete:
        sections.append('<p class="note">No complete trial yet.</p>')
    sections.append("</section>")
    if complete:
        best = complete[0]
        cfg = _cfg(best)
        body = _yaml(cfg) if cfg else _yaml(best.params)
        hint = (
            "<p>Reproduce: save as <code>best.yaml</code>, then <code>lrtune train --config "
            "best.yaml</code> (every trial used the study seed).</p>"
            if cfg
            else ""
        )
        sections.append(
            f'<section id="best"><h2>Best configuration (trial {best.number})</h2>'
            f"<pre>{_esc(body)}</pre>{hint}</section>"
        )
    if view.trials:
        sections.append('<section id="per-optimizer"><h2>Best per optimizer</h2>'
                        f"{_best_per_optimizer_table(view)}</section>")  # fmt: skip

    plot_config = {"displaylogo": False, "responsive": True}
    for anchor, heading, figure in _figures(view):
        if isinstance(figure, str):
            inner = f'<p class="note">{_esc(figure)}</p>'
        else:
            inner = figure.to_html(
                full_html=False, include_plotlyjs=False, div_id=f"fig-{anchor}",
                config=plot_config,
            )  # fmt: skip
        sections.append(f'<section id="{anchor}"><h2>{_esc(heading)}</h2>{inner}</section>')

    if complete:
        footnote = ""
        if config is not None and config.test == "improving":
            footnote = (
                '<p class="note">test_acc is measured only for trials that were the best of '
                "their optimizer when they finished (<code>test: improving</code>).</p>"
            )
        elif config is not None and config.test == "end":
            footnote = (
                '<p class="note">test_acc is measured when the search ends, for the best '
                "trial of each optimizer (<code>test: end</code>).</p>"
            )
        sections.append(f'<section id="top"><h2>Top {min(top, len(complete))} trials</h2>'
                        f"{_top_trials_table(view, top)}{footnote}</section>")  # fmt: skip
    if config is not None:
        sections.append(
            '<section id="study-file"><h2>Study definition</h2><details><summary>study file '
            f"(as validated)</summary><pre>{_esc(_yaml(config.to_dict()))}</pre></details>"
            "</section>"
        )
    drawn = 'class="plotly-graph-div"' in "".join(sections)
    if not drawn:
        script = ""  # nothing to draw: keep the page small
    elif plotlyjs == "inline":
        from plotly.offline import get_plotlyjs

        script = f'<script type="text/javascript">{get_plotlyjs()}</script>'
    else:
        script = '<script src="https://cdn.plot.ly/plotly-2.35.2.min.js"></script>'
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>lrtune report: {_esc(study.study_name)}</title>"
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_CSS}</style>{script}</head><body>"
        f"<header>{''.join(header)}</header><main>{''.join(sections)}</main></body></html>"
    )


def write_report(
    study: optuna.Study, path: str | Path, *, storage: str | None = None, top: int = 10
) -> Path:
    """Write :func:`study_report` to ``path`` (one self-contained file that opens offline)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = study_report(study, storage=storage, top=top)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
