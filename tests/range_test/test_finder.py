"""``find_lr()`` on LightningModules of every supported shape, and its plot."""

from __future__ import annotations

import math
import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrtune.config import TrainConfig
from lrtune.data import DigitsDataModule, MNISTDataModule
from lrtune.errors import ConfigError
from lrtune.module import ClassifierModule
from lrtune.range_test import METHODS, RangeTestResult
from lrtune.range_test._find import find_lr
from lrtune.schedules import create_scheduler

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _classifier(optimizer: str = "adam", schedule: str = "constant") -> ClassifierModule:
    config = TrainConfig(
        model="mlp",
        model_options={"width": 16, "depth": 1},
        optimizer={"name": optimizer},
        schedule={"name": schedule},
        epochs=1,
    )
    torch.manual_seed(0)
    return ClassifierModule.from_config(config, (1, 8, 8), 10)


def _weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def _digits_loader(*, shuffle: bool = False) -> DataLoader:
    dm = DigitsDataModule(batch_size=32)
    dm.setup()
    s = dm.splits
    x = (s.train_x.float() / 255.0 - s.mean.view(1, -1, 1, 1)) / s.std.view(1, -1, 1, 1)
    return DataLoader(TensorDataset(x, s.train_y), batch_size=32, shuffle=shuffle)


class Plain(pl.LightningModule):
    """A user's module: ``configure_optimizers`` returns a bare optimizer or a dict."""

    def __init__(self, style: str = "bare") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.style = style
        self.lr = 0.05
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)
        if self.style == "bare":
            return optimizer
        if self.style == "none":
            return None
        if self.style == "two":
            return [optimizer, torch.optim.SGD(self.parameters(), lr=self.lr)]
        scheduler = create_scheduler(optimizer, "onecycle", 100)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


# ----------------------------------------------------------------------------- results


def test_find_lr_on_a_classifier_module() -> None:
    module = _classifier()
    before = _weights(module)
    result = find_lr(
        module, datamodule=DigitsDataModule(batch_size=32), min_lr=1e-5, max_lr=1.0,
        num_steps=30, verify=False,
    )  # fmt: skip
    assert isinstance(result, RangeTestResult)
    n = len(result.lrs)
    assert 10 <= n <= 30 and len(result.losses) == len(result.smoothed) == n
    assert result.lrs[0] == 1e-5 and bool(np.all(np.diff(result.lrs) > 0))
    assert all(math.isfinite(v) for v in result.losses + result.smoothed[:-1])
    assert math.isnan(result.smoothed[-1])  # the last point is left out of the analysis
    assert result.num_steps == 30 and result.method == "bracket" and result.target == "constant"
    assert result.seconds > 0
    assert set(result.suggestions) == set(METHODS)
    assert result.suggestion is not None and 1e-5 <= result.suggestion <= 1.0
    assert result.suggestion == result.suggestions["bracket"]
    assert result.bracket is not None
    low, high = result.bracket
    assert 1e-5 <= low <= result.suggestion <= high <= 1.0
    assert result.reason == "bracket method, for a constant LR"
    assert result.to_dict()["steps_run"] == n
    _assert_same_weights(_weights(module), before)  # bit for bit
    assert module.training  # put back in train mode as it was


@pytest.mark.parametrize(("style", "target"), [("bare", "constant"), ("dict", "max")])
def test_find_lr_on_a_plain_module(style: str, target: str) -> None:
    module = Plain(style)
    before = _weights(module)
    result = find_lr(module, _digits_loader(), min_lr=1e-4, max_lr=1.0, num_steps=20)
    assert result.target == target  # the one-cycle schedule asks for a peak LR
    assert result.suggestion is not None and 1e-4 <= result.suggestion <= 1.0
    assert result.bracket is not None
    if target == "max":
        assert result.suggestion == max(result.bracket[1], result.suggestions["bracket"])
    _assert_same_weights(_weights(module), before)
    assert module.lr == 0.05  # no update_attr: untouched


def test_update_attr_sets_the_suggestion() -> None:
    module = Plain("bare")
    result = find_lr(
        module, _digits_loader(), min_lr=1e-4, max_lr=1.0, num_steps=20, update_attr="lr"
    )
    assert result.suggestion is not None
    assert module.lr == result.suggestion != 0.05


def test_data_order_and_rngs_are_as_before_the_call() -> None:
    """A shuffled DataLoader draws its order from the global RNG: fit after find_lr as without."""

    def fit(module: Plain, loader: DataLoader) -> dict[str, torch.Tensor]:
        trainer = pl.Trainer(
            accelerator="cpu", max_epochs=1, limit_train_batches=5, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        )  # fmt: skip
        trainer.fit(module, train_dataloaders=loader)
        return _weights(module)

    loader = _digits_loader(shuffle=True)
    module = Plain("bare")
    torch.manual_seed(7)
    baseline = fit(module, loader)

    module = Plain("bare")
    torch.manual_seed(7)
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    find_lr(module, loader, min_lr=1e-4, max_lr=1.0, num_steps=20)
    assert torch.equal(torch.get_rng_state(), states[0])
    assert (np.random.get_state()[1] == states[1]).all()
    assert random.getstate() == states[2]
    _assert_same_weights(fit(module, loader), baseline)


def test_nan_loss_from_the_start_gives_no_suggestion() -> None:
    class Broken(Plain):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return super().training_step(batch, batch_idx) * float("nan")

    module = Broken("bare")
    before = _weights(module)
    result = find_lr(module, _digits_loader(), min_lr=1e-4, max_lr=1.0, num_steps=20)
    assert result.suggestion is None and result.bracket is None
    assert "never finite" in result.reason
    assert result.stop_reason is not None and "nan" in result.stop_reason
    assert len(result.losses) == 1
    _assert_same_weights(_weights(module), before)


# ----------------------------------------------------------------------------- errors


def test_one_data_source() -> None:
    """Loaders or a datamodule, not both; with neither, the module's own train_dataloader
    (tests/range_test/test_lightning_parity.py), and a module without one is an error."""
    module = Plain("bare")
    with pytest.raises(ConfigError, match=r"find_lr needs training data: .* on Plain"):
        find_lr(module)
    with pytest.raises(ConfigError, match="train_dataloaders or datamodule, not both"):
        find_lr(module, _digits_loader(), datamodule=DigitsDataModule())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_lr": 1.0, "max_lr": 1.0}, "max_lr"),
        ({"min_lr": 1.0, "max_lr": 1e-3}, "max_lr"),
        ({"num_steps": 5}, "num_steps"),
        ({"method": "nope"}, "unknown method"),
        ({"smoothing": 0.5}, r"unknown Trainer option 'smoothing'; known: accelerator, "),
        ({"max_epochs": 3}, "unknown Trainer option 'max_epochs'"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        find_lr(Plain("bare"), _digits_loader(), **kwargs)


@pytest.mark.parametrize(
    ("style", "match"), [("none", "needs an optimizer"), ("two", "multiple optimizers")]
)
def test_no_optimizer_or_several_optimizers(style: str, match: str) -> None:
    module = Plain(style)
    before = _weights(module)
    with pytest.raises(ConfigError, match=match):
        find_lr(module, _digits_loader(), num_steps=10)
    _assert_same_weights(_weights(module), before)


def test_manual_optimization_is_refused() -> None:
    class Manual(Plain):
        def __init__(self) -> None:
            super().__init__("bare")
            self.automatic_optimization = False

    with pytest.raises(ConfigError, match="automatic optimization"):
        find_lr(Manual(), _digits_loader(), num_steps=10)


# ----------------------------------------------------------------------------- plot


def test_plot_shades_the_bracket_and_marks_the_suggestion() -> None:
    import plotly.graph_objects as go

    result = find_lr(Plain("bare"), _digits_loader(), min_lr=1e-4, max_lr=1.0, num_steps=20)
    assert result.suggestion is not None and result.bracket is not None
    fig = result.plot(title="digits")
    assert isinstance(fig, go.Figure)
    assert fig.layout.title.text == "digits"
    assert fig.layout.xaxis.type == "log"
    filled = [t for t in fig.data if t.fill == "toself"]
    assert len(filled) == 1
    assert min(filled[0].x) == result.bracket[0] and max(filled[0].x) == result.bracket[1]
    dashed = [t for t in fig.data if t.line is not None and t.line.dash == "dash"]
    assert len(dashed) == 1 and tuple(dashed[0].x) == (result.suggestion, result.suggestion)
    curves = [t for t in fig.data if t.mode == "lines" and t.fill != "toself" and t not in dashed]
    assert any(tuple(t.y) == tuple(result.smoothed) for t in curves)
    assert any(tuple(t.y) == tuple(result.losses) for t in fig.data if t.mode == "markers")


def test_plot_without_a_suggestion_has_no_bracket() -> None:
    result = RangeTestResult.from_sweep(
        list(np.geomspace(1e-4, 1.0, 20)),
        [float("nan")],
        beta=0.9,
        method="bracket",
        target="constant",
        stop_reason="loss is nan at step 0",
        num_steps=20,
        seconds=0.1,
    )
    fig = result.plot()
    assert not [t for t in fig.data if t.fill == "toself"]
    assert not [t for t in fig.data if t.line is not None and t.line.dash == "dash"]


# ----------------------------------------------------------------------------- real data


def test_mnist_smoke(mnist_dir) -> None:
    config = TrainConfig(
        model="mlp", model_options={"width": 16, "depth": 1}, optimizer={"name": "adam"}, epochs=1
    )
    datamodule = MNISTDataModule(data_dir=mnist_dir, batch_size=64, download=False)
    torch.manual_seed(0)
    module = ClassifierModule.from_config(config, datamodule.input_shape, datamodule.num_classes)
    result = find_lr(module, datamodule=datamodule, num_steps=50, label="adam")
    assert result.label == "adam"
    assert result.suggestion is not None, result.reason
    assert 1e-5 < result.suggestion < 1e-1
    assert result.bracket is not None and result.bracket[0] < result.bracket[1]


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_plain_steps_give_the_same_sweep_as_lightnings_step_machinery(optimizer: str) -> None:
    """With nothing hooked around backward/step, the sweep calls training_step, backward and
    optimizer.step itself; a callback overriding such a hook sends it through Lightning's
    strategy (and the hook runs). Both give the same sweep, bit for bit."""
    from lrtune.range_test._steps import plain_steps as _plain_steps

    calls: list[int] = []
    used: list[bool] = []

    class Hooked(pl.Callback):
        def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            calls.append(1)

    class Spy(pl.Callback):
        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            finder = next(c for c in trainer.callbacks if type(c).__name__ == "LRRangeTest")
            used.append(_plain_steps(trainer, pl_module, finder))

    dm = DigitsDataModule(batch_size=32, seed=0)
    results = []
    for callbacks in ([Spy()], [Spy(), Hooked()]):
        module = _classifier(optimizer)
        results.append(find_lr(module, datamodule=dm, min_lr=1e-5, max_lr=1.0, num_steps=40,
                               callbacks=callbacks, verify=False))  # fmt: skip
    assert used == [True, False]
    assert len(calls) == len(results[1].lrs) > 10  # the hook ran once per step
    assert results[0].lrs == results[1].lrs
    assert results[0].losses == results[1].losses
    assert results[0].suggestion == results[1].suggestion


def test_plain_steps_are_not_used_where_lightning_adds_something() -> None:
    """Gradient clipping, mixed precision or a module overriding a step hook: strategy path."""
    from lrtune.range_test._callback import LRRangeTest
    from lrtune.range_test._steps import plain_steps as _plain_steps

    seen: dict[str, bool] = {}

    class Spy(pl.Callback):
        def __init__(self, key: str) -> None:
            self.key = key

        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            finder = next(c for c in trainer.callbacks if isinstance(c, LRRangeTest))
            seen[self.key] = _plain_steps(trainer, pl_module, finder)

    class Clipping(ClassifierModule):
        def configure_gradient_clipping(self, *args: Any, **kwargs: Any) -> None:
            super().configure_gradient_clipping(*args, **kwargs)

    dm = DigitsDataModule(batch_size=32, seed=0)
    find_lr(_classifier(), datamodule=dm, num_steps=10, callbacks=[Spy("plain")])
    find_lr(_classifier(), datamodule=dm, num_steps=10, gradient_clip_val=1.0,
            callbacks=[Spy("clip")])  # fmt: skip
    find_lr(_classifier(), datamodule=dm, num_steps=10, precision="bf16-mixed",
            callbacks=[Spy("bf16")])  # fmt: skip
    module = _classifier()
    module.__class__ = Clipping
    find_lr(module, datamodule=dm, num_steps=10, callbacks=[Spy("hook")])
    assert seen == {"plain": True, "clip": False, "bf16": False, "hook": False}


def test_batch_transfer_hooks_run_in_the_sweep_and_the_plain_path_matches_them() -> None:
    """A module overriding a batch-transfer hook gets its batches through it (once per batch,
    ``on_before_batch_transfer`` included); without such a hook the batches are moved
    directly, with the same sweep, bit for bit."""
    seen: list[str] = []

    class Hooked(ClassifierModule):
        def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
            seen.append("before")
            return batch

        def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
            seen.append("after")
            return batch

    class Halved(ClassifierModule):
        def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
            x, y = batch
            return x * 0.5, y

    def sweep(cls: type[ClassifierModule]) -> RangeTestResult:
        plain = _classifier()
        module = cls(plain.model, 10, plain.optimizer_config)
        return find_lr(module, datamodule=DigitsDataModule(batch_size=32, seed=0),
                       min_lr=1e-5, max_lr=1.0, num_steps=30, verify=False)  # fmt: skip

    hooked, plain, halved = sweep(Hooked), sweep(ClassifierModule), sweep(Halved)
    assert seen.count("before") == seen.count("after") == len(hooked.lrs) > 10
    assert hooked.losses == plain.losses
    assert halved.losses[0] != plain.losses[0]  # the hook's batches are the ones trained on
