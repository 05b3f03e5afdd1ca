"""Workers and storages: trials per minute with 1 and 2 workers, and what the storage costs
per trial.

**Throughput** (``--throughput``): the quickstart study (``studies/quickstart.yaml``: digits,
MLP, 7 optimizers, ``lr: auto``, median pruner, 8 epochs) run by ``lrtune search
--workers W`` as a subprocess, for W in ``--workers`` (default 1 and 2), each in a fresh
journal file, ``--n-trials`` trials (default 30). Reported: wall time of the command
(start-up, range tests and the final report included) and finished trials per minute;
the ratio of each W to W=1.

**Storage overhead** (``--overhead``): ``lrtune.study.search`` in this process with the
training replaced by a stub that reports 8 epochs and returns (so what remains is lrtune's
per-trial work: sampling lrtune's conditional space with TPE, the surplus check, the trial
heartbeat, the user attrs it writes, the dead-trial checks, Optuna's bookkeeping), on the
journal file and on PostgreSQL (``--postgres URL``, a fresh database is made and dropped),
``--overhead-trials`` trials (default 200). Baselines in the same run: a hand-rolled Optuna
loop over the same space (journal file, Optuna's grouped multivariate ``TPESampler``, same
made-up objective values, no lrtune), and ``lrtune search`` with Optuna's ``TPESampler``
instead of lrtune's ``GatedTPESampler``. Reported: mean milliseconds per trial over the
first 50 (imports included) and the last 50 trials, and the last-50 ratio to the loop.

Run from the repository root, on a quiet machine::

    python benchmarks/bench_workers.py --throughput --overhead
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "studies" / "quickstart.yaml"


def throughput(workers: list[int], n_trials: int) -> None:
    rates = {}
    for count in workers:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "lrtune", "search", str(QUICKSTART), "--storage",
                 str(Path(tmp) / "s.journal"), "--n-trials", str(n_trials), "--workers",
                 str(count), "--quiet", "--best-out", str(Path(tmp) / "best.yaml")],
                capture_output=True, text=True, cwd=tmp,
            )  # fmt: skip
            seconds = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(proc.stderr[-2000:])
        rates[count] = n_trials / seconds * 60
        print(f"workers {count}: {n_trials} trials in {seconds:.1f} s = "
              f"{rates[count]:.1f} trials/min", flush=True)  # fmt: skip
    base = rates[workers[0]]
    for count in workers[1:]:
        print(f"workers {count} / workers {workers[0]}: {rates[count] / base:.2f}x")


@contextlib.contextmanager
def _fresh_postgres(admin: str) -> Iterator[str]:
    import sqlalchemy

    from lrtune.storage import _with_driver

    admin = _with_driver(admin)
    name = f"lrtune_bench_{uuid.uuid4().hex[:8]}"
    engine = sqlalchemy.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.rsplit("/", 1)[0] + "/" + name
    finally:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def _stub_value(train_config: Any) -> float:
    """A made-up accuracy with a signal for TPE: best at LR 3e-3, a little per optimizer."""
    lr, name = train_config.optimizer.lr, train_config.optimizer.name
    return 0.9 - 0.05 * abs(math.log10(lr) + 2.5) - 0.002 * len(name)


def _stub_training(trial: Any, config: Any, train_config: Any, *args: Any) -> dict[str, float]:
    value = _stub_value(train_config)
    for epoch in range(config.budget.epochs):
        trial.report(value - 0.01 * (config.budget.epochs - epoch), epoch)
    return {"val_acc": value, "val_loss": 1.0, "epochs": 8.0, "steps": 160.0}


def _optuna_loop(config: Any, path: str, n_trials: int) -> list[float]:
    """The hand-rolled baseline: plain Optuna (journal file, grouped multivariate TPE with
    lrtune's settings) over the same conditional space and the same made-up values, with
    no lrtune around it. Returns the wall time of each trial."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    from lrtune.space import lr_ranges, suggest_config

    ranges = lr_ranges(config, {})
    study = optuna.create_study(
        storage=optuna.storages.JournalStorage(JournalFileBackend(path)),
        direction="maximize",
        sampler=optuna.samplers.TPESampler(
            multivariate=True, group=True, n_startup_trials=10, seed=config.seed
        ),
    )

    def objective(trial: optuna.Trial) -> float:
        value = _stub_value(suggest_config(trial, config, ranges))
        for epoch in range(config.budget.epochs):
            trial.report(value - 0.01 * (config.budget.epochs - epoch), epoch)
        return value

    ends: list[float] = []
    start = time.perf_counter()
    study.optimize(objective, n_trials=n_trials, callbacks=[lambda s, t: ends.append(
        time.perf_counter())])  # fmt: skip
    print(f"  best made-up value: {study.best_value:.4f}")
    return [b - a for a, b in zip([start, *ends[:-1]], ends, strict=True)]


def _report(label: str, per: list[float], base: float | None = None) -> float:
    first = statistics.mean(per[:50]) * 1000
    last = statistics.mean(per[-50:]) * 1000
    ratio = f"; last 50 vs the Optuna loop: {last / base:.2f}x" if base else ""
    print(f"{label}: {len(per)} trials, ms per trial: first 50 {first:.1f}, last 50 "
          f"{last:.1f}{ratio}", flush=True)  # fmt: skip
    if not math.isfinite(last):
        sys.exit("no timing")
    return last


class _Clock:
    """A progress stream that notes the time of each per-trial line."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def write(self, text: str) -> None:
        if text.startswith("["):
            self.ends.append(time.perf_counter())

    def flush(self) -> None:
        pass


def overhead(storages: dict[str, str], n_trials: int, tmp: str) -> None:
    import optuna

    import lrtune.study as study_module
    import lrtune.study._objective as objective_module
    import lrtune.study._runner as runner_module
    from lrtune.config import study_config_from

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objective_module._train_trial = _stub_training  # type: ignore[assignment]
    plain = runner_module.create_sampler

    def config_for(storage: str) -> Any:
        return study_config_from(
            QUICKSTART,
            {"storage": storage, "n_trials": n_trials, "pruner": "none",
             "enqueue_defaults": False, "space": {"lr": {"auto": False}},
             "name": f"overhead-{uuid.uuid4().hex[:6]}"},
        )  # fmt: skip

    def run(storage: str) -> list[float]:
        clock = _Clock()
        start = time.perf_counter()
        study = study_module.search(config_for(storage), progress=clock, publish=False)  # type: ignore[arg-type]
        print(f"  best made-up value: {study.best_value:.4f}")
        return [b - a for a, b in zip([start, *clock.ends[:-1]], clock.ends, strict=True)]

    journal = storages["journal file"]
    loop = _optuna_loop(config_for(journal), f"{tmp}/baseline.journal", n_trials)
    base = _report("Optuna loop (journal file, Optuna's TPESampler)", loop)

    def optuna_tpe(config: Any) -> optuna.samplers.BaseSampler:
        sampler = plain(config)
        options = {"multivariate": True, "group": True, "n_startup_trials": 10}
        return optuna.samplers.TPESampler(seed=config.seed, **options) if isinstance(
            sampler, optuna.samplers.TPESampler) else sampler  # fmt: skip

    runner_module.create_sampler = optuna_tpe  # type: ignore[assignment]
    try:
        _report("lrtune search, Optuna's TPESampler (journal file)", run(journal), base)
    finally:
        runner_module.create_sampler = plain
    for label, storage in storages.items():
        _report(f"lrtune search ({label})", run(storage), base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--throughput", action="store_true")
    parser.add_argument("--workers", default="1,2", help="worker counts (default 1,2)")
    parser.add_argument("--n-trials", type=int, default=30)
    parser.add_argument("--overhead", action="store_true")
    parser.add_argument("--overhead-trials", type=int, default=200)
    parser.add_argument(
        "--postgres", default="postgresql://postgres@127.0.0.1:5432/test",
        help="admin URL of a PostgreSQL server ('' to skip)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.throughput:
        throughput([int(w) for w in args.workers.split(",")], args.n_trials)
    if args.overhead:
        with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
            storages = {"journal file": str(Path(tmp) / "o.journal")}
            if args.postgres:
                storages["PostgreSQL"] = stack.enter_context(_fresh_postgres(args.postgres))
            overhead(storages, args.overhead_trials, tmp)


if __name__ == "__main__":
    main()
