"""The range test on CUDA: ``find_lr`` (with its verification) puts the weights and every
RNG back bit for bit, the CUDA RNG included; ``LRRangeTest`` mid-training in a GPU fit leaves
training bit for bit as without it (tests/range_test/test_finder.py and test_callbacks.py
on the CPU)."""

from __future__ import annotations

import functools
import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lrtune import LRRangeTest, TrainConfig, find_lr
from lrtune.data import DigitsDataModule
from lrtune.data._batches import DeviceBatches
from lrtune.module import ClassifierModule
from tests.gpu._helpers import NO_CUDA, BNNet, DeviceWitness, assert_same_weights, weights

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)]


class PeekingClassifier(ClassifierModule):
    """lrtune's classifier that keeps the CUDA RNG state after its first training step (the
    dropout draws from it), to show the sweep moved the state that find_lr puts back."""

    peeks: list[torch.Tensor]

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        loss = super().training_step(batch, batch_idx)
        if not self.peeks:
            self.peeks.append(torch.cuda.get_rng_state())
        return loss


def _classifier() -> PeekingClassifier:
    config = TrainConfig(
        model="mlp", model_options={"width": 32, "depth": 1, "dropout": 0.2},
        optimizer={"name": "adam"}, epochs=1,
    )  # fmt: skip
    torch.manual_seed(0)
    module = PeekingClassifier.from_config(config, (1, 8, 8), 10)
    assert isinstance(module, PeekingClassifier)
    module.peeks = []
    return module


def _rngs() -> tuple[torch.Tensor, torch.Tensor, Any, object]:
    return (
        torch.get_rng_state(),
        torch.cuda.get_rng_state(),
        np.random.get_state()[1].copy(),
        random.getstate(),
    )


def test_find_lr_with_verification_restores_weights_and_every_rng_bit_for_bit() -> None:
    module = _classifier()
    datamodule = DigitsDataModule(batch_size=32)
    witness = DeviceWitness()
    before = weights(module)
    torch.manual_seed(7)  # seeds the CUDA generator too
    states = _rngs()
    result = find_lr(
        module, datamodule=datamodule, accelerator="cuda", min_lr=1e-5, max_lr=1.0,
        num_steps=30, callbacks=[witness],
    )  # default verify=True: the probes train too  # fmt: skip
    # the sweep and its probes ran on the GPU, on the datamodule's GPU-resident data
    assert result.suggestion is not None and 1e-5 <= result.suggestion <= 1.0
    assert result.probes, "the verification ran no probe"
    witness.assert_all_on("cuda")
    assert witness.count("fit parameter") > 0 and witness.datamodule_splits == [{"cuda"}]
    assert datamodule.splits.train_x.device.type == "cuda"
    # the CUDA RNG moved during the sweep (dropout), and is back where it was
    assert module.peeks and not torch.equal(module.peeks[0], states[1])
    after = _rngs()
    assert torch.equal(after[0], states[0]), "CPU torch RNG"
    assert torch.equal(after[1], states[1]), "CUDA RNG"
    assert (after[2] == states[2]).all(), "numpy RNG"
    assert after[3] == states[3], "python RNG"
    # the weights are back bit for bit (on the CPU, where they were before the call)
    assert_same_weights(weights(module), before)
    assert module.training


# ----------------------------------------------------------------------------- mid-training


@functools.cache
def _initial_weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return weights(BNNet())


def _digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    dm = DigitsDataModule(batch_size=32)
    dm.setup()  # on the CPU (no Trainer attached)
    s = dm.splits
    x = (s.train_x.float() / 255.0 - s.mean.view(1, -1, 1, 1)) / s.std.view(1, -1, 1, 1)
    return x, s.train_y


def _train_data(kind: str) -> dict[str, Any]:
    if kind == "datamodule":  # lrtune's: the data on the GPU, DeviceBatches' CUDA generator
        return {"datamodule": DigitsDataModule(batch_size=32, seed=0)}
    x, y = _digits_tensors()
    val = DataLoader(TensorDataset(x[:64], y[:64]), batch_size=64)
    if kind == "dataloader":  # host tensors, moved per batch; the order from the CPU RNG
        train = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
        return {"train_dataloaders": train, "val_dataloaders": val}
    if kind == "augmented":  # DeviceBatches on the GPU: crops and flips from its generator
        dm = DigitsDataModule(batch_size=32, device="cuda")
        dm.setup()
        s = dm.splits
        batches = DeviceBatches(
            s.train_x, s.train_y, mean=s.mean, std=s.std, batch_size=32,
            shuffle=True, drop_last=True, augment=True, pad=1, seed=3,
        )  # fmt: skip
        assert batches.device.type == "cuda"
        return {"train_dataloaders": batches, "val_dataloaders": val}
    raise AssertionError(kind)


def _fit(kind: str, callback: LRRangeTest | None) -> dict[str, Any]:
    module = BNNet()
    module.load_state_dict(_initial_weights())
    witness = DeviceWitness()
    torch.manual_seed(123)  # dropout masks (CUDA RNG) and the DataLoader's order (CPU RNG)
    trainer = pl.Trainer(
        accelerator="gpu", devices=1, max_epochs=2, limit_train_batches=10,
        limit_val_batches=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        callbacks=[*([callback] if callback else []), witness],
    )  # fmt: skip
    trainer.fit(module, **_train_data(kind))
    witness.assert_all_on("cuda")
    optimizer = trainer.optimizers[0]
    return {
        "weights": weights(module),  # parameters and BatchNorm buffers
        "optimizer": {
            f"{i}.{key}": value.clone()
            for i, state in optimizer.state_dict()["state"].items()
            for key, value in state.items()
        },  # Adam's step counts and moments
        "lr": optimizer.param_groups[0]["lr"],
        "scheduler": trainer.lr_scheduler_configs[0].scheduler.state_dict()["last_epoch"],
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
        "epoch_acc": module.epoch_acc,
        "global_step": trainer.global_step,
        "rng": (torch.get_rng_state(), torch.cuda.get_rng_state()),
    }


@pytest.mark.usefixtures("deterministic")
@pytest.mark.parametrize("kind", ["datamodule", "dataloader", "augmented"])
@pytest.mark.parametrize("when", [{"epoch": 1}, {"step": 7}], ids=["epoch1", "step7"])
def test_training_goes_on_bit_for_bit_as_without_the_range_test(kind: str, when: dict) -> None:
    base = _fit(kind, None)
    assert base["global_step"] == 20 and len(base["epoch_acc"]) == 2
    finder = LRRangeTest(1e-4, 1.0, 20, apply=False, **when)
    got = _fit(kind, finder)
    assert finder.result is not None and len(finder.result.lrs) >= 10  # the sweep ran
    assert_same_weights(got.pop("weights"), base.pop("weights"))
    assert_same_weights(got.pop("optimizer"), base.pop("optimizer"))
    got_rng, base_rng = got.pop("rng"), base.pop("rng")
    assert torch.equal(got_rng[0], base_rng[0]) and torch.equal(got_rng[1], base_rng[1])
    assert got == base
