"""What the spy modules share, written once for both Lightning namespaces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def digits(n: int = 600) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    x = torch.tensor(images[:n], dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    return x, torch.tensor(labels[:n], dtype=torch.long)


def loaders(batch_size: int) -> tuple[DataLoader, DataLoader, DataLoader]:
    x, y = digits()
    train = TensorDataset(x[:400], y[:400])
    val = TensorDataset(x[400:500], y[400:500])
    test = TensorDataset(x[500:], y[500:])
    return (
        DataLoader(train, batch_size=batch_size, shuffle=True),
        DataLoader(val, batch_size=256),
        DataLoader(test, batch_size=256),
    )


def net(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def record(path: str | None, optimizer: torch.optim.Optimizer, **extra: Any) -> None:
    """Append what the module sees of its optimizer to ``path`` (one JSON line)."""
    if not path:
        return
    groups = optimizer.param_groups
    row = {
        "optimizer": type(optimizer).__name__,
        "lrs": [g["lr"] for g in groups],
        "initial_lrs": [g.get("initial_lr", g["lr"]) for g in groups],
        "momentum": groups[0].get("momentum"),
        "betas": list(groups[0]["betas"]) if "betas" in groups[0] else None,
        "weight_decay": [g.get("weight_decay") for g in groups],
        **extra,
    }
    with Path(path).open("a") as handle:
        handle.write(json.dumps(row) + "\n")
