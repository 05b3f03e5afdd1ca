"""Trials per GPU-hour: lrtune's workers packed on one GPU vs plain Optuna ``n_jobs`` threads.

For each dataset and each ``k`` in ``--ks`` (default 1, 2, 4, 8), two runs of the same
study, each on a fresh journal file in a temp dir:

* ``lrtune-workers``: ``lrtune.search(config, workers="auto", trials_per_gpu=k,
  publish=False, progress=None)``: ``k`` worker processes on the GPU (``k = 1``: one
  worker process), CPU threads split between them;
* ``optuna-n_jobs``: the baseline a user would try first,
  ``optuna.create_study(...).optimize(objective, n_trials, n_jobs=k)`` (``k`` threads in
  this process, Optuna's default ``TPESampler`` seeded, a journal file too), whose objective
  trains the same configuration with ``lrtune.train(TrainConfig(...), test=False)`` at the
  trial's sampled LR and returns ``val_acc``. One untimed warm-up training per dataset
  runs first in this process (imports, CUDA context, cuDNN), in the baseline's favour.

The study: adam, LR searched in [1e-4, 1e-2] (log; fixed bounds, no ``lr: auto``, so only
trials are timed), ``--epochs`` epochs per trial (default 1), pruner ``none``, no test pass,
``--trials`` trials per run (default ``4 * k``; ``3 * k`` with ``--quick``). Datasets:

* ``mnist``: lrtune's ``cnn`` on the real MNIST IDX files in ``--data-dir`` (default
  ``../shared/data/mnist``, see its README: the 6,309-image training subset), batch 64;
* ``cifar10``: lrtune's ``resnet`` on random images written in the CIFAR-10 "python
  version" layout to a temp dir (``cifar-10-batches-py/data_batch_1..5``, ``test_batch``,
  ``batches.meta``; ``--cifar-per-batch`` images per file, default 10,000 as in the real
  files), batch 512, augmentation on;
* ``digits`` (for the CPU smoke test): ``cnn`` on the embedded 8x8 digits.

Reported per run, as one JSON line on stdout (also appended to ``--out``): ``seconds`` (wall
time of the ``search`` / ``optimize`` call: worker start-up, data loading and the storage
included), ``seconds_per_trial``, ``trials_per_gpu_hour`` (``3600 * trials / seconds``),
``startup_seconds`` (call start to the first trial's start: for lrtune, spawning the workers,
their imports and data loading), ``steady_trials_per_gpu_hour`` (the rate without that
start-up: what a longer study tends to), ``trial_seconds_mean`` (mean duration of one
trial), ``complete`` (trials that completed), GPU utilisation ``util_mean`` / ``util_max``
(%) and ``peak_mem_mib`` (the whole GPU's ``memory.used``, this process's CUDA context
included) from ``nvidia-smi`` sampled every 0.5 s in a thread (``torch.cuda.utilization``
when ``nvidia-smi`` is missing), the GPU's name, torch and CUDA versions, ``mps`` (whether an
``nvidia-cuda-mps-control`` daemon runs) and the date. Progress and, at the end, a summary go
to stderr, so stdout holds only the JSON lines: per dataset, the best ``k`` of lrtune by
trials per GPU-hour, its ratio to one worker (target: >= 4x) and to plain Optuna at its best
``n_jobs`` (target: >= 1.5x), and the same comparison without the start-up.

The benchmark uses one GPU: the first one ``CUDA_VISIBLE_DEVICES`` names (``0`` when it is
unset). ``--device cpu`` exists only to smoke-test the script without a GPU: lrtune then runs
``workers=k`` processes on the CPU and the utilisation fields are null.

Run from the repository root, on a machine with a GPU and nothing else running on it::

    python benchmarks/bench_gpu.py --quick                 # MNIST cnn, k = 1 2 4: ~4 min on an H100
    python benchmarks/bench_gpu.py --ks 1 2 4 8 --datasets mnist cifar10 --out bench_gpu.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data" / "mnist"
NO_CUDA = "bench_gpu: no CUDA device (use --device cpu for a smoke test)"
LR_LOW, LR_HIGH = 1e-4, 1e-2
SAMPLE_PERIOD_S = 0.5
TARGET_VS_ONE_WORKER = 4.0
TARGET_VS_N_JOBS = 1.5
MODELS = {"mnist": "cnn", "cifar10": "resnet", "digits": "cnn"}
KEYS = (
    "dataset", "model", "mode", "k", "trials", "complete", "seconds", "seconds_per_trial",
    "trials_per_gpu_hour", "startup_seconds", "steady_trials_per_gpu_hour", "trial_seconds_mean",
    "util_mean", "util_max",
    "peak_mem_mib", "epochs", "device", "gpu", "torch", "cuda", "mps", "date",
)  # fmt: skip
"""The fields of each JSON line, in order."""


# --------------------------------------------------------------------------- data
def write_cifar10(root: Path, per_batch: int, seed: int = 0) -> Path:
    """Random CIFAR-10 in the "python version" layout under ``root`` (as
    ``tests/conftest.py``'s ``write_cifar`` writes it: protocol-2 pickles of dicts with
    ``b"data"`` uint8 ``(n, 3072)`` and ``b"labels"``); returns ``root``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n: int, name: str) -> bytes:
        data = {
            b"batch_label": name.encode(),
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, size=n)],
            b"filenames": [b"x.png"] * n,
        }
        return pickle.dumps(data, protocol=2)

    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(batch(per_batch, f"training batch {i} of 5"))
    (folder / "test_batch").write_bytes(batch(per_batch, "testing batch 1 of 1"))
    names = [f"class{i}".encode() for i in range(10)]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    return root


@dataclass(frozen=True)
class Spec:
    """One dataset of the benchmark: lrtune's dataset name, model and data folder."""

    dataset: str
    model: str
    data_dir: Path | None

    def fields(self, device: str, epochs: int, seed: int) -> dict[str, Any]:
        """The training fields a study config and a ``TrainConfig`` share."""
        data_dir = None if self.data_dir is None else str(self.data_dir)
        return {"dataset": self.dataset, "model": self.model, "data_dir": data_dir,
                "download": False, "device": device, "seed": seed}  # fmt: skip


# --------------------------------------------------------------------------- the GPU
class GpuSampler:
    """Samples the GPU's utilisation (%) and used memory (MiB) every ``period`` seconds in
    a thread: ``nvidia-smi`` for the GPU ``gpu`` (an index or UUID), else
    ``torch.cuda.utilization`` / ``device_memory_used`` for device 0; ``gpu=None``: off."""

    def __init__(self, gpu: str | None, period: float = SAMPLE_PERIOD_S) -> None:
        self.gpu = gpu
        self.period = period
        self.util: list[float] = []
        self.mem: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample_smi(self) -> tuple[float, float] | None:
        query = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                 "--format=csv,noheader,nounits", "-i", str(self.gpu)]  # fmt: skip
        try:
            out = subprocess.run(query, capture_output=True, text=True, timeout=10)
            util, mem = out.stdout.strip().splitlines()[0].split(",")[:2]
            return float(util), float(mem)
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            return None

    @staticmethod
    def _sample_torch() -> tuple[float, float] | None:
        import torch

        try:
            return float(torch.cuda.utilization(0)), torch.cuda.device_memory_used(0) / 2**20
        except Exception:  # no NVML bindings: nothing to sample
            return None

    def _run(self) -> None:
        sample = self._sample_smi if self._sample_smi() is not None else self._sample_torch
        while not self._stop.is_set():
            got = sample()
            if got is None:
                return
            self.util.append(got[0])
            self.mem.append(got[1])
            self._stop.wait(self.period)

    def __enter__(self) -> GpuSampler:
        if self.gpu is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def summary(self) -> dict[str, float | None]:
        if not self.util:
            return {"util_mean": None, "util_max": None, "peak_mem_mib": None}
        return {
            "util_mean": round(sum(self.util) / len(self.util), 1),
            "util_max": max(self.util),
            "peak_mem_mib": max(self.mem),
        }


def first_gpu() -> str:
    """The GPU the benchmark uses: the first ``CUDA_VISIBLE_DEVICES`` entry, else ``0``."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return visible or "0"


def mps_active() -> bool | None:
    """Does an ``nvidia-cuda-mps-control`` daemon run? (``None``: no ``pgrep`` to ask.)"""
    try:
        found = subprocess.run(["pgrep", "-f", "nvidia-cuda-mps-control"], capture_output=True)
    except OSError:
        return None
    return found.returncode == 0


def environment(device: str) -> dict[str, Any]:
    """The fields of each JSON line that describe the machine."""
    import torch

    return {
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "mps": mps_active(),
    }


# --------------------------------------------------------------------------- the runs
def _timings(study: Any, start: float) -> dict[str, float | int | None]:
    """Trial counts and times from the study's trials (``start``: the call's wall clock)."""
    from optuna.trial import TrialState

    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_start is not None]
    done = [t for t in trials if t.datetime_complete is not None]
    first = min((t.datetime_start.timestamp() for t in trials), default=None)
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in done]
    return {
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "startup_seconds": None if first is None else round(first - start, 2),
        "trial_seconds_mean": round(sum(durations) / len(durations), 3) if durations else None,
    }


def run_lrtune(spec: Spec, k: int, trials: int, device: str, epochs: int, seed: int) -> dict:
    """One ``lrtune.search`` with ``k`` workers on the GPU (``workers=k`` on the CPU)."""
    from lrtune import StudyConfig, search

    packing: dict[str, Any] = (
        {"workers": "auto", "trials_per_gpu": k} if device == "cuda" else {"workers": k}
    )
    gpu = first_gpu() if device == "cuda" else None
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp, GpuSampler(gpu) as sampler:
        config = StudyConfig.model_validate({
            "name": f"bench-gpu-{spec.dataset}-k{k}", **spec.fields(device, epochs, seed),
            "budget": {"epochs": epochs}, "n_trials": trials, "pruner": "none",
            "test": "never", "storage": str(Path(tmp) / "study.journal"),
            "space": {"optimizers": ["adam"], "lr": {"low": LR_LOW, "high": LR_HIGH}},
        })  # fmt: skip
        start_wall, start = time.time(), time.perf_counter()
        study = search(config, publish=False, progress=None, **packing)
        seconds = time.perf_counter() - start
        timings = _timings(study, start_wall)
    return {"seconds": seconds, **timings, **sampler.summary()}


def baseline_config(spec: Spec, device: str, epochs: int, seed: int, lr: float) -> Any:
    """The ``TrainConfig`` of one trial of the Optuna baseline."""
    from lrtune import TrainConfig

    return TrainConfig(
        **spec.fields(device, epochs, seed), epochs=epochs, optimizer={"name": "adam", "lr": lr}
    )


def run_optuna(spec: Spec, k: int, trials: int, device: str, epochs: int, seed: int) -> dict:
    """Plain Optuna, ``n_jobs=k`` threads in this process, each trial ``lrtune.train``."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    from lrtune import train

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", LR_LOW, LR_HIGH, log=True)
        return train(baseline_config(spec, device, epochs, seed, lr), test=False).val_acc

    gpu = first_gpu() if device == "cuda" else None
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp, GpuSampler(gpu) as sampler:
        study = optuna.create_study(
            storage=optuna.storages.JournalStorage(
                JournalFileBackend(str(Path(tmp) / "study.journal"))
            ),
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=seed),
        )
        start_wall, start = time.time(), time.perf_counter()
        study.optimize(objective, n_trials=trials, n_jobs=k)
        seconds = time.perf_counter() - start
        timings = _timings(study, start_wall)
    return {"seconds": seconds, **timings, **sampler.summary()}


def warm_up(spec: Spec, device: str, epochs: int, seed: int) -> None:
    """One untimed training in this process, before the baseline's runs."""
    from lrtune import train

    train(baseline_config(spec, device, epochs, seed, 1e-3), test=False)
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def record(row: dict[str, Any], out: Path | None) -> None:
    """Print ``row`` as one JSON line and append it to ``out``."""
    line = json.dumps(row)
    print(line, flush=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a") as f:
            f.write(line + "\n")


def summarize(rows: list[dict[str, Any]]) -> list[str]:
    """Per dataset: lrtune's best k, its ratio to one worker and to Optuna's best n_jobs."""
    lines = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        ours = [r for r in rows if r["dataset"] == dataset and r["mode"] == "lrtune-workers"]
        theirs = [r for r in rows if r["dataset"] == dataset and r["mode"] == "optuna-n_jobs"]
        if not ours:
            continue
        best = max(ours, key=lambda r: r["trials_per_gpu_hour"])
        rate = best["trials_per_gpu_hour"]
        parts = [f"{dataset}: lrtune best k={best['k']}: {rate:.0f} trials/GPU-hour"]
        one = next((r for r in ours if r["k"] == 1), None)
        if one is not None:
            ratio = rate / one["trials_per_gpu_hour"]
            met = "met" if ratio >= TARGET_VS_ONE_WORKER else "NOT met"
            parts.append(f"{ratio:.2f}x one worker (target >= {TARGET_VS_ONE_WORKER:g}x: {met})")
        if theirs:
            rival = max(theirs, key=lambda r: r["trials_per_gpu_hour"])
            ratio = rate / rival["trials_per_gpu_hour"]
            met = "met" if ratio >= TARGET_VS_N_JOBS else "NOT met"
            parts.append(
                f"{ratio:.2f}x Optuna at its best n_jobs={rival['k']} "
                f"({rival['trials_per_gpu_hour']:.0f}/h; target >= {TARGET_VS_N_JOBS:g}x: {met})"
            )
        steady = {r["mode"]: r for r in sorted(
            (r for r in [*ours, *theirs] if r["steady_trials_per_gpu_hour"]),
            key=lambda r: r["steady_trials_per_gpu_hour"])}  # fmt: skip
        if len(steady) == 2:
            a, b = steady["lrtune-workers"], steady["optuna-n_jobs"]
            ratio = a["steady_trials_per_gpu_hour"] / b["steady_trials_per_gpu_hour"]
            parts.append(f"without start-up: lrtune k={a['k']} / Optuna n_jobs={b['k']} = "
                         f"{ratio:.2f}x")  # fmt: skip
        lines.append("; ".join(parts))
    return lines


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true",
        help="MNIST cnn only, k in 1 2 4, 3*k trials (a few minutes on an H100)",
    )  # fmt: skip
    parser.add_argument("--ks", type=int, nargs="+", help="workers per GPU (default 1 2 4 8)")
    parser.add_argument("--trials", type=int, help="trials per run (default 4*k; --quick 3*k)")
    parser.add_argument(
        "--datasets", nargs="+", choices=sorted(MODELS),
        help="default: mnist cifar10 (--quick: mnist)",
    )  # fmt: skip
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                        help="cpu: only to smoke-test the script (default cuda)")  # fmt: skip
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help=f"MNIST IDX files (default {DEFAULT_DATA_DIR})")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=1, help="epochs per trial (default 1)")
    parser.add_argument("--cifar-per-batch", type=int, default=10_000,
                        help="random images per CIFAR-10 file (default 10000)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="append the JSON lines to this file")
    args = parser.parse_args(argv)
    args.ks = args.ks or ([1, 2, 4] if args.quick else [1, 2, 4, 8])
    args.datasets = args.datasets or (["mnist"] if args.quick else ["mnist", "cifar10"])
    if min(args.ks) < 1 or (args.trials is not None and args.trials < 1) or args.epochs < 1:
        parser.error("--ks, --trials and --epochs must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda":
        os.environ["CUDA_VISIBLE_DEVICES"] = first_gpu()  # one GPU: the first visible one
        import torch

        if not torch.cuda.is_available():
            print(NO_CUDA, file=sys.stderr)
            return 2
    import optuna

    from lrtune._logging import quiet_lightning

    quiet_lightning()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    env = environment(args.device)
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        for dataset in args.datasets:
            data_dir: Path | None = None
            if dataset == "mnist":
                data_dir = args.data_dir.resolve()
            elif dataset == "cifar10":
                tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cifar_")))
                data_dir = write_cifar10(tmp, args.cifar_per_batch, args.seed)
            spec = Spec(dataset, MODELS[dataset], data_dir)
            print(f"bench_gpu: {dataset} {spec.model}: warm-up", file=sys.stderr, flush=True)
            warm_up(spec, args.device, args.epochs, args.seed)
            for k in args.ks:
                trials = args.trials or (3 if args.quick else 4) * k
                for mode, run in (("lrtune-workers", run_lrtune), ("optuna-n_jobs", run_optuna)):
                    got = run(spec, k, trials, args.device, args.epochs, args.seed)
                    seconds, startup = got["seconds"], got["startup_seconds"]
                    steady = None
                    if startup is not None and seconds > startup:
                        steady = round(3600 * trials / (seconds - startup), 1)
                    row = {
                        "dataset": dataset, "model": spec.model, "mode": mode, "k": k,
                        "trials": trials, **got, "seconds": round(seconds, 2),
                        "seconds_per_trial": round(seconds / trials, 3),
                        "trials_per_gpu_hour": round(3600 * trials / seconds, 1),
                        "steady_trials_per_gpu_hour": steady,
                        "epochs": args.epochs, **env,
                        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                            timespec="seconds"),
                    }  # fmt: skip
                    rows.append({key: row[key] for key in KEYS})
                    record(rows[-1], args.out)
                    print(f"bench_gpu: {dataset} {mode} k={k}: {trials} trials in "
                          f"{seconds:.1f} s = {row['trials_per_gpu_hour']:.0f} trials/hour",
                          file=sys.stderr, flush=True)  # fmt: skip
    for line in summarize(rows):
        print(f"bench_gpu summary: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
