"""One ``LightningDataModule`` per dataset, all sharing device-resident batching.

Loading is cached per process: the decoded uint8 arrays once per (dataset, folder), and
their device copies once per device, so many trials in one worker share one copy.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import lightning.pytorch as pl
import numpy as np
import torch

from lrtune.data import _cifar, _download, _idx
from lrtune.data._batches import DeviceBatches
from lrtune.datasets import DatasetInfo, get_dataset_info
from lrtune.errors import ConfigError, DataError

__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "ClassificationDataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "MNISTDataModule",
    "clear_cache",
    "create_datamodule",
    "default_data_dir",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Arrays:
    """Decoded uint8 images (N, C, H, W) and int64 labels of the official splits."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


@dataclass(frozen=True)
class _DeviceSplits:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: torch.Tensor  # per channel, [0, 1] units, from the training part
    std: torch.Tensor


_LOCK = threading.Lock()
_HOST_CACHE: dict[tuple[str, str], _Arrays] = {}
_DEVICE_CACHE: dict[tuple[str, str, int, float, str], _DeviceSplits] = {}


def clear_cache() -> None:
    """Forget every cached dataset (host and device copies) in this process."""
    with _LOCK:
        _HOST_CACHE.clear()
        _DEVICE_CACHE.clear()


def default_data_dir(dataset: str) -> Path:
    """``$LRTUNE_DATA_DIR/<dataset>``, else ``~/.cache/lrtune/data/<dataset>``."""
    root = os.environ.get("LRTUNE_DATA_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "lrtune" / "data"
    return base / dataset


def _split_indices(n: int, val_fraction: float, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    n_val = round(n * val_fraction)
    if not 0 < n_val < n:
        raise ConfigError(f"val_fraction={val_fraction} leaves no train or no val data of {n}")
    order = np.random.default_rng(split_seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class ClassificationDataModule(pl.LightningDataModule):
    """Base class: an image-classification dataset held on the training device.

    Subclasses set ``info`` and implement :meth:`_read`. The validation split is carved
    from the official training set with ``split_seed`` (fixed, so every trial of a study
    sees the same split); the test split is the official test set.

    Args:
        data_dir: Folder with the dataset's files (ignored by ``digits``); default
            :func:`default_data_dir`. Missing files are downloaded when ``download``.
        batch_size: Training batch size; default per dataset.
        eval_batch_size: Validation/test batch size; default ``max(512, batch_size)`` (on a CPU
            a CNN evaluates ~2x faster in batches of 512 than of 1024, whose activations
            overflow the caches; a GPU barely differs).
        val_fraction: Fraction of the training set held out for validation (default 0.1).
        augment: Random crop (4 px reflect padding) + horizontal flip on training batches;
            default on for CIFAR, off otherwise.
        seed: Seeds the training batch order and augmentation.
        split_seed: Seeds the train/validation split (default 0).
        download: Download missing files from the official sources.
        device: Where to put the data when no Trainer is attached (default CPU); under a
            Trainer the data goes to the Trainer's device.
    """

    info: ClassVar[DatasetInfo]
    name: str  # registry name of the dataset (Lightning's ``LightningDataModule.name``)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "info" in cls.__dict__:
            cls.name = cls.info.name

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        batch_size: int | None = None,
        eval_batch_size: int | None = None,
        val_fraction: float = 0.1,
        augment: bool | None = None,
        seed: int = 0,
        split_seed: int = 0,
        download: bool = True,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir(self.name)
        self.batch_size = batch_size or self.info.batch_size
        self.eval_batch_size = eval_batch_size or max(512, self.batch_size)
        self.val_fraction = val_fraction
        self.augment = self.info.augment if augment is None else augment
        self.seed = seed
        self.split_seed = split_seed
        self.download = download
        self._device = torch.device(device) if device is not None else None
        self._splits: _DeviceSplits | None = None

    # ------------------------------------------------------------------ facts
    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return self.info.num_classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return self.info.input_shape

    @property
    def splits(self) -> _DeviceSplits:
        """The device-resident splits (after :meth:`setup`)."""
        if self._splits is None:
            self.setup()
        assert self._splits is not None
        return self._splits

    # ------------------------------------------------------------------ loading
    def _read(self) -> _Arrays:
        """Read (downloading if allowed) the official train and test splits."""
        raise TypeError(  # pragma: no cover - every registered subclass overrides it
            f"{type(self).__name__} is abstract: use one of the dataset subclasses"
        )

    def _host_key(self) -> tuple[str, str]:
        return (self.name, str(self.data_dir.resolve()) if self.info.needs_files else "")

    def _host_arrays(self) -> _Arrays:
        key = self._host_key()
        with _LOCK:
            cached = _HOST_CACHE.get(key)
        if cached is None:
            cached = self._read()
            with _LOCK:
                _HOST_CACHE[key] = cached
        return cached

    def _target_device(self) -> torch.device:
        trainer = self.trainer
        if trainer is not None:
            return trainer.strategy.root_device
        return self._device or torch.device("cpu")

    def prepare_data(self) -> None:
        """Read the files once (downloading any missing ones)."""
        self._host_arrays()

    def setup(self, stage: str | None = None) -> None:
        """Put the splits on the training device (cached per process and device)."""
        device = self._target_device()
        key = (*self._host_key(), self.split_seed, self.val_fraction, str(device))
        with _LOCK:
            splits = _DEVICE_CACHE.get(key)
        if splits is None:
            arrays = self._host_arrays()
            train_idx, val_idx = _split_indices(
                len(arrays.train_y), self.val_fraction, self.split_seed
            )
            train_x = arrays.train_x[train_idx]
            pixels = train_x.transpose(1, 0, 2, 3).reshape(train_x.shape[1], -1)
            mean = pixels.mean(axis=1, dtype=np.float64) / 255.0
            std = pixels.std(axis=1, dtype=np.float64) / 255.0

            def put(array: np.ndarray) -> torch.Tensor:
                return torch.from_numpy(np.ascontiguousarray(array)).to(device)

            splits = _DeviceSplits(
                train_x=put(train_x),
                train_y=put(arrays.train_y[train_idx].astype(np.int64)),
                val_x=put(arrays.train_x[val_idx]),
                val_y=put(arrays.train_y[val_idx].astype(np.int64)),
                test_x=put(arrays.test_x),
                test_y=put(arrays.test_y.astype(np.int64)),
                mean=torch.tensor(mean, dtype=torch.float32, device=device),
                std=torch.tensor(np.maximum(std, 1e-6), dtype=torch.float32, device=device),
            )
            with _LOCK:
                _DEVICE_CACHE[key] = splits
            log.info(
                "%s on %s: %d train, %d val, %d test images",
                self.name,
                device,
                len(splits.train_y),
                len(splits.val_y),
                len(splits.test_y),
            )
        self._splits = splits

    # ------------------------------------------------------------------ loaders
    def _batches(self, x: torch.Tensor, y: torch.Tensor, *, train: bool) -> DeviceBatches:
        splits = self.splits
        return DeviceBatches(
            x,
            y,
            mean=splits.mean,
            std=splits.std,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            drop_last=train,
            augment=train and self.augment,
            seed=self.seed,
        )

    def train_dataloader(self) -> DeviceBatches:
        """Shuffled (and, for CIFAR, augmented) training batches."""
        return self._batches(self.splits.train_x, self.splits.train_y, train=True)

    def val_dataloader(self) -> DeviceBatches:
        """Validation batches, in order."""
        return self._batches(self.splits.val_x, self.splits.val_y, train=False)

    def test_dataloader(self) -> DeviceBatches:
        """Official test-set batches, in order."""
        return self._batches(self.splits.test_x, self.splits.test_y, train=False)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(data_dir={str(self.data_dir)!r}, "
            f"batch_size={self.batch_size}, augment={self.augment}, seed={self.seed})"
        )


class DigitsDataModule(ClassificationDataModule):
    """scikit-learn's 1,797 real 8x8 digits: embedded, offline, no files.

    A fixed 20% (by ``split_seed``) is the test set; validation is carved from the rest.
    Pixel values 0..16 are stored as uint8 0..255.
    """

    info = get_dataset_info("digits")

    def _read(self) -> _Arrays:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
        labels = digits.target.astype(np.int64)
        train_idx, test_idx = _split_indices(len(labels), 0.2, self.split_seed)
        return _Arrays(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx])

    def _host_key(self) -> tuple[str, str]:
        return (self.name, f"split_seed={self.split_seed}")


class _IDXDataModule(ClassificationDataModule):
    remote_files: ClassVar[tuple[_download.RemoteFile, ...]]
    torchvision_dir: ClassVar[str]  # subfolder name in torchvision's layout

    def _find(self, name: str) -> Path | None:
        return _idx.find_idx_file(self.data_dir, name, torchvision_dirs=(self.torchvision_dir,))

    def _read(self) -> _Arrays:
        names = [r.filename.removesuffix(".gz") for r in self.remote_files]
        found = [self._find(name) for name in names]
        if any(path is None for path in found):
            missing = [r for r, path in zip(self.remote_files, found, strict=True) if path is None]
            _download.ensure_files(
                self.data_dir, missing, dataset=self.name, download=self.download
            )
            found = [self._find(name) for name in names]
        paths: dict[str, Path] = {}
        for name, path in zip(names, found, strict=True):
            if path is None:  # pragma: no cover - ensure_files raised already
                raise DataError(f"{self.data_dir / name}: missing after download")
            paths[name] = path
        hw = self.info.input_shape[1:]
        train_x, train_y = _idx.load_idx_split(
            paths["train-images-idx3-ubyte"],
            paths["train-labels-idx1-ubyte"],
            num_classes=self.num_classes,
            expected_hw=hw,
        )
        test_x, test_y = _idx.load_idx_split(
            paths["t10k-images-idx3-ubyte"],
            paths["t10k-labels-idx1-ubyte"],
            num_classes=self.num_classes,
            expected_hw=hw,
        )
        return _Arrays(train_x[:, None], train_y, test_x[:, None], test_y)


class MNISTDataModule(_IDXDataModule):
    """MNIST from the four published IDX files (``.gz`` or not) in ``data_dir``.

    Sizes come from the file headers, so a subset file (e.g. 6,309 training images) works.
    """

    info = get_dataset_info("mnist")
    remote_files = _download.MNIST_FILES
    torchvision_dir = "MNIST"


class FashionMNISTDataModule(_IDXDataModule):
    """Fashion-MNIST from its four IDX files in ``data_dir``."""

    info = get_dataset_info("fashion-mnist")
    remote_files = _download.FASHION_MNIST_FILES
    torchvision_dir = "FashionMNIST"


class _CIFARDataModule(ClassificationDataModule):
    archive: ClassVar[_download.RemoteFile]
    variant: ClassVar[_cifar.CifarVariant]

    def _read(self) -> _Arrays:
        variant = self.variant
        if _cifar.find_cifar(self.data_dir, variant) is None:
            _download.ensure_files(
                self.data_dir, [self.archive], dataset=self.name, download=self.download
            )
        train_x, train_y = _cifar.load_cifar(self.data_dir, variant, "train")
        test_x, test_y = _cifar.load_cifar(self.data_dir, variant, "test")
        return _Arrays(train_x, train_y, test_x, test_y)


class CIFAR10DataModule(_CIFARDataModule):
    """CIFAR-10 from ``cifar-10-python.tar.gz`` or its extracted folder in ``data_dir``."""

    info = get_dataset_info("cifar10")
    archive = _download.CIFAR10_ARCHIVE
    variant = "cifar10"


class CIFAR100DataModule(_CIFARDataModule):
    """CIFAR-100 (fine labels) from ``cifar-100-python.tar.gz`` or its extracted folder."""

    info = get_dataset_info("cifar100")
    archive = _download.CIFAR100_ARCHIVE
    variant = "cifar100"


DATAMODULES: dict[str, type[ClassificationDataModule]] = {
    cls.info.name: cls
    for cls in (
        DigitsDataModule,
        MNISTDataModule,
        FashionMNISTDataModule,
        CIFAR10DataModule,
        CIFAR100DataModule,
    )
}


def create_datamodule(name: str, **kwargs: Any) -> ClassificationDataModule:
    """Build the datamodule for dataset ``name`` (see :class:`ClassificationDataModule`)."""
    return DATAMODULES[get_dataset_info(name).name](**kwargs)
