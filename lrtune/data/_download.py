"""Download of the official dataset files, with md5 verification and atomic placement.

Only downloaded files are checksum-verified: a file the user already put in place (for
instance a subset of MNIST) is used as it is.

A download streams into a hidden temporary file ``.<name>.part`` in the destination
directory, hashing as it goes, and is renamed into place with :func:`os.replace` only
when the md5 matches. The temporary file is removed on any failure, including
``KeyboardInterrupt``.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lrtune.errors import DataError

__all__ = [
    "CIFAR10_ARCHIVE",
    "CIFAR100_ARCHIVE",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_MIRRORS",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "RemoteFile",
    "download_file",
    "ensure_files",
    "offline_hint",
]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 16
_USER_AGENT = "lrtune (python urllib)"


@dataclass(frozen=True)
class RemoteFile:
    """A file to download.

    Attributes:
        filename: Name of the file on disk (and last URL component).
        urls: Full URLs to try, in order.
        md5: Expected md5 hex digest of the downloaded bytes.
    """

    filename: str
    urls: tuple[str, ...]
    md5: str


def _mirrored(mirrors: Sequence[str], files: Iterable[tuple[str, str]]) -> tuple[RemoteFile, ...]:
    return tuple(
        RemoteFile(filename=name, urls=tuple(f"{base}{name}" for base in mirrors), md5=md5)
        for name, md5 in files
    )


MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

MNIST_FILES: tuple[RemoteFile, ...] = _mirrored(
    MNIST_MIRRORS,
    (
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ),
)
"""The four MNIST files (train images, train labels, test images, test labels)."""

FASHION_MNIST_MIRRORS: tuple[str, ...] = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)

FASHION_MNIST_FILES: tuple[RemoteFile, ...] = _mirrored(
    FASHION_MNIST_MIRRORS,
    (
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    ),
)
"""The four Fashion-MNIST files (train images, train labels, test images, test labels)."""

CIFAR10_ARCHIVE = RemoteFile(
    filename="cifar-10-python.tar.gz",
    urls=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
    md5="c58f30108f718f92721af3b95e74349a",
)

CIFAR100_ARCHIVE = RemoteFile(
    filename="cifar-100-python.tar.gz",
    urls=("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
    md5="eb9058c3a382ffc7106e4002c42a8d85",
)

# Everything urllib/http.client raise for an unreachable, failing or dropped connection.
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError)


class _Md5MismatchError(Exception):
    def __init__(self, got: str) -> None:
        super().__init__(got)
        self.got = got


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def offline_hint(
    dataset_name: str, filenames: Iterable[str], dest_dir: str | os.PathLike[str]
) -> str:
    """Tell the user which files to put where when they cannot be downloaded.

    Args:
        dataset_name: Dataset name for the message, e.g. ``"mnist"``.
        filenames: The dataset's file names.
        dest_dir: Directory where the files are looked for.

    Returns:
        One line such as ``"put the mnist files a.gz, b.gz in /data/mnist"``.
    """
    names = ", ".join(filenames)
    return f"put the {dataset_name} files {names} in {Path(dest_dir)}"


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:  # pragma: no cover - best effort cleanup
        logger.warning("could not remove partial download %s: %s", path, exc)


def _fetch(url: str, remote: RemoteFile, dest_dir: Path, timeout: float) -> Path:
    """Download ``url`` into a temporary file in ``dest_dir`` and check its md5.

    Returns:
        The temporary file (complete, md5 verified). The caller moves it into place.

    Raises:
        _Md5MismatchError: The bytes do not have the expected md5.
        DataError: The temporary file cannot be created or written (local disk problem).
        ValueError: ``url`` is malformed or not http(s).
        OSError, URLError, HTTPException: Network problem.

    The temporary file is removed whenever this raises, ``KeyboardInterrupt`` included.
    """
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme {scheme!r} in {url}")
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    target = dest_dir / remote.filename
    try:
        # Closed by the `with tmp` below; created here so that disk errors are told apart.
        tmp = tempfile.NamedTemporaryFile(  # noqa: SIM115
            dir=dest_dir, delete=False, prefix=".", suffix=".part"
        )
    except OSError as exc:
        raise DataError(
            f"{dest_dir}: cannot create a file for the download of {remote.filename}: "
            f"{_one_line(exc.strerror or exc)}"
        ) from None
    tmp_path = Path(tmp.name)
    try:
        with tmp, urllib.request.urlopen(request, timeout=timeout) as response:
            length_header = response.headers.get("Content-Length")
            total = int(length_header) if length_header and length_header.isdigit() else None
            digest = hashlib.md5(usedforsecurity=False)
            done = 0
            step = max(total // 10, 1) if total else 10 << 20
            next_report = step
            logger.info(
                "downloading %s from %s (%s bytes)", remote.filename, url, total or "unknown"
            )
            while chunk := response.read(_CHUNK):
                try:
                    tmp.write(chunk)
                except OSError as exc:
                    raise DataError(
                        f"{target}: cannot write the download: {_one_line(exc.strerror or exc)}"
                    ) from None
                digest.update(chunk)
                done += len(chunk)
                if done >= next_report:
                    if total:
                        pct = 100 * done // total
                        logger.info("%s: %d / %d bytes (%d%%)", remote.filename, done, total, pct)
                    else:
                        logger.info("%s: %d bytes", remote.filename, done)
                    next_report = (done // step + 1) * step
            if total is not None and done != total:
                raise http.client.IncompleteRead(b"", total - done)
            try:
                tmp.flush()
                os.fsync(tmp.fileno())
            except OSError as exc:
                raise DataError(
                    f"{target}: cannot write the download: {_one_line(exc.strerror or exc)}"
                ) from None
        got = digest.hexdigest()
        if got != remote.md5.lower():
            raise _Md5MismatchError(got)
    except BaseException:
        _unlink_quietly(tmp_path)
        raise
    return tmp_path


def download_file(
    remote: RemoteFile,
    dest_dir: str | os.PathLike[str],
    *,
    timeout: float = 60.0,
    dataset: str | None = None,
    all_files: Sequence[str] | None = None,
) -> Path:
    """Download ``remote`` into ``dest_dir``, trying each URL in turn.

    The bytes stream into a hidden ``.part`` file in ``dest_dir`` and are moved into place
    atomically once their md5 matches; no partial file is ever left behind. An existing
    file of the same name is replaced.

    Args:
        remote: What to download.
        dest_dir: Existing destination directory.
        timeout: Socket timeout in seconds for each connection attempt and read.
        dataset: Dataset name used in error messages (default: the file name).
        all_files: All file names of the dataset, listed in the offline hint of the
            error message (default: just ``remote.filename``).

    Returns:
        Path of the downloaded file, ``dest_dir / remote.filename``.

    Raises:
        DataError: Every URL failed. If some URL served bytes with the wrong md5, the
            message names the file, the expected and the received md5; otherwise it says
            the download failed and which files to put where.
    """
    dest_dir = Path(dest_dir)
    target = dest_dir / remote.filename
    name = dataset or remote.filename
    files = list(all_files) if all_files else [remote.filename]
    last_error = "no URL to download from"
    bad_md5: tuple[str, str] | None = None
    for url in remote.urls:
        try:
            tmp_path = _fetch(url, remote, dest_dir, timeout)
        except DataError:
            raise
        except _Md5MismatchError as exc:
            logger.warning(
                "%s from %s has md5 %s, expected %s", remote.filename, url, exc.got, remote.md5
            )
            bad_md5 = (url, exc.got)
            continue
        except ValueError as exc:  # malformed or non-http URL
            last_error = _one_line(exc)
            logger.warning("cannot download %s from %s: %s", remote.filename, url, last_error)
            continue
        except _NETWORK_ERRORS as exc:
            last_error = _one_line(exc) or type(exc).__name__
            logger.warning("cannot download %s from %s: %s", remote.filename, url, last_error)
            continue
        try:
            os.replace(tmp_path, target)
        except BaseException as exc:
            _unlink_quietly(tmp_path)
            if isinstance(exc, OSError):
                raise DataError(
                    f"{target}: cannot move downloaded file into place: {_one_line(exc)}"
                ) from None
            raise
        logger.info("downloaded %s", target)
        return target

    if bad_md5 is not None:
        url, got = bad_md5
        raise DataError(
            f"{target}: download from {url} has md5 {got}, expected {remote.md5} "
            f"(file not saved); {offline_hint(name, files, dest_dir)}"
        )
    raise DataError(
        f"cannot download {name} file {remote.filename} (no network? last error: {last_error}): "
        f"{offline_hint(name, files, dest_dir)}"
    )


def ensure_files(
    dest_dir: str | os.PathLike[str],
    remotes: Sequence[RemoteFile],
    *,
    dataset: str,
    download: bool = True,
    timeout: float = 60.0,
) -> list[Path]:
    """Make sure every file of ``remotes`` is present in ``dest_dir``.

    Files that already exist are used as they are (not checksum-verified, so a local
    subset of a dataset is fine); missing ones are downloaded if ``download`` is true.

    Args:
        dest_dir: Directory of the files; created (with parents) if needed.
        remotes: The dataset's files.
        dataset: Dataset name for messages, e.g. ``"mnist"``.
        download: Whether missing files may be downloaded.
        timeout: Socket timeout in seconds, see :func:`download_file`.

    Returns:
        Paths of the files, in the order of ``remotes``.

    Raises:
        DataError: ``dest_dir`` cannot be created, a file path is not a regular file,
            files are missing and ``download`` is false, or a download failed.
    """
    dest_dir = Path(dest_dir)
    filenames = [r.filename for r in remotes]
    if dest_dir.exists() and not dest_dir.is_dir():
        raise DataError(f"{dest_dir}: exists but is not a directory")
    paths = [dest_dir / r.filename for r in remotes]
    for path in paths:
        if path.exists() and not path.is_file():
            raise DataError(f"{path}: exists but is not a regular file")
    missing = [r for r, p in zip(remotes, paths, strict=True) if not p.is_file()]
    if missing and not download:
        names = ", ".join(r.filename for r in missing)
        raise DataError(
            f"{dest_dir}: {dataset} file(s) missing: {names} (download disabled): "
            f"{offline_hint(dataset, filenames, dest_dir)}"
        )
    if not missing:
        return paths
    # the folder is made for the download, and taken away again if nothing came of it
    created = [d for d in (dest_dir, *dest_dir.parents) if not d.exists()]
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise DataError(f"{dest_dir}: exists but is not a directory") from None
    except OSError as exc:
        raise DataError(
            f"{dest_dir}: cannot create data directory: {_one_line(exc.strerror or exc)}"
        ) from None
    try:
        for remote in missing:
            download_file(remote, dest_dir, timeout=timeout, dataset=dataset, all_files=filenames)
    except BaseException:
        for folder in created:  # deepest first; only the ones still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return paths
