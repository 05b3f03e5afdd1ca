"""Tests of the IDX (MNIST / Fashion-MNIST) reader."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lrtune.data._idx import (
    find_idx_file,
    load_idx_split,
    read_idx_images,
    read_idx_labels,
)
from lrtune.errors import DataError

SHARED_MNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"


def idx_bytes(array: np.ndarray, *, magic: int | None = None) -> bytes:
    """Serialize a uint8 array as IDX (magic derived from ndim unless given)."""
    array = np.asarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x0800 | array.ndim
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write(path: Path, payload: bytes, *, compress: bool) -> Path:
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# ------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("compress", [True, False])
def test_images_round_trip(tmp_path: Path, rng: np.random.Generator, compress: bool) -> None:
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    path = write(tmp_path / "imgs", idx_bytes(images), compress=compress)
    got = read_idx_images(path)
    assert got.dtype == np.uint8
    assert got.shape == (7, 28, 28)
    np.testing.assert_array_equal(got, images)
    assert got.flags.writeable


@pytest.mark.parametrize("compress", [True, False])
def test_labels_round_trip(tmp_path: Path, rng: np.random.Generator, compress: bool) -> None:
    labels = rng.integers(0, 10, size=13, dtype=np.uint8)
    path = write(tmp_path / "labels", idx_bytes(labels), compress=compress)
    got = read_idx_labels(path)
    assert got.dtype == np.uint8 and got.shape == (13,)
    np.testing.assert_array_equal(got, labels)


def test_compression_detected_from_content_not_suffix(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    images = rng.integers(0, 256, size=(3, 5, 4), dtype=np.uint8)
    gz_without_suffix = write(tmp_path / "a-idx3-ubyte", idx_bytes(images), compress=True)
    raw_with_gz_suffix = write(tmp_path / "b-idx3-ubyte.gz", idx_bytes(images), compress=False)
    np.testing.assert_array_equal(read_idx_images(gz_without_suffix), images)
    np.testing.assert_array_equal(read_idx_images(raw_with_gz_suffix), images)


def test_any_count_and_non_square_size(tmp_path: Path, rng: np.random.Generator) -> None:
    images = rng.integers(0, 256, size=(6309 // 100, 3, 5), dtype=np.uint8)
    got = read_idx_images(write(tmp_path / "x", idx_bytes(images), compress=True))
    assert got.shape == (63, 3, 5)


def test_load_idx_split(tmp_path: Path, rng: np.random.Generator) -> None:
    images = rng.integers(0, 256, size=(11, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=11, dtype=np.uint8)
    ip = write(tmp_path / "i.gz", idx_bytes(images), compress=True)
    lp = write(tmp_path / "l", idx_bytes(labels), compress=False)
    got_i, got_l = load_idx_split(ip, lp)
    np.testing.assert_array_equal(got_i, images)
    np.testing.assert_array_equal(got_l, labels)


# ----------------------------------------------------------------------- real files


def _require_shared() -> Path:
    if not (SHARED_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST files not available in {SHARED_MNIST}")
    return SHARED_MNIST


def test_real_mnist_train_subset() -> None:
    root = _require_shared()
    images, labels = load_idx_split(
        root / "train-images-idx3-ubyte.gz", root / "train-labels-idx1-ubyte.gz"
    )
    assert images.shape == (6309, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (6309,) and labels.dtype == np.uint8
    assert set(np.unique(labels)) == set(range(10))
    assert 0 < images.mean() < 255


def test_real_mnist_test() -> None:
    root = _require_shared()
    images, labels = load_idx_split(
        root / "t10k-images-idx3-ubyte.gz", root / "t10k-labels-idx1-ubyte.gz"
    )
    assert images.shape == (10000, 28, 28)
    assert labels.shape == (10000,)
    assert labels.max() == 9 and labels.min() == 0


def test_real_mnist_found_by_find_idx_file() -> None:
    root = _require_shared()
    assert find_idx_file(root, "train-images-idx3-ubyte") == root / "train-images-idx3-ubyte.gz"


# -------------------------------------------------------------------------- bad files


def assert_data_error(
    path: Path, func: Callable[..., object], *args: object, match: str | None = None
) -> str:
    with pytest.raises(DataError) as info:
        func(*args)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    if match is not None:
        assert match in message, message
    return message


@pytest.mark.parametrize("compress", [True, False])
def test_bad_magic(tmp_path: Path, compress: bool) -> None:
    data = idx_bytes(np.zeros((2, 28, 28), np.uint8), magic=0x12345678)
    path = write(tmp_path / "bad", data, compress=compress)
    assert_data_error(path, read_idx_images, path, match="bad magic")


def test_not_idx_at_all(tmp_path: Path) -> None:
    path = write(tmp_path / "junk.gz", b"<html>404</html>", compress=False)
    assert_data_error(path, read_idx_images, path, match="magic")


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path / "empty", b"", compress=False)
    assert_data_error(path, read_idx_labels, path, match="too short")


def test_wrong_ndim(tmp_path: Path) -> None:
    # A label file (1 dim) given where images (3 dims) are expected, and vice versa.
    labels = write(tmp_path / "labels", idx_bytes(np.zeros(4, np.uint8)), compress=True)
    assert_data_error(labels, read_idx_images, labels, match="dimensions")
    images = write(tmp_path / "images", idx_bytes(np.zeros((4, 2, 2), np.uint8)), compress=True)
    assert_data_error(images, read_idx_labels, images, match="dimensions")
    two_d = write(tmp_path / "2d", idx_bytes(np.zeros((4, 2), np.uint8)), compress=False)
    assert_data_error(two_d, read_idx_images, two_d, match="2 dimensions")


@pytest.mark.parametrize("compress", [True, False])
def test_truncated_payload(tmp_path: Path, compress: bool) -> None:
    data = idx_bytes(np.ones((10, 28, 28), np.uint8))[:-100]
    path = write(tmp_path / "trunc", data, compress=compress)
    message = assert_data_error(path, read_idx_images, path, match="truncated")
    assert "expected 7840 bytes" in message and "found 7740" in message


def test_truncated_header(tmp_path: Path) -> None:
    path = write(tmp_path / "h", idx_bytes(np.ones((1, 2, 2), np.uint8))[:9], compress=False)
    assert_data_error(path, read_idx_images, path, match="truncated")


@pytest.mark.parametrize("compress", [True, False])
def test_trailing_bytes(tmp_path: Path, compress: bool) -> None:
    data = idx_bytes(np.ones(10, np.uint8)) + b"\x00garbage"
    path = write(tmp_path / "trail", data, compress=compress)
    assert_data_error(path, read_idx_labels, path, match="trailing")


def test_truncated_gzip_stream(tmp_path: Path) -> None:
    compressed = gzip.compress(idx_bytes(np.arange(4 * 28 * 28).reshape(4, 28, 28) % 251))
    path = tmp_path / "cut.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    assert_data_error(path, read_idx_images, path)


def test_corrupt_gzip(tmp_path: Path) -> None:
    compressed = bytearray(gzip.compress(idx_bytes(np.arange(1000, dtype=np.uint8) % 10)))
    compressed[-6] ^= 0xFF  # CRC / length trailer
    path = tmp_path / "crc.gz"
    path.write_bytes(bytes(compressed))
    assert_data_error(path, read_idx_labels, path, match="gzip")

    garbage = tmp_path / "garbage.gz"
    garbage.write_bytes(b"\x1f\x8b" + b"\x00" * 50)
    assert_data_error(garbage, read_idx_labels, garbage, match="gzip")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert_data_error(missing, read_idx_images, missing, match="not found")
    assert_data_error(tmp_path, read_idx_images, tmp_path, match="directory")


def test_labels_out_of_range(tmp_path: Path) -> None:
    path = write(tmp_path / "l", idx_bytes(np.array([1, 2, 10, 3], np.uint8)), compress=True)
    assert_data_error(path, read_idx_labels, path, match="label 10 at index 2")
    assert read_idx_labels(path, num_classes=11).tolist() == [1, 2, 10, 3]


def test_count_mismatch_names_both_files(tmp_path: Path) -> None:
    ip = write(tmp_path / "imgs.gz", idx_bytes(np.zeros((5, 28, 28), np.uint8)), compress=True)
    lp = write(tmp_path / "labs.gz", idx_bytes(np.zeros(4, np.uint8)), compress=True)
    message = assert_data_error(lp, load_idx_split, ip, lp)
    assert str(ip) in message and "4 labels" in message and "5 images" in message


def test_wrong_hw(tmp_path: Path) -> None:
    ip = write(tmp_path / "imgs", idx_bytes(np.zeros((2, 32, 32), np.uint8)), compress=False)
    lp = write(tmp_path / "labs", idx_bytes(np.zeros(2, np.uint8)), compress=False)
    assert_data_error(ip, load_idx_split, ip, lp, match="32x32, expected 28x28")
    images, _ = load_idx_split(ip, lp, expected_hw=(32, 32))
    assert images.shape == (2, 32, 32)


def test_no_images(tmp_path: Path) -> None:
    ip = write(tmp_path / "imgs", idx_bytes(np.zeros((0, 28, 28), np.uint8)), compress=True)
    lp = write(tmp_path / "labs", idx_bytes(np.zeros(0, np.uint8)), compress=True)
    assert read_idx_images(ip).shape == (0, 28, 28)
    assert_data_error(ip, load_idx_split, ip, lp, match="no images")


# ------------------------------------------------------------------------ find_idx_file


def test_find_idx_file_layouts(tmp_path: Path) -> None:
    name = "train-images-idx3-ubyte"
    assert find_idx_file(tmp_path, name) is None

    fashion = tmp_path / "FashionMNIST" / "raw"
    fashion.mkdir(parents=True)
    (fashion / name).write_bytes(b"x")
    assert find_idx_file(tmp_path, name) == fashion / name

    mnist = tmp_path / "MNIST" / "raw"
    mnist.mkdir(parents=True)
    (mnist / f"{name}.gz").write_bytes(b"x")
    assert find_idx_file(tmp_path, name) == mnist / f"{name}.gz"
    assert find_idx_file(tmp_path, name, torchvision_dirs=("FashionMNIST",)) == fashion / name

    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / name).write_bytes(b"x")
    assert find_idx_file(tmp_path, name) == tmp_path / "raw" / name

    (tmp_path / name).write_bytes(b"x")
    assert find_idx_file(tmp_path, name) == tmp_path / name
    (tmp_path / f"{name}.gz").write_bytes(b"x")
    assert find_idx_file(str(tmp_path), name) == tmp_path / f"{name}.gz"


def test_find_idx_file_ignores_directories(tmp_path: Path) -> None:
    (tmp_path / "train-labels-idx1-ubyte.gz").mkdir()
    assert find_idx_file(tmp_path, "train-labels-idx1-ubyte") is None
