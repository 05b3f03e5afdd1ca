"""Logging set-up shared by the CLI and worker processes (not part of the public API)."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import TextIO

from lrtune._compat._core import FAILED_TRIAL_LOGGER


def quiet_lightning() -> None:
    """Keep Lightning's info chatter and known-harmless warnings off the terminal."""
    import lightning.pytorch  # noqa: F401  (sets its loggers to INFO on import)

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is now (tests and notebooks swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def log_to_stderr(prefix: str = "lrtune: ") -> None:
    """Show lrtune's own progress messages (data loading, downloads) on stderr."""
    logger = logging.getLogger("lrtune")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(prefix + "%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


_TRACEBACK_LOG: Path | None = None


def _new_log_path() -> Path:
    """``$TMPDIR/lrtune-logs/lrtune-<time>-<pid>.log`` (the folder made if needed)."""
    folder = Path(tempfile.gettempdir()) / "lrtune-logs"
    folder.mkdir(exist_ok=True)
    return folder / f"lrtune-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


def _not_a_failed_trial(record: logging.LogRecord) -> bool:
    """Optuna's records of a failed trial (the one with its traceback, and "Trial N failed
    with value None.") stay off the terminal: lrtune's progress and error lines say it."""
    if record.exc_info is not None:
        return False
    return not (record.name == FAILED_TRIAL_LOGGER and " failed with value" in record.msg)


def tracebacks_to_file() -> Path:
    """Keep tracebacks off the terminal: Optuna's failed-trial records (each with its full
    traceback) go to a log file in the system's temporary folder, created at the first
    record; the rest of Optuna's warnings still reach stderr. Returns the file's path (see
    :func:`traceback_log`)."""
    import optuna

    global _TRACEBACK_LOG
    _TRACEBACK_LOG = _new_log_path()
    to_file = logging.FileHandler(_TRACEBACK_LOG, delay=True, encoding="utf-8")
    to_file.setFormatter(logging.Formatter("[%(levelname)s %(asctime)s %(name)s] %(message)s"))
    to_terminal = _StderrHandler()
    to_terminal.addFilter(_not_a_failed_trial)
    to_terminal.setFormatter(logging.Formatter("[%(levelname)s %(asctime)s] %(message)s"))
    optuna.logging.disable_default_handler()
    logger = logging.getLogger("optuna")
    ours = (_StderrHandler, logging.FileHandler)  # a second call replaces the first's
    for handler in [h for h in logger.handlers if isinstance(h, ours)]:
        logger.removeHandler(handler)
        handler.close()
    logger.addHandler(to_file)
    logger.addHandler(to_terminal)
    return _TRACEBACK_LOG


def traceback_log() -> Path | None:
    """The file :func:`tracebacks_to_file` wrote tracebacks to, if it wrote any."""
    return _TRACEBACK_LOG if _TRACEBACK_LOG is not None and _TRACEBACK_LOG.exists() else None


def write_traceback(error: BaseException) -> Path:
    """Append ``error``'s traceback to the log file (made if needed); return its path."""
    global _TRACEBACK_LOG
    if _TRACEBACK_LOG is None:
        _TRACEBACK_LOG = _new_log_path()
    with _TRACEBACK_LOG.open("a", encoding="utf-8") as log:
        log.write("".join(traceback.format_exception(error)))
    return _TRACEBACK_LOG
