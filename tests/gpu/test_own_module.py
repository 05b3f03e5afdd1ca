"""Your own LightningModule and LightningDataModule (class paths, tests/own_pkg) on CUDA:
``find_lr`` and ``search`` train them on the GPU, their host DataLoader batches moved there
by Lightning (tests/test_own_module.py on the CPU)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from lrtune import StudyConfig, TrainConfig, find_lr, search
from lrtune.components import build_datamodule, build_module
from lrtune.optimizers import get_optimizer_info
from tests.gpu._helpers import NO_CUDA, DeviceWitness, assert_same_weights, weights

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)]

SPY = "tests.own_pkg.spy"


def test_find_lr_on_a_class_path_module_on_the_gpu(tmp_path: Path) -> None:
    record = tmp_path / "seen.jsonl"
    config = TrainConfig.model_validate(
        {
            "module": {"class_path": f"{SPY}.Spy", "init_args": {"record": str(record)}},
            "datamodule": {"class_path": f"{SPY}.Data", "init_args": {"batch_size": 32}},
            "optimizer": {"name": "sgd", "lr": 0.01},
            "device": "cuda",
            "epochs": 1,
        }
    )
    torch.manual_seed(0)
    module, datamodule = build_module(config), build_datamodule(config)
    before = weights(module)
    witness = DeviceWitness()
    result = find_lr(
        module, datamodule=datamodule, accelerator=config.device, min_lr=1e-4, max_lr=3.0,
        num_steps=30, callbacks=[witness],
    )  # fmt: skip
    assert len(result.lrs) >= 10 and result.suggestion is not None
    assert 1e-4 <= result.suggestion <= 3.0
    witness.assert_all_on("cuda")
    assert witness.count("fit parameter") > 0
    # the injected optimizer (not the module's own configure_optimizers) trained the sweep
    row = json.loads(record.read_text().splitlines()[0])
    assert row["optimizer"] == "SGD"
    assert_same_weights(weights(module), before)


def test_search_a_class_path_module_on_the_gpu(tmp_path: Path, fit_witness: DeviceWitness) -> None:
    record = tmp_path / "seen.jsonl"
    config = StudyConfig.model_validate(
        {
            "name": "own-gpu",
            "module": {"class_path": f"{SPY}.Spy", "init_args": {"record": str(record)}},
            "datamodule": {"class_path": f"{SPY}.Data", "init_args": {"batch_size": 32}},
            "device": "cuda",
            "budget": {"epochs": 2},
            "objective": {"metric": "val_loss", "direction": "minimize"},
            "n_trials": 3,
            "pruner": "none",
            "storage": str(tmp_path / "s.journal"),
            "space": {
                "optimizers": ["sgd", "adam"],
                "lr": {"low": 1e-3, "high": 0.3},
                "model_options": {"hidden": [16, 32]},
            },
        }
    )
    study = search(config, progress=None, publish=False)
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3, [(t.number, t.state.name, t.user_attrs) for t in trials]
    assert all(math.isfinite(float(t.value)) for t in complete)  # type: ignore[arg-type]
    best = study.best_trial
    assert {"val_loss", "val_acc"} <= set(best.user_attrs)
    assert any(k.startswith("lrtune.test.") for k in study.user_attrs)  # the test pass ran
    # each trial's optimizer and model options reached the unchanged module
    seen: list[dict[str, Any]] = [json.loads(line) for line in record.read_text().splitlines()]
    for trial, row in zip(trials, seen[-len(trials) :], strict=True):
        name = trial.params["optimizer"]
        assert row["optimizer"] == get_optimizer_info(name).cls.__name__
        assert row["initial_lrs"] == [pytest.approx(trial.params[f"{name}.lr"])]
        assert row["hidden"] == trial.params["model.hidden"]
    # every trial and the test pass ran on the GPU: the DataLoader's host batches included
    fit_witness.assert_all_on("cuda")
    assert fit_witness.count("train batch") > 0 and fit_witness.count("test batch") > 0
    assert fit_witness.count("fit root device") == 3
