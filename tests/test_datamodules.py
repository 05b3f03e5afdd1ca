"""Datamodules and device-resident batching, on embedded, real and written data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lrtune.data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    DeviceBatches,
    DigitsDataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
    clear_cache,
    create_datamodule,
    list_datasets,
)
from lrtune.data._batches import random_crop_flip
from lrtune.errors import ConfigError, DataError
from tests.conftest import write_cifar


def _labels_of_epoch(batches: DeviceBatches) -> torch.Tensor:
    return torch.cat([y for _, y in batches])


def test_registry_names() -> None:
    assert list_datasets() == ["digits", "mnist", "fashion-mnist", "cifar10", "cifar100"]
    assert isinstance(create_datamodule("fashion_mnist"), FashionMNISTDataModule)
    with pytest.raises(ConfigError, match="unknown dataset 'imagenet'; known: digits"):
        create_datamodule("imagenet")


def test_digits_split_is_fixed_and_disjoint() -> None:
    dm = DigitsDataModule()
    dm.setup()
    s = dm.splits
    assert (len(s.train_y), len(s.val_y), len(s.test_y)) == (1294, 144, 359)
    assert s.train_x.dtype == torch.uint8 and s.train_x.shape[1:] == (1, 8, 8)
    assert int(s.train_x.max()) == 255
    # same split_seed -> same split (cache cleared: recomputed, not just shared)
    clear_cache()
    again = DigitsDataModule()
    again.setup()
    assert torch.equal(again.splits.val_x, s.val_x) and torch.equal(again.splits.test_y, s.test_y)
    # another split seed -> another split, same sizes
    other = DigitsDataModule(split_seed=1)
    other.setup()
    assert len(other.splits.val_y) == 144 and not torch.equal(other.splits.val_x, s.val_x)
    # train/val/test are disjoint: no image appears in two splits
    rows = {bytes(x.numpy().tobytes()) for x in s.test_x}
    rows_train = [bytes(x.numpy().tobytes()) for x in s.train_x]
    overlap = sum(r in rows for r in rows_train)
    assert overlap < 5  # digits has a handful of exact duplicate images; splits don't share


def test_normalisation_uses_training_statistics() -> None:
    dm = DigitsDataModule(batch_size=2000)
    dm.setup()
    x = torch.cat([xb for xb, _ in dm.train_dataloader()] + [])
    # the drop_last rule keeps the only (partial) batch when N < batch_size
    assert x.shape[0] == len(dm.splits.train_y)
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3


def test_device_batches_order_cover_and_reproducibility() -> None:
    images = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1)
    labels = torch.arange(100)
    kwargs = dict(mean=torch.zeros(1), std=torch.ones(1), batch_size=32, seed=3)
    batches = DeviceBatches(images, labels, shuffle=True, drop_last=True, **kwargs)
    assert len(batches) == 3
    epoch0 = _labels_of_epoch(batches)
    epoch1 = _labels_of_epoch(batches)
    assert epoch0.shape == (96,) and len(set(epoch0.tolist())) == 96
    assert not torch.equal(epoch0, epoch1)  # new order every epoch
    same = DeviceBatches(images, labels, shuffle=True, drop_last=True, **kwargs)
    assert torch.equal(_labels_of_epoch(same), epoch0)  # same seed, same batches
    same.set_epoch(0)
    assert torch.equal(_labels_of_epoch(same), epoch0)
    # the pixels travel with their labels, scaled to [0, 1] / std
    x, y = next(iter(DeviceBatches(images, labels, shuffle=True, **kwargs)))
    assert torch.allclose(x.view(-1) * 255, y.float())
    ordered = DeviceBatches(images, labels, **kwargs)
    assert len(ordered) == 4 and torch.equal(_labels_of_epoch(ordered), labels)


def test_random_crop_flip_is_a_shifted_window() -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(64, 3, 8, 8)
    out = random_crop_flip(images, 2, gen)
    assert out.shape == images.shape
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="reflect")
    for i in range(64):
        windows = [padded[i, :, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)]
        candidates = windows + [w.flip(-1) for w in windows]
        assert any(torch.equal(out[i], w) for w in candidates)
    flipped_only = random_crop_flip(images, 0, gen)
    n_flipped = sum(torch.equal(flipped_only[i], images[i].flip(-1)) for i in range(64))
    assert 16 < n_flipped < 48
    assert not torch.equal(out, images)


def test_real_mnist_sizes_come_from_headers(mnist_dir: Path) -> None:
    dm = MNISTDataModule(mnist_dir)
    dm.setup()
    s = dm.splits
    assert len(s.train_y) + len(s.val_y) == 6309 and len(s.val_y) == 631
    assert s.test_x.shape == (10000, 1, 28, 28)
    assert 0.12 < float(s.mean) < 0.14 and 0.29 < float(s.std) < 0.32  # MNIST's 0.1307/0.3081
    # per-process cache: a second datamodule shares the device tensors
    again = MNISTDataModule(mnist_dir, batch_size=7)
    again.setup()
    assert again.splits.train_x is s.train_x
    x, y = next(iter(again.train_dataloader()))
    assert x.shape == (7, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_mnist_missing_files_offline(tmp_path: Path) -> None:
    dm = MNISTDataModule(tmp_path / "nowhere", download=False)
    with pytest.raises(DataError) as info:
        dm.setup()
    message = str(info.value)
    assert "\n" not in message
    assert "train-images-idx3-ubyte.gz" in message and str(tmp_path / "nowhere") in message


def test_mnist_corrupt_file_names_itself(tmp_path: Path, mnist_dir: Path) -> None:
    for f in mnist_dir.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    bad = tmp_path / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz"):
        MNISTDataModule(tmp_path, download=False).setup()


@pytest.mark.parametrize("archive", [True, False], ids=["tar.gz", "folder"])
@pytest.mark.parametrize(
    ("cls", "variant", "classes"),
    [(CIFAR10DataModule, "cifar10", 10), (CIFAR100DataModule, "cifar100", 100)],
)
def test_cifar_datamodules(
    tmp_path: Path, cls: type, variant: str, classes: int, archive: bool
) -> None:
    write_cifar(tmp_path, variant, per_batch=40, archive=archive)
    dm = cls(tmp_path, batch_size=32, download=False)
    assert dm.augment and dm.num_classes == classes and dm.input_shape == (3, 32, 32)
    dm.setup()
    s = dm.splits
    assert len(s.train_y) + len(s.val_y) == 200 and len(s.test_y) == 40
    assert int(s.train_y.max()) < classes and s.mean.shape == (3,)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 3, 32, 32) and y.shape == (32,)
    # training batches are augmented: two epochs of the same order differ in pixels
    loader = dm.train_dataloader()
    loader.augment = False
    plain = next(iter(loader))[0]
    loader.set_epoch(0)
    loader.augment = True
    assert not torch.equal(next(iter(loader))[0], plain)
    # evaluation batches are not
    xv = next(iter(dm.val_dataloader()))[0]
    xv2 = next(iter(dm.val_dataloader()))[0]
    assert torch.equal(xv, xv2)


def test_cifar_missing_offline_says_where(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz.*" + str(tmp_path)):
        CIFAR10DataModule(tmp_path, download=False).setup()


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="batch_size must be >= 1, got 0"):
        DigitsDataModule(batch_size=0)
    with pytest.raises(ConfigError, match="val_fraction must be in"):
        DigitsDataModule(val_fraction=1.0)


def test_defaults_per_dataset() -> None:
    assert DigitsDataModule().batch_size == 64
    assert MNISTDataModule().batch_size == 64
    assert CIFAR10DataModule().batch_size == 512 and CIFAR10DataModule().augment
    assert not MNISTDataModule().augment
    assert np.isclose(MNISTDataModule().val_fraction, 0.1)
