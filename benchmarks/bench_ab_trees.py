"""Seconds per trial of two lrtune code trees, interleaved: is a change slower?

Sequential runs of one benchmark drift with the VM's load by more than a refactor's cost;
this alternates the trees (each run a fresh process with the tree first on ``PYTHONPATH``)
over ``--rounds`` rounds. A run is ``search()`` on real MNIST: CNN width 16, batch 64,
2 epochs, 7 trials over 4 optimizers and a log LR, pruner none, the first trial dropped
(warm-up); the time after the last trial (``test: end``'s passes) is charged to the trials.

Run from the repository root, with the other tree checked out beside it::

    git worktree add /tmp/before <commit>
    python benchmarks/bench_ab_trees.py --before /tmp/before [--rounds 3] [--test never end]
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(test: str, data_dir: str) -> float:
    """In this process: mean seconds per trial of one search (first trial dropped)."""
    from lrtune._logging import quiet_lightning
    from lrtune.config import StudyConfig
    from lrtune.study import search

    quiet_lightning()
    ends: list[float] = []

    class Clock(io.StringIO):
        def write(self, text: str) -> int:
            if text.startswith("["):
                ends.append(time.perf_counter())
            return len(text)

    with tempfile.TemporaryDirectory() as tmp:
        config = StudyConfig.model_validate(
            {"name": "ab", "dataset": "mnist", "data_dir": data_dir, "download": False,
             "model": "cnn", "model_options": {"width": 16}, "batch_size": 64,
             "budget": {"epochs": 2}, "n_trials": 7, "pruner": "none", "seed": 0,
             "test": test, "storage": f"{tmp}/s.journal",
             "space": {"optimizers": ["sgd", "momentum", "adam", "adamax"],
                       "lr": {"low": 1e-4, "high": 1e-1}}}
        )  # fmt: skip
        search(config, progress=Clock(), publish=False)  # type: ignore[arg-type]
        end = time.perf_counter()
    times = [b - a for a, b in itertools.pairwise(ends)]
    times[-1] += end - ends[-1]
    return statistics.fmean(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="the other code tree", required=False)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--test", nargs="+", default=["never", "end"])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared/data/mnist"))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one run, this tree
    args = parser.parse_args()
    if args.one:
        print(f"{one_run(args.one, args.data_dir):.4f}")
        return
    if args.before is None:
        parser.error("--before TREE is required")
    trees = {"this tree": ROOT, "before": args.before.resolve()}
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            for test in args.test:
                done = subprocess.run(
                    [sys.executable, str(Path(__file__).resolve()), "--one", test,
                     "--data-dir", args.data_dir],
                    capture_output=True, text=True, check=True,
                    env={**os.environ, "PYTHONPATH": str(tree)},
                )  # fmt: skip
                value = float(done.stdout.strip().splitlines()[-1])
                results.setdefault((name, test), []).append(value)
                print(f"{name:10s} test: {test:6s} {value:.3f} s/trial", flush=True)
    print("\nmean s/trial over rounds:")
    for (name, test), values in results.items():
        shown = ", ".join(f"{v:.3f}" for v in values)
        print(f"  {name:10s} test: {test:6s} {statistics.fmean(values):.3f}  ({shown})")


if __name__ == "__main__":
    main()
