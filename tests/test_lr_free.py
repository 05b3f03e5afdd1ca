"""LR-free optimizers (issue 24): registry entries, Schedule-Free's train/eval switch with
BatchNorm recomputed, the refusal of LR schedules, and the range test's answer for each."""

from __future__ import annotations

import importlib.util
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.fabric.utilities.seed import seed_everything

from lrtune._schedule_free import ScheduleFreeModes, is_schedule_free
from lrtune.config import TrainConfig, train_config_from
from lrtune.errors import ConfigError
from lrtune.optimizers import create_optimizer, get_optimizer_info
from lrtune.training import build_trainer, datamodule_for, module_for

pytest.importorskip("schedulefree", reason="pip install 'lrtune[lrfree]'")
pytest.importorskip("prodigyopt", reason="pip install 'lrtune[lrfree]'")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(optimizer: str, model: str = "mlp", epochs: int = 1, **extra: Any) -> TrainConfig:
    return train_config_from(overrides={"dataset": "digits", "model": model, "epochs": epochs,
                                        "device": "cpu", "optimizer": {"name": optimizer},
                                        **extra})  # fmt: skip


# ----------------------------------------------------------------------------- registry


@pytest.mark.parametrize(
    ("name", "cls", "lr"),
    [("schedulefree_adamw", "AdamWScheduleFree", 2.5e-3),
     ("schedulefree_sgd", "SGDScheduleFree", 1.0), ("prodigy", "Prodigy", 1.0)],
)  # fmt: skip
def test_registry_builds_them_with_their_own_defaults(name: str, cls: str, lr: float) -> None:
    info = get_optimizer_info(name)
    optimizer = create_optimizer(name, [torch.nn.Parameter(torch.zeros(3))], info.lr_default)
    assert type(optimizer).__name__ == cls
    assert optimizer.param_groups[0]["lr"] == info.lr_default == lr
    assert info.extra == "lrfree"


def test_prodigy_lr_is_a_multiplier_and_warmup_steps_a_whole_number() -> None:
    assert "multiplier" in get_optimizer_info("prodigy").lr_note
    info = get_optimizer_info("schedulefree_adamw")
    assert info.torch_kwargs(1e-3, {"warmup_steps": 50})["warmup_steps"] == 50
    assert isinstance(info.torch_kwargs(1e-3, {"warmup_steps": 50})["warmup_steps"], int)
    with pytest.raises(ConfigError, match=r"warmup_steps must be a whole number, got 2\.5"):
        info.resolve({"warmup_steps": 2.5})


def test_a_missing_package_is_one_line_naming_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "prodigyopt" else find_spec(n, *a)
    )
    with pytest.raises(ConfigError) as error:
        _config("prodigy")
    assert (
        "optimizer 'prodigy' needs the package 'prodigyopt': pip install 'lrtune[lrfree]'"
        in str(error.value)
    )
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "warmup_cosine"])
def test_schedule_free_refuses_a_schedule(schedule: str) -> None:
    with pytest.raises(ConfigError, match=r"schedule: schedulefree_adamw replaces the LR schedule"):
        _config("schedulefree_adamw", schedule={"name": schedule})
    _config("prodigy", schedule={"name": schedule})  # Prodigy takes one


def test_a_study_never_searches_a_schedule_for_schedule_free() -> None:
    import optuna

    from lrtune.config import StudyConfig
    from lrtune.space import lr_ranges, suggest_config

    study = StudyConfig.model_validate({
        "name": "sf", "dataset": "digits", "budget": {"epochs": 1}, "n_trials": 12,
        "space": {"optimizers": ["schedulefree_adamw", "adam"],
                  "schedules": ["cosine", "onecycle"]},
    })  # fmt: skip
    optuna_study = optuna.create_study()
    for _ in range(12):
        trial = optuna_study.ask()
        config = suggest_config(trial, study, lr_ranges(study))
        if config.optimizer.name == "schedulefree_adamw":
            assert config.schedule.name == "constant" and "schedule" not in trial.params
        else:
            assert config.schedule.name in ("cosine", "onecycle")
        optuna_study.tell(trial, 0.5)


# ----------------------------------------------------------------------------- train / eval


class _TrainModeOnly(pl.Callback):
    """What a user who never calls ``optimizer.eval()`` does: train mode, and that is all."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.optimizers[0].train()


def _fit(config: TrainConfig, modes: bool) -> tuple[pl.Trainer, pl.LightningModule, Any]:
    seed_everything(0, verbose=False)
    datamodule = datamodule_for(config)
    module = module_for(config, datamodule)
    trainer = build_trainer(config, callbacks=[] if modes else [_TrainModeOnly()])
    if not modes:
        trainer.callbacks[:] = [
            c for c in trainer.callbacks if not isinstance(c, ScheduleFreeModes)
        ]  # type: ignore[attr-defined]
    trainer.fit(module, datamodule=datamodule)
    return trainer, module, datamodule


def _test_acc(module: pl.LightningModule, datamodule: Any) -> float:
    tester = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                        accelerator="cpu")  # fmt: skip
    return float(tester.test(module, datamodule=datamodule, verbose=False)[0]["test_acc"])


def test_the_switch_and_batchnorm_recompute_are_what_make_it_accurate() -> None:
    """ResNet (BatchNorm) on digits, 1 epoch: lrtune evaluates Schedule-Free's averaged
    weights with BatchNorm statistics recomputed for them. Without the switch (training
    weights), or with the switch but the training weights' BatchNorm statistics, accuracy
    is lower: both halves matter."""
    config = _config("schedulefree_adamw", model="resnet")
    trainer, module, datamodule = _fit(config, modes=True)
    optimizer = trainer.optimizers[0]
    assert is_schedule_free(optimizer) and not optimizer.param_groups[0]["train_mode"]
    with_switch = _test_acc(module, datamodule)

    trainer, module, datamodule = _fit(config, modes=False)
    without_switch = _test_acc(module, datamodule)
    trainer.optimizers[0].eval()  # the averaged weights, with stale BatchNorm statistics
    stale_batchnorm = _test_acc(module, datamodule)
    assert with_switch > without_switch + 0.03, (with_switch, without_switch)
    assert with_switch > stale_batchnorm + 0.03, (with_switch, stale_batchnorm)


def test_modes_follow_training_and_leave_training_unchanged() -> None:
    """Train mode on every training step, eval mode for validation and after fit; the
    BatchNorm recompute leaves the data order and RNG as they were, so the training losses
    are those of a run whose validation never switched."""
    seen: list[tuple[str, bool]] = []

    class Spy(pl.Callback):
        def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
            seen.append(("train", trainer.optimizers[0].param_groups[0]["train_mode"]))

        def on_validation_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
            seen.append(("val", trainer.optimizers[0].param_groups[0]["train_mode"]))

    config = _config("schedulefree_adamw", model="resnet", epochs=2)
    seed_everything(0, verbose=False)
    datamodule = datamodule_for(config)
    module = module_for(config, datamodule)
    trainer = build_trainer(config, callbacks=[Spy()], limit_train_batches=4, limit_val_batches=2)
    trainer.fit(module, datamodule=datamodule)
    assert {mode for kind, mode in seen if kind == "train"} == {True}
    assert {mode for kind, mode in seen if kind == "val"} == {False}
    assert not trainer.optimizers[0].param_groups[0]["train_mode"]


# ----------------------------------------------------------------------------- range test


def test_range_test_on_schedule_free_and_plainly_none_for_prodigy() -> None:
    from lrtune.range_test._find import compare_optimizers

    results = compare_optimizers(_config("adam"), ["schedulefree_adamw", "prodigy"],
                                 num_steps=20, verify=False)  # fmt: skip
    schedule_free, prodigy = results
    assert schedule_free.label == "schedulefree_adamw" and len(schedule_free.lrs) > 10
    assert prodigy.label == "prodigy" and prodigy.suggestion is None and not prodigy.lrs
    assert prodigy.reason.startswith("no range test: Prodigy estimates its own step size")


def test_find_lr_on_a_prodigy_module_says_why_not() -> None:
    from lrtune.range_test._find import find_lr

    config = _config("prodigy")
    datamodule = datamodule_for(config)
    with pytest.raises(ConfigError, match="no range test for Prodigy: Prodigy estimates"):
        find_lr(module_for(config, datamodule), datamodule=datamodule, num_steps=20)


# ----------------------------------------------------------------------------- baselines


def _study(tmp_path: Any, **fields: Any) -> Any:
    import yaml

    data: dict[str, Any] = {
        "name": "free", "dataset": "digits", "model": "mlp",
        "model_options": {"width": 16, "depth": 1}, "budget": {"epochs": 2}, "n_trials": 5,
        "seed": 0, "storage": str(tmp_path / "studies.journal"), "test": "never",
        "pruner": {"name": "median", "options": {"n_startup_trials": 0, "n_warmup_steps": 0}},
        "space": {"optimizers": ["sgd", "adam"], "lr": {"low": 1e-4, "high": 1e-1}},
        **fields,
    }  # fmt: skip
    path = tmp_path / "free.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_baselines_run_first_at_their_defaults_unpruned_and_are_compared(tmp_path: Any) -> None:
    import io

    from optuna.trial import TrialState

    from lrtune.results import tuned_vs_tuning_free
    from lrtune.study import search

    out = io.StringIO()
    study = search(_study(tmp_path, baselines=["prodigy", "schedulefree_adamw"]), progress=out,
                   publish=False)  # fmt: skip
    first = study.trials[:2]
    assert [t.user_attrs.get("baseline") for t in first] == ["prodigy", "schedulefree_adamw"]
    assert all(t.state == TrialState.COMPLETE and t.params == {} for t in first)
    configs = [t.user_attrs["config"] for t in first]
    assert [c["optimizer"]["name"] for c in configs] == ["prodigy", "schedulefree_adamw"]
    assert configs[0]["optimizer"]["lr"] == 1.0 and configs[1]["optimizer"]["lr"] == 2.5e-3
    assert all(c["schedule"]["name"] == "constant" for c in configs)
    assert all("baseline" not in t.user_attrs for t in study.trials[2:])
    comparison = tuned_vs_tuning_free(study.trials, maximize=True)
    assert comparison is not None
    assert comparison["tuning_free"]["trials"] == 2 and comparison["tuned"]["trials"] == 3
    best_free = max(t.value for t in first)  # type: ignore[type-var]
    assert comparison["tuning_free"]["value"] == best_free
    assert comparison["difference"] == comparison["tuned"]["value"] - best_free
    summary = out.getvalue()
    assert "val_acc: best tuned " in summary and " vs best tuning-free " in summary
    assert "schedulefree_adamw" in summary or "prodigy" in summary
    from lrtune.config import study_config_from
    from lrtune.report import study_report
    from lrtune.report._note import study_note

    line = next(x for x in summary.splitlines() if "best tuning-free" in x)
    config = study_config_from(tmp_path / "free.yaml")
    assert "## Tuned vs tuning-free" in study_note(study, config) and line in study_note(
        study, config
    )
    assert "Tuned vs tuning-free</h2>" in study_report(study, plotlyjs="cdn")


@pytest.mark.parametrize(
    ("baselines", "message"),
    [(["adam"], "baselines: 'adam' needs its LR searched, so it is no baseline; the "
                "tuning-free optimizers are: schedulefree_adamw, prodigy"),
     (["lion"], "baselines: unknown optimizer 'lion'")],
)  # fmt: skip
def test_a_bad_baseline_is_one_line_and_exit_2(
    tmp_path: Any, capsys: pytest.CaptureFixture[str], baselines: list[str], message: str
) -> None:
    from lrtune.cli import main

    assert main(["search", str(_study(tmp_path, baselines=baselines))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "studies.journal").exists()


@pytest.mark.parametrize("package", ["tests.own_pkg.spy", "tests.own_pkg.spy_pl"])
def test_your_own_module_gets_the_switch_too(package: str) -> None:
    """lrtune injects Schedule-Free into your own module (either Lightning package) and
    switches its modes as for its own: training weights on every step, evaluation weights
    in validation and after fit."""
    if package.endswith("_pl"):
        pytest.importorskip("pytorch_lightning", reason="pip install pytorch-lightning")
    from lrtune.training import train

    config = train_config_from(overrides={
        "module": f"{package}.Spy", "datamodule": f"{package}.Data", "epochs": 2,
        "optimizer": {"name": "schedulefree_adamw"},
    })  # fmt: skip
    seen: list[tuple[str, bool]] = []

    class Watch(pl.Callback):
        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            seen.append(("train", trainer.optimizers[0].param_groups[0]["train_mode"]))

        def on_validation_batch_start(self, trainer: Any, *args: Any) -> None:
            seen.append(("val", trainer.optimizers[0].param_groups[0]["train_mode"]))

        def on_fit_end(self, trainer: Any, *args: Any) -> None:
            seen.append(("optimizer", type(trainer.optimizers[0]).__name__ == "AdamWScheduleFree"))

    result = train(config, callbacks=[Watch()], test=False)
    assert 0.0 <= result.val_acc <= 1.0
    assert ("optimizer", True) in seen
    assert {mode for kind, mode in seen if kind == "train"} == {True}
    assert {mode for kind, mode in seen if kind == "val"} == {False}
