"""Tests of the downloader, against a local HTTP server (no network needed)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lrtune.data import _download
from lrtune.data._download import (
    CIFAR10_ARCHIVE,
    CIFAR100_ARCHIVE,
    FASHION_MNIST_FILES,
    MNIST_FILES,
    RemoteFile,
    download_file,
    ensure_files,
    offline_hint,
)
from lrtune.errors import DataError

SHARED_MNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"
NAMES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Serve ``tmp_path / "www"``; yields (base url ending in '/', served dir)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", www
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def dead_url() -> str:
    """A URL on a port where nothing listens (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    path = tmp_path / "dest"
    path.mkdir()
    return path


def serve(www: Path, name: str, content: bytes) -> str:
    (www / name).parent.mkdir(parents=True, exist_ok=True)
    (www / name).write_bytes(content)
    return hashlib.md5(content).hexdigest()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# ------------------------------------------------------------------------- constants


def test_constants() -> None:
    assert [r.filename for r in MNIST_FILES] == NAMES
    assert [r.filename for r in FASHION_MNIST_FILES] == NAMES
    assert MNIST_FILES[0].urls == (
        "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
        "http://yann.lecun.com/exdb/mnist/train-images-idx3-ubyte.gz",
    )
    assert FASHION_MNIST_FILES[3].urls == (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-labels-idx1-ubyte.gz",
    )
    assert CIFAR10_ARCHIVE.urls == ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)
    assert CIFAR100_ARCHIVE.filename == "cifar-100-python.tar.gz"
    for remote in (*MNIST_FILES, *FASHION_MNIST_FILES, CIFAR10_ARCHIVE, CIFAR100_ARCHIVE):
        assert len(remote.md5) == 32 and int(remote.md5, 16) >= 0
        assert all(url.endswith("/" + remote.filename) for url in remote.urls)


def test_mnist_test_files_match_official_md5() -> None:
    """The shared MNIST test files are the official ones (train files are a subset)."""
    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST files not available in {SHARED_MNIST}")
    for remote in MNIST_FILES[2:]:
        content = (SHARED_MNIST / remote.filename).read_bytes()
        assert hashlib.md5(content).hexdigest() == remote.md5


def test_offline_hint() -> None:
    hint = offline_hint("mnist", NAMES, Path("/some/dir"))
    assert hint == f"put the mnist files {', '.join(NAMES)} in /some/dir"


# ---------------------------------------------------------------------- download_file


def test_download_ok(
    server: tuple[str, Path], dest: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base, www = server
    content = bytes(range(256)) * 4000  # ~1 MB, several chunks
    md5 = serve(www, "f.gz", content)
    with caplog.at_level(logging.INFO, logger=_download.__name__):
        path = download_file(RemoteFile("f.gz", (base + "f.gz",), md5), dest)
    assert path == dest / "f.gz"
    assert path.read_bytes() == content
    assert leftovers(dest) == ["f.gz"]
    progress = [r.getMessage() for r in caplog.records if "%)" in r.getMessage()]
    assert 5 <= len(progress) <= 11 and progress[-1].endswith("(100%)")


def test_download_replaces_existing_file(server: tuple[str, Path], dest: Path) -> None:
    base, www = server
    md5 = serve(www, "f.gz", b"new content")
    (dest / "f.gz").write_bytes(b"old")
    download_file(RemoteFile("f.gz", (base + "f.gz",), md5.upper()), str(dest))
    assert (dest / "f.gz").read_bytes() == b"new content"


def test_download_wrong_md5(server: tuple[str, Path], dest: Path) -> None:
    base, www = server
    serve(www, "f.gz", b"tampered")
    wrong = "0" * 32
    with pytest.raises(DataError) as info:
        download_file(RemoteFile("f.gz", (base + "f.gz",), wrong), dest)
    message = str(info.value)
    assert "md5" in message and wrong in message
    assert hashlib.md5(b"tampered").hexdigest() in message
    assert str(dest / "f.gz") in message
    assert "\n" not in message
    assert leftovers(dest) == []


def test_download_network_failure(dead_url: str, dest: Path) -> None:
    remote = RemoteFile(NAMES[0], (dead_url + NAMES[0], dead_url + "mirror/" + NAMES[0]), "0" * 32)
    with pytest.raises(DataError) as info:
        download_file(remote, dest, timeout=5, dataset="mnist", all_files=NAMES)
    message = str(info.value)
    assert message.startswith(f"cannot download mnist file {NAMES[0]} (no network?")
    assert offline_hint("mnist", NAMES, dest) in message
    assert "\n" not in message
    assert leftovers(dest) == []


def test_download_http_404(server: tuple[str, Path], dest: Path) -> None:
    base, _ = server
    with pytest.raises(DataError, match="404") as info:
        download_file(RemoteFile("gone.gz", (base + "gone.gz",), "0" * 32), dest)
    assert str(dest) in str(info.value) and "gone.gz" in str(info.value)
    assert leftovers(dest) == []


def test_only_http_urls(dest: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret")
    remote = RemoteFile("f.gz", (secret.as_uri(),), hashlib.md5(b"secret").hexdigest())
    with pytest.raises(DataError, match="unsupported URL scheme 'file'"):
        download_file(remote, dest)
    assert leftovers(dest) == []


def test_first_mirror_dead_second_ok(server: tuple[str, Path], dead_url: str, dest: Path) -> None:
    base, www = server
    md5 = serve(www, "mirror2/f.gz", b"payload")
    remote = RemoteFile(
        "f.gz", (dead_url + "f.gz", base + "missing/f.gz", base + "mirror2/f.gz"), md5
    )
    assert download_file(remote, dest).read_bytes() == b"payload"
    assert leftovers(dest) == ["f.gz"]


def test_first_mirror_bad_md5_second_ok(server: tuple[str, Path], dest: Path) -> None:
    base, www = server
    serve(www, "bad/f.gz", b"<html>captive portal</html>")
    md5 = serve(www, "good/f.gz", b"payload")
    remote = RemoteFile("f.gz", (base + "bad/f.gz", base + "good/f.gz"), md5)
    assert download_file(remote, dest).read_bytes() == b"payload"
    assert leftovers(dest) == ["f.gz"]


def test_interrupted_download_leaves_nothing(
    server: tuple[str, Path], dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the middle of the stream removes the .part file and propagates."""
    base, www = server
    md5 = serve(www, "f.gz", b"x" * 500_000)
    real_md5 = hashlib.md5
    chunks = {"n": 0}

    class _InterruptingMd5:
        def __init__(self, *args: object, **kwargs: object) -> None:
            self._md5 = real_md5()

        def update(self, data: bytes) -> None:
            chunks["n"] += 1
            if chunks["n"] == 3:
                assert any(p.suffix == ".part" for p in dest.iterdir())
                raise KeyboardInterrupt
            self._md5.update(data)

        def hexdigest(self) -> str:
            return self._md5.hexdigest()

    monkeypatch.setattr(_download.hashlib, "md5", _InterruptingMd5)
    with pytest.raises(KeyboardInterrupt):
        download_file(RemoteFile("f.gz", (base + "f.gz",), md5), dest)
    assert chunks["n"] == 3
    assert leftovers(dest) == []


def test_truncated_response_is_a_network_error(dest: Path) -> None:
    """A server closing the connection early must not produce a file."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(5)

    def serve_truncated() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)

    thread = threading.Thread(target=serve_truncated, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/f.gz"
        remote = RemoteFile("f.gz", (url,), hashlib.md5(b"x" * 1000).hexdigest())
        with pytest.raises(DataError, match="cannot download") as info:
            download_file(remote, dest, timeout=5)
    finally:
        thread.join(5)
        listener.close()
    assert "IncompleteRead" in str(info.value) or "incomplete" in str(info.value).lower()
    assert leftovers(dest) == []


# ----------------------------------------------------------------------- ensure_files


def _remotes(base: str) -> tuple[RemoteFile, ...]:
    return tuple(RemoteFile(name, (base + name,), "0" * 32) for name in NAMES)


def test_ensure_files_no_download_missing(dead_url: str, tmp_path: Path) -> None:
    dest = tmp_path / "new" / "mnist"
    (dest).mkdir(parents=True)
    (dest / NAMES[0]).write_bytes(b"local")
    with pytest.raises(DataError) as info:
        ensure_files(dest, _remotes(dead_url), dataset="mnist", download=False)
    message = str(info.value)
    for name in NAMES[1:]:
        assert name in message
    assert offline_hint("mnist", NAMES, dest) in message
    assert "download disabled" in message and "\n" not in message


def test_ensure_files_creates_no_folder_it_cannot_fill(dead_url: str, tmp_path: Path) -> None:
    """A missing data_dir is made for a download, and taken away when the download fails;
    with downloads off, it is never made (issue 21: /nonexistent/mnist was created)."""
    dest = tmp_path / "no" / "such" / "mnist"
    with pytest.raises(DataError, match="download disabled"):
        ensure_files(dest, _remotes(dead_url), dataset="mnist", download=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DataError, match="cannot download"):
        ensure_files(dest, _remotes(dead_url), dataset="mnist", timeout=2.0)
    assert list(tmp_path.iterdir()) == []


def test_ensure_files_creates_dir_and_downloads_missing(
    server: tuple[str, Path], tmp_path: Path
) -> None:
    base, www = server
    dest = tmp_path / "a" / "b"
    remotes = tuple(
        RemoteFile(name, (base + name,), serve(www, name, name.encode() * 10)) for name in NAMES
    )
    paths = ensure_files(dest, remotes, dataset="mnist")
    assert paths == [dest / name for name in NAMES]
    assert all(p.read_bytes() == p.name.encode() * 10 for p in paths)
    assert leftovers(dest) == sorted(NAMES)


def test_existing_local_file_not_verified(dead_url: str, dest: Path) -> None:
    for name in NAMES:
        (dest / name).write_bytes(b"a local subset, md5 differs")
    # Would fail if it tried to download (dead url) or to check md5 (all zeros).
    assert ensure_files(dest, _remotes(dead_url), dataset="mnist") == [dest / n for n in NAMES]
    assert ensure_files(dest, _remotes(dead_url), dataset="mnist", download=False)


def test_ensure_files_download_failure_has_hint(dead_url: str, dest: Path) -> None:
    with pytest.raises(DataError) as info:
        ensure_files(dest, _remotes(dead_url), dataset="fashion-mnist", timeout=5)
    message = str(info.value)
    assert offline_hint("fashion-mnist", NAMES, dest) in message
    assert leftovers(dest) == []


def test_ensure_files_bad_dir(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"")
    with pytest.raises(DataError, match="not a directory") as info:
        ensure_files(not_a_dir, _remotes("http://127.0.0.1:1/"), dataset="mnist")
    assert str(not_a_dir) in str(info.value)
    with pytest.raises(DataError, match="cannot create") as info:
        ensure_files(not_a_dir / "sub", _remotes("http://127.0.0.1:1/"), dataset="mnist")
    assert str(not_a_dir / "sub") in str(info.value)


def test_ensure_files_path_is_a_directory(dest: Path) -> None:
    (dest / NAMES[1]).mkdir()
    with pytest.raises(DataError, match="not a regular file") as info:
        ensure_files(dest, _remotes("http://127.0.0.1:1/"), dataset="mnist", download=False)
    assert str(dest / NAMES[1]) in str(info.value)
