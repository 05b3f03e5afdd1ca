"""Exceptions raised by lrtune.

Every error a user can cause by bad input derives from :class:`LrtuneError`. The CLI
prints such errors as one line on stderr and exits with code 2; anything else is a bug.
"""

from __future__ import annotations

import re

__all__ = [
    "ConfigError",
    "DataError",
    "LrtuneError",
    "MissingMetricError",
    "StudyFailedError",
    "one_line",
]

_QUOTED = re.compile(  # a quote that opens after a non-word and closes before one (not it's)
    r"(?<!\w)'(?:[^'\\]|\\.)*'(?!\w)|(?<!\w)\"(?:[^\"\\]|\\.)*\"(?!\w)"
)
QUOTE_LIMIT = 80
"""Longest quoted value an error line shows; a longer one is cut (its length is said)."""
LINE_LIMIT = 600
"""Longest error line; what is past it is cut (a line that names the field comes first)."""


def one_line(message: str) -> str:
    """``message`` as the one line the CLI prints: whitespace runs (newlines included)
    become one space, quoted values longer than :data:`QUOTE_LIMIT` characters are cut, and
    the line is cut at :data:`LINE_LIMIT` characters."""

    def cut(match: re.Match[str]) -> str:
        text = match.group(0)
        if len(text) <= QUOTE_LIMIT:
            return text
        return f"{text[: QUOTE_LIMIT - 4]}...{text[0]} ({len(text) - 2} characters)"

    line = _QUOTED.sub(cut, " ".join(message.split()))
    if len(line) > LINE_LIMIT:
        line = f"{line[: LINE_LIMIT - 3]}... ({len(line)} characters)"
    return line


class LrtuneError(Exception):
    """Base class of every user-facing lrtune error."""


class ConfigError(LrtuneError, ValueError):
    """A configuration value (CLI flag, study file field, API argument) is invalid.

    The message names the field, e.g. ``"optimizer.lr must be > 0, got -1.0"``.
    """


class MissingMetricError(ConfigError):
    """A study's module never logged the objective metric (a study-wide input error: every
    trial would fail the same way)."""


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
