"""Study efficiency (``lr: auto`` vs fixed bounds, linked vs shared LR) and study memory.

Two measurements, both made by calling :func:`lrtune.study.search` in this process. Each
study gets its own journal file in a temporary directory and a unique name.

**Efficiency** (``--efficiency``): on the real MNIST subset in ``--data-dir`` (6,309
training images, lrtune's fixed 10 % validation split), model ``mlp`` (width 128), batch
128, budget 1 epoch, optimizers ``sgd, momentum, rmsprop, adam, adamax`` (their other
hyperparameters searched over the registry ranges, lrtune's default), schedule
``constant``, sampler TPE (lrtune's defaults: multivariate, grouped, 10 startup trials)
seeded with ``s``, pruner ``none`` (so every trial that does not diverge gives a value),
``--n-trials`` trials. Variants of ``space.lr`` (``--variants`` picks some):

* ``auto``: ``lr: {auto: true, verify: false}`` (one LR range test per optimizer, the
  bracket widened 3x each way, ``<opt>.lr`` per optimizer: the sweep alone);
* ``auto-verified``: ``lr: {auto: true, verify: true}`` (the range test's suggestion
  verified by constant-LR probes, the range centred on it, as wide as the widened bracket);
* ``auto-verified-narrow``: the same with ``widen: 1.5`` (half as many decades wide);
* ``fixed``: ``lr: {low: 1e-5, high: 1}`` (linked: one ``<opt>.lr`` per optimizer);
* ``shared``: ``lr: {low: 1e-5, high: 1, linked: false}`` (one ``lr`` for all optimizers).

The study seed ``s`` seeds the sampler and every trial's initial weights and batch order
(the validation split is fixed). For each seed the reference ``R`` is the best
``val_acc`` of any trial of any variant *for that seed* (the three variants see the same
weights and data order, so ``R`` is what this seed's setting is known to reach). Per run:
the best value, the best after 10/20/30 trials, and the 1-based index of the first trial
with ``val_acc >= R - 0.005`` ("trials to within 0.5 points"; ``None`` if never). The range
tests of ``lr: auto`` run before trial 1; their wall time (``compare_optimizers``, timed by
wrapping it) and their optimizer steps are reported separately, also in trial-equivalents
(divided by the median trial's seconds and steps of the same run).

**Memory** (``--memory``): one study of ``--memory-trials`` trials (default 50) on the
embedded ``digits`` data, ``mlp`` width 128, batch 64, budget 3 epochs, TPE, median
pruner, ``lr: auto``, 7 optimizers, schedules ``constant``/``cosine``, defaults enqueued
(the quickstart study, longer). The process RSS (``VmRSS`` from ``/proc/self/status``,
or psutil when installed) is read when each trial ends (hooked on the progress stream
``search()`` writes one line to per finished trial, so it runs in Optuna's trial
callback, after lrtune's per-trial ``gc.collect()``) and by a background thread every
0.2 s (for the peak). Reported: RSS after trials 5, 10, 20, 30, 40, 50 and the
least-squares slope of RSS against the trial count between trial 10 and the last.

Run from the repository root::

    python benchmarks/bench_study.py --quick --out /tmp/bench_study_quick.json
    python benchmarks/bench_study.py --out results.json          # both, full
    python benchmarks/bench_study.py --efficiency [--seeds 0 1 2 3 4] [--n-trials 30]
    python benchmarks/bench_study.py --memory [--memory-trials 50]
    python benchmarks/bench_study.py --merge a.json b.json --out results.json

``--threads N`` sets torch's intra-op threads; ``--merge`` analyses the efficiency runs of
several result files together (seeds split over parallel processes; each seed's runs
must be in one file, since R is per seed).

``--quick``: seeds 0 1, 10 trials, memory study of 15 trials. Results are printed and
written as JSON to ``--out``; measured results are recorded in ``docs/BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = _REPO.parent / "shared" / "data" / "mnist"

OPTIMIZERS = ["sgd", "momentum", "rmsprop", "adam", "adamax"]
VARIANTS: dict[str, dict[str, Any]] = {
    "auto": {"auto": True, "verify": False},
    "auto-verified": {"auto": True, "verify": True},
    "auto-verified-narrow": {"auto": True, "verify": True, "widen": 1.5},
    "fixed": {"low": 1e-5, "high": 1.0},
    "shared": {"low": 1e-5, "high": 1.0, "linked": False},
}
TOLERANCE = 0.005  # 0.5 accuracy points
CHECKPOINTS = (10, 20, 30)
MEMORY_OPTIMIZERS = ["sgd", "momentum", "rmsprop", "adagrad", "adam", "adamw", "adamax"]
MEMORY_MARKS = (5, 10, 20, 30, 40, 50)


# --------------------------------------------------------------------------- helpers
def rss_mb() -> float:
    """Resident set size of this process in MiB (psutil if installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        raise RuntimeError("no VmRSS in /proc/self/status") from None
    return psutil.Process().memory_info().rss / 2**20


def rss_source() -> str:
    try:
        import psutil  # noqa: F401
    except ImportError:
        return "/proc/self/status VmRSS"
    return "psutil rss"


def environment() -> dict[str, Any]:
    import lightning
    import optuna
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "lightning": lightning.__version__,
        "optuna": optuna.__version__,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "rss_source": rss_source(),
    }


def median_or_none(values: list[float]) -> float | None:
    """Median where ``inf`` means "never"; ``None`` when the median itself is never."""
    if not values:
        return None
    middle = statistics.median(sorted(values))
    return None if math.isinf(middle) else middle


class _TimedCall:
    """Wraps a function, recording the wall time of each call."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.seconds: list[float] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.function(*args, **kwargs)
        finally:
            self.seconds.append(time.perf_counter() - start)


def _quiet() -> None:
    import lightning.pytorch  # noqa: F401  (sets its loggers to INFO on import)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*GPU available but not used.*")


# --------------------------------------------------------------------------- efficiency
def efficiency_config(
    variant: str, seed: int, n_trials: int, data_dir: Path, storage: str, name: str
) -> Any:
    from lrtune.config import StudyConfig

    return StudyConfig.model_validate(
        {
            "name": name,
            "dataset": "mnist",
            "data_dir": str(data_dir),
            "download": False,
            "model": "mlp",
            "model_options": {"width": 128},
            "batch_size": 128,
            "device": "cpu",
            "budget": {"epochs": 1},
            "objective": {"metric": "val_acc", "direction": "maximize"},
            "n_trials": n_trials,
            "sampler": {"name": "tpe"},
            "pruner": {"name": "none"},
            "seed": seed,
            "storage": storage,
            "space": {
                "optimizers": OPTIMIZERS,
                "lr": VARIANTS[variant],
                "schedules": ["constant"],
            },
        }
    )


def _trial_rows(study: Any) -> list[dict[str, Any]]:
    rows = []
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        config = trial.user_attrs.get("config", {})
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name,
                "value": trial.value,
                "optimizer": trial.params.get("optimizer"),
                "lr": config.get("optimizer", {}).get("lr"),
                "seconds": trial.user_attrs.get("seconds"),
                "steps": trial.user_attrs.get("steps"),
                "test_acc": trial.user_attrs.get("test_acc"),
                "diverged": trial.user_attrs.get("diverged"),
            }
        )
    return rows


def _probe_steps(result: dict[str, Any]) -> int:
    """Optimizer steps the verification probes of one range test ran (each candidate's
    last rung: rungs continue where the previous one stopped)."""
    reached: dict[float, float] = {}
    for probe in result.get("probes") or []:
        reached[probe["lr"]] = max(reached.get(probe["lr"], 0.0), probe["steps"])
    return int(sum(reached.values()))


def run_efficiency_study(
    variant: str, seed: int, n_trials: int, data_dir: Path, workdir: Path
) -> dict[str, Any]:
    import lrtune.range_test._find
    from lrtune.study import search

    name = f"bench-{variant}-s{seed}-{uuid.uuid4().hex[:8]}"
    storage = str(workdir / f"{name}.journal")
    config = efficiency_config(variant, seed, n_trials, data_dir, storage, name)
    original = lrtune.range_test._find.compare_optimizers
    timed = _TimedCall(original)
    lrtune.range_test._find.compare_optimizers = timed  # search() imports it at call time
    start = time.perf_counter()
    try:
        study = search(config, progress=None)
    finally:
        lrtune.range_test._find.compare_optimizers = original
    total = time.perf_counter() - start
    trials = _trial_rows(study)
    lr_auto = study.user_attrs.get("lrtune.lr_auto", {})
    range_test = None
    if lr_auto:
        range_test = {
            "seconds": sum(timed.seconds),
            "sweep_seconds": sum(v["result"]["seconds"] for v in lr_auto.values()),
            "steps": sum(
                len(v["result"]["lrs"]) + _probe_steps(v["result"]) for v in lr_auto.values()
            ),
            "ranges": {k: v["range"] for k, v in lr_auto.items()},
            "sources": {k: v["source"] for k, v in lr_auto.items()},
        }
    return {
        "variant": variant,
        "seed": seed,
        "study": name,
        "wall_seconds": total,
        "range_test": range_test,
        "trials": trials,
    }


def analyse_efficiency(runs: list[dict[str, Any]], n_trials: int) -> dict[str, Any]:
    """Per run: best, best after k trials, trials to within TOLERANCE of the seed's R."""
    reference: dict[int, float] = {}
    for run in runs:
        for trial in run["trials"]:
            if trial["state"] == "COMPLETE" and trial["value"] is not None:
                seed = run["seed"]
                reference[seed] = max(reference.get(seed, -math.inf), trial["value"])
    per_run = []
    for run in runs:
        r = reference.get(run["seed"], math.nan)
        values = [
            t["value"] if t["state"] == "COMPLETE" and t["value"] is not None else None
            for t in run["trials"]
        ]
        best_after = {}
        for k in sorted({*CHECKPOINTS, n_trials}):
            if k > n_trials:
                continue
            seen = [v for v in values[:k] if v is not None]
            best_after[k] = max(seen) if seen else None
        reach = next(
            (i + 1 for i, v in enumerate(values) if v is not None and v >= r - TOLERANCE), None
        )
        seconds = [t["seconds"] for t in run["trials"] if t["seconds"] is not None]
        steps = [t["steps"] for t in run["trials"] if t["steps"] is not None]
        complete = [t for t in run["trials"] if t["state"] == "COMPLETE" and t["value"] is not None]
        best_trial = max(complete, key=lambda t: t["value"], default=None)
        row: dict[str, Any] = {
            "variant": run["variant"],
            "seed": run["seed"],
            "reference": r,
            "best": max((v for v in values if v is not None), default=None),
            "best_trial": None if best_trial is None else best_trial["number"] + 1,
            "best_optimizer": None if best_trial is None else best_trial["optimizer"],
            "best_test_acc": None if best_trial is None else best_trial["test_acc"],
            "best_after": best_after,
            "trials_to_within": reach,
            "complete": sum(v is not None for v in values),
            "pruned_or_diverged": sum(t["state"] == "PRUNED" for t in run["trials"]),
            "failed": sum(t["state"] == "FAIL" for t in run["trials"]),
            "median_trial_seconds": statistics.median(seconds) if seconds else None,
            "median_trial_steps": statistics.median(steps) if steps else None,
            "wall_seconds": run["wall_seconds"],
        }
        rt = run.get("range_test")
        if rt is not None:
            row["range_test_seconds"] = rt["seconds"]
            row["range_test_steps"] = rt["steps"]
            if row["median_trial_seconds"]:
                row["range_test_trial_equiv_seconds"] = rt["seconds"] / row["median_trial_seconds"]
            if row["median_trial_steps"]:
                row["range_test_trial_equiv_steps"] = rt["steps"] / row["median_trial_steps"]
        per_run.append(row)
    summary = {}
    for variant in VARIANTS:
        rows = [row for row in per_run if row["variant"] == variant]
        if not rows:
            continue
        reach = [math.inf if r["trials_to_within"] is None else r["trials_to_within"] for r in rows]
        entry: dict[str, Any] = {
            "seeds": len(rows),
            "median_trials_to_within": median_or_none(reach),
            "reached": sum(not math.isinf(x) for x in reach),
            "trials_to_within_per_seed": [r["trials_to_within"] for r in rows],
            "median_best": statistics.median([r["best"] for r in rows if r["best"] is not None]),
            "best_per_seed": [r["best"] for r in rows],
            "best_optimizer_per_seed": [r["best_optimizer"] for r in rows],
            "median_best_test_acc": median_or_none(
                [r["best_test_acc"] for r in rows if r["best_test_acc"] is not None]
            ),
            "best_test_acc_per_seed": [r["best_test_acc"] for r in rows],
            "diverged_per_seed": [r["pruned_or_diverged"] for r in rows],
        }
        for k in rows[0]["best_after"]:
            got = [r["best_after"][k] for r in rows if r["best_after"][k] is not None]
            entry[f"median_best_after_{k}"] = statistics.median(got) if got else None
        if variant.startswith("auto"):
            for key in (
                "range_test_seconds",
                "range_test_steps",
                "range_test_trial_equiv_seconds",
                "range_test_trial_equiv_steps",
            ):
                got = [r[key] for r in rows if r.get(key) is not None]
                entry[f"median_{key}"] = statistics.median(got) if got else None
        summary[variant] = entry
    return {"reference_per_seed": reference, "per_run": per_run, "per_variant": summary}


def print_efficiency(analysis: dict[str, Any]) -> None:
    print("\nreference R per seed (best val_acc of any variant, that seed):")
    for seed, r in sorted(analysis["reference_per_seed"].items()):
        print(f"  seed {seed}: {r:.4f}")
    print(
        f"\n{'variant':<7} {'seed':>4} {'best':>7} {'@10':>7} {'@20':>7} {'@30':>7} "
        f"{'to R-.5':>7} {'done':>4} {'prun':>4} {'trial s':>7} {'rt s':>6} {'rt eq':>6}"
    )

    def fmt(value: Any, spec: str = ".4f") -> str:
        return "-" if value is None else format(value, spec)

    for row in analysis["per_run"]:
        after = row["best_after"]
        print(
            f"{row['variant']:<7} {row['seed']:>4} {fmt(row['best']):>7} "
            f"{fmt(after.get(10)):>7} {fmt(after.get(20)):>7} {fmt(after.get(30)):>7} "
            f"{fmt(row['trials_to_within'], 'd'):>7} {row['complete']:>4} "
            f"{row['pruned_or_diverged']:>4} {fmt(row['median_trial_seconds'], '.2f'):>7} "
            f"{fmt(row.get('range_test_seconds'), '.1f'):>6} "
            f"{fmt(row.get('range_test_trial_equiv_seconds'), '.2f'):>6}"
        )
    print("\nper variant (median over seeds):")
    for variant, entry in analysis["per_variant"].items():
        print(f"  {variant}: {json.dumps(entry)}")


def run_efficiency(args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench_study_") as tmp:
        for seed in args.seeds:
            for variant in args.variants:  # interleaved, so load drift hits variants alike
                t0 = time.perf_counter()
                run = run_efficiency_study(variant, seed, args.n_trials, args.data_dir, Path(tmp))
                runs.append(run)
                best = max(
                    (t["value"] for t in run["trials"] if t["state"] == "COMPLETE"), default=None
                )
                print(
                    f"[efficiency] seed {seed} {variant}: {len(run['trials'])} trials, "
                    f"best {best}, {time.perf_counter() - t0:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    analysis = analyse_efficiency(runs, args.n_trials)
    print_efficiency(analysis)
    return {
        "settings": {
            "data_dir": str(args.data_dir),
            "seeds": args.seeds,
            "n_trials": args.n_trials,
            "optimizers": OPTIMIZERS,
            "variants": VARIANTS,
            "tolerance": TOLERANCE,
            "reference": "per seed: best val_acc over all variants' trials for that seed",
        },
        "runs": runs,
        "analysis": analysis,
    }


# --------------------------------------------------------------------------- memory
class _TrialEndStream:
    """Text stream for ``search(progress=...)``: records RSS at each per-trial line."""

    _LINE = re.compile(r"^\[(\d+)(?:/\d+)?\] trial (\d+)")

    def __init__(self, echo: Any) -> None:
        self.echo = echo
        self.marks: list[dict[str, Any]] = []
        self._buffer = ""

    def write(self, text: str) -> int:
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            match = self._LINE.match(line)
            if match:
                self.marks.append(
                    {
                        "finished": int(match[1]),
                        "trial": int(match[2]),
                        "rss_mb": rss_mb(),
                        "time": time.perf_counter(),
                    }
                )
            if self.echo is not None:
                print(line, file=self.echo, flush=True)
        return len(text)

    def flush(self) -> None:
        pass


class _Sampler(threading.Thread):
    def __init__(self, interval: float) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.samples.append((time.perf_counter(), rss_mb()))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def memory_config(n_trials: int, storage: str, name: str) -> Any:
    from lrtune.config import StudyConfig

    return StudyConfig.model_validate(
        {
            "name": name,
            "dataset": "digits",
            "model": "mlp",
            "model_options": {"width": 128},
            "batch_size": 64,
            "device": "cpu",
            "budget": {"epochs": 3},
            "objective": {"metric": "val_acc", "direction": "maximize"},
            "n_trials": n_trials,
            "sampler": {"name": "tpe"},
            "pruner": {"name": "median"},
            "seed": 0,
            "storage": storage,
            "enqueue_defaults": True,
            "space": {
                "optimizers": MEMORY_OPTIMIZERS,
                "lr": "auto",
                "schedules": ["constant", "cosine"],
            },
        }
    )


def run_memory(args: argparse.Namespace) -> dict[str, Any]:
    import gc

    from lrtune.study import search

    n_trials = args.memory_trials
    stream = _TrialEndStream(sys.stderr)
    sampler = _Sampler(0.2)
    with tempfile.TemporaryDirectory(prefix="bench_study_mem_") as tmp:
        name = f"bench-memory-{uuid.uuid4().hex[:8]}"
        config = memory_config(n_trials, str(Path(tmp) / f"{name}.journal"), name)
        rss_before = rss_mb()
        start = time.perf_counter()
        sampler.start()
        try:
            study = search(config, progress=stream)  # type: ignore[arg-type]
        finally:
            sampler.stop()
        wall = time.perf_counter() - start
        rss_after = rss_mb()
        gc.collect()
        rss_after_gc = rss_mb()
        states = [t.state.name for t in study.get_trials(deepcopy=False)]
    marks = stream.marks
    by_count = {m["finished"]: m["rss_mb"] for m in marks}
    # a FAIL trial also writes a line with an unchanged count; keep the last per count
    at_marks = {k: by_count.get(k) for k in MEMORY_MARKS if k <= n_trials}
    fit = [(m["finished"], m["rss_mb"]) for m in marks if m["finished"] >= 10]
    slope = intercept = None
    if len({x for x, _ in fit}) >= 2:
        slope, intercept = statistics.linear_regression(
            [float(x) for x, _ in fit], [y for _, y in fit]
        )
    first_trial_time = marks[0]["time"] if marks else None
    during = [rss for t, rss in sampler.samples if first_trial_time and t >= first_trial_time]
    result = {
        "settings": {
            "n_trials": n_trials,
            "dataset": "digits",
            "optimizers": MEMORY_OPTIMIZERS,
            "budget_epochs": 3,
            "pruner": "median",
            "sampler": "tpe",
            "lr": "auto",
            "sample_interval_s": 0.2,
        },
        "wall_seconds": wall,
        "states": {s: states.count(s) for s in sorted(set(states))},
        "rss_before_mb": rss_before,
        "rss_after_mb": rss_after,
        "rss_after_gc_mb": rss_after_gc,
        "rss_peak_sampled_mb": max((rss for _, rss in sampler.samples), default=None),
        "rss_peak_after_trial1_mb": max(during, default=None),
        "rss_at_trial": at_marks,
        "slope_mb_per_trial_10_to_end": slope,
        "fit_intercept_mb": intercept,
        "fit_points": len(fit),
        "marks": marks,
        "samples": len(sampler.samples),
    }
    print("\nmemory (RSS MiB after trial k):")
    for k, v in at_marks.items():
        print(f"  {k:>3}: {'-' if v is None else f'{v:.1f}'}")
    print(
        f"  before {rss_before:.1f}, after {rss_after:.1f} (after gc {rss_after_gc:.1f}), "
        f"sampled peak {result['rss_peak_sampled_mb']:.1f}; slope 10..{n_trials}: "
        f"{'-' if slope is None else f'{slope:.3f}'} MiB/trial; states {result['states']}; "
        f"{wall:.0f} s"
    )
    return result


# --------------------------------------------------------------------------- main
def merge(files: list[Path], n_trials: int) -> dict[str, Any]:
    """Combine the efficiency runs of several result files (e.g. seeds run in parallel
    processes) and analyse them together; memory results are kept per file."""
    loaded = [json.loads(Path(f).read_text()) for f in files]
    runs = [run for data in loaded for run in data.get("efficiency", {}).get("runs", [])]
    seeds = sorted({run["seed"] for run in runs})
    n = max((len(run["trials"]) for run in runs), default=n_trials)
    analysis = analyse_efficiency(runs, n)
    print_efficiency(analysis)
    return {
        "merged_from": [str(f) for f in files],
        "environment": [data.get("environment") for data in loaded],
        "total_seconds_per_file": [data.get("total_seconds") for data in loaded],
        "memory": [data["memory"] for data in loaded if "memory" in data],
        "efficiency": {
            "settings": {**loaded[0]["efficiency"]["settings"], "seeds": seeds},
            "runs": runs,
            "analysis": analysis,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--n-trials", type=int, default=30)
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=list(VARIANTS),
        help="efficiency variants to run (default: all)",
    )
    parser.add_argument("--memory-trials", type=int, default=50)
    parser.add_argument(
        "--quick", action="store_true", help="seeds 0 1, 10 trials; memory study of 15 trials"
    )
    parser.add_argument("--efficiency", action="store_true", help="run only the efficiency part")
    parser.add_argument("--memory", action="store_true", help="run only the memory part")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)"
    )
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        help="analyse the efficiency runs of these result files together (runs nothing)",
    )
    parser.add_argument("--out", type=Path, default=Path("results.json"))
    args = parser.parse_args(argv)
    if args.merge:
        results = merge(args.merge, args.n_trials)
        args.out.write_text(json.dumps(results, indent=1, default=str))
        print(f"\nwrote {args.out}")
        return 0
    if args.quick:
        args.seeds, args.n_trials, args.memory_trials = [0, 1], 10, 15
    if not args.efficiency and not args.memory:
        args.efficiency = args.memory = True
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    _quiet()
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "environment": environment()}
    results["argv"] = sys.argv[1:] if argv is None else argv
    started = time.perf_counter()
    # memory first: the process is then as fresh as a `lrtune search` process
    if args.memory:
        results["memory"] = run_memory(args)
    if args.efficiency:
        results["efficiency"] = run_efficiency(args)
    results["total_seconds"] = time.perf_counter() - started
    args.out.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nwrote {args.out} ({results['total_seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
