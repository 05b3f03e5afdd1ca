"""The callbacks every study trial trains with (lrtune._trial_callbacks), each on its own."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
import torch

from lrtune._trial_callbacks import DivergenceStop, EpochsRun, MetricCheck, PruningReport
from lrtune.errors import MissingMetricError


class _Trial:
    """What the callbacks use of an ``optuna.Trial``."""

    def __init__(self, prune: bool = False) -> None:
        self.user_attrs: dict[str, Any] = {}
        self.reports: list[tuple[float, int]] = []
        self.prune = prune

    def set_user_attr(self, key: str, value: Any) -> None:
        self.user_attrs[key] = value

    def report(self, value: float, step: int) -> None:
        self.reports.append((value, step))

    def should_prune(self) -> bool:
        return self.prune


def _trainer(**fields: Any) -> Any:
    defaults = {"global_step": 0, "current_epoch": 0, "sanity_checking": False,
                "callback_metrics": {}}  # fmt: skip
    return SimpleNamespace(**{**defaults, **fields})


def test_divergence_stop_lets_a_healthy_loss_go_and_stops_an_explosion() -> None:
    trial = _Trial()
    stop = DivergenceStop(trial)  # type: ignore[arg-type]
    for step, loss in enumerate([2.3, 2.0, 1.5, 1.2, 3.0]):
        stop.on_train_batch_end(_trainer(global_step=step), None, torch.tensor(loss), None, step)  # type: ignore[arg-type]
    assert "diverged" not in trial.user_attrs
    with pytest.raises(optuna.TrialPruned, match=r"diverged at step 9: loss exploded to 80"):
        for step, loss in enumerate([40.0, 80.0], start=8):
            stop.on_train_batch_end(_trainer(global_step=step), None, {"loss": torch.tensor(loss)},
                                    None, step)  # fmt: skip
    assert trial.user_attrs["diverged"].startswith("diverged at step 9")


def test_divergence_stop_ends_at_a_nan_and_ignores_skipped_steps() -> None:
    trial = _Trial()
    stop = DivergenceStop(trial)  # type: ignore[arg-type]
    stop.on_train_batch_end(_trainer(), None, None, None, 0)  # type: ignore[arg-type]  # skipped step
    with pytest.raises(optuna.TrialPruned, match="loss is nan"):
        stop.on_train_batch_end(_trainer(global_step=1), None, torch.tensor(math.nan), None, 1)  # type: ignore[arg-type]


def test_metric_check_names_what_was_logged_once() -> None:
    check = MetricCheck("val_acc")
    module = torch.nn.Linear(1, 1)
    check.on_validation_end(_trainer(sanity_checking=True), module)  # type: ignore[arg-type]
    assert not check.checked  # the sanity check does not count
    with pytest.raises(MissingMetricError, match=r"did not log 'val_acc' in validation \(it "
                       r"logged: val/acc, val_loss\)"):  # fmt: skip
        check.on_validation_end(_trainer(callback_metrics={"val_loss": 1, "val/acc": 1}), module)  # type: ignore[arg-type]
    check.on_validation_end(_trainer(), module)  # type: ignore[arg-type]  # checked once only
    MetricCheck("val_acc").on_validation_end(_trainer(callback_metrics={"val_acc": 1}), module)  # type: ignore[arg-type]


def test_epochs_run_records_each_finished_epoch() -> None:
    trial = _Trial()
    record = EpochsRun(trial)  # type: ignore[arg-type]
    for epoch in range(3):
        record.on_train_epoch_end(_trainer(current_epoch=epoch), None)  # type: ignore[arg-type]
    assert trial.user_attrs == {"epochs": 3}


def test_pruning_report_reports_at_the_step_and_says_why_it_pruned() -> None:
    trial = _Trial(prune=True)
    report = PruningReport(trial, "val_acc", by_step=True, pruner="median")  # type: ignore[arg-type]
    trainer = _trainer(global_step=70, callback_metrics={"val_acc": torch.tensor(0.5)})
    with pytest.raises(optuna.TrialPruned):
        report.on_validation_end(trainer, None)  # type: ignore[arg-type]
    assert trial.reports == [(0.5, 70)]
    assert (
        trial.user_attrs["pruned"] == "Trial was pruned at step 70 with val_acc 0.5 (median pruner)"
    )
    going = _Trial(prune=False)
    PruningReport(going, "val_acc", by_step=True, pruner="median").on_validation_end(trainer, None)  # type: ignore[arg-type]
    assert going.reports == [(0.5, 70)] and "pruned" not in going.user_attrs
