"""Time to a good model: ``lrtune search`` vs the Optuna loop a user writes by hand.

**The loop** is optuna-examples' ``pytorch_lightning_simple.py`` brought to the same task:
a LightningModule around the same network (``lrtune.models.create_model``: the same
architecture and initialisation), ``DataLoader(TensorDataset)`` over the same split and
normalisation (lrtune's fixed validation split, its per-channel mean and std), batch size
the dataset's default, a lean ``Trainer`` (``max_epochs``, no logger, checkpointing,
progress bar or model summary), ``PyTorchLightningPruningCallback`` on ``val_acc``,
``TPESampler(seed=seed)``, ``MedianPruner()``, in-memory storage; it samples the optimizer
from the same four and one ``lr`` log-uniform in 1e-5..1e-1, everything else at torch's
defaults. The test accuracy of each complete trial is measured outside its clock (the
loop itself has no test pass), so that its best trial has a test accuracy.

**lrtune** is ``lrtune.study.search`` on a study that names only the task, the four
optimizers and ``lr: auto``, the rest at lrtune's defaults (a journal file in a temporary
folder). Variants pin older defaults (``--variants``), e.g. ``lrtune-old``: no trials
queued at the finder's LRs, the whole space from the first trial (``space.grow``) and every
range test before the first trial, or ``lrtune-upfront``: only the last of these.

Wall time counts from the call (lrtune's range tests included) to the end of each trial.
The best validation accuracy so far counts complete trials. Per model, the target is the
best validation accuracy of all runs (every side, every seed) minus 2, 1 and 0.5 points.
Sides alternate per seed (the loop first on even seeds), one process, one torch thread.

Run from the repository root::

    python benchmarks/bench_time_to_quality.py [--models mnist-cnn mnist-mlp digits-mlp]
        [--seeds 0 1 2] [--trials 20] [--epochs 3] [--variants lrtune lrtune-old]
        [--out ttq.json]
    python benchmarks/bench_time_to_quality.py --merge a.json b.json --out merged.json
    python benchmarks/bench_time_to_quality.py --noise 8 --models mnist-mlp --out noise.json

Results are recorded in ``docs/BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")

import lightning
import lightning.pytorch as pl
import optuna
import torch
from optuna_integration import PyTorchLightningPruningCallback
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data" / "mnist"
OPTIMIZERS = ["sgd", "adam", "adamax", "rmsprop"]
MARGINS = (2.0, 1.0, 0.5)
MODELS = {  # name: (dataset, model)
    "mnist-cnn": ("mnist", "cnn"),
    "mnist-mlp": ("mnist", "mlp"),
    "digits-mlp": ("digits", "mlp"),
    "digits-cnn": ("digits", "cnn"),
}
VARIANTS: dict[str, dict[str, Any]] = {
    "lrtune": {},
    # before issue 20: no trials at the finder's LRs, the whole space from the first trial
    "lrtune-old": {
        "enqueue_finder": False,
        "space": {"grow": False, "lr": {"auto": True, "range_tests": "upfront"}},
    },
    # every range test in the set-up, before any trial (before range_tests: first_use)
    "lrtune-upfront": {"space": {"lr": {"auto": True, "range_tests": "upfront"}}},
    "lrtune-nogrow": {"space": {"grow": False}},
    # every trial's LR annealed to 0 over its budget (cosine) instead of held constant
    "lrtune-cosine": {"space": {"lr": "auto", "schedules": ["cosine"]}},
    "lrtune-noqueue": {"enqueue_finder": False},
    # pruning in a finer unit: the same 3 epochs as a steps budget, validated (and
    # reported to the median pruner) every half epoch
    "lrtune-fine": {"reports_per_epoch": 2},
    "lrtune-hyperband": {"pruner": {"name": "hyperband"}},
    # the median pruner from the first report (Optuna's default n_warmup_steps=0) instead
    # of lrtune's 1 (with an epochs budget: not before the second epoch)
    "lrtune-w0": {"pruner": {"name": "median", "options": {"n_warmup_steps": 0}}},
    # Issue 25 removed the variants that swapped lrtune's private functions for the call:
    # lrtune-high (the finder's trials at the bracket top) and lrtune-nofit (torch's threads
    # not fitted to the idle cores). Their figures (docs/BENCHMARKS.md, issue 20) are
    # reproduced by this script at commit 6a0af12.
    "lrtune-fine-hyperband": {"reports_per_epoch": 2, "pruner": {"name": "hyperband"}},
    # today's defaults, with every trial that beats its optimizer's best tested at once
    # (`test: improving`), so that each model the study would hand over has its test
    # accuracy: the test-split targets need it. Its trials are lrtune's; its clock includes
    # those test passes (the loop's are left out of its clock), a handicap against it.
    "lrtune-tested": {"test": "improving"},
    # Removed with the option it pinned: lrtune-reseed (`trial_seeds: per_trial`, each trial
    # from its own seed, as the loop's are; no win, docs/BENCHMARKS.md, issue 20, third
    # round). Its figures are reproduced by this script at commit a453f99.
}


def quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lrtune"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


# --------------------------------------------------------------------------- the loop
class LightningNet(pl.LightningModule):
    """optuna-examples' LightningNet, around the benchmark's network."""

    def __init__(self, model: nn.Module, optimizer: str, lr: float) -> None:
        super().__init__()
        self.model, self.optimizer_name, self.lr = model, optimizer, lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        acc = (self(x).argmax(dim=1) == y).float().mean()
        self.log("val_acc", acc)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam,
               "adamax": torch.optim.Adamax, "rmsprop": torch.optim.RMSprop}  # fmt: skip
        return cls[self.optimizer_name](self.model.parameters(), lr=self.lr)


def tensors(dataset: str, data_dir: Path) -> dict[str, TensorDataset]:
    """lrtune's split of ``dataset``, normalised as lrtune does, as float tensors."""
    from lrtune.data import create_datamodule

    dm = create_datamodule(dataset, data_dir=data_dir, download=False)
    dm.prepare_data()
    dm.setup()
    splits = dm.splits
    shape = (-1, *dm.input_shape)
    mean, std = splits.mean.view(1, -1, 1, 1), splits.std.view(1, -1, 1, 1)
    out = {}
    for name in ("train", "val", "test"):
        x = (getattr(splits, f"{name}_x").float() / 255.0 - mean) / std
        out[name] = TensorDataset(x.reshape(shape).contiguous(), getattr(splits, f"{name}_y"))
    out["batch_size"] = dm.batch_size  # type: ignore[assignment]
    out["input_shape"] = dm.input_shape  # type: ignore[assignment]
    return out


def test_accuracy(module: pl.LightningModule, data: TensorDataset) -> float:
    module.eval()
    with torch.no_grad():
        x, y = data.tensors
        return float((module(x).argmax(dim=1) == y).float().mean())


def fit_loop_module(
    module: pl.LightningModule,
    data: dict[str, Any],
    epochs: int,
    callbacks: list[pl.Callback] | None = None,
) -> float:
    """The loop's training of one module (a lean ``Trainer``, ``DataLoader`` batches):
    its last validation accuracy."""
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
    )  # fmt: skip
    trainer.fit(
        module,
        DataLoader(data["train"], batch_size=data["batch_size"], shuffle=True),
        DataLoader(data["val"], batch_size=data["batch_size"]),
    )
    return float(trainer.callback_metrics["val_acc"])


def run_loop(model_name: str, seed: int, trials: int, epochs: int, data_dir: Path) -> dict:
    """The hand-written loop; events are (seconds since the call, state, value, test)."""
    from lrtune.models import create_model

    dataset, model = MODELS[model_name]
    start = time.perf_counter()
    excluded = 0.0  # the test passes this script adds (the loop has none)
    data = tensors(dataset, data_dir)
    events: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        nonlocal excluded
        optimizer = trial.suggest_categorical("optimizer", OPTIMIZERS)
        lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
        net = create_model(model, data["input_shape"], 10)
        module = LightningNet(net, optimizer, lr)
        value = fit_loop_module(
            module, data, epochs, [PyTorchLightningPruningCallback(trial, monitor="val_acc")]
        )
        t0 = time.perf_counter()
        trial.set_user_attr("test_acc", test_accuracy(module, data["test"]))
        excluded += time.perf_counter() - t0
        return value

    def record(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        events.append({
            "seconds": time.perf_counter() - start - excluded, "state": trial.state.name,
            "value": trial.value, "test_acc": trial.user_attrs.get("test_acc"),
            "params": trial.params,
        })  # fmt: skip

    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(),
    )
    study.optimize(objective, n_trials=trials, callbacks=[record])
    return {"events": events, "seconds": time.perf_counter() - start - excluded}


# --------------------------------------------------------------------------- lrtune
def run_lrtune(
    model_name: str, seed: int, trials: int, epochs: int, data_dir: Path, fields: dict
) -> dict:
    from lrtune.config import StudyConfig
    from lrtune.data import create_datamodule
    from lrtune.results import trials_with_tests
    from lrtune.study import search

    dataset, model = MODELS[model_name]
    events: list[dict[str, Any]] = []
    start = time.perf_counter()

    def record(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        events.append({
            "seconds": time.perf_counter() - start, "state": trial.state.name,
            "value": trial.value, "number": trial.number, "params": trial.params,
            "start": trial.user_attrs.get("start"),
        })  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        data = {
            "name": "ttq", "dataset": dataset, "data_dir": str(data_dir), "download": False,
            "model": model, "budget": {"epochs": epochs}, "n_trials": trials, "seed": seed,
            "storage": f"{tmp}/study.journal",
            "space": {"optimizers": OPTIMIZERS, "lr": "auto"},
        }  # fmt: skip
        fields = dict(fields)
        per_epoch = fields.pop("reports_per_epoch", None)
        if per_epoch:  # the same epochs as steps, validated per_epoch times an epoch
            dm = create_datamodule(dataset, data_dir=data_dir, download=False)
            dm.setup()
            steps = len(dm.splits.train_y) // dm.batch_size  # drop_last
            data["budget"] = {"steps": epochs * steps, "report_every": steps // per_epoch}
        for key, value in fields.items():
            data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
        config = StudyConfig.model_validate(data)
        study = search(config, callbacks=[record], progress=None, publish=False)
        seconds = time.perf_counter() - start
        tests = {t.number: t.user_attrs.get("test_acc") for t in trials_with_tests(study)}
        auto = study.user_attrs.get("lrtune.lr_auto") or {}
    for event in events:
        event["test_acc"] = tests.get(event["number"])
    setup = sum(v["result"].get("seconds") or 0.0 for v in auto.values())
    return {"events": events, "seconds": seconds, "range_test_seconds": setup}


# --------------------------------------------------------------------------- noise
def noise(model_name: str, seeds: int, epochs: int, data_dir: Path) -> dict[str, list[float]]:
    """Validation accuracy of one fixed configuration (Adam at 1e-3, torch's defaults)
    trained ``seeds`` times on each side, seeds 0..seeds-1 (initial weights and data order):
    how far apart two trainings of the same trial land, which bounds what a 0.5 or 1 point
    target can tell apart."""
    from lrtune.config import TrainConfig
    from lrtune.models import create_model
    from lrtune.training import train

    dataset, model = MODELS[model_name]
    data = tensors(dataset, data_dir)
    out: dict[str, list[float]] = {"loop": [], "lrtune": []}
    for seed in range(seeds):
        pl.seed_everything(seed, verbose=False)
        module = LightningNet(create_model(model, data["input_shape"], 10), "adam", 1e-3)
        out["loop"].append(fit_loop_module(module, data, epochs))
        config = TrainConfig.model_validate({
            "dataset": dataset, "data_dir": str(data_dir), "download": False, "model": model,
            "epochs": epochs, "seed": seed, "device": "cpu",
            "optimizer": {"name": "adam", "lr": 1e-3},
        })  # fmt: skip
        out["lrtune"].append(float(train(config, test=False).val_acc))
        print(f"{model_name} noise seed {seed}: loop {out['loop'][-1]:.4f} lrtune "
              f"{out['lrtune'][-1]:.4f}", flush=True)  # fmt: skip
    return out


def print_noise(results: dict[str, dict[str, list[float]]]) -> None:
    print("\n## Noise: one configuration (Adam, lr 1e-3), trained once per seed\n")
    print("| model | side | seeds | mean val | sd (points) | min | max |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for model, sides in results.items():
        for side, values in sides.items():
            sd = statistics.stdev(values) * 100 if len(values) > 1 else math.nan
            print(f"| {model} | {side} | {len(values)} | {statistics.fmean(values):.4f} | "
                  f"{sd:.2f} | {min(values):.4f} | {max(values):.4f} |")  # fmt: skip


# --------------------------------------------------------------------------- summary
def improvements(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The complete trials that beat every earlier one by validation: the model a user
    would take, each time it changes."""
    out, best = [], -math.inf
    for e in events:
        if e["state"] == "COMPLETE" and e["value"] is not None and e["value"] > best:
            best = e["value"]
            out.append(e)
    return out


def best_curve(events: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(seconds, best complete val so far) at each improvement."""
    return [(e["seconds"], e["value"]) for e in improvements(events)]


def time_to(events: list[dict[str, Any]], target: float) -> float | None:
    return next((s for s, v in best_curve(events) if v >= target - 1e-9), None)


def first_model(events: list[dict[str, Any]]) -> float | None:
    """Seconds to the first complete trial (the first model a user could take)."""
    return next((e["seconds"] for e in events if e["state"] == "COMPLETE"), None)


def final(events: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    """Best complete val and the test accuracy of that trial."""
    done = [e for e in events if e["state"] == "COMPLETE" and e["value"] is not None]
    if not done:
        return None, None
    best = max(done, key=lambda e: e["value"])
    return best["value"], best.get("test_acc")


def chosen_curve(events: list[dict[str, Any]]) -> list[tuple[float, float | None]]:
    """(seconds, test accuracy) of the model a user would take at each improvement: the
    best complete trial by validation so far (``None`` where that trial was not tested)."""
    return [(e["seconds"], e.get("test_acc")) for e in improvements(events)]


def test_time_to(events: list[dict[str, Any]], target: float) -> float | None:
    """Seconds until the model a user would take (best by validation) tests at ``target``
    or better. Raises ValueError when a model on the way has no test accuracy."""
    for seconds, test in chosen_curve(events):
        if test is None:
            raise ValueError("a best-so-far trial has no test accuracy")
        if test >= target - 1e-9:
            return seconds
    return None


def fully_tested(events: list[dict[str, Any]]) -> bool:
    return all(test is not None for _, test in chosen_curve(events))


def _median(values: list[float | None]) -> float | None:
    """Median with unreached (None) as infinity; None if the median is unreached."""
    ordered = sorted(math.inf if v is None else v for v in values)
    if not ordered:
        return None
    m = statistics.median(ordered)
    return None if math.isinf(m) else m


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in dict.fromkeys(r["model"] for r in runs):
        mine = [r for r in runs if r["model"] == model]
        pooled = max(v for r in mine if (v := final(r["events"])[0]) is not None)
        # the test-split targets: from the best test accuracy of any model a user would have
        # taken (best by validation so far), over the runs that tested every such model
        tested = [r for r in mine if fully_tested(r["events"])]
        pooled_test = max(
            (t for r in tested for _, t in chosen_curve(r["events"]) if t is not None),
            default=None,
        )
        per_side: dict[str, Any] = {}
        for side in dict.fromkeys(r["side"] for r in mine):
            rs = [r for r in mine if r["side"] == side]
            row: dict[str, Any] = {"seeds": len(rs)}
            for m in MARGINS:
                times = {r["seed"]: time_to(r["events"], pooled - m / 100) for r in rs}
                row[f"reached_{m:g}"] = sum(t is not None for t in times.values())
                row[f"median_s_{m:g}"] = _median(list(times.values()))
                row[f"times_{m:g}"] = times
            if pooled_test is not None and all(fully_tested(r["events"]) for r in rs):
                for m in MARGINS:
                    times = {r["seed"]: test_time_to(r["events"], pooled_test - m / 100)
                             for r in rs}  # fmt: skip
                    row[f"test_reached_{m:g}"] = sum(t is not None for t in times.values())
                    row[f"test_median_s_{m:g}"] = _median(list(times.values()))
                    row[f"test_times_{m:g}"] = times
            row["median_s_first"] = _median([first_model(r["events"]) for r in rs])
            finals = [final(r["events"]) for r in rs]
            row["best_val"] = statistics.fmean(v for v, _ in finals if v is not None)
            tests = [t for _, t in finals if t is not None]
            row["test_acc"] = statistics.fmean(tests) if tests else None
            row["worst_test_acc"] = min(tests) if tests else None
            row["study_seconds"] = statistics.fmean(r["seconds"] for r in rs)
            row["pruned"] = statistics.fmean(
                sum(e["state"] == "PRUNED" for e in r["events"]) for r in rs
            )
            per_side[side] = row
        out[model] = {"pooled_best": pooled, "pooled_test": pooled_test, "sides": per_side}
    return out


def fmt(value: Any, spec: str = ".0f") -> str:
    return "–" if value is None else format(value, spec)


def per_seed_ratios(loop: dict[str, Any], row: dict[str, Any], key: str) -> str:
    """Loop time / this side's time for each seed and margin (``key``: ``times`` or
    ``test_times``); "–" where either side missed the target."""
    parts = []
    for m in MARGINS:
        ours, theirs = row[f"{key}_{m:g}"], loop[f"{key}_{m:g}"]
        pairs = [(theirs[seed], ours[seed]) for seed in sorted(ours) if seed in theirs]
        cells = ("–" if a is None or b is None else f"{a / b:.2f}" for a, b in pairs)
        parts.append(f"{m:g} pt: " + " ".join(cells))
    return "; ".join(parts)


def print_summary(summary: dict[str, Any]) -> None:
    for model, s in summary.items():
        print(f"\n## {model}: pooled best val {s['pooled_best']:.4f}\n")
        heads = ["side", *(f"reached {m:g} pt" for m in MARGINS),
                 *(f"median s to {m:g} pt" for m in MARGINS), "s to first model",
                 "final best val", "test acc",
                 "worst test", "pruned", "s per study"]  # fmt: skip
        print("| " + " | ".join(heads) + " |")
        print("|---" + "|---:" * (len(heads) - 1) + "|")
        loop = s["sides"].get("loop")
        for side, row in s["sides"].items():
            cells = [side]
            cells += [f"{row[f'reached_{m:g}']}/{row['seeds']}" for m in MARGINS]
            cells += [fmt(row[f"median_s_{m:g}"]) for m in MARGINS]
            cells += [fmt(row.get("median_s_first"), ".1f")]
            cells += [fmt(row["best_val"], ".4f"), fmt(row["test_acc"], ".4f"),
                      fmt(row["worst_test_acc"], ".4f"), fmt(row["pruned"], ".1f"),
                      fmt(row["study_seconds"])]  # fmt: skip
            print("| " + " | ".join(cells) + " |")
        if loop is None:
            continue
        for side, row in s["sides"].items():
            if side == "loop":
                continue
            ratios = []
            for m in MARGINS:
                a, b = loop[f"median_s_{m:g}"], row[f"median_s_{m:g}"]
                ratios.append(f"{m:g} pt: " + ("–" if a is None or b is None else f"{a / b:.2f}x"))
            print(f"\n{side}: loop median / {side} median: {'; '.join(ratios)}")
            print(f"{side}: per seed (loop / {side}): {per_seed_ratios(loop, row, 'times')}")
        print_test_targets(s)


def print_test_targets(s: dict[str, Any]) -> None:
    """The targets on the test split, for the sides that tested every model on the way."""
    rows = {side: row for side, row in s["sides"].items() if "test_reached_2" in row}
    if not rows or s.get("pooled_test") is None:
        return
    print(f"\nOn the test split (the model a user would take, best by validation so far; "
          f"pooled best {s['pooled_test']:.4f}):\n")  # fmt: skip
    heads = ["side", *(f"reached {m:g} pt" for m in MARGINS),
             *(f"median s to {m:g} pt" for m in MARGINS)]  # fmt: skip
    print("| " + " | ".join(heads) + " |")
    print("|---" + "|---:" * (len(heads) - 1) + "|")
    for side, row in rows.items():
        cells = [side, *(f"{row[f'test_reached_{m:g}']}/{row['seeds']}" for m in MARGINS)]
        cells += [fmt(row[f"test_median_s_{m:g}"]) for m in MARGINS]
        print("| " + " | ".join(cells) + " |")
    loop = rows.get("loop")
    for side, row in rows.items():
        if side == "loop" or loop is None:
            continue
        ratios = per_seed_ratios(loop, row, "test_times")
        print(f"{side}: test targets, per seed (loop / {side}): {ratios}")


def environment() -> dict[str, Any]:
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True, cwd=ROOT).stdout.strip()  # fmt: skip
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "python": platform.python_version(), "torch": torch.__version__,
        "lightning": lightning.__version__, "optuna": optuna.__version__,
        "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "git": git,
        "argv": sys.argv,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=["mnist-cnn"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["lrtune"])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of this process (0: torch's default, all cores; lrtune then fits "
        "its threads to the idle cores before each trial)",
    )
    parser.add_argument(
        "--neighbours",
        type=int,
        default=0,
        help="busy processes (a pure-Python loop each) running beside the benchmark: a noisy "
        "neighbour on the cores",
    )
    parser.add_argument(
        "--noise",
        type=int,
        default=0,
        metavar="N",
        help="instead of the studies: train one configuration (Adam, lr 1e-3) with seeds "
        "0..N-1 on each side and report the spread of its validation accuracy",
    )
    parser.add_argument(
        "--no-loop",
        action="store_true",
        help="run only the variants (merge with a run that has the loop, for its side)",
    )
    parser.add_argument("--out", type=Path, default=Path("ttq.json"))
    parser.add_argument("--merge", nargs="+", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.merge:
        runs = [r for p in args.merge for r in json.loads(p.read_text())["runs"]]
        summary = summarise(runs)
        print_summary(summary)
        args.out.write_text(json.dumps({"merged": [str(p) for p in args.merge],
                                        "summary": summary, "runs": runs}, indent=1))  # fmt: skip
        return 0
    quiet()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    neighbours = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.neighbours)
    ]
    try:
        return _run(args)
    finally:
        for proc in neighbours:
            proc.kill()
            proc.wait()


def _run(args: argparse.Namespace) -> int:
    threads = torch.get_num_threads()
    env = environment()
    env["neighbours"] = args.neighbours
    print(f"# {env['date']} torch {env['torch']} lightning {env['lightning']} "
          f"optuna {env['optuna']} threads {env['threads']} git {env['git']}")  # fmt: skip
    if args.noise:
        spread = {m: noise(m, args.noise, args.epochs, args.data_dir) for m in args.models}
        print_noise(spread)
        args.out.write_text(json.dumps({"env": env, "noise": spread}, indent=1))
        return 0
    runs: list[dict[str, Any]] = []
    for model in args.models:
        # one untimed warm-up of each side (imports, allocator, data read)
        run_loop(model, 99, 1, 1, args.data_dir)
        run_lrtune(model, 99, 1, 1, args.data_dir, {"space": {"lr": {"low": 1e-3, "high": 1e-2}}})
        for seed in args.seeds:
            sides = [*([] if args.no_loop else ["loop"]), *args.variants]
            if seed % 2:
                sides.reverse()
            for side in sides:
                torch.set_num_threads(threads)  # lrtune may have fitted them to idle cores
                if side == "loop":
                    out = run_loop(model, seed, args.trials, args.epochs, args.data_dir)
                else:
                    out = run_lrtune(model, seed, args.trials, args.epochs, args.data_dir,
                                     VARIANTS[side])  # fmt: skip
                run = {"model": model, "seed": seed, "side": side, **out}
                runs.append(run)
                best, test = final(out["events"])
                print(f"{model} seed {seed} {side}: best val {fmt(best, '.4f')} test "
                      f"{fmt(test, '.4f')} in {out['seconds']:.0f} s", flush=True)  # fmt: skip
                args.out.write_text(json.dumps({"env": env, "runs": runs}, indent=1))
    summary = summarise(runs)
    print_summary(summary)
    args.out.write_text(json.dumps({"env": env, "summary": summary, "runs": runs}, indent=1))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
