"""Tests of the CIFAR-10/100 reader and of the restricted unpickler."""

from __future__ import annotations

import builtins
import io
import os
import pickle
import struct
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from lrtune.data._cifar import CifarVariant, find_cifar, load_cifar, safe_load_pickle
from lrtune.errors import DataError

# ----------------------------------------------------------------------------- helpers


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Protocol-2 pickler that writes ``bytes`` and ``str`` as Python 2 ``str`` opcodes.

    This reproduces the byte layout of the original CIFAR files, which were written by
    Python 2 (``SHORT_BINSTRING``/``BINSTRING`` strings, ``numpy.core.multiarray``).
    """

    dispatch: ClassVar[dict[type, Any]] = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes | str) -> None:
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)  # type: ignore[attr-defined]
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)  # type: ignore[attr-defined]
        self.memoize(obj)  # type: ignore[attr-defined]

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def py2_pickle(obj: object) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    # GLOBAL opcodes are text lines at protocol 2, so renaming the module is safe.
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def py3_pickle(obj: object) -> bytes:
    """How a Python 3 user re-pickling the batches at protocol 2 would write them."""
    return pickle.dumps(obj, protocol=2)


def make_batch(
    n: int, *, num_classes: int, seed: int, cifar100: bool = False
) -> tuple[dict[bytes, object], np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(x) for x in rng.integers(0, num_classes, size=n)]
    batch: dict[bytes, object] = {
        b"batch_label": b"training batch 1 of 5",
        b"data": data,
        b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)],
    }
    if cifar100:
        batch[b"fine_labels"] = labels
        batch[b"coarse_labels"] = [x // 5 for x in labels]
    else:
        batch[b"labels"] = labels
    return batch, data, labels


CIFAR10_META = {
    b"label_names": [
        b"airplane",
        b"automobile",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ],
    b"num_cases_per_batch": 10000,
    b"num_vis": 3072,
}
CIFAR100_META = {
    b"fine_label_names": [f"class{i}".encode() for i in range(100)],
    b"coarse_label_names": [f"super{i}".encode() for i in range(20)],
}


def cifar_files(
    variant: str, dumps: Callable[[object], bytes] = py2_pickle
) -> tuple[dict[str, bytes], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Member name -> pickle bytes, plus the expected arrays per split."""
    files: dict[str, bytes] = {}
    expected: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if variant == "cifar10":
        folder = "cifar-10-batches-py"
        train_data, train_labels = [], []
        for i in range(1, 6):
            batch, data, labels = make_batch(3 + i, num_classes=10, seed=i)
            files[f"{folder}/data_batch_{i}"] = dumps(batch)
            train_data.append(data)
            train_labels += labels
        batch, data, labels = make_batch(4, num_classes=10, seed=99)
        files[f"{folder}/test_batch"] = dumps(batch)
        files[f"{folder}/batches.meta"] = dumps(CIFAR10_META)
        files[f"{folder}/readme.html"] = b"<html></html>"
        expected["train"] = (np.concatenate(train_data), np.array(train_labels))
        expected["test"] = (data, np.array(labels))
    else:
        folder = "cifar-100-python"
        batch, data, labels = make_batch(9, num_classes=100, seed=1, cifar100=True)
        files[f"{folder}/train"] = dumps(batch)
        expected["train"] = (data, np.array(labels))
        batch, data, labels = make_batch(5, num_classes=100, seed=2, cifar100=True)
        files[f"{folder}/test"] = dumps(batch)
        expected["test"] = (data, np.array(labels))
        files[f"{folder}/meta"] = dumps(CIFAR100_META)
        files[f"{folder}/file.txt~"] = b""
    return files, expected


ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}
FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def write_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        folder = next(iter(files)).split("/")[0]
        info = tarfile.TarInfo(folder)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return root / next(iter(files)).split("/")[0]


def check_split(
    images: np.ndarray, labels: np.ndarray, data: np.ndarray, lab: np.ndarray, num_classes: int
) -> None:
    n = data.shape[0]
    assert images.shape == (n, 3, 32, 32) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.int64
    np.testing.assert_array_equal(labels, lab)
    assert labels.min() >= 0 and labels.max() < num_classes
    # Row layout: 1024 R, then 1024 G, then 1024 B, each row-major 32x32.
    for i, c, y, x in [(0, 0, 0, 0), (0, 1, 5, 7), (n - 1, 2, 31, 30), (n // 2, 0, 17, 3)]:
        assert images[i, c, y, x] == data[i, c * 1024 + y * 32 + x]
    np.testing.assert_array_equal(images.reshape(n, -1), data)
    assert images.flags.c_contiguous and images.flags.writeable


# ------------------------------------------------------------------------- happy paths


@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
@pytest.mark.parametrize("layout", ["archive", "folder", "root_is_folder"])
@pytest.mark.parametrize("dumps", [py2_pickle, py3_pickle], ids=["py2", "py3"])
def test_load_cifar(
    tmp_path: Path, variant: CifarVariant, layout: str, dumps: Callable[[object], bytes]
) -> None:
    files, expected = cifar_files(variant, dumps)
    num_classes = 10 if variant == "cifar10" else 100
    if layout == "archive":
        root = tmp_path
        write_tar(tmp_path / ARCHIVES[variant], files)
        assert find_cifar(root, variant) == tmp_path / ARCHIVES[variant]
    elif layout == "folder":
        root = tmp_path
        write_folder(tmp_path, files)
        assert find_cifar(root, variant) == tmp_path / FOLDERS[variant]
    else:
        root = write_folder(tmp_path, files)
        assert find_cifar(root, variant) == root
    for split in ("train", "test"):
        images, labels = load_cifar(root, variant, split)  # type: ignore[arg-type]
        check_split(images, labels, *expected[split], num_classes=num_classes)


def test_known_pixel_lands_at_n_c_y_x(tmp_path: Path) -> None:
    batch, data, _ = make_batch(3, num_classes=10, seed=5)
    data[:] = 0
    data[2, 1024 + 5 * 32 + 7] = 200  # sample 2, green, y=5, x=7
    data[1, 2 * 1024 + 31 * 32 + 0] = 77  # sample 1, blue, y=31, x=0
    files, _ = cifar_files("cifar10")
    files["cifar-10-batches-py/test_batch"] = py2_pickle(batch)
    write_folder(tmp_path, files)
    images, _ = load_cifar(tmp_path, "cifar10", "test")
    assert images[2, 1, 5, 7] == 200 and images[1, 2, 31, 0] == 77
    assert int(images.sum()) == 277


def test_find_cifar(tmp_path: Path) -> None:
    assert find_cifar(tmp_path, "cifar10") is None
    assert find_cifar(tmp_path / "missing", "cifar100") is None
    files, _ = cifar_files("cifar10")
    write_tar(tmp_path / ARCHIVES["cifar10"], files)
    assert find_cifar(tmp_path, "cifar10") == tmp_path / ARCHIVES["cifar10"]
    assert find_cifar(tmp_path, "cifar100") is None
    # An incomplete folder loses against the archive, a complete one wins.
    folder = tmp_path / FOLDERS["cifar10"]
    folder.mkdir()
    (folder / "test_batch").write_bytes(files["cifar-10-batches-py/test_batch"])
    assert find_cifar(tmp_path, "cifar10") == tmp_path / ARCHIVES["cifar10"]
    write_folder(tmp_path, files)
    assert find_cifar(tmp_path, "cifar10") == folder


def test_incomplete_folder_names_missing_file(tmp_path: Path) -> None:
    files, _ = cifar_files("cifar10")
    del files["cifar-10-batches-py/data_batch_3"]
    folder = write_folder(tmp_path, files)
    with pytest.raises(DataError, match="data_batch_3: file not found"):
        load_cifar(tmp_path, "cifar10", "train")
    # The test split is complete and loads.
    assert load_cifar(folder, "cifar10", "test")[0].shape == (4, 3, 32, 32)


def test_nothing_found(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cifar-100-python\.tar\.gz") as info:
        load_cifar(tmp_path, "cifar100", "train")
    assert str(tmp_path) in str(info.value)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="variant"):
        load_cifar(tmp_path, "cifar1000", "train")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="split"):
        load_cifar(tmp_path, "cifar10", "valid")  # type: ignore[arg-type]


# ------------------------------------------------------------------ malicious pickles


class _OsSystem:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, (f"touch {self.marker}",))


class _Eval:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",))


class _Popen:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (subprocess.Popen, (["touch", str(self.marker)],))


class _Exec:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",))


EVIL = {
    "os.system": _OsSystem,
    "eval": _Eval,
    "subprocess.Popen": _Popen,
    "exec": _Exec,
}


@pytest.mark.parametrize("kind", sorted(EVIL))
@pytest.mark.parametrize("where", ["folder", "archive"])
def test_malicious_pickle_is_refused(tmp_path: Path, kind: str, where: str) -> None:
    marker = tmp_path / "marker" / "pwned"
    marker.parent.mkdir()
    batch, _, _ = make_batch(2, num_classes=10, seed=1)
    batch[b"data"] = EVIL[kind](marker)
    evil = pickle.dumps(batch, protocol=2)
    files, _ = cifar_files("cifar10")
    files["cifar-10-batches-py/data_batch_1"] = evil
    data_root = tmp_path / "data"
    data_root.mkdir()
    if where == "folder":
        write_folder(data_root, files)
    else:
        write_tar(data_root / ARCHIVES["cifar10"], files)
    with pytest.raises(DataError, match="refusing to unpickle global") as info:
        load_cifar(data_root, "cifar10", "train")
    message = str(info.value)
    assert "data_batch_1" in message
    assert str(data_root) in message
    assert not marker.exists()
    assert list(marker.parent.iterdir()) == []


@pytest.mark.parametrize(
    "payload",
    [
        b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.",
        b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R.",
        b"\x80\x02c__builtin__\neval\nX\x01\x00\x00\x001\x85R.",
        b"\x80\x02cbuiltins\ngetattr\n.",
        b"\x80\x02cbuiltins\n__import__\n.",
        b"\x80\x02cbuiltins\nstr\n.",
        b"\x80\x02cbuiltins\nopen\n.",
        b"\x80\x02cbuiltins\nexec\n.",
        b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n.",
        b"\x80\x02cnumpy\nfromfile\n.",
        b"\x80\x02cnumpy\nload\n.",
        b"\x80\x02cnumpy.testing._private.utils\nrunstring\n.",
        b"\x80\x02ccopy_reg\n_reconstructor\n.",
        b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06system\x93.",
        b"(S'ls'\nios\nsystem\n.",  # INST opcode
    ],
)
def test_forbidden_globals(payload: bytes) -> None:
    with pytest.raises(DataError, match=r"source\.bin: refusing to unpickle global"):
        safe_load_pickle(io.BytesIO(payload), source="source.bin")


def test_persistent_id_refused() -> None:
    with pytest.raises(DataError, match="persistent id"):
        safe_load_pickle(io.BytesIO(b"\x80\x02Pfoo\n."), source="x")


def test_codecs_encode_only_latin1() -> None:
    ok = b"\x80\x02c_codecs\nencode\nX\x02\x00\x00\x00abX\x06\x00\x00\x00latin1\x86R."
    assert safe_load_pickle(io.BytesIO(ok), source="x") == b"ab"
    rot = b"\x80\x02c_codecs\nencode\nX\x02\x00\x00\x00abX\x05\x00\x00\x00rot13\x86R."
    with pytest.raises(DataError, match="refusing encoding"):
        safe_load_pickle(io.BytesIO(rot), source="x")


def test_bytes_of_int_refused() -> None:
    bomb = b"\x80\x02c__builtin__\nbytes\nJ\x00\x00\x00\x7f\x85R."
    with pytest.raises(DataError, match="not allowed"):
        safe_load_pickle(io.BytesIO(bomb), source="x")
    codec = b"\x80\x02cbuiltins\nbytearray\nX\x02\x00\x00\x00abX\x05\x00\x00\x00utf16\x86R."
    with pytest.raises(DataError, match="unexpected arguments"):
        safe_load_pickle(io.BytesIO(codec), source="x")
    ok = codec.replace(b"\x05\x00\x00\x00utf16", b"\x07\x00\x00\x00latin-1")
    assert safe_load_pickle(io.BytesIO(ok), source="x") == bytearray(b"ab")


def test_plain_containers_allowed() -> None:
    obj = {
        b"a": [1, 2.5, (3, None)],
        b"s": {1, 2},
        b"f": frozenset({3}),
        b"c": 1 + 2j,
        b"ba": bytearray(b"xy"),
        b"e": b"",
        b"arr": np.arange(5, dtype=np.int32),
    }
    for dumps in (py2_pickle, py3_pickle):
        got = safe_load_pickle(io.BytesIO(dumps(obj)), source="x")
        assert isinstance(got, dict)
        np.testing.assert_array_equal(got[b"arr"], obj[b"arr"])
        assert {k: v for k, v in got.items() if k != b"arr"} == {
            k: v for k, v in obj.items() if k != b"arr"
        }


# ---------------------------------------------------------------------- corrupt files


def test_truncated_pickle(tmp_path: Path) -> None:
    files, _ = cifar_files("cifar10")
    name = "cifar-10-batches-py/test_batch"
    files[name] = files[name][: len(files[name]) // 2]
    write_folder(tmp_path, files)
    path = tmp_path / name
    with pytest.raises(DataError, match="truncated or corrupt pickle") as info:
        load_cifar(tmp_path, "cifar10", "test")
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_truncated_pickle_in_archive(tmp_path: Path) -> None:
    files, _ = cifar_files("cifar100")
    name = "cifar-100-python/train"
    files[name] = files[name][:100]
    archive = write_tar(tmp_path / ARCHIVES["cifar100"], files)
    with pytest.raises(DataError) as info:
        load_cifar(tmp_path, "cifar100", "train")
    assert str(archive) in str(info.value) and repr(name) in str(info.value)


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.02])
def test_truncated_archive(tmp_path: Path, fraction: float) -> None:
    files, _ = cifar_files("cifar10")
    archive = write_tar(tmp_path / ARCHIVES["cifar10"], files)
    content = archive.read_bytes()
    archive.write_bytes(content[: int(len(content) * fraction)])
    with pytest.raises(DataError, match=r"truncated or corrupt tar\.gz archive") as info:
        load_cifar(tmp_path, "cifar10", "train")
    assert str(archive) in str(info.value) and "\n" not in str(info.value)


def test_archive_duplicate_member(tmp_path: Path) -> None:
    files, _ = cifar_files("cifar10")
    archive = write_tar(tmp_path / ARCHIVES["cifar10"], files)
    with tarfile.open(archive, "r:gz") as src:
        streams = [(m, src.extractfile(m)) for m in src]
        members = [(m, f.read() if f is not None else None) for m, f in streams]
    duplicate = next(m for m in members if m[0].name == "cifar-10-batches-py/data_batch_5")
    with tarfile.open(archive, "w:gz") as tar:
        for member, content in [*members, duplicate]:
            tar.addfile(member, io.BytesIO(content) if content is not None else None)
    with pytest.raises(DataError, match="holds this member twice"):
        load_cifar(tmp_path, "cifar10", "train")


def test_not_an_archive(tmp_path: Path) -> None:
    archive = tmp_path / ARCHIVES["cifar10"]
    archive.write_bytes(b"<html>Not found</html>")
    with pytest.raises(DataError, match=r"corrupt tar\.gz") as info:
        load_cifar(tmp_path, "cifar10", "test")
    assert str(archive) in str(info.value)


def test_archive_missing_member(tmp_path: Path) -> None:
    files, _ = cifar_files("cifar10")
    renamed = {k.replace("test_batch", "../test_batch"): v for k, v in files.items()}
    archive = write_tar(tmp_path / ARCHIVES["cifar10"], renamed)
    with pytest.raises(DataError, match="lacks member") as info:
        load_cifar(tmp_path, "cifar10", "test")
    assert str(archive) in str(info.value)


def test_archive_member_not_regular_file(tmp_path: Path) -> None:
    archive = tmp_path / ARCHIVES["cifar100"]
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-100-python/test")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(DataError, match="not a regular file"):
        load_cifar(tmp_path, "cifar100", "test")


def _load_with_test_batch(
    tmp_path: Path, batch: object, variant: str = "cifar10"
) -> tuple[np.ndarray, np.ndarray]:
    files, _ = cifar_files(variant)
    name = "cifar-10-batches-py/test_batch" if variant == "cifar10" else "cifar-100-python/test"
    files[name] = py2_pickle(batch)
    write_folder(tmp_path, files)
    return load_cifar(tmp_path, variant, "test")  # type: ignore[arg-type]


def test_wrong_data_shape(tmp_path: Path) -> None:
    batch, data, _ = make_batch(4, num_classes=10, seed=3)
    batch[b"data"] = data[:, :3000]
    with pytest.raises(DataError, match=r"shape \(4, 3000\).*expected \(n, 3072\) uint8") as info:
        _load_with_test_batch(tmp_path, batch)
    assert "test_batch" in str(info.value)


def test_wrong_data_dtype(tmp_path: Path) -> None:
    batch, data, _ = make_batch(4, num_classes=10, seed=3)
    batch[b"data"] = data.astype(np.float32)
    with pytest.raises(DataError, match="float32"):
        _load_with_test_batch(tmp_path, batch)


def test_data_not_an_array(tmp_path: Path) -> None:
    batch, _, _ = make_batch(4, num_classes=10, seed=3)
    batch[b"data"] = [1, 2, 3]
    with pytest.raises(DataError, match="expected a numpy array"):
        _load_with_test_batch(tmp_path, batch)


def test_not_a_dict(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="expected a dict"):
        _load_with_test_batch(tmp_path, [1, 2, 3])


def test_missing_key(tmp_path: Path) -> None:
    batch, _, _ = make_batch(4, num_classes=10, seed=3)
    del batch[b"labels"]
    with pytest.raises(DataError, match="no key b'labels'"):
        _load_with_test_batch(tmp_path, batch)
    # CIFAR-100 needs fine labels, CIFAR-10 style labels are not enough.
    batch, _, _ = make_batch(4, num_classes=10, seed=3)
    with pytest.raises(DataError, match="no key b'fine_labels'"):
        _load_with_test_batch(tmp_path / "c100", batch, "cifar100")


def test_label_count_mismatch(tmp_path: Path) -> None:
    batch, _, labels = make_batch(4, num_classes=10, seed=3)
    batch[b"labels"] = labels[:3]
    with pytest.raises(DataError, match="3 labels for 4 images"):
        _load_with_test_batch(tmp_path, batch)


def test_labels_not_integers(tmp_path: Path) -> None:
    batch, _, _ = make_batch(2, num_classes=10, seed=3)
    batch[b"labels"] = [b"cat", b"dog"]
    with pytest.raises(DataError, match="flat list of integers"):
        _load_with_test_batch(tmp_path, batch)


@pytest.mark.parametrize(("variant", "bad"), [("cifar10", 10), ("cifar10", -1), ("cifar100", 100)])
def test_label_out_of_range(tmp_path: Path, variant: str, bad: int) -> None:
    batch, _, labels = make_batch(4, num_classes=10, seed=3, cifar100=variant == "cifar100")
    labels[2] = bad
    with pytest.raises(DataError, match=f"label {bad} at index 2 is out of range"):
        _load_with_test_batch(tmp_path, batch, variant)


def test_cifar100_accepts_labels_up_to_99(tmp_path: Path) -> None:
    batch, _, _ = make_batch(3, num_classes=100, seed=3, cifar100=True)
    batch[b"fine_labels"] = [0, 99, 50]
    _, labels = _load_with_test_batch(tmp_path, batch, "cifar100")
    assert labels.tolist() == [0, 99, 50]
