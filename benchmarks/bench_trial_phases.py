"""Where a trial's time goes: one lrtune training run split into phases, by wall clock.

The trial of ``bench_trials.py`` (real MNIST subset, ``cnn`` width 16, batch 64, 2 epochs,
Adam), built as ``lrtune.study`` builds it (``datamodule_for``, ``ClassifierModule``,
``build_trainer``) with a callback that timestamps Lightning's hooks. Phases: building the
Trainer; set-up (``fit`` until the first batch); training steps (``on_train_batch_start``
to ``on_train_batch_end``: forward, backward, optimizer step); validation
(``on_validation_start`` to ``on_validation_end``); everything else (Lightning's loop
between steps: fetching the batch, hooks, logging; teardown). Median of ``--runs`` runs
after one warm-up run; no profiler, so the numbers are not inflated.

Run from the repository root::

    python benchmarks/bench_trial_phases.py --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

ROOT = Path(__file__).resolve().parents[1]


class Phases(pl.Callback):
    """Wall-clock timestamps of Lightning's hooks."""

    def __init__(self) -> None:
        self.first_batch: float | None = None
        self.steps = self.validation = 0.0
        self._batch = self._val = 0.0

    def on_train_batch_start(self, *args: Any) -> None:
        self._batch = time.perf_counter()
        if self.first_batch is None:
            self.first_batch = self._batch

    def on_train_batch_end(self, *args: Any) -> None:
        self.steps += time.perf_counter() - self._batch

    def on_validation_start(self, *args: Any) -> None:
        self._val = time.perf_counter()

    def on_validation_end(self, *args: Any) -> None:
        self.validation += time.perf_counter() - self._val


def one_run(data_dir: Path, precision: str) -> dict[str, float]:
    from lightning.fabric.utilities.seed import seed_everything

    from lrtune.config import TrainConfig
    from lrtune.module import ClassifierModule
    from lrtune.training import build_trainer, datamodule_for

    config = TrainConfig(
        dataset="mnist", data_dir=data_dir, download=False, model="cnn",
        model_options={"width": 16}, batch_size=64, epochs=2, precision=precision,
        optimizer={"name": "adam", "lr": 1e-3},
    )  # fmt: skip
    start = time.perf_counter()
    seed_everything(0, verbose=False)
    datamodule = datamodule_for(config)
    info = datamodule.info
    module = ClassifierModule.from_config(config, info.input_shape, info.num_classes)
    phases = Phases()
    built = time.perf_counter()
    trainer = build_trainer(config, callbacks=[phases])
    fit = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    end = time.perf_counter()
    assert phases.first_batch is not None
    total = end - start
    other = total - (fit - start) - (phases.first_batch - fit) - phases.steps - phases.validation
    return {
        "data + module": built - start,
        "Trainer": fit - built,
        "set-up until the first batch": phases.first_batch - fit,
        "training steps": phases.steps,
        "validation (2 passes)": phases.validation,
        "Lightning between steps + teardown": other,
        "total": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared/data/mnist")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--precision", default="32-true")
    args = parser.parse_args()
    from lrtune._logging import quiet_lightning

    quiet_lightning()
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.ERROR)
    one_run(args.data_dir, args.precision)  # warm-up
    runs = [one_run(args.data_dir, args.precision) for _ in range(args.runs)]
    total = statistics.median(r["total"] for r in runs)
    for key in runs[0]:
        value = statistics.median(r[key] for r in runs)
        print(f"{key:<36} {value * 1000:8.1f} ms  {value / total:6.1%}")


if __name__ == "__main__":
    main()
