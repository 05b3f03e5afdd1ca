"""``LRRangeTest`` inside real Lightning Trainers on the digits data (CPU, tiny models)."""

from __future__ import annotations

import functools
import json
import math
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassAccuracy

from lrtune.config import TrainConfig
from lrtune.data import DigitsDataModule
from lrtune.data._batches import DeviceBatches
from lrtune.errors import ConfigError
from lrtune.module import ClassifierModule
from lrtune.range_test import lr_sweep
from lrtune.range_test._callback import LRRangeTest
from lrtune.schedules import create_scheduler, lr_factor

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_trainer(callbacks: list[pl.Callback] | None = None, **kwargs: Any) -> pl.Trainer:
    defaults: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "callbacks": callbacks or [],
    }
    return pl.Trainer(**{**defaults, **kwargs})


@functools.cache
def _digits() -> DigitsDataModule:
    dm = DigitsDataModule(batch_size=32)
    dm.setup()
    return dm


def digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised digits training images ``(N, 1, 8, 8)`` and labels."""
    s = _digits().splits
    x = (s.train_x.float() / 255.0 - s.mean.view(1, -1, 1, 1)) / s.std.view(1, -1, 1, 1)
    return x, s.train_y


def digits_loader(batch_size: int = 32, *, shuffle: bool = False, n: int | None = None):
    x, y = digits_tensors()
    if n is not None:
        x, y = x[:n], y[:n]
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle)


class Recorder(pl.Callback):
    """Runs ``fn(trainer, module)`` at fit start, after the callbacks listed before it."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.fn(trainer, pl_module)


def weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


# ----------------------------------------------------------------------------- modules


class BNNet(pl.LightningModule):
    """BatchNorm (buffers), dropout (RNG), a torchmetrics metric, Adam and a per-step schedule."""

    def __init__(self, schedule: str = "cosine", lr: float = 1e-2) -> None:
        super().__init__()
        self.schedule = schedule
        self.lr = lr
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64, 16),
            nn.BatchNorm1d(16),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(16, 10),
        )
        self.train_acc = MulticlassAccuracy(10, average="micro")
        self.epoch_acc: list[float] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self.net(x)
        loss = nn.functional.cross_entropy(logits, y)
        self.train_acc.update(logits, y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self.epoch_acc.append(float(self.train_acc.compute()))

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = create_scheduler(optimizer, self.schedule, total)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


@functools.cache
def _initial_bnnet_weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return weights(BNNet())


def fresh_bnnet(**kwargs: Any) -> BNNet:
    module = BNNet(**kwargs)
    module.load_state_dict(_initial_bnnet_weights())
    return module


def _train_data(kind: str) -> dict[str, Any]:
    if kind == "datamodule":
        return {"datamodule": DigitsDataModule(batch_size=32, seed=0)}
    if kind == "dataloader":  # the sampler draws its order from the global torch RNG
        return {"train_dataloaders": digits_loader(shuffle=True)}
    if kind == "augmented":  # DeviceBatches' own generator feeds the augmentation
        s = _digits().splits
        batches = DeviceBatches(
            s.train_x, s.train_y, mean=s.mean, std=s.std, batch_size=32,
            shuffle=True, drop_last=True, augment=True, pad=1, seed=3,
        )  # fmt: skip
        return {"train_dataloaders": batches}
    raise AssertionError(kind)


def _fit_bnnet(kind: str, callback: LRRangeTest | None) -> tuple[BNNet, pl.Trainer]:
    module = fresh_bnnet()
    torch.manual_seed(123)  # dropout masks and the DataLoader's order come from here
    trainer = make_trainer(
        [callback] if callback else [], max_epochs=2, limit_train_batches=10, limit_val_batches=1
    )
    data = _train_data(kind)
    if kind != "datamodule":
        x, y = digits_tensors()
        data["val_dataloaders"] = DataLoader(TensorDataset(x[:64], y[:64]), batch_size=64)
    trainer.fit(module, **data)
    return module, trainer


def _outcome(module: BNNet, trainer: pl.Trainer) -> dict[str, Any]:
    """Everything a fit leaves behind that the range test could have disturbed."""
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
        "epoch_acc": module.epoch_acc,  # a torchmetrics state, every epoch
        "global_step": trainer.global_step,
    }


@functools.cache
def _baseline(kind: str) -> dict[str, Any]:
    return _outcome(*_fit_bnnet(kind, None))


# ----------------------------------------------------------------------------- bit for bit


@pytest.mark.parametrize("kind", ["datamodule", "dataloader", "augmented"])
@pytest.mark.parametrize(
    "when",
    [{}, {"epoch": 1}, {"step": 7}, {"step": 13}],
    ids=["start", "epoch1", "step7", "step13"],
)
def test_training_goes_on_bit_for_bit_as_without_the_test(kind: str, when: dict) -> None:
    base = _baseline(kind)
    assert base["global_step"] == 20 and len(base["epoch_acc"]) == 2
    finder = LRRangeTest(1e-4, 1.0, 20, **when)
    got = _outcome(*_fit_bnnet(kind, finder))
    assert finder.result is not None and len(finder.result.lrs) >= 10  # the sweep ran
    assert_same_weights(got.pop("weights"), base["weights"])
    assert_same_weights(got.pop("optimizer"), base["optimizer"])
    assert got == {k: v for k, v in base.items() if k not in ("weights", "optimizer")}


def test_grad_scaler_is_restored_under_16_bit_mixed_precision() -> None:
    from lightning.pytorch.plugins.precision import MixedPrecision

    def fit(callback: LRRangeTest | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        module = fresh_bnnet()
        torch.manual_seed(123)
        # a CPU grad scaler whose scale doubles every 5 clean steps: the sweep moves it
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=5)
        trainer = make_trainer(
            [callback] if callback else [],
            max_epochs=1,
            limit_train_batches=12,
            limit_val_batches=0,
            plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)],
        )
        trainer.fit(module, train_dataloaders=digits_loader(shuffle=True))
        return weights(module), scaler.state_dict()

    base_weights, base_scaler = fit(None)
    assert base_scaler["scale"] == 2.0**12 and base_scaler["_growth_tracker"] == 2
    finder = LRRangeTest(1e-4, 1.0, 20, step=4)
    got_weights, got_scaler = fit(finder)
    assert finder.result is not None and len(finder.result.lrs) == 20
    assert got_scaler == base_scaler
    assert_same_weights(got_weights, base_weights)


def test_the_sweep_changes_the_weights_so_the_restore_matters() -> None:
    seen: dict[str, Any] = {}

    def during(trainer: pl.Trainer, module: pl.LightningModule) -> None:
        seen["weights"] = weights(module)

    class Peek(LRRangeTest):  # the weights at the end of the sweep, before the restore
        def _sweep(self, trainer, module, optimizer, loader):  # type: ignore[override]
            out = super()._sweep(trainer, module, optimizer, loader)
            seen["swept"] = weights(module)
            return out

    peek = Peek(1e-4, 1.0, 20)
    module = fresh_bnnet()
    make_trainer([peek, Recorder(during)], max_epochs=1, limit_train_batches=1).fit(
        module, train_dataloaders=digits_loader()
    )
    initial = _initial_bnnet_weights()
    assert any(not torch.equal(seen["swept"][k], initial[k]) for k in initial)
    assert_same_weights(seen["weights"], initial)
    assert peek.result is not None and len(peek.result.lrs) == 20


# ----------------------------------------------------------------------------- sweep shape


def test_max_epochs_and_limit_train_batches_do_not_cut_the_sweep_short() -> None:
    finder = LRRangeTest(1e-5, 1e-2, 30)
    trainer = make_trainer([finder], max_epochs=1, limit_train_batches=2, limit_val_batches=0)
    trainer.fit(fresh_bnnet(), train_dataloaders=digits_loader(n=96))  # 3 batches: cycles
    result = finder.result
    assert result is not None
    assert result.stop_reason is None
    assert len(result.lrs) == len(result.losses) == len(result.smoothed) == 30
    assert result.lrs == list(lr_sweep(1e-5, 1e-2, 30))
    assert result.num_steps == 30
    assert trainer.global_step == 2  # training itself kept its limits


def test_linear_mode_sweeps_linearly() -> None:
    finder = LRRangeTest(1e-3, 1e-2, 10, mode="linear")
    make_trainer([finder], max_epochs=1, limit_train_batches=1).fit(
        fresh_bnnet(), train_dataloaders=digits_loader()
    )
    assert finder.result is not None
    np.testing.assert_allclose(finder.result.lrs, np.linspace(1e-3, 1e-2, 10), rtol=1e-15)


class Recording(pl.LightningModule):
    """Two param groups (LR 1e-2 and 1e-3), a scheduler; logs every training_step call."""

    def __init__(self, schedule: str = "cosine") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU())
        self.head = nn.Linear(16, 10)
        self.schedule = schedule
        self.events: list[str] = []
        self.losses: list[float] = []
        self.group_lrs: list[tuple[float, float]] = []
        self.first_labels: list[int] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self.head(self.body(x)), y)
        optimizer = self.optimizers(use_pl_optimizer=False)
        self.events.append("train")
        self.losses.append(float(loss.detach()))
        self.group_lrs.append((optimizer.param_groups[0]["lr"], optimizer.param_groups[1]["lr"]))
        self.first_labels.append(int(y[0]))
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.events.append("val")

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(
            [
                {"params": self.body.parameters(), "lr": 1e-2},
                {"params": self.head.parameters(), "lr": 1e-3},
            ],
            momentum=0.9,
        )
        scheduler = create_scheduler(
            optimizer, self.schedule, int(self.trainer.estimated_stepping_batches)
        )
        return [optimizer], [{"scheduler": scheduler, "interval": "step"}]


def test_accumulation_windows_are_one_point_each() -> None:
    module = Recording()
    during: list[int] = []
    finder = LRRangeTest(1e-4, 1e-1, 10, verify=False)  # the sweep's own steps, counted
    trainer = make_trainer(
        [finder, Recorder(lambda t, m: during.append(len(m.losses)))],
        max_epochs=1,
        limit_train_batches=3,
        accumulate_grad_batches=3,
    )
    trainer.fit(module, train_dataloaders=digits_loader(n=5 * 32))  # 5 batches: cycles
    result = finder.result
    assert result is not None and len(result.losses) == 10
    assert during == [30]  # 3 micro-batches per optimizer step
    assert trainer.global_step == 1  # then training: 3 batches = 1 step
    _, y = digits_tensors()
    assert module.first_labels[:30] == [int(y[32 * (i % 5)]) for i in range(30)]
    for k in range(10):
        window = module.losses[3 * k : 3 * k + 3]
        assert result.losses[k] == float(np.mean(window)), k
        lrs = [g0 for g0, _ in module.group_lrs[3 * k : 3 * k + 3]]
        assert lrs == [result.lrs[k]] * 3, k


def test_param_group_ratios_are_kept_during_the_sweep() -> None:
    module = Recording()
    finder = LRRangeTest(1e-5, 1.0, 20, divergence_threshold=1e9)
    make_trainer([finder], max_epochs=1, limit_train_batches=2, limit_val_batches=0).fit(
        module, train_dataloaders=digits_loader()
    )
    assert finder.result is not None and len(finder.result.lrs) == 20
    assert [g0 for g0, _ in module.group_lrs[:20]] == finder.result.lrs
    assert finder.result.probes  # and the verification probes keep the ratios too
    for g0, g1 in module.group_lrs[:-2]:
        assert g0 / g1 == pytest.approx(10.0, rel=1e-12)
    # after the sweep and the probes, training starts from the configured LRs again
    assert module.group_lrs[-2] == (1e-2, 1e-3)


def test_no_validation_during_the_sweep() -> None:
    module = Recording()
    finder = LRRangeTest(1e-4, 1e-1, 20, verify=False)  # the sweep's 20 steps, then fit's
    trainer = make_trainer(
        [finder], max_epochs=1, limit_train_batches=3, limit_val_batches=2, val_check_interval=1
    )
    trainer.fit(module, train_dataloaders=digits_loader(), val_dataloaders=digits_loader(n=64))
    assert module.events == ["train"] * 20 + ["train", "val", "val"] * 3


@pytest.mark.parametrize("when", [{}, {"step": 2}], ids=["start", "step2"])
def test_no_files_are_written(tmp_path, monkeypatch, when: dict) -> None:
    monkeypatch.chdir(tmp_path)
    finder = LRRangeTest(1e-4, 1e-1, 10, **when)
    trainer = make_trainer([finder], max_epochs=1, limit_train_batches=4, default_root_dir=tmp_path)
    trainer.fit(fresh_bnnet(), train_dataloaders=digits_loader())
    assert finder.result is not None
    assert sorted(tmp_path.rglob("*")) == []


# ----------------------------------------------------------------------------- apply / target


def _classifier(schedule: str, lr: float = 1e-3) -> ClassifierModule:
    config = TrainConfig(
        model="mlp",
        model_options={"width": 16, "depth": 1},
        optimizer={"name": "adam", "lr": lr},
        schedule={"name": schedule},
        epochs=1,
    )
    torch.manual_seed(0)
    return ClassifierModule.from_config(config, (1, 8, 8), 10)


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_apply_sets_the_base_lr_of_optimizer_and_scheduler(schedule: str) -> None:
    seen: dict[str, Any] = {}

    def after_test(trainer: pl.Trainer, module: pl.LightningModule) -> None:
        group = trainer.optimizers[0].param_groups[0]
        scheduler = trainer.lr_scheduler_configs[0].scheduler
        seen.update(lr=group["lr"], initial=group["initial_lr"], base=list(scheduler.base_lrs))
        seen["last"] = list(scheduler.get_last_lr())

    finder = LRRangeTest(1e-5, 1.0, 30, apply=True)
    trainer = make_trainer(
        [finder, Recorder(after_test)], max_epochs=1, limit_train_batches=5, limit_val_batches=0
    )
    trainer.fit(_classifier(schedule), datamodule=DigitsDataModule(batch_size=32))
    lr = finder.result.suggestion
    assert lr is not None and lr != 1e-3
    total = int(trainer.estimated_stepping_batches)
    assert total == 5
    assert seen["initial"] == pytest.approx(lr, rel=1e-12)
    assert seen["base"] == [pytest.approx(lr, rel=1e-12)]
    assert seen["lr"] == pytest.approx(lr * lr_factor(schedule, 0, total), rel=1e-12)
    assert seen["last"] == [pytest.approx(seen["lr"], rel=1e-12)]
    # training then follows the schedule from the new base LR
    final = trainer.optimizers[0].param_groups[0]["lr"]
    assert final == pytest.approx(lr * lr_factor(schedule, 5, total), rel=1e-9, abs=1e-15)


def test_apply_keeps_param_group_ratios() -> None:
    module = Recording()
    finder = LRRangeTest(1e-5, 1.0, 30, apply=True)
    make_trainer([finder], max_epochs=1, limit_train_batches=1, limit_val_batches=0).fit(
        module, train_dataloaders=digits_loader()
    )
    lr = finder.result.suggestion
    assert lr is not None
    # the first training step after the test: cosine factor 1 at step 0
    g0, g1 = module.group_lrs[-1]
    assert g0 == pytest.approx(lr, rel=1e-12)
    assert g1 == pytest.approx(lr / 10, rel=1e-12)


def test_without_apply_the_lr_is_untouched() -> None:
    module = Recording()
    finder = LRRangeTest(1e-5, 1.0, 20)
    make_trainer([finder], max_epochs=1, limit_train_batches=1, limit_val_batches=0).fit(
        module, train_dataloaders=digits_loader()
    )
    assert finder.result.suggestion is not None
    assert module.group_lrs[-1] == (1e-2, 1e-3)


@pytest.mark.parametrize(
    ("schedule", "target"),
    [
        ("onecycle", "max"),
        ("warmup_cosine", "max"),
        ("constant", "constant"),
        ("cosine", "constant"),
    ],
)
def test_target_auto_follows_the_schedule(schedule: str, target: str) -> None:
    finder = LRRangeTest(1e-5, 1.0, 20)
    make_trainer([finder], max_epochs=1, limit_train_batches=5, limit_val_batches=0).fit(
        _classifier(schedule), datamodule=DigitsDataModule(batch_size=32)
    )
    result = finder.result
    assert result is not None and result.target == target
    assert result.suggestion is not None and result.bracket is not None
    if target == "max":  # not verified: probes cannot run a whole one-cycle
        assert result.suggestion == max(result.bracket[1], result.suggestions["bracket"])
        assert result.probes == []
    else:  # verified by default; the sweep's own answer is kept
        assert result.sweep_suggestion == result.suggestions["bracket"]
        assert result.probes and "verified by" in result.reason


# ----------------------------------------------------------------------------- NaN


class NaNAtFirst(BNNet):
    """Its loss is NaN while ``poisoned``."""

    poisoned = True

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.poisoned else loss


def test_nan_loss_at_the_first_step() -> None:
    module = NaNAtFirst()
    module.load_state_dict(_initial_bnnet_weights())
    seen: dict[str, Any] = {}

    def after_test(trainer: pl.Trainer, module: NaNAtFirst) -> None:
        seen["weights"] = weights(module)
        module.poisoned = False  # training itself is healthy

    finder = LRRangeTest(1e-4, 1.0, 20)
    trainer = make_trainer(
        [finder, Recorder(after_test)], max_epochs=1, limit_train_batches=3, limit_val_batches=0
    )
    trainer.fit(module, train_dataloaders=digits_loader())
    result = finder.result
    assert result is not None
    assert result.suggestion is None and result.bracket is None
    assert "never finite" in result.reason
    assert result.stop_reason is not None and "nan" in result.stop_reason
    assert "the weights are no longer finite" in result.stop_reason  # so it stopped at once
    assert len(result.losses) == 1 and math.isnan(result.losses[0])
    assert_same_weights(seen["weights"], _initial_bnnet_weights())  # NaN weights undone
    assert trainer.global_step == 3
    final = weights(module)
    assert all(torch.isfinite(v.float()).all() for v in final.values())
    assert not torch.equal(final["net.1.weight"], _initial_bnnet_weights()["net.1.weight"])
    json.dumps(finder.state_dict(), allow_nan=False)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_lr": 1e-2, "max_lr": 1e-2}, "max_lr"),
        ({"min_lr": 1.0, "max_lr": 1e-2}, "max_lr"),
        ({"min_lr": 0.0}, "min_lr"),
        ({"num_steps": 9}, "num_steps"),
        ({"epoch": 1, "step": 7}, "epoch or step"),
        ({"epoch": -1}, "epoch/step"),
        ({"mode": "cubic"}, "mode"),
        ({"divergence_threshold": 0.0}, "divergence_threshold"),
        ({"method": "best"}, "unknown method"),
        ({"target": "peak"}, "target"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        LRRangeTest(**kwargs)


class TwoOptimizersManual(pl.LightningModule):
    def __init__(self, count: int = 2) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.count = count
        self.a = nn.Linear(64, 10)
        self.b = nn.Linear(64, 10)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        for opt in optimizers:
            opt.zero_grad()
        loss = nn.functional.cross_entropy(self.a(x.flatten(1)) + self.b(x.flatten(1)), y)
        self.manual_backward(loss)
        for opt in optimizers:
            opt.step()

    def configure_optimizers(self) -> Any:
        opts = [
            torch.optim.SGD(self.a.parameters(), 0.1),
            torch.optim.SGD(self.b.parameters(), 0.1),
        ]
        return opts[: self.count]


class NoOptimizer(BNNet):
    def configure_optimizers(self) -> None:
        return None


@pytest.mark.parametrize(
    ("module", "match"),
    [
        (TwoOptimizersManual(2), "automatic optimization"),
        (TwoOptimizersManual(1), "automatic optimization"),
        (NoOptimizer(), "needs an optimizer"),
    ],
    ids=["two-optimizers-manual", "manual", "no-optimizer"],
)
def test_unsupported_modules_are_config_errors(module: pl.LightningModule, match: str) -> None:
    finder = LRRangeTest(1e-4, 1e-1, 10)
    trainer = make_trainer([finder], max_epochs=1, limit_train_batches=2, limit_val_batches=0)
    with pytest.raises(ConfigError, match=match):
        trainer.fit(module, train_dataloaders=digits_loader())
    assert finder.result is None


# ----------------------------------------------------------------------------- state


def test_state_dict_round_trip_keeps_the_result() -> None:
    finder = LRRangeTest(1e-5, 1.0, 20, label="adam")
    make_trainer([finder], max_epochs=1, limit_train_batches=1, limit_val_batches=0).fit(
        fresh_bnnet(), train_dataloaders=digits_loader()
    )
    assert finder.result is not None and finder.result.suggestion is not None
    state = json.loads(json.dumps(finder.state_dict(), allow_nan=False))
    other = LRRangeTest(1e-5, 1.0, 20, label="adam")
    assert other.state_key == finder.state_key
    other.load_state_dict(state)
    assert other.result == finder.result
    empty = LRRangeTest()
    empty.load_state_dict(LRRangeTest().state_dict())
    assert empty.result is None


def test_a_resumed_fit_does_not_sweep_again(tmp_path) -> None:
    first = LRRangeTest(1e-5, 1.0, 20)
    trainer = make_trainer([first], max_epochs=1, limit_train_batches=2, limit_val_batches=0)
    trainer.fit(Recording(), train_dataloaders=digits_loader())
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    module = Recording()
    second = LRRangeTest(1e-5, 1.0, 20)
    make_trainer([second], max_epochs=2, limit_train_batches=2, limit_val_batches=0).fit(
        module, train_dataloaders=digits_loader(), ckpt_path=path
    )
    assert second.result == first.result
    assert len(module.losses) == 2  # epoch 2's two batches, no sweep
