"""Reader for the CIFAR-10 / CIFAR-100 "python version" files.

Accepted layouts under ``root``:

* CIFAR-10: ``root/cifar-10-batches-py/`` (``data_batch_1`` .. ``data_batch_5``,
  ``test_batch``, ``batches.meta``) or the archive ``root/cifar-10-python.tar.gz``.
* CIFAR-100: ``root/cifar-100-python/`` (``train``, ``test``, ``meta``) or the archive
  ``root/cifar-100-python.tar.gz``.
* ``root`` itself being one of the extracted folders.

Archives are read in place with :mod:`tarfile` (nothing is extracted to disk) and only
the expected member names are ever read.

The batches are pickles written by Python 2. They are loaded with a restricted
unpickler (:class:`RestrictedUnpickler`) that can only rebuild builtin containers and
numpy arrays, never call arbitrary globals, so a malicious file cannot run code.

Every problem raises :class:`~lrtune.errors.DataError` with a one-line message naming
the file (and the archive member).
"""

from __future__ import annotations

import gzip
import logging
import os
import pickle
import tarfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np

from lrtune._compat._core import numpy_multiarray, numpy_reconstruct
from lrtune.errors import DataError

__all__ = [
    "CIFAR_LAYOUTS",
    "CifarSplit",
    "CifarVariant",
    "RestrictedUnpickler",
    "find_cifar",
    "load_cifar",
    "safe_load_pickle",
]

logger = logging.getLogger(__name__)

CifarVariant = Literal["cifar10", "cifar100"]
CifarSplit = Literal["train", "test"]

_PIXELS = 3 * 32 * 32
_CHUNK = 1 << 20


@dataclass(frozen=True)
class _Layout:
    archive: str
    folder: str
    splits: dict[str, tuple[str, ...]]
    label_key: bytes
    num_classes: int


CIFAR_LAYOUTS: dict[str, _Layout] = {
    "cifar10": _Layout(
        archive="cifar-10-python.tar.gz",
        folder="cifar-10-batches-py",
        splits={
            "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
            "test": ("test_batch",),
        },
        label_key=b"labels",
        num_classes=10,
    ),
    "cifar100": _Layout(
        archive="cifar-100-python.tar.gz",
        folder="cifar-100-python",
        splits={"train": ("train",), "test": ("test",)},
        label_key=b"fine_labels",
        num_classes=100,
    ),
}
"""File names of each CIFAR variant: archive, extracted folder, batch files per split."""


# --------------------------------------------------------------------------- unpickling


_LATIN1_NAMES = frozenset({"latin1", "latin_1", "iso8859_1", "iso_8859_1", "l1"})


def _is_latin1(encoding: object) -> bool:
    # Compared by name on purpose: no codec lookup is ever done with data from the file.
    return isinstance(encoding, str) and encoding.lower().replace("-", "_") in _LATIN1_NAMES


def _latin1_encode(text: object, encoding: object = "utf-8", *rest: object) -> bytes:
    """Stand-in for ``_codecs.encode`` as emitted by Python 3 for bytes at protocol < 3.

    Only the ``latin1`` round trip used by :mod:`pickle` is allowed, so the global cannot
    be abused to reach arbitrary codecs.
    """
    if rest or not isinstance(text, str):
        raise pickle.UnpicklingError("_codecs.encode: unexpected arguments")
    if not _is_latin1(encoding):
        raise pickle.UnpicklingError(f"_codecs.encode: refusing encoding {encoding!r:.40}")
    return text.encode("latin1")


def _safe_bytes_factory(factory: type[bytes] | type[bytearray]) -> Callable[..., Any]:
    """Wrap ``bytes``/``bytearray``: no ``bytes(10**12)`` allocation, no codec but latin1."""

    def build(*args: object) -> bytes | bytearray:
        if args and isinstance(args[0], int):
            raise pickle.UnpicklingError(f"{factory.__name__}(int) is not allowed")
        if len(args) > 2 or (len(args) == 2 and not _is_latin1(args[1])):
            raise pickle.UnpicklingError(f"{factory.__name__}: unexpected arguments")
        return factory(*args)

    return build


def _allowed_globals() -> dict[tuple[str, str], Any]:
    multiarray = numpy_multiarray()
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = numpy_reconstruct()
        allowed[(module, "scalar")] = multiarray.scalar
    # Constructors of plain data types: none of them can run code or reach other objects.
    # Python 2 pickles (and Python 3 at protocol < 3) name the module "__builtin__".
    # ``str`` is left out: pickles never need it and str(b, encoding) would look up codecs.
    safe_builtins: dict[str, Any] = {
        "dict": dict,
        "list": list,
        "tuple": tuple,
        "set": set,
        "frozenset": frozenset,
        "int": int,
        "float": float,
        "complex": complex,
        "bool": bool,
        "bytes": _safe_bytes_factory(bytes),
        "bytearray": _safe_bytes_factory(bytearray),
    }
    for module in ("builtins", "__builtin__"):
        for name, obj in safe_builtins.items():
            allowed[(module, name)] = obj
    return allowed


_ALLOWED_GLOBALS = _allowed_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays and builtin data containers.

    Any other global (``os.system``, ``builtins.eval``, ``subprocess.Popen`` ...) and any
    persistent id are refused with :class:`~lrtune.errors.DataError`.

    Args:
        file: Binary file object holding the pickle.
        source: Description of where the pickle comes from (file path, archive member),
            used in error messages.
        encoding: Passed to :class:`pickle.Unpickler`; ``"bytes"`` keeps Python 2 strings
            as ``bytes``, as the CIFAR files need.
    """

    def __init__(self, file: IO[bytes], *, source: str, encoding: str = "bytes") -> None:
        super().__init__(file, encoding=encoding)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        """Return an allow-listed global or raise DataError."""
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            qualified = _one_line(f"{module}.{name}")[:200]
            raise DataError(
                f"{self.source}: refusing to unpickle global '{qualified}' "
                "(only numpy arrays and plain containers are allowed; the file may be malicious)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent ids: CIFAR files never contain them."""
        raise DataError(f"{self.source}: refusing to unpickle a persistent id")


def safe_load_pickle(fileobj: IO[bytes], *, source: str) -> object:
    """Load one pickle with :class:`RestrictedUnpickler` (``encoding="bytes"``).

    Args:
        fileobj: Binary file object positioned at the start of the pickle.
        source: Where the pickle comes from, e.g. a path or ``"archive member 'x'"``;
            it starts every error message.

    Returns:
        The unpickled object.

    Raises:
        DataError: The pickle is truncated or corrupt, needs a global that is not allowed,
            or the underlying (possibly gzip-compressed) stream is corrupt.
    """
    try:
        return RestrictedUnpickler(fileobj, source=source).load()
    except DataError:
        raise
    except (EOFError, pickle.UnpicklingError) as exc:
        raise DataError(
            f"{source}: truncated or corrupt pickle ({type(exc).__name__}: {_one_line(exc)})"
        ) from None
    except (tarfile.TarError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{source}: corrupt archive data: {_one_line(exc)}") from None
    except MemoryError:
        raise DataError(f"{source}: not enough memory to unpickle this file") from None
    except Exception as exc:  # untrusted bytes can make the unpickler raise anything
        raise DataError(
            f"{source}: corrupt pickle ({type(exc).__name__}: {_one_line(exc)})"
        ) from None


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# ---------------------------------------------------------------------------- locating


def _folder_files(folder: Path, layout: _Layout) -> list[str]:
    names = [n for split in layout.splits.values() for n in split]
    return [n for n in names if (folder / n).is_file()]


def find_cifar(root: str | os.PathLike[str], variant: CifarVariant) -> Path | None:
    """Locate a CIFAR dataset under ``root``.

    Preference order: a complete extracted folder (``root/<folder>`` or ``root`` itself),
    then the ``.tar.gz`` archive, then an incomplete extracted folder (so that the error
    raised when loading it names the missing file).

    Args:
        root: Directory holding the archive or the extracted folder, or the extracted
            folder itself.
        variant: ``"cifar10"`` or ``"cifar100"``.

    Returns:
        The folder or the archive path, or ``None`` if neither exists.
    """
    layout = _layout(variant)
    root = Path(root)
    all_names = [n for split in layout.splits.values() for n in split]
    folders = [root / layout.folder]
    if root.name == layout.folder or (root.is_dir() and _folder_files(root, layout)):
        folders.insert(0, root)
    for folder in folders:
        if folder.is_dir() and len(_folder_files(folder, layout)) == len(all_names):
            return folder
    archive = root / layout.archive
    if archive.is_file():
        return archive
    for folder in folders:
        if folder.is_dir():
            return folder
    return None


def _layout(variant: str) -> _Layout:
    try:
        return CIFAR_LAYOUTS[variant]
    except KeyError:
        raise ValueError(
            f"unknown CIFAR variant {variant!r}, expected one of {sorted(CIFAR_LAYOUTS)}"
        ) from None


# ----------------------------------------------------------------------------- reading


def _read_folder(folder: Path, names: Iterable[str]) -> dict[str, tuple[str, object]]:
    """Unpickle ``folder/name`` for each name; returns name -> (source, object)."""
    out: dict[str, tuple[str, object]] = {}
    for name in names:
        path = folder / name
        source = str(path)
        try:
            with open(path, "rb") as f:
                out[name] = (source, safe_load_pickle(f, source=source))
        except FileNotFoundError:
            raise DataError(f"{path}: file not found (incomplete CIFAR folder?)") from None
        except IsADirectoryError:
            raise DataError(f"{path}: is a directory, expected a CIFAR batch file") from None
        except DataError:
            raise
        except OSError as exc:
            raise DataError(f"{path}: cannot read file: {_one_line(exc)}") from None
    return out


class _ArchiveStream:
    """File-like wrapper of an archive member that reports decompression failures as
    archive errors, so that a truncated archive is not blamed on the pickle inside it."""

    _ERRORS = (EOFError, zlib.error, gzip.BadGzipFile, tarfile.TarError, OSError)

    def __init__(self, stream: IO[bytes], *, archive: Path, member: str) -> None:
        self._stream = stream
        self._archive = archive
        self._member = member

    def _fail(self, exc: BaseException) -> DataError:
        return DataError(
            f"{self._archive}: truncated or corrupt tar.gz archive (while reading member "
            f"{self._member!r}): {_one_line(exc) or type(exc).__name__}"
        )

    def read(self, size: int = -1) -> bytes:
        try:
            return self._stream.read(size)
        except self._ERRORS as exc:
            raise self._fail(exc) from None

    def readinto(self, buffer: Any) -> int:
        try:
            return self._stream.readinto(buffer)  # type: ignore[attr-defined,no-any-return]
        except self._ERRORS as exc:
            raise self._fail(exc) from None

    def readline(self, size: int = -1) -> bytes:
        try:
            return self._stream.readline(size)
        except self._ERRORS as exc:
            raise self._fail(exc) from None


def _read_archive(archive: Path, members: Iterable[str]) -> dict[str, tuple[str, object]]:
    """Unpickle the given members of a ``.tar.gz`` in one streaming pass.

    Only members whose name is exactly one of ``members`` are read; they must be regular
    files and appear once. Nothing is written to disk. The whole archive is decompressed
    so that a truncated or corrupt download is always detected.
    """
    wanted = set(members)
    out: dict[str, tuple[str, object]] = {}
    try:
        with gzip.open(archive, "rb") as gz, tarfile.open(fileobj=gz, mode="r|") as tar:
            for member in tar:
                if member.name not in wanted:
                    continue
                source = f"{archive} (member {member.name!r})"
                if member.name in out:
                    raise DataError(f"{source}: archive holds this member twice")
                if not member.isfile():
                    raise DataError(f"{source}: not a regular file in the archive")
                stream = tar.extractfile(member)
                if stream is None:  # pragma: no cover - isfile() members always have data
                    raise DataError(f"{source}: cannot read member")
                with stream:
                    guarded = _ArchiveStream(stream, archive=archive, member=member.name)
                    obj = safe_load_pickle(guarded, source=source)  # type: ignore[arg-type]
                out[member.name] = (source, obj)
            # Read to the end of the gzip stream so that its CRC and length are checked:
            # a truncated download is reported even if the wanted members are intact.
            while gz.read(_CHUNK):
                pass
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{archive}: file not found") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        raise DataError(
            f"{archive}: truncated or corrupt tar.gz archive: {_one_line(exc)}"
        ) from None
    missing = sorted(wanted - set(out))
    if missing:
        raise DataError(
            f"{archive}: archive lacks member(s) {', '.join(missing)} "
            "(not the official CIFAR python archive?)"
        )
    return out


def _check_batch(source: str, obj: object, layout: _Layout) -> tuple[np.ndarray, np.ndarray]:
    """Validate one unpickled batch; returns (data (n, 3072) uint8, labels (n,) int64)."""
    if not isinstance(obj, dict):
        raise DataError(f"{source}: expected a dict batch, got {type(obj).__name__}")
    for key in (b"data", layout.label_key):
        if key not in obj:
            keys = ", ".join(sorted(repr(k) for k in obj)[:8])
            raise DataError(f"{source}: batch has no key {key!r} (keys: {keys})")
    data = obj[b"data"]
    if not isinstance(data, np.ndarray):
        raise DataError(f"{source}: b'data' is a {type(data).__name__}, expected a numpy array")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        raise DataError(
            f"{source}: b'data' has shape {data.shape} and dtype {data.dtype}, "
            f"expected (n, {_PIXELS}) uint8"
        )
    raw_labels = obj[layout.label_key]
    try:
        labels = np.asarray(raw_labels)
    except Exception:  # any odd object is a data error
        labels = np.asarray([])
        labels_ok = False
    else:
        labels_ok = labels.ndim == 1 and (labels.dtype.kind in "iu" or labels.size == 0)
    if not labels_ok:
        raise DataError(
            f"{source}: {layout.label_key!r} must be a flat list of integers, got "
            f"{type(raw_labels).__name__}"
        )
    if labels.shape[0] != data.shape[0]:
        raise DataError(
            f"{source}: {labels.shape[0]} labels for {data.shape[0]} images in {layout.label_key!r}"
        )
    labels = labels.astype(np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= layout.num_classes))
    if bad.size:
        first = int(bad[0])
        raise DataError(
            f"{source}: label {int(labels[first])} at index {first} is out of range "
            f"[0, {layout.num_classes})"
        )
    return data, labels


def load_cifar(
    root: str | os.PathLike[str], variant: CifarVariant, split: CifarSplit
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of CIFAR-10 or CIFAR-100 (fine labels).

    Args:
        root: Directory holding ``cifar-10-python.tar.gz`` / ``cifar-10-batches-py/``
            (or the CIFAR-100 equivalents), or the extracted folder itself.
        variant: ``"cifar10"`` or ``"cifar100"``.
        split: ``"train"`` (CIFAR-10: ``data_batch_1..5`` concatenated) or ``"test"``.

    Returns:
        ``(images, labels)``: ``uint8`` array of shape ``(N, 3, 32, 32)`` (channels R, G, B)
        and ``int64`` array of shape ``(N,)``.

    Raises:
        DataError: The dataset is absent, or a file/member is truncated, corrupt, malicious
            or does not have the expected content.
        ValueError: ``variant`` or ``split`` is not one of the allowed values.
    """
    layout = _layout(variant)
    if split not in layout.splits:
        raise ValueError(f"unknown CIFAR split {split!r}, expected 'train' or 'test'")
    names = layout.splits[split]
    location = find_cifar(root, variant)
    if location is None:
        raise DataError(
            f"{Path(root)}: no {variant} data found: expected {layout.archive} or the "
            f"extracted folder {layout.folder}/ in this directory"
        )
    if location.is_dir():
        loaded = _read_folder(location, names)
    else:
        loaded = _read_archive(location, [f"{layout.folder}/{n}" for n in names])
        loaded = {name: loaded[f"{layout.folder}/{name}"] for name in names}

    datas: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for name in names:
        source, obj = loaded[name]
        data, lab = _check_batch(source, obj, layout)
        datas.append(data)
        labels.append(lab)
    data = datas[0] if len(datas) == 1 else np.concatenate(datas)
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32))
    if not images.flags.writeable:
        images = images.copy()
    all_labels = np.concatenate(labels)
    logger.debug("read %d %s %s images from %s", images.shape[0], variant, split, location)
    return images, all_labels
