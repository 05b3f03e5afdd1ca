"""Do two checkouts of lrtune give the same figures? (issue 25: a refactor must not change
behaviour.)

Runs, in this process, with one torch thread and fixed seeds:

- ``find_lr`` (verified, and the sweep alone) on digits ``mlp`` and ``cnn`` for four
  optimizers, printing each suggestion, the sweep's suggestion, the steps run and the
  probes;
- a small ``lrtune search`` (digits, 4 optimizers, ``lr: auto``, 8 trials of 2 epochs),
  printing each trial's parameters, state and value.

One JSON document goes to stdout. Run it against two checkouts and compare::

    PYTHONPATH=/path/to/old python benchmarks/bench_same_figures.py > old.json
    PYTHONPATH=. python benchmarks/bench_same_figures.py > new.json
    diff old.json new.json && echo same
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
from typing import Any

import torch


def finder_figures() -> list[dict[str, Any]]:
    from lrtune import TrainConfig, find_lr
    from lrtune.training import datamodule_for, module_for

    rows = []
    for model in ("mlp", "cnn"):
        for name in ("sgd", "momentum", "adam", "rmsprop"):
            for verify in (True, False):
                config = TrainConfig(
                    dataset="digits", model=model, optimizer={"name": name}, seed=0, device="cpu"
                )
                torch.manual_seed(0)
                dm = datamodule_for(config)
                module = module_for(config, dm)
                result = find_lr(module, datamodule=dm, num_steps=60, verify=verify)
                rows.append({
                    "case": f"{model}/{name}/{'verified' if verify else 'sweep'}",
                    "suggestion": result.suggestion,
                    "sweep_suggestion": result.sweep_suggestion,
                    "steps": len(result.lrs),
                    "losses": [round(v, 6) for v in result.losses],
                    "probes": result.probes,
                })  # fmt: skip
    return rows


def study_figures() -> list[dict[str, Any]]:
    from lrtune.config import StudyConfig
    from lrtune.study import search

    with tempfile.TemporaryDirectory() as tmp:
        config = StudyConfig.model_validate({
            "name": "same", "dataset": "digits", "model": "mlp", "budget": {"epochs": 2},
            "n_trials": 8, "seed": 0, "storage": f"{tmp}/s.journal", "device": "cpu",
            "space": {"optimizers": ["sgd", "momentum", "adam", "rmsprop"], "lr": "auto"},
        })  # fmt: skip
        study = search(config, progress=None, publish=False)
        return [
            {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params}
            for t in study.trials
        ]


def main() -> None:
    torch.set_num_threads(1)
    with contextlib.redirect_stderr(io.StringIO()):
        out = {"find_lr": finder_figures(), "search": study_figures()}
    json.dump(out, sys.stdout, indent=1, sort_keys=True, default=str)
    print()


if __name__ == "__main__":
    main()
