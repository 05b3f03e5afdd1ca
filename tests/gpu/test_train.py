"""``lrtune.train`` on CUDA: the data stays on the GPU, no step copies it back to the host,
and no device name falls back to the CPU."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from lrtune import TrainConfig, TrainResult, train
from tests.gpu._helpers import NO_CUDA, DeviceWitness, HostCopies

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)]


def _train_watched(
    config: TrainConfig,
) -> tuple[TrainResult, DeviceWitness, HostCopies, list[pl.LightningModule]]:
    witness = DeviceWitness()
    modules: list[pl.LightningModule] = []
    with HostCopies("cuda") as copies:
        result = train(config, callbacks=[witness, copies], on_module=modules.append)
    return result, witness, copies, modules


def _assert_data_stayed_on_the_gpu(
    result: TrainResult, witness: DeviceWitness, copies: HostCopies
) -> None:
    witness.assert_all_on("cuda")
    # every split of lrtune's datamodule is a CUDA tensor, and the training batches come
    # from DeviceBatches over them (no DataLoader, no host-to-device copy per batch)
    assert witness.datamodule_splits == [{"cuda"}]
    assert witness.train_loaders == [("DeviceBatches", "cuda")]
    # every optimizer step was witnessed with its batch (x, y) on the GPU, as were the
    # validation and test batches
    assert witness.count("train step") == result.steps > 0
    assert witness.count("train batch") == 2 * result.steps
    assert witness.count("val batch") > 0 and witness.count("test batch") > 0
    assert witness.precisions == ["32-true", "32-true"]  # fit, then test
    # nothing but scalars left the GPU during the training steps
    assert copies.steps == result.steps
    assert copies.copies == []


def test_train_a_cnn_on_digits_keeps_the_data_on_the_gpu() -> None:
    config = TrainConfig(
        dataset="digits", model="cnn", device="cuda", epochs=1, seed=0,
        optimizer={"name": "adam", "lr": 3e-3},
    )  # fmt: skip
    result, witness, copies, modules = _train_watched(config)
    assert result.epochs == 1 and result.steps > 0
    assert all(math.isfinite(v) for v in (result.val_acc, result.test_acc, result.train_loss))
    assert result.val_acc > 0.3  # one epoch of Adam learns the digits
    assert len(modules) == 1  # on_module saw the module that trained
    _assert_data_stayed_on_the_gpu(result, witness, copies)


def test_train_a_cnn_on_real_mnist_keeps_the_data_on_the_gpu(mnist_dir: Path) -> None:
    config = TrainConfig(
        dataset="mnist", data_dir=mnist_dir, download=False, model="cnn", device="cuda",
        epochs=1, seed=0, optimizer={"name": "adam", "lr": 1e-3},
    )  # fmt: skip
    result, witness, copies, _ = _train_watched(config)
    assert result.val_acc > 0.8 and result.test_acc > 0.8
    _assert_data_stayed_on_the_gpu(result, witness, copies)


@pytest.mark.parametrize("device", ["cuda", "gpu", "auto"])
def test_no_device_name_falls_back_to_the_cpu(device: str) -> None:
    """``cuda``, ``gpu`` and ``auto`` (with a GPU present) all train on it, in bf16 too."""
    precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    config = TrainConfig(
        dataset="digits", model="mlp", model_options={"width": 32}, device=device,
        precision=precision, epochs=1, optimizer="adam",
    )  # fmt: skip
    witness = DeviceWitness()
    seen: list[str] = []

    class AtEveryStep(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
            seen.append(outputs["loss"].device.type)

    result = train(config, callbacks=[witness, AtEveryStep()])
    witness.assert_all_on("cuda")
    assert witness.precisions == [precision, precision]
    assert seen and set(seen) == {"cuda"} and len(seen) == result.steps
