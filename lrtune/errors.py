"""Exceptions raised by lrtune.

Every error a user can cause by bad input derives from :class:`LrtuneError`. The CLI
prints such errors as one line on stderr and exits with code 2; anything else is a bug.
"""

from __future__ import annotations

__all__ = ["ConfigError", "DataError", "LrtuneError", "StudyFailedError"]


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


class StudyFailedError(LrtuneError):
    """A study stopped because its trials keep failing the same way (a bug in a module,
    out of memory, ...), rather than spend its budget on failures.

    The message names the error and the trials. Finished trials are kept; fix the cause
    and rerun to resume. The CLI exits with code 1.
    """
