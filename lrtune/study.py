"""Optuna studies over optimizers, LRs, β, weight decay, schedules and clipping.

``search()`` loads a study file (or a :class:`~lrtune.config.StudyConfig`), opens the storage,
resumes the study of that name (failing and retrying trials left RUNNING by a dead process),
runs the LR range tests once per study for ``lr: auto``, enqueues the optimizers' defaults
when asked, and runs trials until ``n_trials`` trials have finished (complete or pruned) or
the timeout passes. Each trial trains with Lightning and reports its metric to Optuna after
every validation through optuna-integration's ``PyTorchLightningPruningCallback``; a NaN/inf
or exploding loss ends the trial at once as pruned, with the reason in its user attrs.
"""

from __future__ import annotations

import copy
import gc
import logging
import math
import re
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import optuna
from optuna.trial import TrialState

from lrtune import _coordination as coord
from lrtune.config import StudyConfig, TrainConfig, study_config_from
from lrtune.errors import ConfigError, LrtuneError, StudyFailedError
from lrtune.space import default_params, lr_ranges, suggest_config

if TYPE_CHECKING:
    import lightning.pytorch as pl

__all__ = [
    "DEFAULT_STORAGE",
    "best_config",
    "create_pruner",
    "create_sampler",
    "load_study",
    "mask_url",
    "open_existing_storage",
    "open_storage",
    "search",
    "trials_with_tests",
]

log = logging.getLogger(__name__)

DEFAULT_STORAGE = "lrtune-studies.journal"
"""Default storage: an Optuna journal file in the working directory (optuna-dashboard opens
it: ``optuna-dashboard lrtune-studies.journal``)."""

_ATTR_CONFIG = "lrtune.study_config"
_ATTR_LR_AUTO = "lrtune.lr_auto"
_ATTR_ENQUEUED = "lrtune.defaults_enqueued"
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


# ----------------------------------------------------------------------------- factories


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs, notes and errors).

    Everything up to the last ``@`` of the address counts as the password, so a password
    with an unescaped ``@`` is masked whole too.
    """
    return re.sub(r"(://[^:/@\s]+:)[^/\s]*@", r"\1***@", url)


def _with_driver(url: str) -> str:
    """``postgresql://`` and ``mysql://`` URLs get the driver that is installed.

    SQLAlchemy's defaults (psycopg 3, mysqlclient) are often not the installed ones;
    ``pip install lrtune[postgres]`` brings psycopg2, ``lrtune[mysql]`` PyMySQL.
    """
    import importlib.util

    scheme, sep, rest = url.partition("://")
    if not sep or "+" in scheme:
        return url
    choices = {
        "postgresql": (("psycopg", "psycopg"), ("psycopg2", "psycopg2")),
        "postgres": (("psycopg", "psycopg"), ("psycopg2", "psycopg2")),
        "mysql": (("MySQLdb", "mysqldb"), ("pymysql", "pymysql")),
        "mariadb": (("MySQLdb", "mysqldb"), ("pymysql", "pymysql")),
    }.get(scheme)
    for module, driver in choices or ():
        if importlib.util.find_spec(module) is not None:
            base = "postgresql" if scheme == "postgres" else scheme
            return f"{base}+{driver}://{rest}"
    return url


def _rdb_storage(url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """An RDBStorage with Optuna's heartbeat (trials of dead workers failed and retried).

    Workers that open a new database at the same moment race to create Optuna's tables
    ("table already exists", "duplicate key"): the loser waits and opens it again.
    """
    import random

    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():  # heartbeats are marked experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=60,
                    grace_period=180,
                    heartbeat_stale_trial_callback=(
                        optuna.storages.RetryHeartbeatStaleTrialCallback(3)
                    ),
                )
        except Exception as error:
            text = str(error).lower()
            racing = "already exists" in text or "duplicate" in text
            if not racing or attempt == attempts - 1:
                raise
            time.sleep(0.2 + random.random() * 0.5)
    raise AssertionError("unreachable")


def open_storage(url: str | None) -> optuna.storages.BaseStorage:
    """Open an Optuna storage: a URL (``sqlite:///x.db``, ``postgresql://...``) or a
    journal file path (default :data:`DEFAULT_STORAGE`).

    RDB storages get Optuna's heartbeat, so trials of a dead worker are failed and retried.

    Raises:
        ConfigError: The storage cannot be opened (the URL's password is masked).
    """
    target = url or DEFAULT_STORAGE
    try:
        if "://" in target:
            _check_url(target)
            return _rdb_storage(_with_driver(target))
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = _check_journal_path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    except LrtuneError:
        raise
    except Exception as error:  # SQLAlchemy, driver and OS errors come in many types
        raise ConfigError(f"storage {mask_url(target)}: cannot open ({_db_error(error)})") from None


def _db_error(error: BaseException) -> str:
    """The first line of the driver's own message (not SQLAlchemy's wrapping), masked."""
    if "Can't load plugin: sqlalchemy.dialects:" in str(error):
        scheme = str(error).rsplit(":", 1)[-1].strip()
        return (
            f"unknown storage scheme {scheme!r}; use sqlite:///, postgresql://, mysql:// or "
            "a journal file path"
        )
    orig = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(orig).strip().splitlines() if line.strip()]
    return mask_url(lines[0] if lines else type(orig).__name__)[:200]


def _check_url(url: str) -> None:
    """Refuse URLs the drivers would misread, before connecting."""
    rest = url.partition("://")[2]
    address = rest.split("/", 1)[0]
    if address.count("@") > 1:
        raise ConfigError(f"storage {mask_url(url)}: the password contains '@'; write it as %40")


def _check_journal_path(target: str) -> Path:
    """A journal file path that can be used: not a folder, its parent is (or can be) a
    folder, and an existing file is an Optuna journal (never append to another file)."""
    path = Path(target)
    if path.is_dir():
        raise ConfigError(f"storage {target}: is a directory, expected a journal file")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"storage {target}: {parent} is not a folder")
    if path.is_file() and path.stat().st_size > 0:
        with path.open("rb") as handle:
            head = handle.read(64).lstrip()
        if not head.startswith(b'{"op_code"'):
            raise ConfigError(
                f"storage {target}: not an Optuna journal file (give a new file name, or a "
                "storage URL such as sqlite:///studies.db)"
            )
    return path


def open_existing_storage(url: str | None) -> optuna.storages.BaseStorage:
    """Open a storage that must already exist (for reading: reports, best, dashboard).

    Unlike :func:`open_storage`, a missing journal file is an error, not a new empty file.

    Raises:
        ConfigError: No journal file there, or the storage cannot be opened.
    """
    target = url or DEFAULT_STORAGE
    if "://" not in target:
        if Path(target).is_dir():
            raise ConfigError(f"--storage: {target} is a directory, expected a journal file")
        if not Path(target).is_file():
            hint = "" if url else "; give --storage"
            raise ConfigError(f"--storage: no journal file at {target}{hint}")
        return open_storage(url)
    if target.startswith("sqlite:///") and not Path(target[len("sqlite:///") :]).is_file():
        raise ConfigError(f"--storage: no SQLite database at {target[len('sqlite:///') :]}")
    _check_url(target)
    try:  # reading must not create Optuna's tables in a database that has none
        import sqlalchemy

        engine = sqlalchemy.create_engine(_with_driver(target))
        try:
            has_studies = sqlalchemy.inspect(engine).has_table("studies")
        finally:
            engine.dispose()
    except Exception as error:
        raise ConfigError(f"storage {mask_url(target)}: cannot open ({_db_error(error)})") from None
    if not has_studies:
        raise ConfigError(f"--storage: {mask_url(target)} holds no Optuna study")
    return open_storage(url)


def load_study(url: str | None, study_name: str | None = None) -> optuna.Study:
    """Load an existing study; with no name, the storage's only study.

    Raises:
        ConfigError: The storage is missing, has no such study, or (with no name) holds
            none or several (the message lists them).
    """
    storage = open_existing_storage(url)
    shown = mask_url(url or DEFAULT_STORAGE)
    names = [n for n in optuna.study.get_all_study_names(storage) if not coord.is_lock_study(n)]
    if study_name is None:
        if not names:
            raise ConfigError(f"--storage: {shown} holds no study yet")
        if len(names) > 1:
            raise ConfigError(
                f"--study-name: {shown} holds {len(names)} studies ({', '.join(names)}); name one"
            )
        study_name = names[0]
    if study_name not in names:
        known = ", ".join(names) or "none"
        raise ConfigError(
            f"--study-name: no study {study_name!r} in {shown} (studies there: {known})"
        )
    return optuna.load_study(study_name=study_name, storage=storage)


def create_sampler(config: StudyConfig) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded. TPE is multivariate with grouped decomposition, so the
    conditional parameters (per optimizer, per schedule) are modelled jointly; it samples
    only the groups a trial uses (:class:`lrtune._sampler.GatedTPESampler`)."""
    name, options = config.sampler.name, dict(config.sampler.options)
    try:
        if name == "tpe":
            from lrtune._sampler import GatedTPESampler

            options.setdefault("multivariate", True)
            options.setdefault("group", True)
            options.setdefault("n_startup_trials", 10)
            with warnings.catch_warnings():  # `group` is marked experimental; we rely on it
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return GatedTPESampler(seed=config.seed, **options)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=config.seed, **options)
        if name == "gp":
            return optuna.samplers.GPSampler(seed=config.seed, **options)
        if name == "cmaes":
            options.setdefault("warn_independent_sampling", False)
            return optuna.samplers.CmaEsSampler(seed=config.seed, **options)
        if "search_space" not in options:
            raise ConfigError(
                "sampler.options.search_space is required for the grid sampler "
                "(a mapping of parameter name to the list of values)"
            )
        return optuna.samplers.GridSampler(seed=config.seed, **options)
    except TypeError as error:
        raise ConfigError(f"sampler.options: {error}") from None


def create_pruner(config: StudyConfig) -> optuna.pruners.BasePruner:
    """The study's pruner; its resource unit is the report step (epoch, or steps)."""
    name, options = config.pruner.name, dict(config.pruner.options)
    max_resource = config.budget.epochs or config.budget.steps or 1
    try:
        if name == "median":
            options.setdefault("n_startup_trials", 5)
            options.setdefault("n_warmup_steps", 1 if config.budget.epochs else 0)
            return optuna.pruners.MedianPruner(**options)
        if name == "hyperband":
            options.setdefault("min_resource", 1)
            options.setdefault("max_resource", max_resource)
            return optuna.pruners.HyperbandPruner(**options)
        if name == "successive-halving":
            return optuna.pruners.SuccessiveHalvingPruner(**options)
        return optuna.pruners.NopPruner(**options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"pruner.options: {' '.join(str(error).split())}") from None


# ----------------------------------------------------------------------------- callbacks


def _pruning_callback(trial: optuna.Trial, config: StudyConfig) -> pl.Callback:
    """optuna-integration's pruning callback; a pruned trial records why in its user attrs
    (``pruned``: the step, the metric and the pruner), which optuna-dashboard shows."""
    from optuna_integration import PyTorchLightningPruningCallback

    by_step = config.budget.epochs is None
    pruner = config.pruner.name

    class _Pruning(PyTorchLightningPruningCallback):
        def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            score = trainer.callback_metrics.get(self.monitor)
            try:
                if by_step and score is not None and not trainer.sanity_checking:
                    # a steps budget validates every N steps: report at the global step
                    self._trial.report(score.item(), step=trainer.global_step)
                    if self._trial.should_prune():
                        raise optuna.TrialPruned(f"Trial was pruned at step {trainer.global_step}.")
                else:
                    super().on_validation_end(trainer, pl_module)
            except optuna.TrialPruned as pruned:
                value = f" with {self.monitor} {score.item():.4g}" if score is not None else ""
                self._trial.set_user_attr(
                    "pruned", f"{str(pruned).rstrip('.')}{value} ({pruner} pruner)"
                )
                raise

    return _Pruning(trial, monitor=config.objective.metric)


def _monitor_callback(
    trial: optuna.Trial, explode_factor: float = 10.0, accelerator_every: int = 10
) -> pl.Callback:
    """Ends a trial at once when its loss is NaN/inf or explodes (recorded as pruned).

    Exploding: the loss, smoothed over a few steps (EMA 0.5), exceeds ``explode_factor``
    times the first step's loss (the loss at initialisation). On a CPU every step's loss is
    checked; on a GPU every ``accelerator_every``-th (reading a loss waits for the GPU to
    finish the step, which would stall the queue of kernels every step; a NaN stays NaN).
    """
    import lightning.pytorch as pl

    class DivergenceStop(pl.Callback):
        def __init__(self) -> None:
            self.first: float | None = None
            self.smooth = 0.0

        def on_train_batch_end(
            self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
            batch: Any, batch_idx: int,
        ) -> None:  # fmt: skip
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            if loss is None:
                return
            if (
                self.first is not None
                and getattr(loss, "device", None) is not None
                and loss.device.type != "cpu"
                and trainer.global_step % accelerator_every
            ):
                return
            value = float(loss)
            reason = None
            if not math.isfinite(value):
                reason = f"loss is {value}"
            elif self.first is None:
                self.first, self.smooth = value, value
            else:
                self.smooth = 0.5 * self.smooth + 0.5 * value
                if abs(self.smooth) > explode_factor * abs(self.first) + 1e-12:
                    reason = (
                        f"loss exploded to {value:.4g} (initial {self.first:.4g}, "
                        f"limit {explode_factor:g}x)"
                    )
            if reason is not None:
                reason = f"diverged at step {trainer.global_step}: {reason}"
                trial.set_user_attr("diverged", reason)
                raise optuna.TrialPruned(reason)

        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            trial.set_user_attr("epochs", trainer.current_epoch + 1)

    return DivergenceStop()


# ----------------------------------------------------------------------------- the study


def _comparable(config: StudyConfig) -> dict[str, Any]:
    """What must stay the same for a rerun to continue a study (not: stopping rules, where
    things are, the test policy, speed switches that leave the trials' meaning alone)."""
    data = config.to_dict()
    for key in (
        "n_trials", "timeout", "storage", "artifacts", "question", "expected_cost", "data_dir",
        "test", "channels_last", "compile",
    ):  # fmt: skip
        data.pop(key, None)
    return data


def _check_same_study(study: optuna.Study, config: StudyConfig, storage: str) -> None:
    stored = study.user_attrs.get(_ATTR_CONFIG)
    if stored is None:
        data = config.to_dict()
        if data.get("storage"):  # the dashboard and reports show this: no passwords
            data["storage"] = mask_url(str(data["storage"]))
        study.set_user_attr(_ATTR_CONFIG, data)
        return
    old = StudyConfig.model_validate(stored)
    if _comparable(old) != _comparable(config):
        changed = sorted(k for k, v in _comparable(config).items() if _comparable(old).get(k) != v)
        raise ConfigError(
            f"study {config.name!r} in {mask_url(storage)} was created with a different "
            f"configuration (changed: {', '.join(changed)}); use another --study-name"
        )


def _auto_lr(study: optuna.Study, config: StudyConfig) -> dict[str, Any]:
    """Per-optimizer LR ranges from one range test each, once per study (stored in it)."""
    stored = study.user_attrs.get(_ATTR_LR_AUTO)
    if stored is not None and set(config.space.optimizers) <= set(stored):
        return dict(stored)
    from lrtune.finder import compare_optimizers

    widen = config.space.lr.widen
    base = config.base_train_config()
    log.info(
        "lr auto: running the LR range tests of %d optimizer(s), once for the study",
        len(config.space.optimizers),
    )
    results = compare_optimizers(base, config.space.optimizers, num_steps=config.space.lr.num_steps)
    found: dict[str, Any] = {}
    for result in results:
        info_range = lr_ranges(config)[result.label]
        if result.bracket is not None:
            low, high = result.bracket[0] / widen, result.bracket[1] * widen
            source = "range test bracket"
        else:
            low, high = info_range
            source = f"registry range (range test: {result.reason})"
        found[result.label] = {"range": [low, high], "source": source, "result": result.to_dict()}
        log.info("lr auto: %s in [%.3g, %.3g] from the %s", result.label, low, high, source)
    study.set_user_attr(_ATTR_LR_AUTO, found)
    return found


def _name_objective(study: optuna.Study, config: StudyConfig) -> None:
    """Label the objective with its metric in optuna-dashboard (not "Objective 0")."""
    if study.metric_names != [config.objective.metric]:
        with warnings.catch_warnings():  # set_metric_names is marked experimental
            warnings.simplefilter("ignore")
            study.set_metric_names([config.objective.metric])


def _artifact_folder(study: optuna.Study, config: StudyConfig) -> Path:
    """The study's artifact folder (``artifacts:`` or beside the storage), recorded in the
    study so ``lrtune dashboard`` finds it."""
    from lrtune.dashboard import ATTR_ARTIFACTS, artifact_dir_for

    folder = Path(config.artifacts or artifact_dir_for(config.storage)).absolute()
    if study.user_attrs.get(ATTR_ARTIFACTS) != str(folder):
        study.set_user_attr(ATTR_ARTIFACTS, str(folder))
    return folder


def _enqueue_defaults(
    study: optuna.Study, config: StudyConfig, ranges: Mapping[str, tuple[float, float]]
) -> None:
    if not config.enqueue_defaults or study.user_attrs.get(_ATTR_ENQUEUED):
        return
    for name in config.space.optimizers:
        study.enqueue_trial(default_params(config, name, ranges), user_attrs={"defaults": True})
    study.set_user_attr(_ATTR_ENQUEUED, True)


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=_FINISHED))


class _Progress:
    """One line per finished trial: count, outcome, best so far, pruned, elapsed, ETA."""

    def __init__(
        self, stream: TextIO | None, n_trials: int | None, start_count: int, tag: str = ""
    ) -> None:
        self._stream = stream
        self._tag = tag
        self._n = n_trials
        self._start_count = start_count
        self._start = time.perf_counter()

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if self._stream is None or coord.SURPLUS in trial.user_attrs:
            return
        trials = study.get_trials(deepcopy=False)
        done = sum(t.state in _FINISHED for t in trials)
        pruned = sum(t.state == TrialState.PRUNED for t in trials)
        failed = sum(t.state == TrialState.FAIL and coord.SURPLUS not in t.user_attrs
                     for t in trials)  # fmt: skip
        elapsed = time.perf_counter() - self._start
        ran = max(1, done - self._start_count)
        eta = ""
        if self._n is not None and done < self._n:
            eta = f", ETA {_clock(elapsed / ran * (self._n - done))}"
        cfg = trial.user_attrs.get("config", {})
        opt = cfg.get("optimizer", {})
        what = f"{opt.get('name', '?')} lr={opt.get('lr', float('nan')):.3g}"
        what += f" {cfg.get('schedule', {}).get('name', '')}"
        if trial.state == TrialState.COMPLETE:
            outcome = f"{study.direction.name.lower()[:3]} {trial.value:.4g}"
        elif trial.state == TrialState.PRUNED:
            outcome = "diverged" if "diverged" in trial.user_attrs else "pruned"
        elif trial.state == TrialState.FAIL:
            outcome = f"failed ({trial.user_attrs.get('error', 'see the log above')})"
        else:
            outcome = trial.state.name.lower()
        try:
            best = f"best {study.best_value:.4g} (#{study.best_trial.number})"
        except ValueError:
            best = "no complete trial yet"
        total = f"/{self._n}" if self._n else ""
        print(
            f"{self._tag}[{done}{total}] trial {trial.number} {what}: {outcome} | {best} | "
            f"{pruned} pruned, {failed} failed | {_clock(elapsed)}{eta}",
            file=self._stream,
            flush=True,
        )


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


class _Surplus(Exception):
    """This trial would exceed n_trials (other workers' trials got there first)."""


def _error_text(error: BaseException) -> str:
    """``Type: first line of the message`` (passwords in URLs masked), for user attrs."""
    lines = str(error).strip().splitlines()
    return mask_url(f"{type(error).__name__}: {lines[0] if lines else ''}")[:500]


def _objective(
    config: StudyConfig,
    ranges: Mapping[str, tuple[float, float]],
    module_factory: Callable[[TrainConfig], pl.LightningModule] | None,
    datamodule_factory: Callable[[TrainConfig], pl.LightningDataModule] | None,
    held: _HeldWeights | None = None,
) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        if config.n_trials is not None:
            ahead = coord.trials_ahead(trial.study, trial.number)
            if ahead >= config.n_trials:
                reason = (
                    f"not run: {ahead} trials were already finished or running "
                    f"(n_trials {config.n_trials})"
                )
                trial.set_user_attr(coord.SURPLUS, reason)
                raise _Surplus(reason)
        with coord.TrialHeartbeat(trial):
            trial.set_user_attr("worker", coord.worker_id())
            train_config = suggest_config(trial, config, ranges)
            trial.set_user_attr("config", train_config.to_dict())
            start = time.perf_counter()
            try:
                metrics = _train_trial(
                    trial, config, train_config, module_factory, datamodule_factory, held
                )
            except optuna.TrialPruned:
                trial.set_user_attr("seconds", time.perf_counter() - start)
                raise
            except Exception as error:  # recorded, then Optuna fails the trial
                trial.set_user_attr("seconds", time.perf_counter() - start)
                trial.set_user_attr("error", _error_text(error))
                raise
            finally:
                gc.collect()
                _empty_device_cache()
        trial.set_user_attr("seconds", time.perf_counter() - start)
        for key, value in metrics.items():
            trial.set_user_attr(key, value)
        value = metrics.get(config.objective.metric, math.nan)
        if not math.isfinite(value):
            trial.set_user_attr("diverged", f"{config.objective.metric} is {value}")
            raise optuna.TrialPruned(f"{config.objective.metric} is {value}")
        return value

    return objective


def _empty_device_cache() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _train_trial(
    trial: optuna.Trial,
    config: StudyConfig,
    train_config: TrainConfig,
    module_factory: Callable[[TrainConfig], pl.LightningModule] | None,
    datamodule_factory: Callable[[TrainConfig], pl.LightningDataModule] | None,
    held: _HeldWeights | None = None,
) -> dict[str, float]:
    from lightning.fabric.utilities.seed import seed_everything

    from lrtune.training import build_trainer, datamodule_for

    # every trial starts from the same seed: same initial weights and batch order, so trials
    # differ only by their hyperparameters, and `lrtune train --config best.yaml` reproduces
    seed_everything(train_config.seed, verbose=False)
    if datamodule_factory is not None:
        datamodule = datamodule_factory(train_config)
    else:
        datamodule = datamodule_for(train_config)
    if module_factory is not None:
        module = module_factory(train_config)
    else:
        module = _classifier(train_config, datamodule)
    budget = config.budget
    limits: dict[str, Any] = {}
    if budget.steps is not None:
        limits = {
            "max_epochs": -1,
            "max_steps": budget.steps,
            "val_check_interval": budget.report_every or budget.steps,
            "check_val_every_n_epoch": None,
        }
    trainer = build_trainer(
        train_config,
        callbacks=[_monitor_callback(trial), _pruning_callback(trial, config)],
        **limits,
    )
    trainer.fit(module, datamodule=datamodule)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val_")}
    metrics["epochs"] = float(trainer.current_epoch)
    metrics["steps"] = float(trainer.global_step)
    if (
        module_factory is None
        and config.test != "never"
        and (config.test == "every" or _improves(trial, config, train_config, metrics))
    ):
        if config.test == "end" and held is not None:
            held.keep(trial.number, train_config, module)
        else:
            tested = trainer.test(module, datamodule=datamodule, verbose=False)[0]
            metrics.update({k: float(v) for k, v in tested.items()})
    del trainer, module
    return metrics


def _best_per_optimizer(
    trials: Sequence[optuna.trial.FrozenTrial], maximize: bool, default: str = "?"
) -> dict[str, optuna.trial.FrozenTrial]:
    """The best complete trial of each optimizer (``default`` names trials without an
    ``optimizer`` parameter)."""
    sign = 1.0 if maximize else -1.0
    best: dict[str, optuna.trial.FrozenTrial] = {}
    for trial in trials:
        if trial.state != TrialState.COMPLETE or trial.value is None:
            continue
        name = str(trial.params.get("optimizer", default))
        if name not in best or sign * trial.value > sign * float(best[name].value):  # type: ignore[arg-type]
            best[name] = trial
    return best


def _classifier(
    train_config: TrainConfig, datamodule: pl.LightningDataModule
) -> pl.LightningModule:
    """lrtune's ``ClassifierModule`` for ``train_config``, shaped by the dataset's info."""
    from lrtune.module import ClassifierModule

    info = datamodule.info  # type: ignore[attr-defined]
    return ClassifierModule.from_config(train_config, info.input_shape, info.num_classes)


def _improves(
    trial: optuna.Trial, config: StudyConfig, train_config: TrainConfig, metrics: dict[str, float]
) -> bool:
    """Does this trial beat every complete trial of its optimizer so far? (The trials that
    ``test: improving`` tests at once and ``test: end`` keeps the weights of.)"""
    value = metrics.get(config.objective.metric, math.nan)
    if not math.isfinite(value):
        return False
    name = train_config.optimizer.name
    maximize = config.objective.resolved_direction == "maximize"
    complete = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = _best_per_optimizer(complete, maximize, default=name).get(name)
    if best is None:
        return True
    return value > float(best.value) if maximize else value < float(best.value)  # type: ignore[arg-type]


ATTR_TEST_PREFIX = "lrtune.test."
"""``test: end`` stores trial N's test metrics in the study user attr ``lrtune.test.N`` (a
finished trial's own attrs can no longer change); :func:`trials_with_tests` merges them."""


class _HeldWeights:
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
        from lrtune.training import build_trainer, datamodule_for

        maximize = config.objective.resolved_direction == "maximize"
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        best = _best_per_optimizer(complete, maximize, default="")
        for name, (number, train_config, weights) in sorted(self.by_optimizer.items()):
            if name in best and best[name].number != number:
                continue  # another worker's trial beat it
            datamodule = datamodule_for(train_config)
            module = _classifier(train_config, datamodule)
            module.load_state_dict(weights)
            tested = build_trainer(train_config).test(module, datamodule=datamodule, verbose=False)
            metrics = {k: float(v) for k, v in tested[0].items()}
            study.set_user_attr(f"{ATTR_TEST_PREFIX}{number}", metrics)
            if progress is not None:
                shown = "  ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))
                print(f"{tag}test split, best {name} trial {number}: {shown}", file=progress)
        self.by_optimizer.clear()


def trials_with_tests(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's trials, with the test metrics that ``test: end`` stored in the study's
    user attrs merged into each trial's ``user_attrs`` (copies; the study is not changed)."""
    trials = study.get_trials(deepcopy=False)
    stored = {
        key[len(ATTR_TEST_PREFIX) :]: value
        for key, value in study.user_attrs.items()
        if key.startswith(ATTR_TEST_PREFIX) and isinstance(value, dict)
    }
    if not stored:
        return trials
    merged = []
    for trial in trials:
        extra = stored.get(str(trial.number))
        if extra:
            trial = copy.copy(trial)
            trial.user_attrs = {**trial.user_attrs, **extra}
        merged.append(trial)
    return merged


class _NotePublisher:
    """Keeps the study note in optuna-dashboard current during a search: after a trial when
    the best trial changed or ``interval`` seconds have passed, and at the end."""

    def __init__(self, config: StudyConfig, auto: dict[str, Any], interval: float = 10.0):
        self._config = config
        self._auto = auto
        self._interval = interval
        self._last = -math.inf
        self._best: int | None = None

    def publish(self, study: optuna.Study) -> None:
        from lrtune.dashboard import publish_note
        from lrtune.report import study_note

        try:
            publish_note(study, study_note(study, self._config, self._auto))
        except Exception as error:  # a note that did not save must not end the search
            log.warning("could not save the study note: %s", error)
        self._last = time.perf_counter()

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        try:
            best: int | None = study.best_trial.number
        except ValueError:
            best = None
        if best != self._best or time.perf_counter() - self._last >= self._interval:
            self._best = best
            self.publish(study)


def _upload_lr_curves(study: optuna.Study, auto: dict[str, Any], folder: Path) -> None:
    """The range tests of ``lr: auto``, as an HTML artifact (once per study)."""
    import tempfile

    from lrtune.dashboard import upload_artifact
    from lrtune.lr_range import LRFinderResult
    from lrtune.report import lr_curves_figure, write_html

    results = [LRFinderResult.from_dict(v["result"]) for v in auto.values() if v.get("result")]
    if not results:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = write_html(
            lr_curves_figure(results, title=f"LR range tests: study {study.study_name}"),
            Path(tmp) / "lr-range-test.html",
        )
        upload_artifact(study, folder, path, replace=True)


def _upload_report(study: optuna.Study, folder: Path, storage: str) -> None:
    """The study report as an HTML artifact, named after the trials it covers."""
    import tempfile

    from lrtune.dashboard import upload_artifact
    from lrtune.report import write_report

    finished = _finished(study)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"report-{finished}-trials.html"
        try:
            write_report(study, path, storage=mask_url(storage))
        except Exception as error:  # a report that failed must not end the search
            log.warning("could not write the study report: %s", error)
            return
        upload_artifact(study, folder, path, replace=True)


def best_config(study: optuna.Study) -> TrainConfig:
    """The resolved training configuration of the study's best trial.

    Raises:
        ConfigError: The study has no complete trial.
    """
    try:
        trial = study.best_trial
    except ValueError:
        raise ConfigError(f"study {study.study_name!r} has no complete trial yet") from None
    return TrainConfig.model_validate(trial.user_attrs["config"])


def _summary(study: optuna.Study, stream: TextIO) -> None:
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    best_per = _best_per_optimizer(trials_with_tests(study), maximize)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    print(
        f"study {study.study_name}: {states.count(TrialState.COMPLETE)} complete, "
        f"{states.count(TrialState.PRUNED)} pruned, {states.count(TrialState.FAIL)} failed",
        file=stream,
    )
    print(
        f"{'optimizer':<10} {'trial':>5} {'value':>8} {'test_acc':>8} {'lr':>9}  schedule",
        file=stream,
    )
    ordered = sorted(best_per.items(), key=lambda kv: kv[1].value or 0.0, reverse=maximize)
    for name, trial in ordered:
        cfg = trial.user_attrs.get("config", {})
        test_acc = trial.user_attrs.get("test_acc", math.nan)
        print(
            f"{name:<10} {trial.number:>5} {trial.value:>8.4f} {test_acc:>8.4f} "
            f"{cfg.get('optimizer', {}).get('lr', math.nan):>9.3g}  "
            f"{cfg.get('schedule', {}).get('name', '')}",
            file=stream,
        )


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
    publish: bool,
    workers: int,
    factories: tuple[object, ...],
) -> None:
    """Everything that can be wrong with the input, before the storage is touched."""
    try:
        if workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        storage = config.storage or DEFAULT_STORAGE
        if "://" in storage:
            _check_url(storage)
        else:
            _check_journal_path(storage)
        create_sampler(config), create_pruner(config)
        if datamodule_factory is None:
            from lrtune.training import datamodule_for

            datamodule_for(config.base_train_config()).prepare_data()
        if publish:
            from lrtune.dashboard import artifact_dir_for, check_artifact_dir

            check_artifact_dir(config.artifacts or artifact_dir_for(config.storage))
        if workers > 1:
            import pickle

            for factory in factories:
                if factory is None:
                    continue
                try:
                    pickle.dumps(factory)
                except Exception:
                    raise ConfigError(
                        f"{getattr(factory, '__name__', factory)!s} cannot be sent to worker "
                        "processes: with workers > 1, factories must be module-level "
                        "functions (no lambdas or closures)"
                    ) from None
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}" if source else str(error)) from None


def _open_study(config: StudyConfig) -> optuna.Study:
    """Create or load the study and check it was made with the same configuration."""
    storage = open_storage(config.storage)
    study = optuna.create_study(
        storage=storage,
        sampler=create_sampler(config),
        pruner=create_pruner(config),
        study_name=config.name,
        direction=config.objective.resolved_direction,  # type: ignore[arg-type]
        load_if_exists=True,
    )
    _check_same_study(study, config, config.storage or DEFAULT_STORAGE)
    return study


class _FailureStreak:
    """Stops a worker when ``limit`` trials in a row fail with the same error."""

    def __init__(self, study_name: str, limit: int = 3) -> None:
        self._study_name = study_name
        self._limit = limit
        self._kind: str | None = None
        self._trials: list[int] = []

    def update(self, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state != TrialState.FAIL:
            self._kind, self._trials = None, []
            return
        if coord.SURPLUS in trial.user_attrs:
            return
        error = str(trial.user_attrs.get("error") or trial.system_attrs.get("fail_reason", "?"))
        error = error.strip().splitlines()[0] if error.strip() else "?"
        kind = re.sub(r"\d+(\.\d+)?", "#", error)  # "tried to allocate 2.1 GiB" ~ "3.4 GiB"
        if kind != self._kind:
            self._kind, self._trials = kind, []
        self._trials.append(trial.number)
        if len(self._trials) >= self._limit:
            raise StudyFailedError(
                f"study {self._study_name!r}: {len(self._trials)} trials in a row failed with "
                f"{error} (trials {', '.join(map(str, self._trials))}); stopped instead of "
                "spending the budget on failures. Fix the cause and rerun: finished trials "
                "are kept"
            )


def _optimize(
    study: optuna.Study,
    config: StudyConfig,
    objective: Callable[[optuna.Trial], float],
    callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]],
    progress: TextIO | None,
    tag: str = "",
) -> None:
    """Run trials one at a time until ``n_trials`` have finished across all workers, the
    timeout passes, or trials keep failing.

    Before each trial: fail the trials of dead workers (any worker may), then stop if
    enough trials have finished, or wait while the running ones would make enough (one of
    them may still fail). ``study.optimize(n_trials=1)`` runs the trial, so Optuna's
    heartbeat (RDB storages), failure recording and callbacks all apply.
    """
    deadline = None if config.timeout is None else time.monotonic() + config.timeout
    streak = _FailureStreak(config.name)
    ran: list[optuna.trial.FrozenTrial] = []
    next_check = time.monotonic() + 10.0  # the set-up just failed dead workers' trials
    reseeded = False
    while deadline is None or time.monotonic() < deadline:
        if time.monotonic() >= next_check:
            retried = coord.fail_dead_trials(study)
            if retried and progress is not None:
                numbers = ", ".join(map(str, retried))
                print(f"{tag}lrtune: trial(s) {numbers} left running by a dead worker: "
                      "failed, their parameters queued again", file=progress)  # fmt: skip
            next_check = time.monotonic() + 10.0
        finished, running = coord.count(study)
        if not reseeded and (tag or coord.others_running(study)):
            # workers with the same seed would sample the same parameters: a single
            # process is reproducible from the seed, parallel ones are not (as in Optuna)
            study.sampler.reseed_rng()
            reseeded = True
        if config.n_trials is not None:
            if finished >= config.n_trials:
                break
            if finished + running >= config.n_trials:
                time.sleep(0.5)
                continue
        ran.clear()
        study.optimize(
            objective,
            n_trials=1,
            callbacks=[*callbacks, lambda _s, t: ran.append(t)],
            gc_after_trial=False,  # the objective collects after every trial
            catch=(Exception,),
        )
        if ran:
            streak.update(ran[-1])


def _run_worker(
    config: StudyConfig,
    *,
    module_factory: Callable[[TrainConfig], pl.LightningModule] | None,
    datamodule_factory: Callable[[TrainConfig], pl.LightningDataModule] | None,
    progress: TextIO | None,
    publish: bool,
    tag: str = "",
) -> optuna.Study:
    """One worker: the study's set-up (under the set-up lock), then trials."""
    study = _open_study(config)
    with coord.setup_lock(study._storage, config.name):
        retried = coord.fail_dead_trials(study)
        if retried and progress is not None:
            print(f"lrtune: {len(retried)} trial(s) left running by a dead process: failed, "
                  "retrying", file=progress)  # fmt: skip
        _name_objective(study, config)
        folder = _artifact_folder(study, config)
        auto: dict[str, Any] = {}
        if config.space.lr.auto:
            auto = _auto_lr(study, config)
            if publish:
                _upload_lr_curves(study, auto, folder)
        ranges = lr_ranges(config, {k: tuple(v["range"]) for k, v in auto.items()})
        _enqueue_defaults(study, config, ranges)
    note = _NotePublisher(config, auto)
    callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = [
        _Progress(progress, config.n_trials, _finished(study), tag)
    ]
    if publish:
        note.publish(study)
        callbacks.append(note)
    # Everything alive now (torch, Lightning, the data) lives for the whole search: freeze it
    # out of the garbage collector, so the full collection after each trial (which frees the
    # trial's module, optimizer and Trainer, and their device memory) scans only what the
    # trial made: 190 ms -> ~5 ms per collection with Lightning loaded.
    gc.collect()
    gc.freeze()
    held = _HeldWeights()
    failure: StudyFailedError | None = None
    try:
        _optimize(
            study, config, _objective(config, ranges, module_factory, datamodule_factory, held),
            callbacks, progress, tag=tag,
        )  # fmt: skip
    except StudyFailedError as error:  # the finished trials still get their test pass
        failure = error
    except KeyboardInterrupt:
        if held.by_optimizer and progress is not None:
            print(f"{tag}lrtune: interrupted: the test split was not evaluated for the best "
                  "trials (test: end)", file=progress)  # fmt: skip
        raise
    finally:
        gc.unfreeze()
    held.test(study, config, progress, tag)
    if failure is not None:
        raise failure
    return study


def search(
    study: str | Path | StudyConfig,
    *,
    overrides: Mapping[str, Any] | None = None,
    module_factory: Callable[[TrainConfig], pl.LightningModule] | None = None,
    datamodule_factory: Callable[[TrainConfig], pl.LightningDataModule] | None = None,
    progress: TextIO | None = sys.stderr,
    best_out: str | Path | None = None,
    publish: bool = True,
    workers: int = 1,
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
            artifacts (default ``True``; see :func:`lrtune.dashboard.artifact_dir_for`).
        workers: Worker processes on this machine (default 1: this process). Each runs
            trials against the same storage; CPU threads are split between them and each
            gets its own GPU when there are several. More machines join by running the
            same search on the same storage.
        **fields: Top-level study fields to override, e.g. ``n_trials=10``.

    Returns:
        The ``optuna.Study`` (its user attrs hold the study config and ``lr: auto``'s
        ranges and curves under ``lrtune.lr_auto``).

    Raises:
        ConfigError: Bad input (nothing was written to the storage).
        StudyFailedError: Trials kept failing the same way; the finished ones are kept.
    """
    config, source = _validated(study, {**(overrides or {}), **fields})
    _precheck(
        config, source, datamodule_factory=datamodule_factory, publish=publish,
        workers=workers, factories=(module_factory, datamodule_factory),
    )  # fmt: skip
    failure: StudyFailedError | None = None
    try:
        if workers > 1:
            from lrtune.workers import run_workers

            optuna_study = _open_study(config)
            run_workers(
                config, workers, module_factory=module_factory,
                datamodule_factory=datamodule_factory, quiet=progress is None, publish=publish,
            )  # fmt: skip
        else:
            optuna_study = _run_worker(
                config, module_factory=module_factory, datamodule_factory=datamodule_factory,
                progress=progress, publish=publish,
            )  # fmt: skip
    except StudyFailedError as error:
        failure = error
        optuna_study = _open_study(config)
    if publish:
        auto = dict(optuna_study.user_attrs.get(_ATTR_LR_AUTO) or {})
        _NotePublisher(config, auto).publish(optuna_study)
        from lrtune.dashboard import ATTR_ARTIFACTS, artifact_dir_for

        recorded = optuna_study.user_attrs.get(ATTR_ARTIFACTS)
        folder = Path(recorded or config.artifacts or artifact_dir_for(config.storage))
        _upload_report(optuna_study, folder, config.storage or DEFAULT_STORAGE)
    if progress is not None:
        _summary(optuna_study, progress)
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
