"""Use lrtune's pieces inside your own Lightning code: datamodule, model, optimizer registry.

Run: python examples/own_lightning_loop.py   (a few seconds on 2 CPU cores)

Nothing here goes through ``lrtune.train``: a plain ``lightning.pytorch.Trainer`` fits a
LightningModule of your own whose ``configure_optimizers`` asks lrtune's registries for the
optimizer and the per-step schedule.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn

from lrtune.data import DigitsDataModule
from lrtune.models import create_model
from lrtune.optimizers import create_optimizer
from lrtune.schedules import create_scheduler


class MyModule(pl.LightningModule):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        loss = nn.functional.cross_entropy(self.model(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        accuracy = (self.model(x).argmax(1) == y).float().mean()
        self.log("val_acc", accuracy, on_epoch=True)

    def configure_optimizers(self):
        optimizer = create_optimizer(
            "nadam", self.parameters(), lr=2e-3, hyperparameters={"beta1": 0.95}
        )
        scheduler = create_scheduler(
            optimizer, "warmup_cosine", int(self.trainer.estimated_stepping_batches)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def main() -> None:
    pl.seed_everything(0, verbose=False)
    datamodule = DigitsDataModule(batch_size=32)
    model = create_model("cnn", datamodule.input_shape, datamodule.num_classes, width=16)
    trainer = pl.Trainer(
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=0.5,
        gradient_clip_algorithm="value",
    )
    trainer.fit(MyModule(model), datamodule=datamodule)
    print(f"val_acc {float(trainer.callback_metrics['val_acc']):.3f}")


if __name__ == "__main__":
    main()
