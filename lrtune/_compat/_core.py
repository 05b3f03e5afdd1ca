"""Private names of Optuna, torch, PyMySQL and numpy that lrtune needs (core layer: no
Lightning).

See :mod:`lrtune._compat` for why they are fenced here.
"""

from __future__ import annotations

import copy
import importlib
import json
from types import ModuleType
from typing import Any

import optuna
import torch
from optuna.distributions import BaseDistribution
from optuna.samplers._tpe import sampler as _tpe
from optuna.search_space.group_decomposed import _GroupDecomposedSearchSpace, _SearchSpaceGroup
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "FAILED_TRIAL_LOGGER",
    "IncrementalGroups",
    "SearchSpaceGroup",
    "TPEInternals",
    "is_batch_norm",
    "journal_op_codes",
    "numpy_multiarray",
    "numpy_reconstruct",
    "pymysql_unbounded_reads",
    "scale_last_lr",
    "storage_backend",
    "store_relative_params",
    "study_id",
    "study_storage",
    "trial_id",
    "uncompiled",
]

# The logger Optuna reports a failed trial through ("Trial N failed with ...").
FAILED_TRIAL_LOGGER = "optuna.study._optimize"

SearchSpaceGroup = _SearchSpaceGroup


def study_storage(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study reads and writes (Optuna has no public accessor)."""
    return study._storage


def study_id(study: optuna.Study) -> int:
    """The storage's id of ``study`` (what the storage's methods take)."""
    return study._study_id


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of a live or frozen trial (public ids are per-study numbers)."""
    return trial._trial_id


def storage_backend(storage: optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    """The storage under Optuna's cache (``_CachedStorage`` wraps an ``RDBStorage``)."""
    return getattr(storage, "_backend", storage)


def journal_op_codes() -> frozenset[int]:
    """The ``op_code`` values an Optuna journal file may hold."""
    from optuna.storages.journal._storage import JournalOperation

    return frozenset(op.value for op in JournalOperation)


def store_relative_params(study: optuna.Study, trial: FrozenTrial, params: dict[str, Any]) -> None:
    """Store a running trial's relatively sampled parameters where ``TPESampler`` with
    ``constant_liar=True`` reads them (other workers count the trial as a "lie"), in
    chunks of TPE's system-attr length, as ``TPESampler.sample_relative`` does."""
    text, width = json.dumps(params), _tpe._SYSTEM_ATTR_MAX_LENGTH
    for i in range(0, len(text), width):
        key = f"{_tpe._RELATIVE_PARAMS_KEY}:{i // width}"
        study_storage(study).set_trial_system_attr(trial_id(trial), key, text[i : i + width])


class IncrementalGroups(_GroupDecomposedSearchSpace):
    """Optuna's group decomposition of a search space, fed each finished trial once (Optuna's
    own reads every trial on every call)."""

    def __init__(self, include_pruned: bool = False) -> None:
        super().__init__(include_pruned)
        self._seen: set[int] = set()

    def calculate(self, study: optuna.Study, use_cache: bool = False) -> _SearchSpaceGroup:
        if self._study_id is None:
            self._study_id = study_id(study)
        elif self._study_id != study_id(study):
            raise ValueError("`_GroupDecomposedSearchSpace` cannot handle multiple studies.")
        states = (TrialState.COMPLETE, TrialState.PRUNED)
        for trial in study._get_trials(
            deepcopy=False, states=states if self._include_pruned else states[:1],
            use_cache=use_cache,
        ):  # fmt: skip
            if trial.number not in self._seen:
                self._seen.add(trial.number)
                self._search_space.add_distributions(trial.distributions)
        return copy.deepcopy(self._search_space)


class TPEInternals(optuna.samplers.TPESampler):
    """``TPESampler`` with the internals a grouped sampler builds on given public names,
    and :class:`IncrementalGroups` as its group decomposition (see ``lrtune._sampler``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self._group_decomposed_search_space is not None:
            self._group_decomposed_search_space = IncrementalGroups(True)

    @property
    def group_spaces(self) -> list[dict[str, BaseDistribution]] | None:
        """The parameter groups of the search space last inferred (``None`` unless
        ``group=True`` and inferred)."""
        if not self._group or self._search_space_group is None:
            return None
        return list(self._search_space_group.search_spaces)

    @property
    def constant_liar(self) -> bool:
        """Does the sampler share running trials' parameters with other workers?"""
        return bool(self._constant_liar)

    def sample_group(
        self, study: optuna.Study, trial: FrozenTrial, space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """TPE's multivariate sample of one group of parameters."""
        return self._sample_relative(study, trial, space)


def pymysql_unbounded_reads(dbapi_connection: Any) -> None:
    """Lift an open PyMySQL connection's read timeout (its ``read_timeout`` also bounds the
    handshake, which is why lrtune sets one); other drivers' connections are left alone."""
    if hasattr(dbapi_connection, "_read_timeout"):
        dbapi_connection._read_timeout = None
        sock = getattr(dbapi_connection, "_sock", None)
        if sock is not None:
            sock.settimeout(None)


def numpy_multiarray() -> ModuleType:
    """The module defining ``_reconstruct`` and ``scalar``, which pickled numpy arrays name
    (``numpy._core.multiarray`` in numpy >= 2, ``numpy.core.multiarray`` before)."""
    try:
        return importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy < 1.26
        return importlib.import_module("numpy.core.multiarray")


def numpy_reconstruct() -> Any:
    """numpy's ``_reconstruct`` (what a pickled ``ndarray`` is rebuilt with)."""
    return numpy_multiarray()._reconstruct


def scale_last_lr(scheduler: Any, factor: float) -> None:
    """Scale the LRs a torch scheduler last set (what its ``get_last_lr()`` returns)."""
    if hasattr(scheduler, "_last_lr"):
        scheduler._last_lr = [v * factor for v in scheduler._last_lr]


def uncompiled(module: torch.nn.Module) -> torch.nn.Module:
    """The module that ``torch.compile`` wrapped (``module`` itself when not compiled)."""
    return getattr(module, "_orig_mod", module)


def is_batch_norm(module: torch.nn.Module) -> bool:
    """Is ``module`` a BatchNorm layer (1d, 2d, 3d, sync or lazy) with running statistics?"""
    return isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
