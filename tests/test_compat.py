"""One test per wrapper in lrtune._compat: each fails, naming the private name it reaches
for, when a release of Optuna, Lightning, torch, torchmetrics, PyMySQL or numpy moves it."""

from __future__ import annotations

import copy
import json
import logging
import pickle
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState
from torch import nn
from torchmetrics import MeanMetric

from lrtune._compat import _core, _lightning
from lrtune.storage import close_storage


# ----------------------------------------------------------------------------- Optuna
def test_study_and_trial_ids_and_storage() -> None:
    """Study._storage, Study._study_id, Trial._trial_id, FrozenTrial._trial_id."""
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    assert _core.study_storage(study) is storage
    assert _core.study_id(study) == storage.get_study_id_from_name(study.study_name)
    expected = storage.get_trial_id_from_study_id_trial_number(_core.study_id(study), 0)
    assert _core.trial_id(trial) == expected
    assert _core.trial_id(study.trials[0]) == expected


def test_storage_backend_is_the_rdb_storage_under_optunas_cache(tmp_path: Path) -> None:
    """_CachedStorage._backend."""
    storage = optuna.storages.get_storage(f"sqlite:///{tmp_path / 's.db'}")
    try:
        assert type(storage).__name__ == "_CachedStorage"
        assert isinstance(_core.storage_backend(storage), optuna.storages.RDBStorage)
    finally:
        close_storage(storage)
    plain = optuna.storages.InMemoryStorage()
    assert _core.storage_backend(plain) is plain


def test_journal_op_codes_cover_what_optuna_writes(tmp_path: Path) -> None:
    """optuna.storages.journal._storage.JournalOperation."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = tmp_path / "j.log"
    study = optuna.create_study(storage=JournalStorage(JournalFileBackend(str(path))))
    study.set_user_attr("a", 1)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    written = {json.loads(line)["op_code"] for line in path.read_text().splitlines()}
    assert written and written <= _core.journal_op_codes()


def test_failed_trial_logger_is_where_optuna_reports_a_failed_trial() -> None:
    """The logger name optuna.study._optimize."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("optuna").addHandler(handler)
    try:
        study = optuna.create_study()

        def fail(trial: optuna.Trial) -> float:
            raise ValueError("boom")

        study.optimize(fail, n_trials=1, catch=(ValueError,))
    finally:
        logging.getLogger("optuna").removeHandler(handler)
    failed = [r for r in records if "failed with" in r.getMessage()]
    assert failed and {r.name for r in failed} == {_core.FAILED_TRIAL_LOGGER}


def test_relative_params_are_where_tpe_reads_a_running_trial() -> None:
    """optuna.samplers._tpe.sampler._RELATIVE_PARAMS_KEY and _SYSTEM_ATTR_MAX_LENGTH."""
    study = optuna.create_study()
    trial = study.ask()
    params = {f"p{i}": "x" * 50 for i in range(100)}  # longer than one chunk
    _core.store_relative_params(study, study.trials[0], params)
    running = study.trials[0]
    assert running.state == TrialState.RUNNING and trial.number == running.number
    sampler = optuna.samplers.TPESampler(multivariate=True, constant_liar=True)
    assert sampler._get_params(running, study) == params


def _conditional_study(sampler: optuna.samplers.BaseSampler, n: int) -> optuna.Study:
    study = optuna.create_study(sampler=sampler)
    for _ in range(n):
        trial = study.ask()
        opt = trial.suggest_categorical("optimizer", ["sgd", "adam"])
        trial.suggest_float(f"{opt}.lr", 1e-4, 1.0, log=True)
        study.tell(trial, trial.params[f"{opt}.lr"])
    return study


def test_incremental_groups_match_optunas_group_decomposition() -> None:
    """optuna.search_space.group_decomposed._GroupDecomposedSearchSpace."""
    from optuna.search_space.group_decomposed import _GroupDecomposedSearchSpace

    study = _conditional_study(optuna.samplers.RandomSampler(seed=0), 8)
    ours = _core.IncrementalGroups(True)
    ours.calculate(study)  # a second call adds nothing new
    theirs = _GroupDecomposedSearchSpace(True).calculate(study).search_spaces
    assert ours.calculate(study).search_spaces == theirs


def test_tpe_internals_give_groups_and_sample_one() -> None:
    """TPESampler._group, _search_space_group, _constant_liar, _sample_relative,
    _group_decomposed_search_space."""
    sampler = _core.TPEInternals(
        multivariate=True, group=True, constant_liar=True, n_startup_trials=2, seed=0
    )
    assert sampler.constant_liar is True and sampler.group_spaces is None
    assert isinstance(sampler._group_decomposed_search_space, _core.IncrementalGroups)
    study = _conditional_study(sampler, 6)
    trial = study.ask()
    sampler.infer_relative_search_space(study, study.trials[-1])
    groups = sampler.group_spaces
    assert groups is not None and {"sgd.lr"} in [set(g) for g in groups]
    space = next(g for g in groups if set(g) == {"sgd.lr"})
    sampled = sampler.sample_group(study, study.trials[-1], space)
    assert set(sampled) == {"sgd.lr"} and 1e-4 <= sampled["sgd.lr"] <= 1.0
    study.tell(trial, 0.0)


# ------------------------------------------------------------------- torch, numpy, PyMySQL
def test_scale_last_lr_scales_what_get_last_lr_returns() -> None:
    """torch.optim.lr_scheduler.LRScheduler._last_lr."""
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    _core.scale_last_lr(scheduler, 0.5)
    assert scheduler.get_last_lr() == pytest.approx([0.05])


def test_uncompiled_is_the_module_torch_compile_wrapped() -> None:
    """OptimizedModule._orig_mod."""
    linear = nn.Linear(2, 2)
    assert _core.uncompiled(torch.compile(linear)) is linear
    assert _core.uncompiled(linear) is linear


def test_is_batch_norm() -> None:
    """torch.nn.modules.batchnorm._BatchNorm."""
    for norm in (nn.BatchNorm1d(2), nn.BatchNorm2d(2), nn.BatchNorm3d(2), nn.SyncBatchNorm(2)):
        assert _core.is_batch_norm(norm), type(norm).__name__
    assert not _core.is_batch_norm(nn.LayerNorm(2)) and not _core.is_batch_norm(nn.Linear(2, 2))


def test_numpy_pickles_name_the_multiarray_module() -> None:
    """numpy._core.multiarray._reconstruct (numpy.core before numpy 2)."""
    data = pickle.dumps(np.arange(3), protocol=2)
    assert _core.numpy_multiarray().__name__.encode() in data and b"_reconstruct" in data
    array = _core.numpy_reconstruct()(np.ndarray, (0,), b"b")
    assert isinstance(array, np.ndarray)


def test_pymysql_read_timeout_is_lifted() -> None:
    """pymysql.connections.Connection._read_timeout and _sock."""
    pymysql = pytest.importorskip("pymysql", reason="PyMySQL is a dev dependency")
    connection = pymysql.connections.Connection(defer_connect=True, read_timeout=5)
    assert connection._read_timeout == 5 and hasattr(connection, "_sock")
    _core.pymysql_unbounded_reads(connection)
    assert connection._read_timeout is None
    _core.pymysql_unbounded_reads(object())  # another driver's connection: left alone


# ------------------------------------------------------------------- Lightning, torchmetrics
class _Tiny(pl.LightningModule):
    def __init__(self, optimizer: bool = True) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)
        self.optimizer = optimizer
        self.seen: dict[str, Any] = {}

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.seen["mock"] = _lightning.is_mock_optimizer(self.trainer.optimizers[0])
        self.seen["source"] = _lightning.fit_val_source(self.trainer)
        return self.layer(batch[0]).sum()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        pass

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return [b * 2 for b in batch]

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1) if self.optimizer else None


def _fit(module: _Tiny, **kwargs: Any) -> pl.Trainer:
    trainer = pl.Trainer(
        max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(module, **kwargs)
    return trainer


def _loader() -> Any:
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 2)))


def test_mock_optimizer_and_the_val_loaders_given_to_fit() -> None:
    """lightning.pytorch.core.optimizer._MockOptimizer; the validation loop's
    _data_source.instance."""
    val = _loader()
    module = _Tiny()
    _fit(module, train_dataloaders=_loader(), val_dataloaders=val)
    assert module.seen == {"mock": False, "source": val}
    bare = _Tiny(optimizer=False)
    _fit(bare, train_dataloaders=_loader())
    assert bare.seen["mock"] is True and bare.seen["source"] is bare


def test_attached_trainer_and_the_batch_transfer_hook() -> None:
    """LightningModule._trainer and _on_before_batch_transfer."""
    module = _Tiny()
    assert _lightning.attached_trainer(module) is None
    trainer = _fit(module, train_dataloaders=_loader())
    assert _lightning.attached_trainer(module) is trainer
    (doubled,) = _lightning.before_batch_transfer(module, [torch.ones(2)])
    assert torch.equal(doubled, torch.full((2,), 2.0))


def test_metric_update_count_and_its_cached_value() -> None:
    """torchmetrics.Metric._update_count and _computed."""
    metric = MeanMetric()
    metric.update(1.0)
    saved = (copy.deepcopy(metric.metric_state), _lightning.metric_update_count(metric))
    metric.update(3.0)
    assert _lightning.metric_update_count(metric) == 2 and float(metric.compute()) == 2.0
    for name, value in saved[0].items():
        setattr(metric, name, value)
    _lightning.set_metric_update_count(metric, saved[1])
    assert _lightning.metric_update_count(metric) == 1 and float(metric.compute()) == 1.0
