"""Promises of Lightning's own LR-finder tests, ported to ``lrtune.find_lr``.

Each test is named after the test of Lightning-AI/pytorch-lightning
``tests/tests_pytorch/tuner/test_lr_finder.py`` that it ports, and quotes the promise. This
file holds the promises about where the suggestion is written (``update_attr``); the rest of
the port is issue 22's remaining work.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrtune.data import DigitsDataModule
from lrtune.errors import ConfigError
from lrtune.finder import find_lr

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _loader() -> DataLoader:
    dm = DigitsDataModule(batch_size=32)
    dm.setup()
    s = dm.splits
    x = (s.train_x.float() / 255.0 - s.mean.view(1, -1, 1, 1)) / s.std.view(1, -1, 1, 1)
    return DataLoader(TensorDataset(x, s.train_y), batch_size=32)


class Model(pl.LightningModule):
    """Reads its LR from ``self.<name>`` or, with ``use_hparams``, from ``self.hparams``
    (``save_hyperparameters()``, the most common Lightning pattern)."""

    def __init__(self, learning_rate: float = 0.05, use_hparams: bool = False,
                 name: str = "learning_rate") -> None:  # fmt: skip
        super().__init__()
        torch.manual_seed(0)
        self.name, self.use_hparams = name, use_hparams
        if use_hparams:
            self.save_hyperparameters({name: learning_rate})
        else:
            setattr(self, name, learning_rate)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> Any:
        holder = self.hparams if self.use_hparams else vars(self)
        return torch.optim.SGD(self.parameters(), lr=holder[self.name], momentum=0.9)


def _find(model: Model, **kwargs: Any) -> Any:
    return find_lr(model, _loader(), min_lr=1e-4, max_lr=1.0, num_steps=20, verify=False,
                   **kwargs)  # fmt: skip


@pytest.mark.parametrize("use_hparams", [False, True])
def test_trainer_arg_bool(use_hparams: bool) -> None:
    """Lightning: "Test that setting trainer arg to bool works": the suggestion lands in
    ``learning_rate``, on the module or in its ``hparams``, and training uses it."""
    model = Model(use_hparams=use_hparams)
    result = _find(model, update_attr=True)
    assert result.suggestion is not None
    after = model.hparams["learning_rate"] if use_hparams else model.learning_rate
    assert after == result.suggestion != 0.05
    optimizer = model.configure_optimizers()
    assert optimizer.param_groups[0]["lr"] == result.suggestion


@pytest.mark.parametrize("use_hparams", [False, True])
def test_trainer_arg_str(use_hparams: bool) -> None:
    """Lightning: "Test that setting trainer arg to string works": an explicit field name,
    on the module or in its ``hparams``."""
    model = Model(use_hparams=use_hparams, name="my_fancy_lr")
    result = _find(model, update_attr="my_fancy_lr")
    after = model.hparams["my_fancy_lr"] if use_hparams else model.my_fancy_lr
    assert after == result.suggestion is not None and after != 0.05


def test_lr_finder_fails_fast_on_bad_config() -> None:
    """Lightning: "Test that tune fails if the model does not have a lr BEFORE running lr
    find": a field found nowhere is an error naming it, and nothing is trained or made."""
    model = Model(name="rate")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match=r"update_attr=True: no field 'lr' or 'learning_rate'"):
        _find(model, update_attr=True)
    with pytest.raises(
        ConfigError, match=r"update_attr='lrr': no field 'lrr' in Model, its hparams"
    ):
        _find(model, update_attr="lrr")
    assert not hasattr(model, "lrr") and not hasattr(model, "lr")  # nothing created
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model._trainer is None  # no training ran


class DataWithLR(pl.LightningDataModule):
    def __init__(self, learning_rate: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()

    def train_dataloader(self) -> DataLoader:
        return _loader()


def test_datamodule_parameter() -> None:
    """Lightning: "Test that the datamodule parameter works." With a datamodule, the
    suggestion is written wherever the run keeps the field: the module and the datamodule's
    ``hparams`` (as Lightning's ``lightning_setattr`` does)."""
    model = Model(name="learning_rate")
    data = DataWithLR()
    result = find_lr(model, datamodule=data, min_lr=1e-4, max_lr=1.0, num_steps=20,
                     verify=False, update_attr=True)  # fmt: skip
    assert result.suggestion is not None
    assert model.learning_rate == data.hparams["learning_rate"] == result.suggestion


class OwnData(Model):
    """A small module as Lightning's examples write them: its data in its own hooks."""

    def __init__(self) -> None:
        super().__init__(name="lr")
        self.val_calls = 0

    def train_dataloader(self) -> DataLoader:
        return _loader()

    def val_dataloader(self) -> DataLoader:
        self.val_calls += 1
        return _loader()


def test_the_modules_own_dataloaders_are_used() -> None:
    """Lightning's tests call ``tuner.lr_find(model)`` with no loaders: ``BoringModel``
    brings its own ``train_dataloader``. lrtune does the same, and scores its verification
    probes on the module's ``val_dataloader``."""
    model = OwnData()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = find_lr(model, min_lr=1e-4, max_lr=1.0, num_steps=20, update_attr=True)
    assert result.suggestion is not None and model.lr == result.suggestion
    assert model.val_calls >= 1  # the probes' held-out batches
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_no_data_anywhere_is_one_error() -> None:
    with pytest.raises(ConfigError, match=r"find_lr needs training data: .* on Model"):
        find_lr(Model(), min_lr=1e-4, max_lr=1.0, num_steps=20)
