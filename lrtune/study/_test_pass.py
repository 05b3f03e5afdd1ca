"""``test: end``: the weights of a worker's best trial per optimizer, held on the CPU, and
the test pass over them when the worker ends (results stored in the study's user attrs,
read back by :func:`lrtune.results.trials_with_tests`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TextIO

import optuna
from optuna.trial import TrialState

from lrtune.config import StudyConfig, TrainConfig
from lrtune.results import ATTR_TEST_PREFIX, best_per_optimizer, trials_with_tests

if TYPE_CHECKING:
    import lightning.pytorch as pl

__all__ = ["HeldWeights", "trainer_limits"]


class HeldWeights:
    """``test: end``: the weights of this worker's best trial per optimizer, on the CPU, so
    the test split is evaluated once per optimizer when the worker ends instead of after
    every trial that improved."""

    def __init__(self) -> None:
        self.by_optimizer: dict[str, tuple[int, TrainConfig, dict[str, Any]]] = {}

    def keep(self, number: int, train_config: TrainConfig, module: pl.LightningModule) -> None:
        weights = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
        self.by_optimizer[train_config.optimizer.name] = (number, train_config, weights)

    def test(
        self, study: optuna.Study, config: StudyConfig, progress: TextIO | None, tag: str = ""
    ) -> None:
        """Evaluate the test split for each held trial that is still the best complete trial
        of its optimizer in the study, and store the metrics in the study's user attrs."""
        if not self.by_optimizer:
            return
        from lrtune.training import build_trainer, datamodule_for, module_for

        maximize = config.objective.resolved_direction == "maximize"
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        best = best_per_optimizer(complete, maximize, default="")
        for name, (number, train_config, weights) in sorted(self.by_optimizer.items()):
            if name in best and best[name].number != number:
                continue  # another worker's trial beat it
            datamodule = datamodule_for(train_config)
            module = module_for(train_config, datamodule)
            module.load_state_dict(weights)
            tested = build_trainer(train_config, module=module).test(
                module, datamodule=datamodule, verbose=False
            )
            metrics = {k: float(v) for k, v in tested[0].items()}
            study.set_user_attr(f"{ATTR_TEST_PREFIX}{number}", metrics)
            if progress is not None:
                shown = "  ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))
                print(f"{tag}test split, best {name} trial {number}: {shown}", file=progress)
        self.by_optimizer.clear()

    def retrain_untested(
        self, study: optuna.Study, config: StudyConfig, progress: TextIO | None, tag: str = ""
    ) -> None:
        """Test each optimizer's best complete trial that has no test metrics, its weights
        being gone with the process that trained it (killed before or during its test
        pass): train it again from its stored config (every trial starts from the study's
        seed, so this is the same model, up to the nondeterminism of some GPU kernels),
        then evaluate the test split as :meth:`test` does."""
        from lightning.fabric.utilities.seed import seed_everything

        from lrtune.study import _coordination as coord
        from lrtune.training import build_trainer, can_test, datamodule_for, module_for

        if coord.others_running(study):  # they test the best trials they hold themselves
            return
        maximize = config.objective.resolved_direction == "maximize"
        tested = {t.number for t in trials_with_tests(study)
                  if any(k.startswith("test_") for k in t.user_attrs)}  # fmt: skip
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        best = best_per_optimizer(complete, maximize, default="")
        for name, trial in sorted(best.items()):
            if trial.number in tested or "config" not in trial.user_attrs:
                continue
            train_config = TrainConfig.model_validate(trial.user_attrs["config"])
            seed_everything(train_config.seed, verbose=False)  # as the trial started
            datamodule = datamodule_for(train_config)
            module = module_for(train_config, datamodule)
            if not can_test(module, datamodule):
                continue
            if progress is not None:
                print(f"{tag}test split, best {name} trial {trial.number}: its weights were "
                      "lost with the process that trained it; training it again",
                      file=progress)  # fmt: skip
            trainer = build_trainer(train_config, module=module, **trainer_limits(config))
            trainer.fit(module, datamodule=datamodule)
            self.keep(trial.number, train_config, module)
        self.test(study, config, progress, tag)


def trainer_limits(config: StudyConfig) -> dict[str, Any]:
    """The Trainer arguments of a trial's budget (``epochs`` is the config's own)."""
    budget = config.budget
    if budget.steps is None:
        return {}
    return {
        "max_epochs": -1,
        "max_steps": budget.steps,
        "val_check_interval": budget.report_every or budget.steps,
        "check_val_every_n_epoch": None,
    }
