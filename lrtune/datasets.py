"""The dataset catalog: name -> :class:`DatasetInfo`, what each built-in dataset is.

Core layer: it loads nothing (no Lightning import, no files), so the config can validate
dataset names cheaply. The Lightning data modules live in :mod:`lrtune.data`.
"""

from __future__ import annotations

from dataclasses import dataclass

from lrtune.errors import ConfigError

__all__ = ["DATASETS", "DatasetInfo", "get_dataset_info", "list_datasets"]


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset.

    Args:
        name: Registry name.
        description: One line for listings.
        input_shape: ``(C, H, W)`` of one image.
        num_classes: Number of labels.
        batch_size: Default batch size.
        augment: Whether training batches are augmented (crop + flip) by default.
        needs_files: Whether it reads files (``--data-dir``) or is embedded.
    """

    name: str
    description: str
    input_shape: tuple[int, int, int]
    num_classes: int
    batch_size: int
    augment: bool = False
    needs_files: bool = True


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            "digits",
            "scikit-learn's 1,797 8x8 handwritten digits (embedded, offline)",
            (1, 8, 8),
            10,
            64,
            needs_files=False,
        ),
        DatasetInfo("mnist", "MNIST handwritten digits, 28x28 (IDX files)", (1, 28, 28), 10, 64),
        DatasetInfo(
            "fashion-mnist",
            "Fashion-MNIST clothing images, 28x28 (IDX files)",
            (1, 28, 28),
            10,
            64,
        ),
        DatasetInfo(
            "cifar10",
            "CIFAR-10, 32x32 colour, 10 classes (python version)",
            (3, 32, 32),
            10,
            512,
            augment=True,
        ),
        DatasetInfo(
            "cifar100",
            "CIFAR-100, 32x32 colour, 100 fine classes (python version)",
            (3, 32, 32),
            100,
            512,
            augment=True,
        ),
    )
}

_ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
}


def list_datasets() -> list[str]:
    """Registry names of all datasets."""
    return list(DATASETS)


def get_dataset_info(name: str) -> DatasetInfo:
    """Look up a dataset by name (case-insensitive).

    Raises:
        ConfigError: ``name`` is unknown; the message lists the known names.
    """
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}")
    return DATASETS[key]
