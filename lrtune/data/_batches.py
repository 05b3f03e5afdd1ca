"""Device-resident batching: a whole split as one uint8 tensor, batches as tensor ops.

No per-sample Python, no DataLoader workers: each epoch is one ``randperm`` on the device,
each batch is an index into the uint8 tensor, converted, normalised and (optionally)
augmented with batched ops where the data lives (the airbench recipe).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

__all__ = ["DeviceBatches", "random_crop_flip"]


def random_crop_flip(
    images: torch.Tensor, pad: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random crop with reflect padding, then random horizontal flip, for a whole batch.

    Args:
        images: Float batch ``(B, C, H, W)``.
        pad: Pixels of reflect padding on each side; crops are shifted by up to ``2 * pad``.
        generator: Random source on the batch's device.
    """
    batch, _, height, width = images.shape
    device = images.device
    if pad > 0:
        padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
        shift_y = torch.randint(0, 2 * pad + 1, (batch,), device=device, generator=generator)
        shift_x = torch.randint(0, 2 * pad + 1, (batch,), device=device, generator=generator)
        rows = shift_y[:, None] + torch.arange(height, device=device)  # (B, H)
        cols = shift_x[:, None] + torch.arange(width, device=device)  # (B, W)
        index = torch.arange(batch, device=device)[:, None, None]
        # (B, H+2p, W+2p, C) gathered at (b, row, col) -> (B, H, W, C) -> (B, C, H, W)
        images = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]
        images = images.permute(0, 3, 1, 2)
    flip = torch.rand(batch, device=device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)


class DeviceBatches:
    """An iterable of ``(x, y)`` batches over tensors that already live on the device.

    Args:
        images: uint8 ``(N, C, H, W)`` on the training device.
        labels: int64 ``(N,)`` on the same device.
        mean: Per-channel mean in [0, 1] units, shape ``(C,)``.
        std: Per-channel standard deviation in [0, 1] units, shape ``(C,)``.
        batch_size: Samples per batch.
        shuffle: New random order each epoch (``randperm`` on the device).
        drop_last: Drop the last, smaller batch (training; keeps BatchNorm sane).
        augment: Random crop (``pad`` reflect padding) + horizontal flip on each batch.
        pad: Crop padding in pixels (default 4, as for CIFAR).
        seed: Seeds batch order and augmentation; epoch ``e`` uses ``(seed, e)``, so two
            iterables with the same seed give the same batches.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        mean: torch.Tensor,
        std: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        augment: bool = False,
        pad: int = 4,
        seed: int = 0,
    ) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last and images.shape[0] >= batch_size
        self.augment = augment
        self.pad = pad
        self.seed = seed
        self.epoch = 0
        device = images.device
        # x_norm = x_uint8 * scale + shift  ==  (x / 255 - mean) / std
        self._scale = (1.0 / (255.0 * std)).to(device, torch.float32).view(1, -1, 1, 1)
        self._shift = (-mean / std).to(device, torch.float32).view(1, -1, 1, 1)
        self._generator = torch.Generator(device=device)

    @property
    def device(self) -> torch.device:
        """Where the data lives."""
        return self.images.device

    def state_dict(self) -> dict[str, int]:
        """Where the iteration stands (the next epoch's index), for exact restores."""
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume from :meth:`state_dict`."""
        self.epoch = int(state["epoch"])

    def __len__(self) -> int:
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def generator(self) -> torch.Generator:
        """The generator every iterator of these batches draws its augmentation from."""
        return self._generator

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration produce epoch ``epoch``'s order and augmentation."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = self._generator
        generator.manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        n = self.images.shape[0]
        order = torch.randperm(n, device=self.device, generator=generator) if self.shuffle else None
        for i in range(len(self)):
            start, stop = i * self.batch_size, min((i + 1) * self.batch_size, n)
            if order is None:
                x, y = self.images[start:stop], self.labels[start:stop]
            else:
                index = order[start:stop]
                x, y = self.images[index], self.labels[index]
            x = torch.addcmul(self._shift, x.float(), self._scale)
            if self.augment:
                x = random_crop_flip(x, self.pad, generator)
            yield x, y
