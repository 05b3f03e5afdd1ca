"""Datasets as device-resident ``LightningDataModule`` objects.

``digits`` is embedded (scikit-learn); ``mnist``, ``fashion-mnist``, ``cifar10`` and
``cifar100`` read the published files from a folder, downloading missing ones with
checksum verification. The Lightning-dependent parts load on first use, so importing the
catalog stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lrtune.datasets import DATASETS, DatasetInfo, get_dataset_info, list_datasets

if TYPE_CHECKING:
    from lrtune.data._batches import DeviceBatches
    from lrtune.data._datamodules import (
        CIFAR10DataModule,
        CIFAR100DataModule,
        ClassificationDataModule,
        DigitsDataModule,
        FashionMNISTDataModule,
        MNISTDataModule,
        clear_cache,
        create_datamodule,
        default_data_dir,
    )

__all__ = [
    "DATASETS",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "ClassificationDataModule",
    "DatasetInfo",
    "DeviceBatches",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "MNISTDataModule",
    "clear_cache",
    "create_datamodule",
    "default_data_dir",
    "get_dataset_info",
    "list_datasets",
]

_LAZY = {"DeviceBatches": "lrtune.data._batches"}


def __getattr__(name: str) -> Any:
    if name in __all__:
        import importlib

        module = importlib.import_module(_LAZY.get(name, "lrtune.data._datamodules"))
        return getattr(module, name)
    raise AttributeError(f"module 'lrtune.data' has no attribute {name!r}")
