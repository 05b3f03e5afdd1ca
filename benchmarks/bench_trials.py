"""Trial throughput: ``lrtune search`` vs the plain Optuna + Lightning loop, in one run.

**Baseline** (the optuna-examples ``pytorch_lightning_simple.py`` style): per trial, a
``DataLoader(TensorDataset)`` over the training images (batch 64, shuffled), a
LightningModule holding the same CNN, a default-ish ``Trainer`` (``max_epochs``,
``logger=False``, no checkpointing, no progress bar, no model summary), ``trainer.fit`` and
``trainer.validate``; an Optuna study on **SQLite**, TPE seeded, over optimizer
(sgd/momentum/adam/adamax) and a log-uniform LR.

**lrtune**: ``lrtune.study.search`` on the same data (the real MNIST subset: 6,309 training
images, lrtune's fixed 10 % validation split; the baseline validates on the same split),
the same model (``cnn``, width 16), batch 64, epochs, trial count and sampler seed, the
default storage (a journal file), fixed LR bounds (no range tests: they are not part of a
trial), pruner ``none`` (every trial runs to the end on both sides). Its trials also run
the test split after training, as ``lrtune search`` always does; that is counted.

Both run in this process, baseline first, each after one untimed warm-up trial (imports,
allocator). Printed: seconds per trial on each side and the ratio; and for each side the
share of a trial's wall time spent inside training steps (forward, backward, optimizer
step), measured by a callback timing ``on_train_batch_start`` -> ``on_train_batch_end``.

Run from the repository root::

    python benchmarks/bench_trials.py --data-dir ../shared/data/mnist --trials 10 --epochs 2
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import optuna
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[1]


class StepClock(pl.Callback):
    """Sums the wall time of every training step (forward + backward + optimizer step)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def on_train_batch_start(self, *args: Any) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, *args: Any) -> None:
        self.seconds += time.perf_counter() - self._start


class Baseline(pl.LightningModule):
    def __init__(self, model: nn.Module, optimizer: str, lr: float) -> None:
        super().__init__()
        self.model, self.optimizer_name, self.lr = model, optimizer, lr

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self.model(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        acc = (self.model(x).argmax(1) == y).float().mean()
        self.log("val_acc", acc)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = self.model.parameters()
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(params, lr=self.lr)
        if self.optimizer_name == "momentum":
            return torch.optim.SGD(params, lr=self.lr, momentum=0.9)
        if self.optimizer_name == "adamax":
            return torch.optim.Adamax(params, lr=self.lr)
        return torch.optim.Adam(params, lr=self.lr)


def _mnist(data_dir: Path) -> tuple[TensorDataset, TensorDataset]:
    """The same train/val split lrtune uses, as float tensors (normalised once)."""
    from lrtune.data import MNISTDataModule

    dm = MNISTDataModule(data_dir=data_dir, download=False, batch_size=64)
    dm.prepare_data()
    splits = dm.splits  # the uint8 splits lrtune trains on
    out = []
    for name in ("train", "val"):
        images, labels = getattr(splits, f"{name}_x"), getattr(splits, f"{name}_y")
        x = (images.float() / 255.0 - 0.1307) / 0.3081
        out.append(TensorDataset(x.reshape(-1, 1, 28, 28).contiguous(), labels.long()))
    return out[0], out[1]


def baseline(data_dir: Path, trials: int, epochs: int, seed: int) -> tuple[list[float], float]:
    from lrtune.models import create_model

    train, val = _mnist(data_dir)
    clock = StepClock()

    def objective(trial: optuna.Trial) -> float:
        optimizer = trial.suggest_categorical("optimizer", ["sgd", "momentum", "adam", "adamax"])
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        torch.manual_seed(seed)
        model = create_model("cnn", (1, 28, 28), 10, width=16)
        module = Baseline(model, optimizer, lr)
        trainer = pl.Trainer(
            max_epochs=epochs, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, callbacks=[clock],
            accelerator="cpu",
        )  # fmt: skip
        trainer.fit(
            module,
            DataLoader(train, batch_size=64, shuffle=True),
            DataLoader(val, batch_size=256),
        )
        return float(trainer.callback_metrics["val_acc"])

    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        study = optuna.create_study(
            storage=f"sqlite:///{tmp}/baseline.db", direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=seed),
        )  # fmt: skip
        study.optimize(objective, n_trials=1)  # warm-up
        clock.seconds = 0.0
        for _ in range(trials):
            start = time.perf_counter()
            study.optimize(objective, n_trials=1)
            times.append(time.perf_counter() - start)
    return times, clock.seconds


def lrtune_side(
    data_dir: Path, trials: int, epochs: int, seed: int, **fields: Any
) -> tuple[list[float], float]:
    import lrtune.study as study_module
    import lrtune.study._objective as objective_module
    from lrtune.config import StudyConfig

    clock = StepClock()
    original = objective_module._train_trial

    def timed_train_trial(trial: Any, config: Any, train_config: Any, *rest: Any) -> Any:
        import lrtune.training as training

        build = training.build_trainer

        def with_clock(cfg: Any, *, callbacks: list[Any] = (), **kw: Any) -> Any:  # type: ignore[assignment]
            return build(cfg, callbacks=[*callbacks, clock], **kw)

        training.build_trainer = with_clock  # type: ignore[assignment]
        try:
            return original(trial, config, train_config, *rest)
        finally:
            training.build_trainer = build

    objective_module._train_trial = timed_train_trial  # type: ignore[assignment]
    ends: list[float] = []

    class Clock:
        def write(self, text: str) -> None:
            if text.startswith("["):
                ends.append(time.perf_counter())
                if len(ends) == 1:  # the warm-up trial ended: count from here
                    clock.seconds = 0.0

        def flush(self) -> None:
            pass

    with tempfile.TemporaryDirectory() as tmp:
        config = StudyConfig.model_validate(
            {
                "name": "bench", "dataset": "mnist", "data_dir": str(data_dir),
                "download": False, "model": "cnn", "model_options": {"width": 16},
                "batch_size": 64, "budget": {"epochs": epochs}, "n_trials": trials + 1,
                "pruner": "none", "seed": seed, "storage": f"{tmp}/s.journal",
                "space": {"optimizers": ["sgd", "momentum", "adam", "adamax"],
                          "lr": {"low": 1e-4, "high": 1e-1}},
                **fields,
            }
        )  # fmt: skip
        start = time.perf_counter()
        study_module.search(config, progress=Clock(), publish=False)  # type: ignore[arg-type]
        # what runs after the last trial (test: end's test passes) is charged to the trials
        ends[-1] = time.perf_counter()
    objective_module._train_trial = original
    times = [b - a for a, b in itertools.pairwise([start, *ends])]
    return times[1:], clock.seconds  # the first trial is the warm-up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared/data/mnist")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="rounds of all sides")
    parser.add_argument(
        "--variants", nargs="+", default=["default"],
        help="lrtune settings to time after the baseline: default (lrtune's defaults), "
        "test-never, test-improving, no-channels-last, bf16 (precision bf16-mixed)",
    )  # fmt: skip
    args = parser.parse_args()
    import logging

    from lrtune._logging import quiet_lightning

    quiet_lightning()
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{args.trials} trials x {args.epochs} epochs", flush=True)  # fmt: skip
    variants = {
        "default": {}, "test-never": {"test": "never"}, "test-improving": {"test": "improving"},
        "no-channels-last": {"channels_last": False}, "bf16": {"precision": "bf16-mixed"},
    }  # fmt: skip
    labels = ["baseline", *(f"lrtune {name}" for name in args.variants)]
    means: dict[str, list[float]] = {label: [] for label in labels}
    for repeat in range(args.repeats):  # round-robin: a slow patch of the VM hits all sides
        runs = [("baseline", *baseline(args.data_dir, args.trials, args.epochs, args.seed))]
        for name in args.variants:
            fields = variants[name]
            runs.append((f"lrtune {name}", *lrtune_side(
                args.data_dir, args.trials, args.epochs, args.seed, **fields)))  # fmt: skip
        base_mean = statistics.mean(runs[0][1])
        print(f"round {repeat + 1}:", flush=True)
        for label, times, steps in runs:
            total = sum(times)
            means[label].append(statistics.mean(times))
            ratio = base_mean / statistics.mean(times)
            print(f"{label:>24}: {statistics.mean(times):.3f} s/trial (median "
                  f"{statistics.median(times):.3f}), in training steps {steps / total:.0%} "
                  f"({steps / len(times):.3f} s/trial); throughput vs baseline {ratio:.2f}x",
                  flush=True)  # fmt: skip
    if args.repeats > 1:
        print("ratios per round (baseline s/trial / lrtune s/trial), then their median:")
        for label in labels[1:]:
            ratios = [b / x for b, x in zip(means["baseline"], means[label], strict=True)]
            shown = ", ".join(f"{r:.2f}" for r in ratios)
            print(f"{label:>24}: {shown}; median {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
