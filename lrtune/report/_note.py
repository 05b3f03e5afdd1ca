"""The markdown study note for optuna-dashboard: the question, the search space, trial counts,
``lr: auto``'s ranges, the best trial so far and the best per optimizer. No plotly here.
"""

from __future__ import annotations

from typing import Any

from lrtune.report._view import _fmt


def study_note(study: Any, config: Any, lr_auto: dict[str, Any] | None = None) -> str:
    """Markdown note for optuna-dashboard: question, space, best so far, best per optimizer.

    Args:
        study: The ``optuna.Study``.
        config: Its :class:`~lrtune.config.StudyConfig`.
        lr_auto: Per-optimizer LR ranges found by ``lr: auto`` (as stored in the study).
    """
    from optuna.trial import TrialState

    from lrtune.results import (
        describe_tuned_vs_tuning_free,
        trials_with_tests,
        tuned_vs_tuning_free,
    )
    from lrtune.space import describe_space

    trials = trials_with_tests(study)
    count = {state: sum(t.state == state for t in trials) for state in TrialState}
    diverged = sum("diverged" in t.user_attrs for t in trials)
    space = config.space
    lines = [f"# {config.name}", ""]
    if config.question:
        lines += [f"**Question:** {config.question}", ""]
    lines += [
        f"- data: `{config.data_label}`, model: `{config.model_label}`, budget: "
        f"{config.budget.epochs or config.budget.steps} "
        f"{'epochs' if config.budget.epochs else 'steps'} per trial",
        f"- objective: {config.objective.resolved_direction} `{config.objective.metric}`",
        f"- optimizers: {', '.join(space.optimizers)}",
        f"- LR: {'auto (range test per optimizer)' if space.lr.auto else 'fixed bounds'}"
        f"{', one parameter per optimizer' if space.lr.linked else ', shared'}",
        f"- schedules: {', '.join(s.name for s in space.schedules)}; clipping: "
        f"{', '.join(space.clip)}",
        f"- sampler: {config.sampler.name}, pruner: {config.pruner.name}, seed {config.seed}",
        *(f"- searched: {line}" for line in describe_space(config)),
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
        name = str(trial.params.get("optimizer") or trial.user_attrs.get("baseline"))
        if name in seen:
            continue
        seen.add(name)
        lr = trial.user_attrs.get("config", {}).get("optimizer", {}).get("lr", float("nan"))
        lines.append(
            f"| {name} | {trial.number} | {trial.value:.4f} | "
            f"{_fmt(trial.user_attrs.get('test_acc'), '.4f')} | {lr:.3g} |"
        )
    comparison = tuned_vs_tuning_free(trials, maximize)
    if comparison is not None:
        lines += ["", "## Tuned vs tuning-free", "",
                  describe_tuned_vs_tuning_free(comparison, config.objective.metric)]  # fmt: skip
    return "\n".join(lines) + "\n"
