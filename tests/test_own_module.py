"""Your own LightningModule and LightningDataModule from a study file (``class_path`` and
``init_args``), unchanged: search, range tests, pruning and retraining reach them, in both
Lightning namespaces; and plain storage URLs that Optuna's own tools open."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from lrtune.config import StudyConfig, TrainConfig, study_config_from
from lrtune.errors import ConfigError
from lrtune.optimizers import get_optimizer_info
from lrtune.study import closing_storage, load_study, search
from lrtune.training import train

ROOT = Path(__file__).resolve().parents[1]
SPY = "tests.own_pkg.spy"
SPY_PL = "tests.own_pkg.spy_pl"


def _study(tmp_path: Path, package: str = SPY, **fields: Any) -> StudyConfig:
    record = tmp_path / "seen.jsonl"
    data: dict[str, Any] = {
        "name": "own",
        "module": {"class_path": f"{package}.Spy", "init_args": {"record": str(record)}},
        "datamodule": {"class_path": f"{package}.Data", "init_args": {"batch_size": 32}},
        "budget": {"epochs": 2},
        "objective": {"metric": "val_loss", "direction": "minimize"},
        "n_trials": 4,
        "pruner": "none",
        "storage": str(tmp_path / "s.journal"),
        "space": {
            "optimizers": ["sgd", "momentum", "adam", "rmsprop"],
            "lr": {"low": 1e-3, "high": 0.3},
            "model_options": {"hidden": [16, 32]},
        },
    }
    data.update(fields)
    return StudyConfig.model_validate(data)


def _seen(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "seen.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _check_injected(study: optuna.Study, seen: list[dict[str, Any]]) -> None:
    """Each trial's optimizer class, LR, momentum/β and init_args, as the module saw them,
    are the trial's params."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    assert len(seen) >= len(trials)
    seen = seen[len(seen) - len(trials) :]  # after the range tests of lr: auto, if any
    for trial, row in zip(trials, seen, strict=True):
        config = TrainConfig.model_validate(trial.user_attrs["config"])
        name = trial.params["optimizer"]
        assert row["optimizer"] == get_optimizer_info(name).cls.__name__
        assert row["initial_lrs"] == [pytest.approx(trial.params[f"{name}.lr"])]
        assert row["hidden"] == trial.params["model.hidden"]
        torch_kwargs = get_optimizer_info(name).torch_kwargs(
            config.optimizer.lr, config.optimizer.params
        )
        if "momentum" in torch_kwargs:
            assert row["momentum"] == pytest.approx(torch_kwargs["momentum"])
        if "betas" in torch_kwargs:
            assert row["betas"] == pytest.approx(list(torch_kwargs["betas"]))


def test_search_injects_each_trials_optimization_into_the_unchanged_module(
    tmp_path: Path,
) -> None:
    study = search(_study(tmp_path), progress=None, publish=False)
    _check_injected(study, _seen(tmp_path))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete and all(math.isfinite(t.value) for t in complete)  # type: ignore[arg-type]
    # whatever the module logs is kept, and the test split of the best trial is evaluated
    best = study.best_trial
    assert {"val_loss", "val_acc"} <= set(best.user_attrs)
    assert any(k.startswith("lrtune.test.") for k in study.user_attrs)
    from lrtune.report import study_note

    note = study_note(study, _study(tmp_path))
    assert f"data: `{SPY}.Data`, model: `{SPY}.Spy`" in note


def test_retraining_the_best_config_reproduces_the_best_value(tmp_path: Path) -> None:
    study = search(_study(tmp_path, n_trials=3), progress=None, publish=False)
    config = TrainConfig.model_validate(study.best_trial.user_attrs["config"])
    assert config.module is not None and config.datamodule is not None
    assert "model" not in config.to_dict() and "dataset" not in config.to_dict()
    result = train(config, test=False)
    assert result.metrics["val_loss"] == pytest.approx(study.best_value, abs=1e-6)


def test_param_groups_keep_their_lr_ratio_and_options(tmp_path: Path) -> None:
    record = tmp_path / "seen.jsonl"
    config = TrainConfig.model_validate(
        {
            "module": {"class_path": f"{SPY}.Grouped", "init_args": {"record": str(record)}},
            "datamodule": f"{SPY}.Data",
            "optimizer": {"name": "adamw", "lr": 0.01, "params": {"weight_decay": 0.05}},
            "schedule": "cosine",
            "epochs": 1,
        }
    )
    train(config, test=False)
    (row,) = _seen(tmp_path)
    assert row["optimizer"] == "AdamW"
    assert row["initial_lrs"] == pytest.approx([0.001, 0.01, 0.01])
    assert row["weight_decay"] == pytest.approx([0.05, 0.05, 0.0])


def test_clipping_goes_through_the_trainer(tmp_path: Path) -> None:
    config = TrainConfig.model_validate(
        {"module": f"{SPY}.Spy", "datamodule": f"{SPY}.Data", "epochs": 1,
         "clip": {"kind": "value", "threshold": 0.01}}
    )  # fmt: skip
    seen: list[Any] = []
    import lightning.pytorch as pl

    class Watch(pl.Callback):
        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            seen.append((trainer.gradient_clip_val, trainer.gradient_clip_algorithm))

        def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
            pass  # gradients are clipped after this hook

        def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
            grads = [p.grad.abs().max().item() for p in pl_module.parameters()]
            seen.append(max(grads))

    train(config, callbacks=[Watch()], test=False)
    assert seen[0] == (0.01, "value")
    assert all(g <= 0.01 + 1e-9 for g in seen[1:])


def test_a_module_on_lrtunes_dataset(tmp_path: Path) -> None:
    """``module`` with lrtune's ``dataset``: lrtune's datamodule feeds your module."""
    config = TrainConfig.model_validate(
        {"module": {"class_path": f"{SPY}.Spy", "init_args": {"record": str(tmp_path / "r")}},
         "dataset": "digits", "epochs": 1, "optimizer": "nesterov"}
    )  # fmt: skip
    result = train(config)
    assert math.isfinite(result.metrics["val_loss"]) and "test_acc" in result.metrics
    assert json.loads((tmp_path / "r").read_text())["optimizer"] == "SGD"


def test_training_step_errors_fail_trials_and_three_stop_the_study(tmp_path: Path) -> None:
    from lrtune.errors import StudyFailedError

    config = _study(
        tmp_path,
        module={"class_path": f"{SPY}.Spy", "init_args": {"fail": True}},
        n_trials=6,
    )
    failed = r"3 trials in a row failed with Spy\.training_step raised RuntimeError"
    with pytest.raises(StudyFailedError, match=failed):
        search(config, progress=None, publish=False)
    trials = load_study(str(tmp_path / "s.journal"), "own").trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL] * 3
    assert all("the user's training_step is broken" in t.user_attrs["error"] for t in trials)


def test_a_metric_the_module_never_logs_stops_after_the_first_validation(
    tmp_path: Path,
) -> None:
    config = _study(tmp_path, module=f"{SPY}.NoMetric")
    with pytest.raises(ConfigError) as caught:
        search(config, progress=None, publish=False)
    message = str(caught.value)
    assert "objective.metric: NoMetric did not log 'val_loss'" in message
    assert "val_acc, val_error" in message and "\n" not in message
    (trial,) = load_study(str(tmp_path / "s.journal"), "own").trials
    assert trial.state == optuna.trial.TrialState.FAIL
    # the fixed study file continues the same study (no trial had finished)
    fixed = config.model_copy(update={"objective": config.objective.model_copy(
        update={"metric": "val_error"})})  # fmt: skip
    study = search(fixed, progress=None, publish=False, n_trials=2)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 2


# ----------------------------------------------------------------------------- pytorch_lightning


def test_pytorch_lightning_modules_search_prune_and_range_test(tmp_path: Path) -> None:
    """The same module written against ``pytorch_lightning``: search (with its pruning
    callback reporting every epoch), ``lr: auto``'s range tests, retraining."""
    pytest.importorskip("pytorch_lightning", reason="pip install pytorch-lightning")
    config = _study(
        tmp_path, package=SPY_PL, n_trials=4,
        pruner={"name": "median", "options": {"n_startup_trials": 1, "n_warmup_steps": 0}},
        # upfront: the range tests' fits come first in the module's log (_check_injected)
        space={"optimizers": ["sgd", "adam"], "model_options": {"hidden": [16, 32]},
               "lr": {"auto": True, "num_steps": 20, "range_tests": "upfront"}},
    )  # fmt: skip
    study = search(config, progress=None, publish=False)
    _check_injected(study, _seen(tmp_path))
    assert all(t.intermediate_values for t in study.trials)  # the pruning callback reported
    auto = study.user_attrs["lrtune.lr_auto"]
    assert set(auto) == {"sgd", "adam"}
    assert all(v["source"] == "range test bracket" for v in auto.values())
    config_best = TrainConfig.model_validate(study.best_trial.user_attrs["config"])
    assert train(config_best, test=False).metrics["val_loss"] == pytest.approx(
        study.best_value, abs=1e-6
    )


def test_pytorch_lightning_module_with_find_lr_and_the_callback() -> None:
    ptl = pytest.importorskip("pytorch_lightning", reason="pip install pytorch-lightning")
    import torch

    from lrtune import LRRangeTest, find_lr
    from tests.own_pkg import spy_pl

    class Module(spy_pl.Spy):
        def configure_optimizers(self):  # type: ignore[no-untyped-def]
            return torch.optim.SGD(self.parameters(), lr=0.01)

    data = spy_pl.Data(batch_size=16)
    result = find_lr(Module(), datamodule=data, num_steps=40, min_lr=1e-4, max_lr=3.0)
    assert len(result.lrs) >= 20 and result.suggestion is not None
    finder = LRRangeTest(num_steps=15, max_lr=3.0)
    trainer = ptl.Trainer(
        max_epochs=1, callbacks=[finder], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(Module(), datamodule=spy_pl.Data(batch_size=16))
    assert finder.result is not None and len(finder.result.lrs) >= 10


# ----------------------------------------------------------------------------- the example, CLI


def _lrtune(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lrtune", *args], capture_output=True, text=True, cwd=cwd,
        timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def test_the_example_from_the_cli(tmp_path: Path) -> None:
    """README "Your own model": search the example's module from the repository root, then
    `lrtune best` and `lrtune train --config best-*.yaml` reproduce the best value."""
    storage = str(tmp_path / "s.journal")
    best_file = tmp_path / "best-own-module.yaml"
    study_file = ROOT / "examples" / "own_module" / "study.yaml"
    done = _lrtune(
        "search", str(study_file), "--n-trials", "6", "--storage", storage,
        "--best-out", str(best_file), "--set", "budget.epochs=2", cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    study = load_study(storage, "own-module")
    assert len([t for t in study.trials if t.state.is_finished()]) == 6
    best = _lrtune("best", "--storage", storage, "--json", cwd=tmp_path)
    assert best.returncode == 0, best.stderr
    shown = json.loads(best.stdout.strip().splitlines()[-1])
    assert shown["value"] == pytest.approx(study.best_value)
    saved = yaml.safe_load(best_file.read_text())
    assert saved["module"]["class_path"] == "litdigits.model.LitDigits"
    again = _lrtune("train", "--config", str(best_file), "--json", "--quiet", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    metrics = json.loads(again.stdout.strip().splitlines()[-1])["metrics"]
    assert metrics["val_loss"] == pytest.approx(study.best_value, abs=1e-6)


def test_find_lr_from_the_cli_on_a_study_files_module(tmp_path: Path) -> None:
    study_file = ROOT / "examples" / "own_module" / "study.yaml"
    done = _lrtune(
        "find-lr", "--config", str(study_file), "--optimizers", "sgd,adam", "--num-steps", "30",
        "--json", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])["results"]
    assert [r["optimizer"] for r in rows] == ["sgd", "adam"]
    assert all(r["suggestion"] is not None for r in rows)


def test_study_file_class_paths_import_from_its_folder(tmp_path: Path) -> None:
    config = study_config_from(ROOT / "examples" / "own_module" / "study.yaml")
    assert config.code_dir == ROOT / "examples" / "own_module"
    assert config.base_train_config().code_dir == config.code_dir
    # a rerun from elsewhere is the same study: where the code lives is not its meaning
    from lrtune.study._runner import _comparable

    moved = config.model_copy(update={"code_dir": tmp_path})
    assert _comparable(moved) == _comparable(config)


# ----------------------------------------------------------------------------- plain URLs


def _plain(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme.split('+')[0]}://{rest}"


def _opened_by_optuna(url: str, tmp_path: Path) -> None:
    """lrtune's study on a plain URL opens in optuna.load_study and `optuna trials`."""
    config = StudyConfig.model_validate(
        {"name": "plain", "dataset": "digits", "model": "mlp", "budget": {"epochs": 1},
         "n_trials": 2, "pruner": "none", "storage": url, "test": "never",
         "space": {"optimizers": ["adam"], "lr": {"low": 1e-3, "high": 1e-2}}}
    )  # fmt: skip
    search(config, progress=None, publish=False)
    # optuna's own RDBStorage for the plain URL (psycopg 3 / mysqlclient): closed here, or its
    # connection would be left for the garbage collector to close in some later test
    with closing_storage(optuna.load_study(study_name="plain", storage=url)) as study:
        assert len(study.trials) == 2
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "optuna"), "trials", "--study-name", "plain",
         "--storage", url, "-f", "json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert len(json.loads(listed.stdout)) == 2


@pytest.mark.postgres
def test_a_plain_postgresql_url_opens_in_optuna_itself(postgres_url: str, tmp_path: Path) -> None:
    url = _plain(postgres_url)
    assert url.startswith("postgresql://")
    _opened_by_optuna(url, tmp_path)


@pytest.mark.mysql
def test_a_plain_mysql_url_opens_in_optuna_itself(mysql_url: str, tmp_path: Path) -> None:
    try:
        import MySQLdb  # noqa: F401  (SQLAlchemy's driver for a plain mysql:// URL)
    except ImportError:
        reason = "plain mysql:// needs mysqlclient: pip install 'lrtune[mysql]'"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI installs it (.ci/run)", pytrace=False)
        pytest.skip(reason)
    url = _plain(mysql_url)
    assert url.startswith("mysql://")
    _opened_by_optuna(url, tmp_path)


def test_the_readme_shows_the_examples_study_file() -> None:
    import re

    text = (ROOT / "README.md").read_text()
    block = next(
        b for b in re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
        if b.startswith("name: own-module")
    )  # fmt: skip
    shown = yaml.safe_load(block)
    example = yaml.safe_load((ROOT / "examples" / "own_module" / "study.yaml").read_text())
    assert shown == {k: v for k, v in example.items() if k in shown}
    assert set(example) - set(shown) == {"pruner"}
