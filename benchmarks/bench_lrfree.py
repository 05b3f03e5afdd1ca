"""Does tuning beat tuning-free? LR-free optimizers at their defaults vs ``lrtune search``.

For every model and seed the script

1. trains each tuning-free optimizer of the registry (``prodigy``, ``schedulefree_adamw``,
   and ``--extra`` ones) once at its registry defaults (``lrtune.train``: the same split,
   budget, seed and evaluation as a study's trial; a constant schedule), and records its
   validation and test accuracy and wall time;
2. runs ``lrtune.study.search`` with ``lr: auto`` over the optimizers ``--optimizers``
   (default sgd, adam, adamax, rmsprop, as in bench_time_to_quality.py) for each of
   ``--trials`` (default 10 and 30), every other setting at lrtune's defaults (``test:
   end``: the test split scored for the best trial of each optimizer), and records the
   best trial's validation and test accuracy and the search's wall time (range tests
   included).

Each (model, seed) is one process-local run with one torch thread; all sides use the same
seed and data. Markdown tables go to stdout (per model: mean, worst and best test
accuracy over seeds, mean seconds; and the tuned-minus-free difference per seed), raw rows
to ``--out``.

Run from the repository root::

    python benchmarks/bench_lrfree.py [--models mnist-cnn mnist-mlp digits-mlp]
        [--seeds 0 1 2] [--trials 10 30] [--epochs 3] [--data-dir ../shared/data/mnist]
        [--out lrfree.json]
    python benchmarks/bench_lrfree.py --merge a.json b.json --out merged.json
    # the tuned side with Schedule-Free's LR searched too, no tuning-free runs:
    python benchmarks/bench_lrfree.py --free --label search+sf \
        --optimizers schedulefree_adamw sgd adam adamax rmsprop

Needs ``pip install 'lrtune[lrfree]'``. Results are recorded in ``docs/BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")

import torch

ROOT = Path(__file__).resolve().parents[1]
MODELS = {  # name: (dataset, model)
    "mnist-cnn": ("mnist", "cnn"),
    "mnist-mlp": ("mnist", "mlp"),
    "digits-mlp": ("digits", "mlp"),
    "digits-cnn": ("digits", "cnn"),
    "digits-resnet": ("digits", "resnet"),
}
FREE = ["prodigy", "schedulefree_adamw"]
TUNED = ["sgd", "adam", "adamax", "rmsprop"]


def quiet() -> None:
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lrtune", "optuna"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run_free(model_name: str, optimizer: str, seed: int, epochs: int, data_dir: Path) -> dict:
    from lrtune.config import train_config_from
    from lrtune.training import train

    dataset, model = MODELS[model_name]
    config = train_config_from(overrides={
        "dataset": dataset, "data_dir": str(data_dir), "download": False, "model": model,
        "epochs": epochs, "seed": seed, "optimizer": {"name": optimizer}, "device": "cpu",
    })  # fmt: skip
    start = time.perf_counter()
    result = train(config, test=True)
    return {
        "side": optimizer, "model": model_name, "seed": seed,
        "val_acc": result.val_acc, "test_acc": result.test_acc,
        "seconds": time.perf_counter() - start, "trials": 1,
    }  # fmt: skip


def run_search(
    model_name: str,
    trials: int,
    seed: int,
    epochs: int,
    data_dir: Path,
    optimizers: list[str],
    label: str = "search",
) -> dict:
    from lrtune.config import StudyConfig
    from lrtune.results import trials_with_tests
    from lrtune.study import search

    dataset, model = MODELS[model_name]
    with tempfile.TemporaryDirectory() as tmp:
        config = StudyConfig.model_validate({
            "name": "lrfree", "dataset": dataset, "data_dir": str(data_dir), "download": False,
            "model": model, "budget": {"epochs": epochs}, "n_trials": trials, "seed": seed,
            "device": "cpu", "storage": f"{tmp}/study.journal",
            "space": {"optimizers": optimizers, "lr": "auto"},
        })  # fmt: skip
        start = time.perf_counter()
        study = search(config, progress=None, publish=False)
        seconds = time.perf_counter() - start
        best = study.best_trial
        tested = {t.number: t.user_attrs.get("test_acc") for t in trials_with_tests(study)}
    return {
        "side": f"{label}-{trials}", "model": model_name, "seed": seed,
        "val_acc": best.value, "test_acc": tested.get(best.number),
        "optimizer": best.params.get("optimizer"), "seconds": seconds, "trials": trials,
    }  # fmt: skip


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def report(rows: list[dict[str, Any]]) -> str:
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        sides = list(dict.fromkeys(r["side"] for r in mine))
        seeds = sorted({r["seed"] for r in mine})
        lines += [f"\n### {model} ({len(seeds)} seeds)\n",
                  "| side | test acc mean | worst | best | val acc mean | seconds mean |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for side in sides:
            runs = [r for r in mine if r["side"] == side]
            test = [r["test_acc"] for r in runs if r["test_acc"] is not None]
            val = [r["val_acc"] for r in runs if r["val_acc"] is not None]
            lines.append(
                f"| {side} | {_fmt(statistics.fmean(test) if test else None)} | "
                f"{_fmt(min(test) if test else None)} | {_fmt(max(test) if test else None)} | "
                f"{_fmt(statistics.fmean(val) if val else None)} | "
                f"{statistics.fmean(r['seconds'] for r in runs):.0f} |"
            )
        free = [s for s in sides if not any(r["side"] == s and r["trials"] > 1 for r in mine)]
        for side in (s for s in sides if s not in free):
            diffs = []
            for seed in seeds:
                tuned = next((r for r in mine if r["side"] == side and r["seed"] == seed), None)
                frees = [r for r in mine if r["side"] in free and r["seed"] == seed]
                best_free = max(frees, key=lambda r: r["val_acc"] or 0.0, default=None)
                if tuned and best_free and tuned["test_acc"] is not None:
                    diffs.append(100 * (tuned["test_acc"] - (best_free["test_acc"] or 0.0)))
            if diffs:
                lines.append(
                    f"\n{side} minus the best tuning-free run (chosen by val acc), test acc "
                    f"points per seed: {', '.join(f'{d:+.2f}' for d in diffs)}"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["mnist-cnn", "mnist-mlp", "digits-mlp"],
                        choices=sorted(MODELS))  # fmt: skip
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--trials", nargs="+", type=int, default=[10, 30])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--optimizers", nargs="+", default=TUNED)
    parser.add_argument("--extra", nargs="*", default=[], help="more tuning-free optimizers")
    parser.add_argument("--free", nargs="*", default=FREE, help="tuning-free optimizers run")
    parser.add_argument("--label", default="search", help="name of the search rows")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("lrfree.json"))
    parser.add_argument("--merge", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.merge:
        rows = [row for path in args.merge for row in json.loads(path.read_text())["rows"]]
        print(report(rows))
        args.out.write_text(json.dumps({"merged": [str(p) for p in args.merge], "rows": rows}))
        return 0
    quiet()
    torch.set_num_threads(args.threads)
    env = {"date": time.strftime("%Y-%m-%d %H:%M"), "python": platform.python_version(),
           "torch": torch.__version__, "argv": sys.argv, "cpu": platform.processor()}  # fmt: skip
    print(f"# {env['date']} torch {env['torch']}, {args.threads} thread(s)")
    rows: list[dict[str, Any]] = []
    for model in args.models:
        for seed in args.seeds:
            for optimizer in [*args.free, *args.extra]:
                rows.append(run_free(model, optimizer, seed, args.epochs, args.data_dir))
                print(json.dumps(rows[-1]), flush=True)
            for trials in args.trials:
                rows.append(run_search(model, trials, seed, args.epochs, args.data_dir,
                                       args.optimizers, args.label))  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    print(report(rows))
    args.out.write_text(json.dumps({"env": env, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
