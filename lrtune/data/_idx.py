"""Reader for the IDX format used by MNIST and Fashion-MNIST.

An IDX file is a big-endian header followed by raw data::

    magic   4 bytes  0x00 0x00 <type> <ndim>   (type 0x08 = unsigned byte)
    dims    ndim * 4 bytes, each a big-endian uint32
    data    prod(dims) items of the given type, row-major

Images use magic ``0x00000803`` (2051: uint8, 3 dims ``N, H, W``) and labels
``0x00000801`` (2049: uint8, 1 dim ``N``). Files may be gzip-compressed; compression is
detected from the gzip magic bytes, not from the file name.

Every problem with a file raises :class:`~lrtune.errors.DataError` with a one-line
message that starts with the full path of the file.
"""

from __future__ import annotations

import gzip
import logging
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from lrtune.errors import DataError

__all__ = [
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "find_idx_file",
    "load_idx_split",
    "read_idx_images",
    "read_idx_labels",
]

logger = logging.getLogger(__name__)

IDX_IMAGES_MAGIC = 0x00000803
"""Magic number of a uint8 IDX file with 3 dimensions (images)."""

IDX_LABELS_MAGIC = 0x00000801
"""Magic number of a uint8 IDX file with 1 dimension (labels)."""

_GZIP_MAGIC = b"\x1f\x8b"
_UBYTE_TYPE = 0x08
_CHUNK = 1 << 20
_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error, OSError)


def _one_line(text: object) -> str:
    """Collapse an exception message (or anything) to a single line."""
    return " ".join(str(text).split())


def _is_gzip(path: Path) -> bool:
    try:
        with open(path, "rb") as raw:
            return raw.read(2) == _GZIP_MAGIC
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected an IDX file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read file: {_one_line(exc.strerror or exc)}") from None


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _read_exactly(stream: _Readable, size: int) -> bytes:
    """Read up to ``size`` bytes, in bounded chunks (never one huge allocation)."""
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = stream.read(min(remaining, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def _read_idx(
    path: str | os.PathLike[str], *, magic: int, kind: str
) -> tuple[tuple[int, ...], np.ndarray]:
    """Read and validate an unsigned-byte IDX file.

    Returns:
        The dimensions from the header and a writable, flat uint8 array with exactly
        ``prod(dims)`` items.
    """
    path = Path(path)
    compressed = _is_gzip(path)
    ndim = magic & 0xFF
    what = "gzip-compressed IDX" if compressed else "IDX"
    try:
        opener = gzip.open if compressed else open
        with opener(path, "rb") as stream:
            head = _read_exactly(stream, 4)
            if len(head) < 4:
                raise DataError(
                    f"{path}: not an IDX {kind} file: only {len(head)} bytes, "
                    "too short for the 4-byte magic number"
                )
            found_magic = struct.unpack(">I", head)[0]
            if head[:2] != b"\x00\x00" or head[2] != _UBYTE_TYPE:
                raise DataError(
                    f"{path}: not an IDX {kind} file: bad magic number 0x{found_magic:08x} "
                    f"(expected 0x{magic:08x})"
                )
            if head[3] != ndim:
                hint = ""
                if found_magic == IDX_LABELS_MAGIC:
                    hint = " (this looks like a label file)"
                elif found_magic == IDX_IMAGES_MAGIC:
                    hint = " (this looks like an image file)"
                raise DataError(
                    f"{path}: wrong IDX {kind} file: header declares {head[3]} dimensions, "
                    f"expected {ndim} (magic 0x{found_magic:08x}, expected 0x{magic:08x}){hint}"
                )
            dims_raw = _read_exactly(stream, 4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise DataError(
                    f"{path}: truncated {what} {kind} file: header needs {4 + 4 * ndim} bytes, "
                    f"found {4 + len(dims_raw)}"
                )
            dims = struct.unpack(f">{ndim}I", dims_raw)
            expected = 1
            for dim in dims:
                expected *= dim
            payload = _read_exactly(stream, expected + 1)
    except DataError:
        raise
    except MemoryError:
        raise DataError(f"{path}: not enough memory to read this {what} {kind} file") from None
    except _GZIP_ERRORS as exc:
        if compressed:
            raise DataError(
                f"{path}: corrupt gzip file: {_one_line(exc) or type(exc).__name__}"
            ) from None
        raise DataError(f"{path}: cannot read file: {_one_line(exc)}") from None

    shape = "x".join(str(d) for d in dims)
    if len(payload) < expected:
        raise DataError(
            f"{path}: truncated {what} {kind} file: header declares shape {shape}, "
            f"expected {expected} bytes of data, found {len(payload)}"
        )
    if len(payload) > expected:
        raise DataError(
            f"{path}: {what} {kind} file has trailing bytes after the {expected} bytes of data "
            f"declared by its header (shape {shape})"
        )
    # np.frombuffer on bytes is read-only; copy so callers get a normal writable array.
    data = np.frombuffer(payload, dtype=np.uint8).copy()
    return dims, data


def read_idx_images(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX image file (magic 2051), gzip-compressed or not.

    Args:
        path: The file, e.g. ``train-images-idx3-ubyte.gz``. Compression is detected from
            the content.

    Returns:
        A writable ``uint8`` array of shape ``(N, H, W)``; sizes come from the header, so
        any number of images is accepted.

    Raises:
        DataError: The file is missing, unreadable, not an IDX image file, truncated, has
            trailing bytes or is a corrupt gzip stream.
    """
    dims, data = _read_idx(path, magic=IDX_IMAGES_MAGIC, kind="image")
    return data.reshape(dims)


def read_idx_labels(path: str | os.PathLike[str], *, num_classes: int = 10) -> np.ndarray:
    """Read an IDX label file (magic 2049), gzip-compressed or not.

    Args:
        path: The file, e.g. ``train-labels-idx1-ubyte.gz``.
        num_classes: Every label must lie in ``[0, num_classes)``.

    Returns:
        A writable ``uint8`` array of shape ``(N,)``.

    Raises:
        DataError: The file is missing, unreadable, not an IDX label file, truncated, has
            trailing bytes, is a corrupt gzip stream or holds a label out of range.
    """
    dims, labels = _read_idx(path, magic=IDX_LABELS_MAGIC, kind="label")
    labels = labels.reshape(dims)
    if labels.size:
        bad = np.flatnonzero(labels >= num_classes)
        if bad.size:
            first = int(bad[0])
            raise DataError(
                f"{Path(path)}: label {int(labels[first])} at index {first} is out of range "
                f"[0, {num_classes}) ({bad.size} labels out of range)"
            )
    return labels


def load_idx_split(
    images_path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str],
    *,
    num_classes: int = 10,
    expected_hw: tuple[int, int] = (28, 28),
) -> tuple[np.ndarray, np.ndarray]:
    """Read a matching pair of IDX image and label files.

    Args:
        images_path: The IDX image file.
        labels_path: The IDX label file.
        num_classes: Every label must lie in ``[0, num_classes)``.
        expected_hw: Required image height and width.

    Returns:
        ``(images, labels)``: ``uint8`` arrays of shapes ``(N, H, W)`` and ``(N,)``.

    Raises:
        DataError: Either file is invalid (see :func:`read_idx_images` and
            :func:`read_idx_labels`), holds no images, has the wrong image size, or the
            two files disagree on the number of samples.
    """
    images = read_idx_images(images_path)
    n, h, w = images.shape
    if (h, w) != tuple(expected_hw):
        raise DataError(
            f"{Path(images_path)}: images are {h}x{w}, expected {expected_hw[0]}x{expected_hw[1]}"
        )
    if n == 0:
        raise DataError(f"{Path(images_path)}: IDX image file holds no images")
    labels = read_idx_labels(labels_path, num_classes=num_classes)
    if labels.shape[0] != n:
        raise DataError(
            f"{Path(labels_path)}: holds {labels.shape[0]} labels but "
            f"{Path(images_path)} holds {n} images"
        )
    logger.debug("read %d images of %dx%d from %s", n, h, w, images_path)
    return images, labels


def find_idx_file(
    data_dir: str | os.PathLike[str],
    name: str,
    *,
    torchvision_dirs: Sequence[str] = ("MNIST", "FashionMNIST"),
) -> Path | None:
    """Locate an IDX file, compressed or not, in the usual layouts.

    Looks for ``name.gz`` then ``name`` in ``data_dir``, then in ``data_dir/raw``, then in
    ``data_dir/<d>/raw`` for each ``d`` in ``torchvision_dirs`` (torchvision layouts).

    Args:
        data_dir: Directory to search.
        name: Base file name without ``.gz``, e.g. ``"train-images-idx3-ubyte"``.
        torchvision_dirs: torchvision dataset folder names to search. Pass only the one
            matching the dataset (e.g. ``("FashionMNIST",)``) so that a torchvision root
            holding both MNIST and Fashion-MNIST cannot yield the wrong dataset's file.

    Returns:
        The first regular file found, or ``None``.
    """
    root = Path(data_dir)
    dirs = [root, root / "raw", *(root / d / "raw" for d in torchvision_dirs)]
    for directory in dirs:
        for candidate in (directory / f"{name}.gz", directory / name):
            if candidate.is_file():
                return candidate
    return None
