"""The study report: one offline HTML page with the study at a glance, the best
configuration, the best per optimizer, the figures and the top trials (:func:`study_report`,
:func:`write_report`).
"""

from __future__ import annotations

import datetime as _dt
import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrtune.report._figures import _figures
from lrtune.report._view import (
    _cfg,
    _clock,
    _counts,
    _fmt,
    _lr,
    _optimizer,
    _optimizer_order,
    _outcome,
    _View,
    _view,
    _wall_time,
)

if TYPE_CHECKING:
    import optuna


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
            f"<p>{_esc(config.data_label)} / {_esc(config.model_label)}, {unit} per trial; "
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
        from lrtune.results import describe_tuned_vs_tuning_free, tuned_vs_tuning_free

        comparison = tuned_vs_tuning_free(view.trials, view.maximize)
        if comparison is not None:
            line = describe_tuned_vs_tuning_free(comparison, view.metric)
            sections.append('<section id="tuning-free"><h2>Tuned vs tuning-free</h2>'
                            f"<p>{_esc(line)}</p></section>")  # fmt: skip

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
