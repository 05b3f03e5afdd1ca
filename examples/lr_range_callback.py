"""The LR range test as a callback in your own LightningModule: find the LR, then train with it.

Run: python examples/lr_range_callback.py   (a few seconds on 2 CPU cores)

Nothing here comes from lrtune but ``LRRangeTest``: the model, the data (scikit-learn's 8x8
digits as plain tensors in a ``DataLoader``) and the optimizer are the user's own. At fit
start the callback sweeps the LR over 60 optimizer steps, puts weights, optimizer state and
RNGs back as they were, writes the suggested LR into the optimizer (``apply=True``) and
lets training go on from there.
"""

from __future__ import annotations

import logging

import lightning.pytorch as pl
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrtune import LRRangeTest


class DigitsNet(pl.LightningModule):
    def __init__(self, lr: float = 1e-3) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        accuracy = (self.net(x).argmax(dim=1) == y).float().mean()
        self.log("val_acc", accuracy, on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def loaders(batch_size: int = 64) -> tuple[DataLoader, DataLoader]:
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, val = order[:1500], order[1500:]
    return (
        DataLoader(TensorDataset(x[train], y[train]), batch_size=batch_size, shuffle=True),
        DataLoader(TensorDataset(x[val], y[val]), batch_size=512),
    )


def main() -> None:
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest
    pl.seed_everything(0, verbose=False)
    train_loader, val_loader = loaders()
    finder = LRRangeTest(min_lr=1e-5, max_lr=1.0, num_steps=60, apply=True)
    trainer = pl.Trainer(
        max_epochs=3,
        accelerator="cpu",
        callbacks=[finder],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    module = DigitsNet()
    trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader)

    result = finder.result
    assert result is not None
    print(f"range test: {len(result.lrs)} steps, {result.stop_reason or 'no divergence'}")
    if result.suggestion is None:
        print(f"no suggestion ({result.reason}); trained with lr {module.lr:g}")
    else:
        low, high = result.bracket or (float("nan"), float("nan"))
        print(f"suggested lr {result.suggestion:.3g} (bracket {low:.3g} .. {high:.3g})")
        print(f"optimizer lr now {trainer.optimizers[0].param_groups[0]['lr']:.3g}")
    val_acc = float(trainer.callback_metrics["val_acc"])
    print(f"val_acc after {trainer.current_epoch} epochs: {val_acc:.3f}")


if __name__ == "__main__":
    main()
