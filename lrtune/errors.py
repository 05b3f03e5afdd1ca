"""Exceptions raised by lrtune.

Every error a user can cause by bad input derives from :class:`LrtuneError`. The CLI
prints such errors as one line on stderr and exits with code 2; anything else is a bug.
"""

from __future__ import annotations

__all__ = ["ConfigError", "DataError", "LrtuneError"]


class LrtuneError(Exception):
    """Base class of every user-facing lrtune error."""


class ConfigError(LrtuneError, ValueError):
    """A configuration value (CLI flag, study file field, API argument) is invalid.

    The message names the field, e.g. ``"optimizer.lr must be > 0, got -1.0"``.
    """


class DataError(LrtuneError, OSError):
    """A dataset file is missing, truncated, corrupt or cannot be downloaded.

    The message names the file and says what is wrong with it.
    """
