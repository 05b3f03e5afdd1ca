"""The ``lrtune`` command line: a thin shell over the Python API.

Bad input (unknown names, out-of-range values, missing or corrupt files) prints one line,
``lrtune: error: ...``, on stderr and exits with code 2.

This package assembles the CLI and owns ``main``, the entry point (``lrtune = "lrtune.cli:main"``
and ``python -m lrtune``), which maps errors to exit codes. The typer ``app`` and the shared
helpers live in ``_app``, the shared options in ``_options``; the commands in ``_train``
(``train``, ``find-lr``), ``_study`` (``search``, ``best``, ``report``, ``dashboard``) and
``_list`` (``list``). Every import of lightning, torch or optuna stays inside a command, so
``lrtune --help`` is fast.
"""

from __future__ import annotations

import sys

import typer

# Importing a command module registers its commands on ``app``; the import order is the
# order ``lrtune --help`` lists them in, so keep it.
# isort: off
from lrtune.cli import _train  # train, find-lr
from lrtune.cli import _study  # search, best, report, dashboard
from lrtune.cli import _list  # list

# isort: on
from lrtune.cli._app import _ClickException, app
from lrtune.errors import LrtuneError, one_line

__all__ = ["app", "main"]

_COMMAND_MODULES = (_train, _study, _list)


def _user_error(error: BaseException) -> str | None:
    """One line for an error out of the user's own module or datamodule (``None``: not)."""
    if "lightning" not in sys.modules:
        return None
    from lrtune.components import describe_user_error

    return describe_user_error(error)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (2 for bad input, with a one-line message)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        result = app(args=args, prog_name="lrtune", standalone_mode=False)
    except LrtuneError as error:
        from lrtune._logging import traceback_log
        from lrtune.errors import StudyFailedError
        from lrtune.study import mask_url

        log = traceback_log()
        where = f" (tracebacks: {log})" if log is not None else ""
        print(f"lrtune: error: {one_line(mask_url(str(error)))}{where}", file=sys.stderr)
        return 1 if isinstance(error, StudyFailedError) else 2
    except _ClickException as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # bare `lrtune`: the help, exit 0
            print(error.ctx.get_help())  # type: ignore[attr-defined]
            return 0
        message = error.format_message()  # type: ignore[attr-defined]
        print(f"lrtune: error: {one_line(message)}", file=sys.stderr)
        return 2
    except Exception as error:
        described = _user_error(error)
        if described is None:  # lrtune's own bug: the traceback, as Python prints it
            raise
        from lrtune._logging import write_traceback
        from lrtune.study import mask_url

        log = write_traceback(error)
        print(f"lrtune: error: {one_line(mask_url(described))} (traceback: {log})",
              file=sys.stderr)  # fmt: skip
        return 2
    except (KeyboardInterrupt, typer.Abort):
        print("lrtune: interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0
