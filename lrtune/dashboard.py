"""optuna-dashboard on lrtune's storages: the server, with lrtune's defaults.

Studies live in standard Optuna storages, so ``optuna-dashboard STORAGE --artifact-dir DIR``
works on them too; this module only fills in lrtune's defaults (the storage file, the
artifact folder the studies recorded) and keeps the server on localhost unless asked
otherwise. Where artifacts live and how they are uploaded is :mod:`lrtune.artifacts`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from lrtune.artifacts import ATTR_ARTIFACTS, artifact_dir_for, artifact_store, check_artifact_dir
from lrtune.errors import ConfigError
from lrtune.storage import DEFAULT_STORAGE, closing_storage, mask_url, open_existing_storage

if TYPE_CHECKING:
    import optuna

__all__ = ["dashboard_server", "serve"]

log = logging.getLogger(__name__)


_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class _QuietHandler(WSGIRequestHandler):
    """No line per HTTP request (the dashboard polls every few seconds)."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("dashboard: " + format, *args)


class _ThreadingServer(WSGIServer):
    """One thread per request, so a slow API call does not block the page."""

    daemon_threads = True

    def process_request(self, request: Any, client_address: Any) -> None:
        import threading

        thread = threading.Thread(target=self._handle, args=(request, client_address), daemon=True)
        thread.start()

    def _handle(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


def _default_artifacts(storage: optuna.storages.BaseStorage, storage_url: str | None) -> Path:
    """The folder the studies in ``storage`` uploaded to (if they agree), else the default."""
    import optuna

    recorded = {
        s.user_attrs.get(ATTR_ARTIFACTS)
        for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
    } - {None}
    if len(recorded) == 1:
        return Path(str(recorded.pop()))
    if len(recorded) > 1:
        log.warning(
            "studies in this storage used different artifact folders (%s); serving the "
            "default; pick one with --artifacts",
            ", ".join(sorted(map(str, recorded))),
        )
    return artifact_dir_for(storage_url)


def _not_ready(environ: Any, start_response: Any) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"starting"]


@contextlib.contextmanager
def dashboard_server(
    storage_url: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    artifacts: str | Path | None = None,
) -> Iterator[WSGIServer]:
    """An optuna-dashboard WSGI server bound to ``host:port`` (not yet serving).

    Use ``server.serve_forever()`` in the ``with`` block (or in a thread, for tests).

    Raises:
        ConfigError: The storage does not exist or cannot be opened, or the port is taken.
    """
    storage = open_existing_storage(storage_url)
    with (
        closing_storage(storage),
        _bound_server(storage, storage_url, host, port, artifacts) as server,
    ):
        yield server


@contextlib.contextmanager
def _bound_server(
    storage: optuna.storages.BaseStorage,
    storage_url: str | None,
    host: str,
    port: int,
    artifacts: str | Path | None,
) -> Iterator[WSGIServer]:
    folder = Path(artifacts) if artifacts is not None else _default_artifacts(storage, storage_url)
    check_artifact_dir(folder)
    server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
    try:  # bind first: a taken port or a bad host must not create the artifact folder
        server = make_server(
            host, port, _not_ready, server_class=server_class, handler_class=_QuietHandler
        )
    except (socket.gaierror, UnicodeError):
        raise ConfigError(f"--host: cannot resolve {host!r}") from None
    except OSError as error:
        reason = "in use" if error.errno == errno.EADDRINUSE else error.strerror or str(error)
        raise ConfigError(f"--port: cannot listen on {host}:{port} ({reason})") from None
    from optuna_dashboard import wsgi

    server.set_app(wsgi(storage, artifact_store=artifact_store(folder)))
    server.artifact_dir = folder  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.server_close()


def serve(
    storage_url: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    artifacts: str | Path | None = None,
    stream: TextIO | None = None,
) -> None:
    """Run optuna-dashboard on a study storage until interrupted (Ctrl-C).

    Args:
        storage_url: Optuna storage URL or journal file (default ``lrtune-studies.journal``).
        host: Interface to bind; ``127.0.0.1`` (the default) keeps it on this machine.
            The dashboard has no authentication and can edit and delete studies: bind
            elsewhere only on a network you trust.
        port: TCP port (default 8080).
        artifacts: Artifact folder (default: the one the studies recorded, else beside the
            storage).
        stream: Where to print the URL and warnings (default: ``sys.stderr``).
    """
    stream = stream if stream is not None else sys.stderr
    with dashboard_server(storage_url, host=host, port=port, artifacts=artifacts) as server:
        shown = f"[{host}]" if ":" in host else host
        if stream is not None:
            print(
                f"lrtune: optuna-dashboard on http://{shown}:{server.server_port}/dashboard/ "
                f"(storage {mask_url(storage_url or DEFAULT_STORAGE)}, artifacts "
                f"{server.artifact_dir}); Ctrl-C stops it",  # type: ignore[attr-defined]
                file=stream,
                flush=True,
            )
            if host not in _LOOPBACK:
                print(
                    f"lrtune: warning: listening on {host}, not only this machine: anyone who "
                    "can reach this port can read, edit and delete the studies (the dashboard "
                    "has no login)",
                    file=stream,
                    flush=True,
                )
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
