"""Promises of Lightning's own LR-finder tests, ported to lrtune.

Each test is named after the test of Lightning-AI/pytorch-lightning
``tests/tests_pytorch/tuner/test_lr_finder.py`` that it ports and quotes the promise. They
run against lrtune's three entries: :func:`lrtune.lr_find` (Lightning's ``Tuner.lr_find``
shape), :func:`lrtune.find_lr` and the :class:`lrtune.LRRangeTest` callback (Lightning's
``LearningRateFinder`` arguments). Lightning's tests use ``BoringModel`` (random data,
batches of 2), whose loss falls by less than its step-to-step noise: lrtune declines to
suggest there, so these tests use a small MLP on the embedded digits, a model that trains.
Promises that do not apply, and why, are in docs/LIGHTNING_PARITY.md.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrtune import LRFinder, LRRangeTest, lr_find
from lrtune.data import DigitsDataModule
from lrtune.errors import ConfigError
from lrtune.range_test import analyze
from lrtune.range_test._find import find_lr

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

    def __init__(
        self, learning_rate: float = 0.05, use_hparams: bool = False, name: str = "learning_rate"
    ) -> None:
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
    return find_lr(model, _loader(), min_lr=1e-4, max_lr=1.0, num_steps=20, verify=False, **kwargs)


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
    result = find_lr(
        model,
        datamodule=data,
        min_lr=1e-4,
        max_lr=1.0,
        num_steps=20,
        verify=False,
        update_attr=True,
    )
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


# ----------------------------------------------------------------------------- the port


def _trainer(root: Path, **kwargs: Any) -> pl.Trainer:
    """A user's Trainer, as Lightning's tests build it (lr_find reads its settings)."""
    options: dict[str, Any] = {
        "max_epochs": 2,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "accelerator": "cpu",
    }
    return pl.Trainer(default_root_dir=root, **{**options, **kwargs})


class Digits(Model):
    """``Model`` with its own ``train_dataloader`` (as ``BoringModel`` has), a choice of
    optimizer, and counters of what ran."""

    def __init__(self, optimizer: str = "sgd", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.optimizer = optimizer
        self.steps = 0  # training_step calls

    def train_dataloader(self) -> DataLoader:
        return _loader()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        self.steps += 1
        return super().training_step(batch, batch_idx)

    def configure_optimizers(self) -> Any:
        holder = self.hparams if self.use_hparams else vars(self)
        lr = holder[self.name]
        if self.optimizer == "adam":
            return torch.optim.Adam(self.parameters(), lr=lr)
        if self.optimizer == "adagrad":
            return torch.optim.Adagrad(self.parameters(), lr=lr)
        return torch.optim.SGD(self.parameters(), lr=lr, momentum=0.9)


FAST = {"min_lr": 1e-4, "max_lr": 3.0, "num_training": 30, "verify": False}


class TwoOptimizers(Digits):
    def __init__(self, manual: bool) -> None:
        super().__init__()
        self.automatic_optimization = not manual

    def configure_optimizers(self) -> Any:
        return [
            torch.optim.SGD(self.parameters(), lr=0.1),
            torch.optim.Adam(self.parameters(), lr=0.1),
        ]


@pytest.mark.parametrize("manual", [True, False])
def test_error_with_multiple_optimizers(tmp_path: Path, manual: bool) -> None:
    """Lightning: "Check that error is thrown when more than 1 optimizer is passed." (with
    manual optimization there; lrtune's sweep needs automatic optimization, so that is
    refused first, and Lightning refuses two optimizers in automatic optimization)."""
    with pytest.raises(ConfigError, match=r"automatic optimization|multiple optimizers"):
        lr_find(_trainer(tmp_path), TwoOptimizers(manual), **FAST)


def test_model_reset_correctly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning: "Check that model weights are correctly reset after _lr_find()", and no
    ``.lr_find`` checkpoint is left behind (lrtune writes no file at all)."""
    monkeypatch.chdir(tmp_path)
    model = Digits(name="lr")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lr_find(_trainer(tmp_path), model, min_lr=1e-4, max_lr=3.0, num_training=20)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert os.listdir(tmp_path) == []


def test_trainer_reset_correctly(tmp_path: Path) -> None:
    """Lightning: "Check that all trainer parameters are reset correctly after lr_find()".
    lrtune does not run the user's Trainer at all, so none of them changes; and the model
    is not left attached to the finder's own Trainer (Lightning attaches it to the user's,
    which fit does anyway)."""
    trainer = _trainer(tmp_path, max_epochs=1)
    changed_attributes = [
        "accumulate_grad_batches",
        "callbacks",
        "checkpoint_callback",
        "current_epoch",
        "loggers",
        "global_step",
        "max_steps",
        "fit_loop.max_steps",
        "strategy.setup_optimizers",
        "should_stop",
    ]

    def attr(name: str) -> Any:
        value: Any = trainer
        for part in name.split("."):
            value = getattr(value, part)
        return value

    expected = {name: attr(name) for name in changed_attributes}
    model = Digits(name="lr")
    lr_find(trainer, model, **FAST)
    assert {name: attr(name) for name in changed_attributes} == expected
    assert model._trainer is None


@pytest.mark.parametrize("use_hparams", [False, True])
def test_tuner_lr_find(tmp_path: Path, use_hparams: bool) -> None:
    """Lightning: "Test that lr_find updates the learning rate attribute." (``lr`` kept on
    the module and, with ``save_hyperparameters()``, in ``hparams``; both are written)."""
    model = Digits(name="lr", use_hparams=use_hparams)
    if use_hparams:
        model.lr = 0.05  # Lightning's model keeps both
    finder = lr_find(_trainer(tmp_path), model, update_attr=True, **FAST)
    assert finder is not None and finder.suggestion() is not None
    after = model.hparams["lr"] if use_hparams else model.lr
    assert after == finder.suggestion() != 0.05
    assert model.lr == after


@pytest.mark.parametrize("opt", ["adam", "adagrad"])
def test_call_to_trainer_method(tmp_path: Path, opt: str) -> None:
    """Lightning: "Test that directly calling the trainer method works." (linear mode, then
    a second call that updates the attribute)."""
    model = Digits(optimizer=opt, use_hparams=True, name="lr", learning_rate=1e-2)
    finder = lr_find(
        _trainer(tmp_path),
        model,
        mode="linear",
        min_lr=1e-4,
        max_lr=0.1,
        num_training=30,
        update_attr=False,
        verify=False,
    )
    assert finder is not None
    after_lr = finder.suggestion()
    assert after_lr is not None and after_lr != 1e-2
    lrs = finder.results["lr"]
    assert np.allclose(np.diff(lrs), lrs[1] - lrs[0])  # linear steps
    model.hparams["lr"] = after_lr
    again = lr_find(_trainer(tmp_path), model, update_attr=True, **FAST)
    assert again is not None and model.hparams["lr"] == again.suggestion() != after_lr


def test_accumulation_and_early_stopping(tmp_path: Path) -> None:
    """Lightning: "Test that early stopping of learning rate finder works, and that
    accumulation also works for this feature." With ``early_stop_threshold=None`` the sweep
    runs every step; with 2 batches accumulated per step, 2 x 100 batches."""
    model = Digits(name="lr")
    finder = lr_find(
        _trainer(tmp_path, accumulate_grad_batches=2),
        model,
        min_lr=1e-5,
        max_lr=0.3,
        early_stop_threshold=None,
        verify=False,
    )
    assert finder is not None and finder.suggestion() not in (None, 0.05)
    assert len(finder.results["lr"]) == len(finder.results["loss"]) == 100
    assert model.steps == 200
    stopped = lr_find(
        _trainer(tmp_path, accumulate_grad_batches=2),
        Digits(name="lr"),
        min_lr=1e-5,
        max_lr=100.0,
        verify=False,
    )
    assert stopped is not None and len(stopped.results["lr"]) < 100  # the rule stops it
    assert stopped.result.stop_reason is not None


def test_suggestion_parameters_work(tmp_path: Path) -> None:
    """Lightning: "Test that default skipping does not alter results in basic case." and a
    large ``skip_begin`` changes the answer."""
    finder = lr_find(
        _trainer(tmp_path),
        Digits(name="lr"),
        min_lr=1e-5,
        max_lr=1.0,
        early_stop_threshold=None,
        verify=False,
    )
    assert finder is not None
    assert finder.suggestion(skip_begin=2, skip_end=1) == finder.suggestion()  # the defaults
    lr1 = finder.suggestion(skip_begin=10)
    lr2 = finder.suggestion(skip_begin=70)
    assert lr1 is not None and lr2 is not None
    assert lr1 != lr2, "Skipping parameter did not influence learning rate"


def test_suggestion_with_non_finite_values(tmp_path: Path) -> None:
    """Lightning: "Test that non-finite values does not alter results." (the last loss made
    NaN: lrtune, like Lightning, leaves the last point out)."""
    finder = lr_find(_trainer(tmp_path), Digits(name="lr"), **FAST)
    assert finder is not None
    before_lr = finder.suggestion(skip_begin=2)
    finder.results["loss"][-1] = float("nan")
    after_lr = finder.suggestion(skip_begin=2)
    assert before_lr is not None and after_lr is not None
    assert before_lr == after_lr, "Learning rate was altered because of non-finite loss values"


def test_lr_finder_fails_fast_on_bad_config_in_lightnings_shape(tmp_path: Path) -> None:
    """Lightning: "Test that tune fails if the model does not have a lr BEFORE running lr
    find." through ``lr_find(trainer, model)`` (``update_attr=True`` is its default)."""
    model = Digits(name="rate")
    with pytest.raises(ConfigError, match=r"no field 'lr' or 'learning_rate' in Digits"):
        lr_find(_trainer(tmp_path), model)
    with pytest.raises(ConfigError, match=r"no field 'my_lr'"):
        lr_find(_trainer(tmp_path), model, attr_name="my_lr")
    assert model.steps == 0


def test_lr_candidates_between_min_and_max(tmp_path: Path) -> None:
    """Lightning: "Test that learning rate candidates are between min_lr and max_lr."
    (Lightning's test swaps the bounds; lrtune refuses that with one error instead)."""
    finder = lr_find(
        _trainer(tmp_path), Digits(), min_lr=1e-8, max_lr=1.0, num_training=10, verify=False
    )
    assert finder is not None
    assert all(1e-8 <= lr <= 1.0 for lr in finder.results["lr"])
    with pytest.raises(ConfigError, match=r"max_lr must be > min_lr \(1.0\), got 1e-08"):
        lr_find(_trainer(tmp_path), Digits(), max_lr=1e-8, min_lr=1.0, num_training=10)


class CountsSteps(Digits):
    def __init__(self) -> None:
        super().__init__()
        self.optimizer_steps = 0

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        self.optimizer_steps += 1


def test_lr_finder_ends_before_num_training(tmp_path: Path) -> None:
    """Lightning: "Tests learning rate finder ends before `num_training` steps." (at most
    ``num_training`` optimizer steps; lrtune's fewest is 10)."""
    model = CountsSteps()
    lr_find(_trainer(tmp_path), model, num_training=10, early_stop_threshold=None, verify=False)
    assert model.optimizer_steps == 10


def test_multiple_lr_find_calls_gives_same_results(tmp_path: Path) -> None:
    """Lightning: "Tests that lr_finder gives same results if called multiple times." (the
    verification probes included)."""
    trainer = _trainer(tmp_path, limit_train_batches=10, limit_val_batches=2)
    model = Digits(name="lr")
    runs = [
        lr_find(trainer, model, min_lr=1e-4, max_lr=3.0, num_training=20, update_attr=False)
        for _ in range(3)
    ]
    results = [run.results for run in runs if run is not None]
    assert len(results) == 3 and len(results[0]["lr"]) > 10
    assert results[0] == results[1] == results[2]
    assert len({run.suggestion() for run in runs if run is not None}) == 1


@pytest.mark.parametrize(
    ("skip_begin", "skip_end", "losses"),
    [
        (0, 0, []),
        (10, 1, []),
        (0, 2, [0, 1, 2]),
        (0, 1, [0, 1, 2]),
        (1, 1, [0, 1, 2, 3]),
        (0, 1, [math.nan, math.nan, 0, math.inf, 1, 2, 3, math.inf, 2, math.nan, 1]),
    ],
)
def test_suggestion_not_enough_finite_points(
    skip_begin: int, skip_end: int, losses: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    """Lightning: "Tests the error handling when not enough finite points are available to
    make a suggestion." (no exception: ``None`` and a logged error; lrtune needs 5 finite
    points after ``skip_begin``, Lightning 2, so it declines on all of these)."""
    lrs = list(np.geomspace(1e-6, 1.0, len(losses)))
    finder = LRFinder(_result(lrs, losses))
    with caplog.at_level(logging.ERROR, logger="lrtune"):
        assert finder.suggestion(skip_begin=skip_begin, skip_end=skip_end) is None
    assert "no LR suggestion" in caplog.text


def test_suggestion_with_enough_finite_points_among_non_finite_ones() -> None:
    """The other side of Lightning's case with NaN and inf in the curve: enough finite
    points around them still give a suggestion."""
    lrs = np.geomspace(1e-6, 1.0, 60)
    losses = 2.0 - np.tanh(2 * (np.log10(lrs) + 3))
    losses[[0, 1, 17, 31]] = [math.nan, math.inf, math.nan, math.inf]
    assert LRFinder(_result(list(lrs), list(losses))).suggestion(skip_begin=0) is not None


def _result(lrs: list[float], losses: list[float]) -> Any:
    from lrtune.range_test import RangeTestResult

    return RangeTestResult.from_sweep(
        lrs,
        losses,
        beta=0.9,
        method="bracket",
        target="constant",
        stop_reason=None,
        num_steps=100,
        seconds=0.0,
    )


class Flat(Digits):
    """A loss no LR can move: there is nothing to suggest."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return 0.0 * sum(p.sum() for p in self.parameters()) + 1.0


def test_lr_attribute_when_suggestion_invalid(tmp_path: Path) -> None:
    """Lightning: "must remain unchanged because suggestion is not possible"."""
    model = Flat(learning_rate=0.123)
    finder = lr_find(_trainer(tmp_path), model, update_attr=True, num_training=10)
    assert finder is not None and finder.suggestion() is None
    assert "no suggestion" in finder.result.reason
    assert model.learning_rate == 0.123


class ChecksMaxSteps(Digits):
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        assert self.trainer.fit_loop.max_steps == -1  # the finder never changes the loop


def test_lr_finder_callback_restarting(tmp_path: Path) -> None:
    """Lightning: "Test that `LearningRateFinder` does not set restarting=True when loading
    checkpoint." (range tests at epochs 0 and 1, the loop's limits untouched)."""
    model = ChecksMaxSteps(name="learning_rate", learning_rate=0.123)
    finders = [
        LRRangeTest(
            min_lr=1e-4,
            max_lr=3.0,
            num_training_steps=20,
            epoch=epoch,
            early_stop_threshold=None,
            update_attr=True,
            verify=False,
            label=f"epoch {epoch}",
        )
        for epoch in (0, 1)
    ]
    trainer = _trainer(
        tmp_path,
        max_epochs=3,
        callbacks=finders,
        limit_train_batches=10,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
    )
    trainer.fit(model)
    assert all(f.result is not None and f.result.suggestion is not None for f in finders)
    assert not trainer.fit_loop.restarting and not trainer.fit_loop.epoch_loop.restarting
    assert model.learning_rate == finders[1].result.suggestion  # type: ignore[union-attr]


class WithValidation(Digits):
    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = super().training_step(batch, batch_idx)
        self.log("val_loss", loss)
        return loss

    def val_dataloader(self) -> DataLoader:
        return _loader()


def test_lr_finder_callback_val_batches(tmp_path: Path) -> None:
    """Lightning: "Test that `LearningRateFinder` does not limit the number of val batches
    during training."."""
    trainer = _trainer(
        tmp_path,
        max_epochs=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        callbacks=[LRRangeTest(num_training_steps=10, min_lr=1e-4, max_lr=1.0)],
    )
    trainer.fit(WithValidation(name="lr"))
    assert trainer.num_val_batches[0] == len(trainer.val_dataloaders) != 10


class SkipsSteps(Digits):
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        loss = super().training_step(batch, batch_idx)
        return None if self.steps - 1 in (5, 12, 17) else loss


def test_lr_finder_training_step_none_output(tmp_path: Path) -> None:
    """Lightning: training_step returning None on some steps: the suggestion is finite and
    written. Lightning records those steps as NaN; lrtune does not record them and says so
    in the reason."""
    model = SkipsSteps(name="lr", learning_rate=0.123)
    finder = lr_find(
        _trainer(tmp_path),
        model,
        min_lr=1e-4,
        max_lr=3.0,
        num_training=30,
        early_stop_threshold=None,
        update_attr=True,
        verify=False,
    )
    assert finder is not None
    assert len(finder.results["lr"]) == len(finder.results["loss"]) == 27
    suggested = finder.suggestion()
    assert suggested is not None and math.isfinite(suggested)
    assert math.isclose(model.lr, suggested)
    assert "30 steps, 3 not recorded: training_step returned None" in finder.result.reason


class WithPlateau(WithValidation):
    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": plateau, "interval": "epoch", "monitor": "val_loss"},
        }


def test_lr_finder_with_early_stopping(tmp_path: Path) -> None:
    """Lightning: the finder callback beside ``EarlyStopping`` and a ``ReduceLROnPlateau``
    scheduler that monitors ``val_loss`` (Lightning issue #20355): training finishes."""
    from lightning.pytorch.callbacks import EarlyStopping

    finder = LRRangeTest(num_training_steps=30, min_lr=1e-5, max_lr=1.0, update_attr=False)
    trainer = _trainer(
        tmp_path,
        max_epochs=4,
        limit_train_batches=5,
        limit_val_batches=3,
        logger=False,
        enable_checkpointing=False,
        callbacks=[finder, EarlyStopping(monitor="val_loss", patience=3)],
    )
    trainer.fit(WithPlateau(name="lr", learning_rate=0.01))
    assert trainer.state.finished
    assert finder.optimal_lr is not None
    suggestion = finder.optimal_lr.suggestion()
    assert suggestion is None or suggestion > 0


def test_gradient_correctness() -> None:
    """Lightning: "Test that torch.gradient uses correct spacing parameter." lrtune's
    ``steepest`` takes the slope against log10(LR) with the real spacing: on unevenly
    spaced points the steepest fall of cos is still at pi/2."""
    x = np.linspace(0.0, 1.0, 1000) ** 1.5 * 2 * math.pi  # uneven steps
    result = analyze(10**x, np.cos(x), beta=0.0, method="steepest", skip_start=0)
    steepest = result.suggestions["steepest"]
    assert steepest is not None
    assert abs(math.log10(steepest) - math.pi / 2) < 1e-2


class TinyAE(Digits):
    def __init__(self) -> None:
        super().__init__(use_hparams=True, name="lr", learning_rate=1e-5, optimizer="adam")


def test_lr_finder_callback_applies_lr_after_restore(tmp_path: Path) -> None:
    """Lightning: "LearningRateFinder used as a callback should apply its suggested LR to
    the optimizer used after state restoration." (``update_attr=True``, Lightning's
    callback default; the LR monitor sees it on every step)."""
    from lightning.pytorch.callbacks import LearningRateMonitor

    finder = LRRangeTest(num_training_steps=30, min_lr=1e-5, max_lr=1.0, update_attr=True)
    monitor = LearningRateMonitor(logging_interval="step")
    from lightning.pytorch.loggers import CSVLogger

    trainer = _trainer(
        tmp_path,
        max_epochs=1,
        limit_train_batches=5,
        log_every_n_steps=1,
        callbacks=[finder, monitor],
        logger=CSVLogger(tmp_path),
    )
    model = TinyAE()
    trainer.fit(model)
    assert finder.optimal_lr is not None
    suggestion = finder.optimal_lr.suggestion()
    assert suggestion is not None and model.hparams["lr"] == suggestion
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(suggestion)
    logged = (Path(trainer.logger.log_dir) / "metrics.csv").read_text()  # type: ignore[union-attr]
    assert f"{suggestion}"[:6] in logged


def test_exponential_vs_linear_mode_gradient_difference(tmp_path: Path) -> None:
    """Lightning: "Test that exponential and linear modes produce different but valid
    suggestions."."""
    runs = {
        mode: lr_find(
            _trainer(tmp_path),
            Digits(name="lr"),
            min_lr=1e-6,
            max_lr=1e-1,
            num_training=50,
            mode=mode,
            update_attr=False,
            verify=False,
        )
        for mode in ("linear", "exponential")
    }
    for mode, finder in runs.items():
        assert finder is not None
        suggestion = finder.suggestion()
        assert suggestion is not None and suggestion > 0, mode
    linear, exponential = (np.array(runs[m].results["lr"]) for m in ("linear", "exponential"))  # type: ignore[union-attr]
    assert np.allclose(np.diff(linear), linear[1] - linear[0])
    assert np.allclose(exponential[1:] / exponential[:-1], exponential[1] / exponential[0])
    assert runs["linear"].suggestion() != runs["exponential"].suggestion()  # type: ignore[union-attr]


class Fails(Digits):
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        if self.steps >= 2:
            raise RuntimeError("Intentional failure for testing cleanup")
        return super().training_step(batch, batch_idx)


def test_lr_finder_checkpoint_cleanup_on_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lightning: "Test that temporary checkpoint files are cleaned up even when an error
    occurs during lr finding." lrtune writes none, and restores the weights on the way out."""
    monkeypatch.chdir(tmp_path)
    model = Fails(name="learning_rate", learning_rate=1e-3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = _trainer(
        tmp_path,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        callbacks=[LRRangeTest(num_training_steps=10)],
    )
    with pytest.raises(RuntimeError, match="Intentional failure for testing cleanup"):
        trainer.fit(model)
    assert os.listdir(tmp_path) == []
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class WithBackbone(Digits):
    def __init__(self) -> None:
        super().__init__(name="learning_rate", learning_rate=1e-3, optimizer="adam")
        self.backbone = self.net[:3]

    def configure_optimizers(self) -> Any:
        trainable = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.Adam(trainable, lr=self.learning_rate)


def test_lr_finder_with_backbone_finetuning_callback(tmp_path: Path) -> None:
    """Lightning: "Test that lr_find works correctly with BackboneFinetuning callback."."""
    from lightning.pytorch.callbacks import BackboneFinetuning

    trainer = _trainer(
        tmp_path,
        max_epochs=3,
        limit_train_batches=3,
        logger=False,
        enable_checkpointing=False,
        callbacks=[BackboneFinetuning(unfreeze_backbone_at_epoch=1)],
    )
    model = WithBackbone()
    finder = lr_find(trainer, model, num_training=10, update_attr=False, verify=False)
    assert finder is not None and len(finder.results["lr"]) > 0
    trainer.fit(model)
    assert all(p.requires_grad for p in model.backbone.parameters())


class HoldsModules(pl.LightningModule):
    def __init__(self, coder: nn.Module, loss: nn.Module, lr: float = 1e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer, self.loss, self.lr = coder, loss, lr

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return self.loss(self.layer(x), y)

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def test_lr_finder_respects_weights_only(tmp_path: Path) -> None:
    """Lightning: "Test that lr_find works correctly when saving more than the weights."
    (hparams holding modules: Lightning's checkpoint round trip needed weights_only=False;
    lrtune keeps its copy in memory)."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randn(64, 2)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    model = HoldsModules(nn.Linear(4, 2), nn.MSELoss())
    finder = lr_find(
        _trainer(tmp_path, max_epochs=1, logger=False),
        model,
        train_dataloaders=loader,
        num_training=20,
        verify=False,
    )
    assert finder is not None and len(finder.results["lr"]) > 0
