"""``search()``: the public entry of a study, from a study file or a validated config.

It validates the input once, before anything is written (:func:`_precheck`), runs the study
in this process or in worker processes, hands the publishing hooks in (``publish=True``:
:class:`lrtune.publish.DashboardPublisher`), prints the summary and writes the best
configuration. The runner itself is :mod:`lrtune.study._runner`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

import optuna
from optuna.trial import TrialState

from lrtune.config import StudyConfig, TrainConfig, study_config_from
from lrtune.errors import ConfigError, StudyFailedError
from lrtune.hooks import SearchCallback
from lrtune.publish import DashboardPublisher
from lrtune.results import best_config
from lrtune.storage import (
    LOCK_SUFFIX,
    check_target,
    close_storage,
    is_lock_study,
    nearest_existing_parent,
    open_storage,
)
from lrtune.study._factories import create_pruner, create_sampler
from lrtune.study._packing import Packing, measure_trial, plan_packing, visible_devices
from lrtune.study._progress import print_summary
from lrtune.study._runner import TrialCallback, open_study, run_worker

if TYPE_CHECKING:
    import lightning.pytorch as pl

__all__ = ["search"]


def _validated(
    study: str | Path | StudyConfig, overrides: Mapping[str, Any]
) -> tuple[StudyConfig, str | None]:
    config = study if isinstance(study, StudyConfig) else study_config_from(study, overrides)
    if isinstance(study, StudyConfig) and overrides:
        config = StudyConfig.model_validate({**config.to_dict(), **overrides})
    return config, None if isinstance(study, StudyConfig) else str(study)


def _precheck(
    config: StudyConfig,
    source: str | None,
    *,
    datamodule_factory: object,
    callbacks: Sequence[object],
    factories: tuple[object, ...],
    best_out: str | Path | None = None,
) -> None:
    """Everything that can be wrong with the input, before the storage is touched."""
    try:
        if len(config.name.encode()) > MAX_NAME_BYTES:  # file names: 255 bytes at most
            raise ConfigError(
                f"name: {len(config.name.encode())} bytes long, at most {MAX_NAME_BYTES} "
                f"(lrtune names files after the study, e.g. best-<name>.yaml): "
                f"{config.name[:40]!r}..."
            )
        if best_out is not None:
            _check_best_out(Path(best_out))
        if is_lock_study(config.name):  # a rerun would take it for a stale lock: deleted
            raise ConfigError(
                f"name: {config.name!r} ends with {LOCK_SUFFIX!r}, which lrtune keeps for "
                "its set-up locks; choose another study name"
            )
        check_target(config.storage)
        create_sampler(config), create_pruner(config)
        base = config.base_train_config()
        if base.module is not None or base.datamodule is not None:
            from lrtune.components import check_components

            check_components(
                base, searched=config.space.model_options,
                batch_size_searched=config.space.batch_size is not None,
            )  # fmt: skip
        if datamodule_factory is None and base.datamodule is None:
            from lrtune.training import datamodule_for

            datamodule_for(base).prepare_data()
        for hook in callbacks:
            if isinstance(hook, SearchCallback):
                hook.check(config)
        if config.workers != 1:
            import pickle

            for factory in (*factories, *callbacks):
                if factory is None:
                    continue
                try:
                    pickle.dumps(factory)
                except Exception:
                    raise ConfigError(
                        f"{getattr(factory, '__name__', factory)!s} cannot be sent to worker "
                        "processes: with several workers, factories and callbacks must be "
                        "module-level functions or classes (no lambdas or closures)"
                    ) from None
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}" if source else str(error)) from None


MAX_NAME_BYTES = 200
"""Longest study name (UTF-8 bytes): it names files (``best-<name>.yaml``), and file names
end at 255 bytes on common filesystems."""


def _check_best_out(path: Path) -> None:
    """``best_out`` must be a file that can be written: not a folder, not under a file."""
    if path.is_dir():
        raise ConfigError(f"best_out: {path} is a folder; give a .yaml file name")
    parent = nearest_existing_parent(path)
    if not parent.is_dir():
        raise ConfigError(f"best_out: {path} lies under {parent}, which is not a folder")


def search(
    study: str | Path | StudyConfig,
    *,
    overrides: Mapping[str, Any] | None = None,
    module_factory: Callable[[TrainConfig], pl.LightningModule] | None = None,
    datamodule_factory: Callable[[TrainConfig], pl.LightningDataModule] | None = None,
    progress: TextIO | None = sys.stderr,
    best_out: str | Path | None = None,
    publish: bool = True,
    callbacks: Sequence[SearchCallback | TrialCallback] = (),
    workers: int | Literal["auto"] | None = None,
    trials_per_gpu: int | None = None,
    **fields: Any,
) -> optuna.Study:
    """Run (or resume) a study until ``n_trials`` trials have finished or time runs out.

    Args:
        study: A study file path or a validated :class:`~lrtune.config.StudyConfig`.
        overrides: Values that win over the file's (e.g. ``{"budget": {"epochs": 3}}``).
        module_factory: Build your own LightningModule from each trial's resolved
            :class:`~lrtune.config.TrainConfig` (default: lrtune's ``ClassifierModule``).
            It must log ``objective.metric`` (e.g. ``val_acc``) in validation.
        datamodule_factory: Build your own datamodule per trial (default: the study's
            dataset, shared in memory across trials).
        progress: Stream for one line per finished trial and the summary (``None``: quiet).
        best_out: Write the best trial's configuration here as YAML, which
            ``lrtune train --config`` reproduces.
        publish: Keep the study note current in optuna-dashboard during the search, and
            upload the range-test curves and, at the end, the study report as Optuna
            artifacts (default ``True``: :class:`lrtune.publish.DashboardPublisher` is
            added before ``callbacks``; see :func:`lrtune.artifacts.artifact_dir_for`).
        callbacks: More hooks: :class:`~lrtune.hooks.SearchCallback` instances (set-up,
            start, after each trial, end) or plain Optuna trial callbacks
            ``f(study, frozen_trial)``, called after each trial in order (default none).
            With ``workers > 1`` each worker gets a pickled copy.
        workers: Worker processes on this machine (default: the study file's
            ``workers``, else 1: this process). Each runs trials against the same storage;
            CPU threads are split between them and each gets its own GPU when there are
            several. ``"auto"`` fills every visible GPU with several workers each
            (:mod:`lrtune.study._packing`). More machines join by running the same search
            on the same storage.
        trials_per_gpu: With ``workers="auto"``, this many workers per GPU (default: the
            study file's, else measured from one short trial).
        **fields: Top-level study fields to override, e.g. ``n_trials=10``.

    Returns:
        The ``optuna.Study`` (its user attrs hold the study config and ``lr: auto``'s
        ranges and curves under ``lrtune.lr_auto``). Its database connections are closed
        before it is returned; reading it opens one again, which
        :func:`lrtune.storage.close_storage` closes.

    Raises:
        ConfigError: Bad input (nothing was written to the storage).
        StudyFailedError: Trials kept failing the same way; the finished ones are kept.

    Example::

        >>> import tempfile
        >>> from lrtune import StudyConfig, search
        >>> folder = tempfile.mkdtemp()
        >>> config = StudyConfig.model_validate({
        ...     "name": "demo", "dataset": "digits", "model": "mlp", "device": "cpu",
        ...     "budget": {"epochs": 1}, "n_trials": 3, "storage": f"{folder}/demo.journal",
        ...     "space": {"optimizers": ["adam", "sgd"], "lr": {"low": 1e-4, "high": 1e-1}},
        ... })
        >>> study = search(config, progress=None, publish=False)
        >>> len(study.trials), study.best_trial.params["optimizer"] in ("adam", "sgd")
        (3, True)
    """
    given = {"workers": workers, "trials_per_gpu": trials_per_gpu}
    fields = {**fields, **{k: v for k, v in given.items() if v is not None}}
    config, source = _validated(study, {**(overrides or {}), **fields})
    hooks: list[SearchCallback | TrialCallback] = [DashboardPublisher()] if publish else []
    hooks += list(callbacks)
    _precheck(
        config, source, datamodule_factory=datamodule_factory, callbacks=hooks,
        factories=(module_factory, datamodule_factory), best_out=best_out,
    )  # fmt: skip
    storage = open_storage(config.storage)
    try:
        optuna_study = _search(
            config, storage, hooks, progress, best_out,
            module_factory=module_factory, datamodule_factory=datamodule_factory,
        )  # fmt: skip
    finally:  # the returned study reconnects when it is read again
        close_storage(storage)
    return optuna_study


def _search(
    config: StudyConfig,
    storage: optuna.storages.BaseStorage,
    hooks: Sequence[SearchCallback | TrialCallback],
    progress: TextIO | None,
    best_out: str | Path | None,
    *,
    module_factory: Callable[[TrainConfig], pl.LightningModule] | None,
    datamodule_factory: Callable[[TrainConfig], pl.LightningDataModule] | None,
) -> optuna.Study:
    failure: StudyFailedError | None = None
    try:
        packing = _packing(config, progress)
        if packing is not None:
            from lrtune.study._workers import run_workers

            optuna_study = open_study(config, storage)
            run_workers(
                config, packing, module_factory=module_factory,
                datamodule_factory=datamodule_factory, quiet=progress is None, callbacks=hooks,
            )  # fmt: skip
        else:
            optuna_study = run_worker(
                config, module_factory=module_factory, datamodule_factory=datamodule_factory,
                progress=progress, callbacks=hooks, storage=storage,
            )  # fmt: skip
    except StudyFailedError as error:
        failure = error
        optuna_study = open_study(config, storage)
    for hook in hooks:
        if isinstance(hook, SearchCallback):
            hook.on_end(optuna_study, config)
    if progress is not None:
        print_summary(optuna_study, progress)
    if best_out is not None and any(
        t.state == TrialState.COMPLETE for t in optuna_study.get_trials(deepcopy=False)
    ):
        import yaml

        path = Path(best_out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(best_config(optuna_study).to_dict(), sort_keys=False))
    if failure is not None:
        raise failure
    return optuna_study


def _packing(config: StudyConfig, progress: TextIO | None) -> Packing | None:
    """Where the workers run (``None``: in this process)."""
    if config.workers == 1:
        return None
    if config.workers != "auto":
        from lrtune.study._workers import worker_plan

        return worker_plan(config.workers)
    devices = visible_devices()
    footprint = None
    if devices and config.trials_per_gpu is None:
        footprint = measure_trial(config)
    packing = plan_packing(
        devices, os.cpu_count() or 1, trials_per_gpu=config.trials_per_gpu, footprint=footprint
    )
    if progress is not None:
        s = "s" * (packing.workers > 1)
        print(f"lrtune: workers auto: {packing.workers} worker{s} ({packing.why})", file=progress)
    return None if packing.gpus == (None,) else packing
