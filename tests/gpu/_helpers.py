"""What the CUDA tests use to see where things ran: Lightning callbacks that record the
devices of the module and of every batch, a watch on device-to-host copies during training
steps, an Optuna trial callback that records each worker process's use of the GPU, and a
small BatchNorm + dropout network for the bit-for-bit checks.

Module-level (not in the tests) so worker processes can unpickle :class:`WorkerWitness`.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy


def _reason() -> str:
    built = torch.version.cuda or "none: a CPU-only build"
    return (
        f"no CUDA device: torch.cuda.is_available() is False (torch {torch.__version__}, "
        f"CUDA build {built}); run on a GPU machine: bash benchmarks/gpu_check.sh"
    )


NO_CUDA = _reason()
"""The skip reason of every test in tests/gpu without a CUDA device."""


def tensors(batch: Any) -> Iterator[torch.Tensor]:
    """Every tensor in a batch (tuples, lists, dicts, nested)."""
    if isinstance(batch, torch.Tensor):
        yield batch
    elif isinstance(batch, dict):
        for value in batch.values():
            yield from tensors(value)
    elif isinstance(batch, list | tuple):
        for value in batch:
            yield from tensors(value)


def weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].device == b[name].device, name
        assert torch.equal(a[name], b[name]), name


# ----------------------------------------------------------------------------- devices


class DeviceWitness(pl.Callback):
    """Records, for every fit and test it is part of, the device type of the module's
    parameters and of the Trainer's root device, the precision, and the device type of every
    tensor of every training, validation and test batch.

    ``events`` counts ``(what, device type)`` pairs, e.g. ``("train batch", "cuda")``.
    """

    def __init__(self) -> None:
        self.events: Counter[tuple[str, str]] = Counter()
        self.precisions: list[str] = []
        self.datamodule_splits: list[set[str]] = []
        self.train_loaders: list[tuple[str, str]] = []

    def _module(self, what: str, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for param in pl_module.parameters():
            self.events[(f"{what} parameter", param.device.type)] += 1
        for buffer in pl_module.buffers():
            self.events[(f"{what} buffer", buffer.device.type)] += 1
        self.events[(f"{what} root device", trainer.strategy.root_device.type)] += 1

    def _batch(self, what: str, batch: Any) -> None:
        for tensor in tensors(batch):
            self.events[(what, tensor.device.type)] += 1

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._module("fit", trainer, pl_module)
        self.precisions.append(str(trainer.precision))
        splits = getattr(trainer.datamodule, "_splits", None)  # lrtune's datamodules
        if splits is not None:
            self.datamodule_splits.append(
                {getattr(splits, name).device.type for name in splits.__dataclass_fields__}
            )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loader = trainer.train_dataloader
        device = getattr(loader, "device", None)  # lrtune's DeviceBatches know theirs
        self.train_loaders.append((type(loader).__name__, getattr(device, "type", "?")))

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._module("test", trainer, pl_module)
        self.precisions.append(str(trainer.precision))

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._batch("train batch", batch)
        self.events[("train step", pl_module.device.type)] += 1

    def on_validation_batch_start(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._batch("val batch", batch)

    def on_test_batch_start(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._batch("test batch", batch)

    def device_types(self) -> set[str]:
        """Every device type seen, over everything recorded."""
        return {device for _, device in self.events}

    def count(self, what: str, device: str = "cuda") -> int:
        return self.events[(what, device)]

    def assert_all_on(self, device: str = "cuda") -> None:
        """Something was recorded, and all of it on ``device``."""
        assert self.events, "the witness saw no fit: lrtune built its Trainer elsewhere?"
        elsewhere = {key: n for key, n in self.events.items() if key[1] != device}
        assert not elsewhere, f"not on {device}: {elsewhere}"


class HostCopies(pl.Callback):
    """Counts device-to-host copies of tensors with more than one element made during
    training steps (from ``on_train_batch_start`` to ``on_train_batch_end``: the forward,
    backward and optimizer step): ``Tensor.cpu()``, ``Tensor.to(<cpu>)``, ``.tolist()`` and
    ``.numpy()`` of a tensor on ``device``. A scalar read (a logged loss) is not data and
    is not counted. The watch is installed on ``torch.Tensor`` for the fit only: use as
    ``with HostCopies() as copies: ...`` around it.
    """

    def __init__(self, device: str = "cuda") -> None:
        self.device = device
        self.copies: list[tuple[str, tuple[int, ...]]] = []
        self.steps = 0
        self._in_step = False
        self._saved: dict[str, Any] = {}

    def __enter__(self) -> HostCopies:
        def watch(name: str) -> Any:
            original = getattr(torch.Tensor, name)

            def watched(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
                out = original(tensor, *args, **kwargs)
                if (
                    self._in_step
                    and tensor.device.type == self.device
                    and tensor.numel() > 1
                    and not (isinstance(out, torch.Tensor) and out.device.type == self.device)
                ):
                    self.copies.append((name, tuple(tensor.shape)))
                return out

            self._saved[name] = original
            setattr(torch.Tensor, name, watched)

        for name in ("cpu", "to", "tolist", "numpy"):
            watch(name)
        return self

    def __exit__(self, *exc: object) -> None:
        for name, original in self._saved.items():
            setattr(torch.Tensor, name, original)
        self._saved.clear()

    def on_train_batch_start(self, *args: Any) -> None:
        self._in_step = True
        self.steps += 1

    def on_train_batch_end(self, *args: Any) -> None:
        self._in_step = False


# ----------------------------------------------------------------------------- workers


class WorkerWitness:
    """An Optuna trial callback for studies with worker processes (picklable).

    After each trial it stores, in the study's user attr ``gpu_check.<host:pid>``, whether
    this process has used CUDA (initialised, peak memory allocated) and which GPUs it was
    given (``CUDA_VISIBLE_DEVICES``); then it waits (at most ``timeout`` seconds) until
    ``expect`` distinct workers have started trials, so that one quick worker cannot run
    every trial before the others are up and the test can see that they all ran (the
    ``timeout`` counts once per process, from its first trial: a worker that never comes
    costs it once, and the test then fails on the count).
    """

    def __init__(self, expect: int, timeout: float = 60.0) -> None:
        self.expect = expect
        self.timeout = timeout
        self._deadline: float | None = None  # per process: from its first trial on

    def __call__(self, study: Any, trial: Any) -> None:
        import socket

        initialised = torch.cuda.is_available() and torch.cuda.is_initialized()
        study.set_user_attr(
            f"gpu_check.{socket.gethostname()}:{os.getpid()}",
            {
                "cuda_initialized": bool(initialised),
                "max_memory_allocated": int(torch.cuda.max_memory_allocated())
                if initialised
                else 0,
                "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            },
        )
        if self._deadline is None:
            self._deadline = time.monotonic() + self.timeout
        while time.monotonic() < self._deadline:
            workers = {
                t.user_attrs["worker"]
                for t in study.get_trials(deepcopy=False)
                if "worker" in t.user_attrs
            }
            if len(workers) >= self.expect:
                return
            time.sleep(0.25)


# ----------------------------------------------------------------------------- a network


class BNNet(pl.LightningModule):
    """BatchNorm (buffers), dropout (the CUDA RNG), a torchmetrics metric, Adam and a
    per-step cosine schedule: everything a range test mid-training must put back."""

    def __init__(self, lr: float = 1e-2) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64, 32),
            nn.BatchNorm1d(32),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(32, 10),
        )
        self.train_acc = MulticlassAccuracy(10, average="micro")
        self.epoch_acc: list[float] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self.net(x)
        loss = nn.functional.cross_entropy(logits, y)
        self.train_acc.update(logits, y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self.epoch_acc.append(float(self.train_acc.compute()))
        self.train_acc.reset()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self) -> Any:
        from lrtune.schedules import create_scheduler

        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)
        scheduler = create_scheduler(
            optimizer, "cosine", int(self.trainer.estimated_stepping_batches)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
