"""Artifacts of a study for optuna-dashboard: where a study's artifact folder is, and
uploading files to it.

Thin wrappers over ``optuna.artifacts`` (imported when used). The search records its
artifact folder in the study; ``lrtune dashboard`` serves it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from lrtune.errors import ConfigError
from lrtune.storage import DEFAULT_STORAGE

if TYPE_CHECKING:
    import optuna
    from optuna.artifacts import FileSystemArtifactStore

    from lrtune.config import StudyConfig

__all__ = [
    "ATTR_ARTIFACTS",
    "artifact_dir_for",
    "artifact_store",
    "check_artifact_dir",
    "configured_artifact_dir",
    "find_artifact",
    "upload_artifact",
]

log = logging.getLogger(__name__)

ATTR_ARTIFACTS = "lrtune.artifacts"
"""Study user attr: the absolute artifact folder the search uploaded to."""


def artifact_dir_for(storage: str | None) -> Path:
    """Default artifact folder for a storage: beside a journal file or SQLite database
    (``studies.journal`` -> ``studies.artifacts/``), else ``./lrtune-artifacts``.

    For studies shared by several machines through PostgreSQL or MySQL, give a folder on
    a shared filesystem instead (``artifacts:`` in the study file or ``--artifacts``).
    """
    target = storage or DEFAULT_STORAGE
    if target.startswith("sqlite:///"):
        return Path(target[len("sqlite:///") :]).with_suffix(".artifacts")
    if "://" in target:
        return Path("lrtune-artifacts")
    return Path(target).with_suffix(".artifacts")


def configured_artifact_dir(config: StudyConfig) -> Path:
    """A study's artifact folder: its ``artifacts:`` field, else the default for its
    storage (:func:`artifact_dir_for`)."""
    return Path(config.artifacts or artifact_dir_for(config.storage))


def check_artifact_dir(folder: str | Path) -> Path:
    """Check that ``folder`` is, or can be created as, a writable folder (creates nothing).

    Raises:
        ConfigError: It is a file, or its nearest existing parent is not a writable folder.
    """
    import os

    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"artifacts {path}: not a folder")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"artifacts {path}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"artifacts {path}: {existing} is not writable")
    return path


def artifact_store(folder: str | Path) -> FileSystemArtifactStore:
    """An Optuna ``FileSystemArtifactStore`` on ``folder`` (created if missing)."""
    from optuna.artifacts import FileSystemArtifactStore

    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"artifacts {path}: cannot create folder ({error.strerror})") from None
    if not path.is_dir():
        raise ConfigError(f"artifacts {path}: not a folder")
    return FileSystemArtifactStore(str(path))


def find_artifact(study: optuna.Study, filename: str) -> str | None:
    """The id of the study's artifact named ``filename``, or ``None``."""
    from optuna.artifacts import get_all_artifact_meta

    for meta in get_all_artifact_meta(study):
        if meta.filename == filename:
            return meta.artifact_id
    return None


def upload_artifact(
    study: optuna.Study, folder: str | Path, file_path: str | Path, *, replace: bool = False
) -> str | None:
    """Upload ``file_path`` as an artifact of ``study`` (shown by optuna-dashboard).

    Args:
        study: The study to attach the file to.
        folder: The artifact folder (see :func:`artifact_dir_for`).
        file_path: The file; its name is the artifact's name.
        replace: Skip the upload when the study already has an artifact of that name
            (``False``, the default, uploads a new one every time).

    Returns:
        The artifact id, or ``None`` when skipped. Upload errors are logged, not raised:
        a figure that did not upload must not end a search.
    """
    import warnings

    from optuna.artifacts import upload_artifact as _upload

    name = Path(file_path).name
    if replace and find_artifact(study, name) is not None:
        return None
    try:
        with warnings.catch_warnings():  # artifacts are marked experimental in Optuna
            warnings.simplefilter("ignore")
            return _upload(
                artifact_store=artifact_store(folder),
                file_path=str(file_path),
                study_or_trial=study,
                mimetype="text/html" if name.endswith(".html") else None,
            )
    except Exception as error:  # disk full, permissions: report and go on
        log.warning("could not upload %s as an artifact: %s", name, error)
        return None
