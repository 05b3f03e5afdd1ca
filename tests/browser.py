"""Load a page in headless Chromium and check it: errors, external requests, a screenshot.

A test utility, not a test file. Typical use::

    from tests.browser import check_page, require_browser

    def test_report(tmp_path: Path) -> None:
        require_browser()
        check = check_page(report.as_uri(), tmp_path / "report.png", wait_for="#plot")
        assert check.errors == []
        assert check.external_requests == []
        assert check.nonblank_fraction() > 0.01

The browser is Debian's chromium (``/usr/bin/chromium``, override with ``LRTUNE_CHROMIUM``)
driven by the ``playwright`` Python package; ``playwright install`` is never needed. When
either is missing, :func:`require_browser` skips the test, except under CI (``CI=true``),
where it fails instead so that a broken CI image cannot pass by skipping.

Screenshots are decoded by a small PNG reader (:func:`read_png`) built on ``zlib`` and
``numpy`` so that Pillow is not required.
"""

from __future__ import annotations

import importlib.util
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np
import pytest

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Error, Request, Route

DEFAULT_CHROMIUM = "/usr/bin/chromium"
"""Where Debian's ``chromium`` package puts its launcher."""

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Docker gives containers a 64 MB /dev/shm, too small for Chromium's shared memory; use
    # /tmp instead. (Debian's launcher means to add this itself when /dev/shm is small, but
    # its check breaks when findmnt reports more than one mount, printing "[: unexpected
    # operator" on stderr.)
    "--disable-dev-shm-usage",
]
"""Command-line flags for every launch: headless in a container, offline, quiet."""

LOCAL_SCHEMES = frozenset({"file", "data", "blob", "about"})
"""URL schemes that never touch the network."""

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
"""Hosts that count as local (a test's own HTTP server)."""

BLOCKED_ERROR = "net::ERR_BLOCKED_BY_CLIENT"
"""What Chromium reports for a request that :func:`check_page` aborted."""


def chromium_path() -> Path:
    """The Chromium executable: ``$LRTUNE_CHROMIUM`` if set, else ``/usr/bin/chromium``."""
    return Path(os.environ.get("LRTUNE_CHROMIUM") or DEFAULT_CHROMIUM)


def browser_available() -> str | None:
    """None if tests can drive a browser, else a one-line reason why not.

    Cheap: checks that ``playwright`` is importable and the executable exists; it does not
    start the browser.
    """
    if importlib.util.find_spec("playwright") is None:
        return "python package playwright not installed (pip install playwright)"
    exe = chromium_path()
    if not exe.is_file():
        return f"chromium not found at {exe} (apt-get install chromium, or set LRTUNE_CHROMIUM)"
    if not os.access(exe, os.X_OK):
        return f"chromium at {exe} is not executable"
    return None


def in_ci() -> bool:
    """Whether ``$CI`` is ``true`` or ``1`` (GitHub Actions and most CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


def require_browser() -> None:
    """Skip the calling test when no browser is available; fail instead under CI."""
    reason = browser_available()
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"{reason}; CI must install it rather than skip browser tests")
    pytest.skip(reason)


def is_external(url: str) -> bool:
    """Whether loading ``url`` would leave this machine (not file:/data:/blob:/about:, not
    127.0.0.1/localhost)."""
    parts = urlsplit(url)
    if parts.scheme.lower() in LOCAL_SCHEMES:
        return False
    return (parts.hostname or "").lower() not in LOCAL_HOSTS


# --- PNG -----------------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel (no palette)


def read_png(path: Path) -> np.ndarray:
    """Decode an 8-bit, non-interlaced, non-palette PNG into a ``(height, width, channels)``
    uint8 array (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA), which covers Chromium's screenshots.

    Rows with the Average or Paeth filter are undone in plain Python (about 1 ms per
    1400-pixel RGB row), so a 1400x900 screenshot decodes in well under a second.
    """
    data = Path(path).read_bytes()
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError(f"{path}: not a PNG file")
    pos = len(_PNG_SIGNATURE)
    header = b""
    idat: list[bytes] = []
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length  # length, type, body, CRC
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if len(header) != 13:
        raise ValueError(f"{path}: PNG without an IHDR chunk")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour not in _CHANNELS or interlace != 0:
        raise ValueError(
            f"{path}: unsupported PNG (bit depth {depth}, colour type {colour}, "
            f"interlace {interlace}); only 8-bit non-interlaced grey/RGB/RGBA is decoded"
        )
    bpp = _CHANNELS[colour]
    stride = width * bpp
    raw = zlib.decompress(b"".join(idat))
    if len(raw) != height * (stride + 1):
        expected = height * (stride + 1)
        raise ValueError(f"{path}: PNG image data has {len(raw)} bytes, expected {expected}")
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, stride + 1)
    out = np.empty((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        filter_type, line = int(rows[y, 0]), rows[y, 1:]
        if filter_type == 0:  # None
            cur = line.copy()
        elif filter_type == 1:  # Sub: a running sum per channel, mod 256
            cur = np.cumsum(line.reshape(width, bpp), axis=0, dtype=np.uint8).reshape(-1)
        elif filter_type == 2:  # Up
            cur = line + prev
        elif filter_type == 3:  # Average
            cur = np.frombuffer(_unfilter_average(line.tobytes(), prev.tobytes(), bpp), np.uint8)
        elif filter_type == 4:  # Paeth
            cur = np.frombuffer(_unfilter_paeth(line.tobytes(), prev.tobytes(), bpp), np.uint8)
        else:
            raise ValueError(f"{path}: PNG row {y} has unknown filter type {filter_type}")
        out[y] = cur
        prev = out[y]
    return out.reshape(height, width, bpp)


def _unfilter_average(line: bytes, prev: bytes, bpp: int) -> bytearray:
    """Undo PNG filter 3 on one scanline (sequential, so plain Python)."""
    cur = bytearray(line)
    for i in range(min(bpp, len(cur))):
        cur[i] = (cur[i] + (prev[i] >> 1)) & 0xFF
    for i in range(bpp, len(cur)):
        cur[i] = (cur[i] + ((cur[i - bpp] + prev[i]) >> 1)) & 0xFF
    return cur


def _unfilter_paeth(line: bytes, prev: bytes, bpp: int) -> bytearray:
    """Undo PNG filter 4 on one scanline (sequential, so plain Python)."""
    cur = bytearray(line)
    for i in range(min(bpp, len(cur))):  # no left neighbour: the predictor is "up"
        cur[i] = (cur[i] + prev[i]) & 0xFF
    for i in range(bpp, len(cur)):
        a, b, c = cur[i - bpp], prev[i], prev[i - bpp]
        pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
        if pa <= pb and pa <= pc:
            pred = a
        elif pb <= pc:
            pred = b
        else:
            pred = c
        cur[i] = (cur[i] + pred) & 0xFF
    return cur


def nonblank_fraction(image: np.ndarray) -> float:
    """Fraction of pixels whose colour differs from the most common (background) colour."""
    pixels = image.reshape(-1, image.shape[-1]) if image.ndim == 3 else image.reshape(-1, 1)
    if len(pixels) == 0:
        return 0.0
    packed = np.zeros(len(pixels), dtype=np.uint64)
    for channel in range(pixels.shape[1]):
        packed = (packed << np.uint64(8)) | pixels[:, channel].astype(np.uint64)
    _, counts = np.unique(packed, return_counts=True)
    return float(1.0 - counts.max() / len(packed))


# --- the page check ------------------------------------------------------------------------


@dataclass
class PageCheck:
    """What :func:`check_page` saw while loading one page."""

    errors: list[str]
    """Uncaught page errors, console messages of type "error", and crashes."""
    external_requests: list[str]
    """URLs of requests that would leave this machine (see :func:`is_external`), in order."""
    screenshot: Path
    """The PNG screenshot taken once the page settled."""
    title: str
    """``document.title``."""
    text: str
    """``document.body.innerText``."""
    evaluated: Any = None
    """The value of ``check_page``'s ``evaluate`` expression (``None`` when not given)."""

    def nonblank_fraction(self) -> float:
        """Fraction of screenshot pixels that differ from the most common (background) colour.

        0.0 for a blank page; a page with a chart or a few paragraphs is typically > 0.01.
        """
        return nonblank_fraction(read_png(self.screenshot))


def check_page(
    url: str,
    screenshot: Path,
    *,
    width: int = 1400,
    height: int = 900,
    full_page: bool = True,
    wait_for: str | None = None,
    timeout_s: float = 60,
    block_external: bool = True,
    settle_ms: int = 500,
    evaluate: str | None = None,
) -> PageCheck:
    """Open ``url`` in a fresh headless Chromium, let it settle, screenshot it, and report.

    ``url`` is a ``file://`` URL (``Path.as_uri()``) or ``http://127.0.0.1:PORT/...``. The
    page loads in a ``width`` x ``height`` viewport; this waits for the load event, then for
    network idle, then (if given) for the CSS selector ``wait_for`` to become visible, then
    ``settle_ms`` more, and saves a PNG screenshot (the whole page if ``full_page``) to
    ``screenshot``. ``timeout_s`` bounds each wait; a timeout or a failed navigation raises
    playwright's error. With ``block_external`` (the default) external requests are recorded
    and aborted, so the check runs offline; the console error Chromium logs for each aborted
    request is left out of ``errors`` since the request is already in ``external_requests``.
    ``evaluate``, if given, is a JavaScript expression or function (as for playwright's
    ``page.evaluate``) run after the screenshot; its JSON-serialisable value is returned in
    :attr:`PageCheck.evaluated` (e.g. ``"document.querySelectorAll('.x').length"``).
    The browser is closed however this returns.
    """
    from playwright.sync_api import sync_playwright

    screenshot = Path(screenshot)
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    timeout_ms = timeout_s * 1000
    errors: list[str] = []
    external: list[str] = []
    blocked: set[str] = set()

    def on_request(request: Request) -> None:
        if is_external(request.url):
            external.append(request.url)

    def on_route(route: Route) -> None:
        url = route.request.url
        if is_external(url):
            blocked.add(url)
            route.abort("blockedbyclient")
        else:
            route.fallback()

    def on_console(message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        where = message.location
        source = where.get("url", "")
        if source in blocked and BLOCKED_ERROR in message.text:
            return
        line = where.get("lineNumber")
        suffix = f" ({source}:{line})" if source and line is not None else ""
        errors.append(f"console error: {message.text}{suffix}")

    def on_page_error(error: Error) -> None:
        errors.append(f"page error: {error.name or 'Error'}: {error.message}")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium_path()),
            headless=True,
            args=CHROMIUM_ARGS,
            timeout=timeout_ms,
        )
        try:
            context = browser.new_context(
                viewport={"width": width, "height": height}, device_scale_factor=1
            )
            context.set_default_timeout(timeout_ms)
            context.on("request", on_request)
            if block_external:
                context.route("**/*", on_route)
            page = context.new_page()
            page.on("console", on_console)
            page.on("pageerror", on_page_error)
            page.on("crash", lambda _page: errors.append("page crashed"))
            page.goto(url, wait_until="load", timeout=timeout_ms)
            page.wait_for_load_state("networkidle", timeout=timeout_ms)
            if wait_for is not None:
                page.wait_for_selector(wait_for, state="visible", timeout=timeout_ms)
            if settle_ms > 0:
                page.wait_for_timeout(settle_ms)
            page.screenshot(path=screenshot, full_page=full_page, type="png", timeout=timeout_ms)
            title = page.title()
            text = page.evaluate("() => document.body ? document.body.innerText : ''")
            evaluated = page.evaluate(evaluate) if evaluate is not None else None
        finally:
            browser.close()
    return PageCheck(
        errors=errors,
        external_requests=external,
        screenshot=screenshot,
        title=title,
        text=text,
        evaluated=evaluated,
    )
