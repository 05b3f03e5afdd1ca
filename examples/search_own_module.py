"""Search optimizer and LR for YOUR OWN LightningModule with lrtune's Optuna study runner.

Run: python examples/search_own_module.py   (about 10-20 s on 2 CPU cores)

``lrtune.search`` builds one module per trial with ``module_factory(config)``, where
``config`` is the trial's resolved ``TrainConfig`` (optimizer name, LR, β, schedule, ...).
The module only has to log the study's objective (``val_acc`` here) during validation and
to build its optimizer and schedule from ``config`` with lrtune's registries.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn

from lrtune import StudyConfig, TrainConfig, search
from lrtune.optimizers import create_optimizer
from lrtune.schedules import create_scheduler


class TinyNet(pl.LightningModule):
    """A user's own module: a small MLP on 8x8 digits."""

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        self.config = config
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        self.log("val_acc", (self.net(x).argmax(1) == y).float().mean(), on_epoch=True)

    def configure_optimizers(self):
        opt = self.config.optimizer
        optimizer = create_optimizer(opt.name, self.parameters(), opt.lr, opt.params)
        total = int(self.trainer.estimated_stepping_batches)
        sched = self.config.schedule
        scheduler = create_scheduler(optimizer, sched.name, total, sched.params)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        study = StudyConfig.model_validate(
            {
                "name": "own-module",
                "dataset": "digits",  # lrtune's datamodule feeds the user's module
                "budget": {"epochs": 3},
                "n_trials": 6,
                "storage": str(Path(tmp) / "studies.journal"),
                "space": {"optimizers": ["momentum", "adam"], "schedules": ["constant", "cosine"]},
            }
        )
        result = search(study, module_factory=TinyNet, progress=None)
        best = result.best_trial
        print(f"best val_acc {best.value:.3f} with {best.params}")


if __name__ == "__main__":
    main()
