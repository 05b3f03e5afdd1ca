"""ClassifierModule under a real Lightning Trainer: optimizers x schedules, clipping, logging."""

from __future__ import annotations

import math

import pytest
import torch

from lrtune.config import TrainConfig
from lrtune.data import DigitsDataModule
from lrtune.module import ClassifierModule
from lrtune.optimizers import get_optimizer_info, list_optimizers
from lrtune.schedules import list_schedules, lr_factor
from lrtune.training import build_trainer


def _fit(config: TrainConfig, **trainer_kwargs: object) -> tuple[ClassifierModule, object]:
    dm = DigitsDataModule(batch_size=32, seed=config.seed)
    module = ClassifierModule.from_config(config, dm.input_shape, dm.num_classes)
    trainer = build_trainer(config, **trainer_kwargs)
    trainer.fit(module, datamodule=dm)
    return module, trainer


_PAIRS = [
    (o, s)
    for o in list_optimizers()
    for s in list_schedules()
    if s == "constant" or not get_optimizer_info(o).schedule_free  # refused: tests/test_lr_free.py
]


@pytest.mark.parametrize(("optimizer", "schedule"), _PAIRS)
def test_every_optimizer_and_schedule_trains(optimizer: str, schedule: str) -> None:
    config = TrainConfig(
        model="mlp",
        model_options={"width": 16, "depth": 1},
        optimizer={"name": optimizer},
        schedule={"name": schedule},
        epochs=1,
    )
    _, trainer = _fit(config, limit_train_batches=6, limit_val_batches=1)
    assert trainer.global_step == 6
    loss = float(trainer.callback_metrics["train_loss"])
    assert math.isfinite(loss)
    # the schedule is stepped per optimizer step: the LR now is the closed form at step 6
    total = trainer.estimated_stepping_batches
    expected = config.optimizer.lr * lr_factor(schedule, 6, total, config.schedule.params)
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx(expected, rel=1e-9, abs=1e-15)


class _ScaledLoss(torch.nn.Module):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.nn.functional.cross_entropy(logits, y)


def _grads_seen_by_optimizer(kind: str, threshold: float | None) -> list[torch.Tensor]:
    config = TrainConfig(
        model="mlp",
        model_options={"width": 32, "depth": 1},
        optimizer={"name": "sgd", "lr": 1e-3},
        clip={"kind": kind, "threshold": threshold},
        epochs=1,
    )
    dm = DigitsDataModule(batch_size=64)
    module = ClassifierModule.from_config(config, dm.input_shape, dm.num_classes)
    # scale the loss so the raw gradients are far above the thresholds
    module.loss_fn = _ScaledLoss(1000.0)
    seen: list[torch.Tensor] = []

    def record(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        grads = [p.grad.detach().flatten() for g in optimizer.param_groups for p in g["params"]]
        seen.append(torch.cat(grads).clone())

    trainer = build_trainer(config, limit_train_batches=5, limit_val_batches=0)
    original_configure = module.configure_optimizers

    def configure() -> object:
        out = original_configure()
        out["optimizer"].register_step_post_hook(record)
        return out

    module.configure_optimizers = configure  # type: ignore[method-assign]
    trainer.fit(module, datamodule=dm)
    assert len(seen) == 5
    return seen


def test_gradient_clipping_by_norm() -> None:
    unclipped = _grads_seen_by_optimizer("none", None)
    assert all(float(g.norm()) > 10.0 for g in unclipped)  # the test can fail
    for g in _grads_seen_by_optimizer("norm", 0.5):
        assert float(g.norm()) == pytest.approx(0.5, rel=1e-4)


def test_gradient_clipping_by_value() -> None:
    unclipped = _grads_seen_by_optimizer("none", None)
    assert all(float(g.abs().max()) > 1.0 for g in unclipped)
    for g in _grads_seen_by_optimizer("value", 0.01):
        assert float(g.abs().max()) <= 0.01 + 1e-7
        assert float((g.abs() == 0.01).float().sum()) > 0  # some entries were clamped


def test_logs_losses_accuracy_and_lr() -> None:
    config = TrainConfig(
        model="cnn",
        model_options={"width": 4, "hidden": 16},
        optimizer={"name": "adam", "lr": 3e-3},
        schedule={"name": "cosine"},
        epochs=2,
    )
    _, trainer = _fit(config, limit_train_batches=5)
    metrics = trainer.callback_metrics
    for key in ("train_loss", "val_loss", "val_acc", "lr"):
        assert key in metrics, key
    assert 0.0 <= float(metrics["val_acc"]) <= 1.0
    # lr logged at the end of epoch 2 is the cosine schedule's value at step 10 of 10
    assert float(metrics["lr"]) == pytest.approx(3e-3 * lr_factor("cosine", 10, 10), abs=1e-12)


def test_channels_last_is_applied_to_conv_models_only_and_trains_the_same() -> None:
    """``channels_last`` (default on) changes memory layout, not the numbers: conv weights
    and inputs go channels-last; an MLP is left alone; both layouts reach the same loss."""
    base = {"model": "cnn", "model_options": {"width": 8}, "epochs": 1, "seed": 3}
    dm = DigitsDataModule(batch_size=32)
    cnn = ClassifierModule.from_config(TrainConfig(**base), dm.input_shape, dm.num_classes)
    conv = cnn.model[3]  # the second conv: 8 input channels, so the layouts differ
    assert cnn.channels_last and conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
    plain = ClassifierModule.from_config(
        TrainConfig(**base, channels_last=False), dm.input_shape, dm.num_classes
    )
    assert not plain.channels_last and plain.model[3].weight.is_contiguous()
    mlp = ClassifierModule.from_config(TrainConfig(model="mlp"), dm.input_shape, dm.num_classes)
    assert not mlp.channels_last
    losses = []
    for channels_last in (True, False):
        torch.manual_seed(0)  # same initial weights
        _, trainer = _fit(TrainConfig(**base, channels_last=channels_last))
        losses.append(float(trainer.callback_metrics["train_loss"]))  # type: ignore[attr-defined]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_train_loss_is_the_mean_over_the_epochs_steps() -> None:
    """``train_loss`` is summed per step and logged once per epoch: it must equal the mean
    of the per-step losses the Trainer saw."""
    import lightning.pytorch as pl

    seen: list[float] = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # type: ignore[no-untyped-def]
            seen.append(float(outputs["loss"]))

    config = TrainConfig(model="mlp", model_options={"width": 16}, epochs=1)
    _, trainer = _fit(config, callbacks=[Record()])
    assert len(seen) > 5
    logged = float(trainer.callback_metrics["train_loss"])  # type: ignore[attr-defined]
    assert logged == pytest.approx(sum(seen) / len(seen), rel=1e-5)
    # a steps budget that ends mid-epoch still logs the mean of the steps run
    seen.clear()
    _, trainer = _fit(config, callbacks=[Record()], max_steps=7)
    assert len(seen) == 7
    logged = float(trainer.callback_metrics["train_loss"])  # type: ignore[attr-defined]
    assert logged == pytest.approx(sum(seen) / 7, rel=1e-5)


def _has_compiler() -> bool:
    import shutil

    return any(shutil.which(cc) for cc in ("g++", "c++", "clang++"))


@pytest.mark.skipif(not _has_compiler(), reason="torch.compile on CPU needs a C++ compiler")
def test_compile_once_per_process_then_reused_with_fresh_weights() -> None:
    """``compile: true``: the first run compiles; the next run with the same model gets the
    same compiled module with freshly initialised weights and compiles nothing new."""
    from torch._dynamo.utils import counters

    from lrtune.models import compiled_model, create_model

    def build(seed: int) -> tuple[torch.nn.Module, torch.nn.Module]:
        torch.manual_seed(seed)
        compiled = compiled_model("mlp", (1, 8, 8), 10, width=16, depth=1)
        torch.manual_seed(seed)
        return compiled, create_model("mlp", (1, 8, 8), 10, width=16, depth=1)

    x = torch.randn(32, 1, 8, 8)
    first, reference = build(0)
    for got, want in zip(first.parameters(), reference.parameters(), strict=True):
        assert torch.equal(got, want)
    loss = first(x).square().mean()
    loss.backward()  # compiles forward and backward
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 1
    with torch.no_grad():
        for p in first.parameters():
            p.add_(1.0)  # as if trained
    second, reference = build(1)
    assert second is first  # compiled once per process
    for got, want in zip(second.parameters(), reference.parameters(), strict=True):
        assert torch.equal(got, want)  # fresh weights, as create_model would make them
    out = second(x)
    out.square().mean().backward()
    assert counters["stats"]["unique_graphs"] == graphs  # nothing recompiled
    assert torch.allclose(out, reference(x), atol=1e-5)
