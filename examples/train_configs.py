"""Compare a few optimizer configurations on the embedded digits data, from Python.

Run: python examples/train_configs.py   (about 10 s on 2 CPU cores)

Each run is one :class:`lrtune.TrainConfig`; the same seed gives every run the same
initial weights and batch order, so the differences come from the optimizer alone.
"""

from __future__ import annotations

from lrtune import TrainConfig, train

CANDIDATES = [
    {"name": "sgd", "lr": 0.1},
    {"name": "momentum", "lr": 0.05, "params": {"momentum": 0.9}},
    {"name": "adam", "lr": 3e-3},
    {"name": "adamax", "lr": 3e-3},
    {"name": "rmsprop", "lr": 1e-3},
]


def main() -> None:
    print(f"{'optimizer':<10} {'lr':>8} {'val_acc':>8} {'test_acc':>8} {'seconds':>8}")
    for optimizer in CANDIDATES:
        config = TrainConfig(
            dataset="digits",
            model="mlp",
            model_options={"width": 128},
            optimizer=optimizer,
            schedule={"name": "cosine"},
            epochs=3,
            seed=0,
        )
        result = train(config)
        print(
            f"{config.optimizer.name:<10} {config.optimizer.lr:>8g} {result.val_acc:>8.3f} "
            f"{result.test_acc:>8.3f} {result.seconds:>8.1f}"
        )


if __name__ == "__main__":
    main()
