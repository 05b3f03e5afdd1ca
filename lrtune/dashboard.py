"""optuna-dashboard on lrtune's storages: where artifacts live, uploads, and the server.

Studies live in standard Optuna storages, so ``optuna-dashboard STORAGE --artifact-dir DIR``
works on them too; this module only fills in lrtune's defaults (the storage file, the
artifact folder beside it) and keeps the server on localhost unless asked otherwise.
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

from lrtune.errors import ConfigError

if TYPE_CHECKING:
    import optuna
    from optuna.artifacts import FileSystemArtifactStore

__all__ = [
    "artifact_dir_for",
    "artifact_store",
    "check_artifact_dir",
    "find_artifact",
    "publish_note",
    "serve",
    "upload_artifact",
]

log = logging.getLogger(__name__)

ATTR_ARTIFACTS = "lrtune.artifacts"
"""Study user attr: the absolute artifact folder the search uploaded to."""

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def artifact_dir_for(storage: str | None) -> Path:
    """Default artifact folder for a storage: beside a journal file or SQLite database
    (``studies.journal`` -> ``studies.artifacts/``), else ``./lrtune-artifacts``.

    For studies shared by several machines through PostgreSQL or MySQL, give a folder on
    a shared filesystem instead (``artifacts:`` in the study file or ``--artifacts``).
    """
    from lrtune.study import DEFAULT_STORAGE

    target = storage or DEFAULT_STORAGE
    if target.startswith("sqlite:///"):
        return Path(target[len("sqlite:///") :]).with_suffix(".artifacts")
    if "://" in target:
        return Path("lrtune-artifacts")
    return Path(target).with_suffix(".artifacts")


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


def publish_note(study: optuna.Study, body: str) -> None:
    """Save ``body`` (markdown) as the study note optuna-dashboard shows."""
    from optuna_dashboard import save_note

    save_note(study, body)


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
    from lrtune.study import open_existing_storage

    storage = open_existing_storage(storage_url)
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
    from lrtune.study import DEFAULT_STORAGE, mask_url

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
