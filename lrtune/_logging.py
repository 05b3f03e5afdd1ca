"""Logging set-up shared by the CLI and worker processes (not part of the public API)."""

from __future__ import annotations

import logging
import sys
import warnings
from typing import TextIO


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
