"""tests/browser.py: the headless-Chromium page check, its PNG reader, and skip-vs-fail."""

from __future__ import annotations

import functools
import http.server
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.browser import (
    PageCheck,
    browser_available,
    check_page,
    is_external,
    nonblank_fraction,
    read_png,
    require_browser,
)


def _page(tmp_path: Path, body: str, *, name: str = "page.html", title: str = "t") -> Path:
    """Write a white HTML page with ``body`` to ``tmp_path/name``."""
    path = tmp_path / name
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body style='margin:0;background:#fff'>{body}</body></html>",
        encoding="utf-8",
    )
    return path


def _check(tmp_path: Path, page: Path | str, **kwargs: Any) -> PageCheck:
    """``check_page`` on a file or URL with a small viewport, screenshot at tmp_path/shot.png."""
    url = page.as_uri() if isinstance(page, Path) else page
    return check_page(url, tmp_path / "shot.png", width=800, height=600, **kwargs)


# --- with a browser ------------------------------------------------------------------------


def test_coloured_div_renders_without_errors(tmp_path: Path) -> None:
    require_browser()
    page = _page(
        tmp_path,
        "<div id='box' style='width:300px;height:200px;background:#c03'></div><p>Hello lrtune</p>",
        title="Box",
    )
    check = _check(tmp_path, page, wait_for="#box")
    assert check.errors == []
    assert check.external_requests == []
    assert check.title == "Box"
    assert "Hello lrtune" in check.text
    assert check.screenshot == tmp_path / "shot.png"
    assert read_png(check.screenshot).shape == (600, 800, 3)
    assert check.nonblank_fraction() > 0.01


def test_uncaught_error_is_reported(tmp_path: Path) -> None:
    require_browser()
    page = _page(tmp_path, "<p>x</p><script>console.log('fine'); throw new Error('boom')</script>")
    check = _check(tmp_path, page)
    assert any("boom" in error for error in check.errors), check.errors
    assert len(check.errors) == 1, check.errors  # console.log is not an error


def test_console_error_is_reported(tmp_path: Path) -> None:
    require_browser()
    page = _page(tmp_path, "<script>console.error('bad thing', 42)</script>")
    check = _check(tmp_path, page)
    assert check.errors and "bad thing 42" in check.errors[0], check.errors


def test_external_request_is_recorded_and_blocked(tmp_path: Path) -> None:
    require_browser()
    page = _page(tmp_path, "<img src='https://example.com/x.png'><p>offline</p>")
    check = _check(tmp_path, page)
    assert check.external_requests == ["https://example.com/x.png"]
    assert check.errors == []  # the aborted load's console error is not counted twice
    assert "offline" in check.text


def test_blank_page_is_blank(tmp_path: Path) -> None:
    require_browser()
    check = _check(tmp_path, _page(tmp_path, ""), full_page=False)
    assert check.errors == []
    assert check.text == ""
    assert check.nonblank_fraction() < 0.001


@pytest.fixture
def local_server(tmp_path: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving ``tmp_path``; yields its base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_localhost_is_not_external(tmp_path: Path, local_server: str) -> None:
    require_browser()
    (tmp_path / "app.js").write_text("document.body.append('from app.js')", encoding="utf-8")
    _page(tmp_path, "<script src='app.js'></script>", name="index.html")
    check = _check(tmp_path, f"{local_server}/index.html")
    assert check.errors == []
    assert check.external_requests == []
    assert "from app.js" in check.text


# --- without a browser ---------------------------------------------------------------------


def test_is_external() -> None:
    assert is_external("https://example.com/x.png")
    assert is_external("http://10.0.0.1:8080/")
    assert is_external("wss://cdn.example.org/socket")
    for url in (
        "file:///tmp/a.html",
        "data:text/html,hi",
        "blob:null/1234",
        "about:blank",
        "http://127.0.0.1:8000/index.html",
        "http://localhost/a.js",
        "http://[::1]:9000/",
    ):
        assert not is_external(url), url


def test_require_browser_skips_locally_and_fails_in_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LRTUNE_CHROMIUM", str(tmp_path / "no-chromium"))
    reason = browser_available()
    assert reason is not None and "no-chromium" in reason and "\n" not in reason
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-chromium"):
        require_browser()
    for value in ("true", "1", "TRUE"):
        monkeypatch.setenv("CI", value)
        with pytest.raises(pytest.fail.Exception, match="no-chromium"):
            require_browser()
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        require_browser()


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _write_png(path: Path, image: np.ndarray) -> None:
    """A reference PNG encoder: row y uses filter y % 5, so every filter type is exercised."""
    height, width, channels = image.shape
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = image.reshape(height, width * channels).astype(int)
    raw = bytearray()
    for y in range(height):
        kind = y % 5
        raw.append(kind)
        for i, x in enumerate(rows[y]):
            a = rows[y, i - channels] if i >= channels else 0
            b = rows[y - 1, i] if y else 0
            c = rows[y - 1, i - channels] if y and i >= channels else 0
            pred = [0, a, b, (a + b) // 2, _paeth(a, b, c)][kind]
            raw.append((x - pred) % 256)

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(raw)))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_read_png_all_filters(tmp_path: Path, channels: int) -> None:
    rng = np.random.default_rng(channels)
    image = rng.integers(0, 256, size=(23, 17, channels), dtype=np.uint8)
    image[5:15, 3:12] = 255  # flat areas as well as noise
    path = tmp_path / "image.png"
    _write_png(path, image)
    np.testing.assert_array_equal(read_png(path), image)


def test_nonblank_fraction() -> None:
    image = np.full((10, 10, 3), 255, dtype=np.uint8)
    assert nonblank_fraction(image) == 0.0
    image[0, :3] = (255, 255, 254)  # differs in one channel only
    assert nonblank_fraction(image) == pytest.approx(0.03)
    image[5:] = 0  # 50 black pixels; white (47) is no longer the most common colour
    assert nonblank_fraction(image) == pytest.approx(0.5)
