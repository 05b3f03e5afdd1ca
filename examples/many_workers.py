"""One study, several worker processes, one storage: Optuna's distributed model.

Run: python examples/many_workers.py   (about 30-60 s on 2 CPU cores)

``search(..., workers=2)`` starts two processes on this machine; both run trials of the
same study in the same storage. Other machines join the same way, by running the same
study on the same storage:

    # machine A (2 GPUs: one worker per GPU)
    lrtune search studies/mnist-optimizers.yaml --workers 2 \\
        --storage postgresql://user:password@db.example.org/lrtune
    # machine B, C, ...: the same command (any --workers)

The range tests of ``lr: auto`` run once for the study, whoever starts first; the study
stops at ``n_trials`` finished trials across all workers; a worker that dies leaves its
running trial to the others, which fail it and run its parameters again. Here the storage
is a journal file (on a shared filesystem it serves several machines too).
"""

from __future__ import annotations

import collections
import tempfile
from pathlib import Path

from optuna.trial import TrialState

from lrtune import StudyConfig, search


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = StudyConfig.model_validate(
            {
                "name": "two-workers",
                "dataset": "digits",
                "model": "mlp",
                "model_options": {"width": 64},
                "budget": {"epochs": 4},
                "n_trials": 10,
                "pruner": "none",
                "storage": str(Path(tmp) / "studies.journal"),
                "space": {"optimizers": ["sgd", "adam"], "lr": {"auto": True, "num_steps": 30}},
            }
        )
        study = search(config, workers=2, progress=None)
        states = collections.Counter(t.state.name for t in study.trials)
        per_worker = collections.Counter(
            t.user_attrs["worker"] for t in study.trials if t.state == TrialState.COMPLETE
        )
        finished = states["COMPLETE"] + states["PRUNED"]  # a diverged trial ends pruned
        print(f"{finished} finished trials (n_trials 10): {dict(states)}; complete ones by "
              f"worker: {dict(per_worker)}")  # fmt: skip
        best = study.best_trial.user_attrs["config"]["optimizer"]
        print(f"best val_acc {study.best_value:.4f}: {best['name']} lr={best['lr']:.3g}")
        assert finished == 10, states


if __name__ == "__main__":  # required: worker processes import this file (spawn)
    main()
