"""LR range test: lrtune's ``find_lr`` vs Lightning's ``Tuner.lr_find``, judged by training.

For every (setting, optimizer, seed) the script

1. seeds everything and builds the model once; every later run starts from that saved
   initial ``state_dict`` and a datamodule with ``seed=seed`` (same batch order);
2. trains briefly (constant LR, no validation) at each LR of a log grid with 2 points per
   decade over the optimizer's registry ``lr_range`` (endpoints included) and measures
   test accuracy directly on the test split (argmax over ``dm.test_dataloader()``; a run
   whose logits are not finite counts as chance, 1/10);
3. runs lrtune's ``find_lr(module, datamodule=dm, min_lr=lo/10, max_lr=hi*10,
   num_steps=N)`` and Lightning's ``Tuner(trainer).lr_find(..., num_training=N,
   update_attr=False).suggestion()`` over the same bounds and steps, each timed with
   ``time.perf_counter`` (lrtune: the ``find_lr`` call; Lightning: building its
   ``Trainer(max_epochs=1000, ...)`` with default validation, as a user would, plus
   ``lr_find`` and ``suggestion``). The two are run in alternating order, after one
   untimed warm-up of each;
4. trains the same way at every suggestion -- each of lrtune's methods (``steepest``,
   ``valley``, ``minimum`` (already /10), ``bracket``), as an extra candidate the upper
   end of lrtune's bracket (``bracket-high``: where the smoothed loss has done 90% of its
   fall; what ``target="max"`` suggests), and Lightning's -- reusing runs at
   equal LRs, and records regret = grid-best accuracy - accuracy at the suggestion, in
   accuracy points (may be negative). A missing suggestion is a failure: counted apart,
   and with regret = grid-best - chance in the maximum.

Aggregates per finder/method: mean, median and max regret, failures, the spread of the
suggestion across seeds (max - min of log10(LR) per (setting, optimizer), in decades;
mean and max), and the finders' wall time (and CPU time) per run with the ratio
lrtune / Lightning, of the means and as the median of the per-case ratios.
Markdown tables go to stdout; everything, raw per-run rows and both finders' loss curves
included, goes to ``--out`` as JSON.

Run from the repository root (defaults: all 13 settings, each with its own optimizers --
issue 14's five calibration settings with momentum, adam, adamax and rmsprop, and issue
19's eight with two each, every optimizer of the registry covered -- x seeds 0 1 2, 100
finder steps)::

    python benchmarks/bench_lr_finder.py [--data-dir ../shared/data/mnist]
        [--seeds 0 1 2] [--settings digits-mlp ...] [--optimizers momentum ...]
        [--num-steps 100] [--threads 2] [--out results.json] [--quick]
        [--variants v19 v19-m0 v19-pre v19-m0-pre] [--cache runs.json]
    python benchmarks/bench_lr_finder.py --merge a.json b.json --out merged.json

The default run takes about an hour on a 2-core CPU; two processes with ``--threads 1``
over disjoint ``--settings``, then ``--merge``, take about half that. ``--quick`` is a
smoke run: 1 seed, 2 settings, 2 optimizers (about 2 minutes). Measured
results are recorded in ``docs/BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
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
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # Lightning's lr_find opens its own tqdm bar

import lightning
import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.tuner import Tuner
from torch import nn

from lrtune import Verification
from lrtune.config import OptimizerConfig
from lrtune.data import DigitsDataModule, MNISTDataModule
from lrtune.models import create_model
from lrtune.module import ClassifierModule
from lrtune.optimizers import get_optimizer_info
from lrtune.range_test import fit_probe
from lrtune.range_test._find import find_lr

_REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = _REPO.parent / "shared" / "data" / "mnist"

LRTUNE_METHODS = ("steepest", "valley", "minimum", "bracket")
# ``bracket-high`` is no method of lrtune.range_test.METHODS: it is the upper end of
# ``result.bracket`` (where the smoothed loss has done 90% of its fall), what
# ``target="max"`` returns; measured as an extra candidate for the default.
# The verification stage (find_lr(verify=True)) in a few variants, each a
# lrtune.Verification, calibrated leave-one-setting-out (see leave_one_setting_out). Each
# ``-fit`` variant is its base variant's probes with the winner refined between its
# neighbours (lrtune.range_test.fit_probe, Verification(fit=True)), computed from the recorded
# probes: same time, no second run. Each run variant also yields its pre-confirmation winner
# as ``<name>-pre``, from the recorded probes: no second run.
# - ``p50-k2-b0``: issue 14's default (probes of 50 steps, the best 2 of 5 go on, no
#   clear-win margin and no confirmation: _OLD).
# - ``v19``: a higher LR must win by more than 2 standard errors of the per-batch
#   difference, and a winner above the sweep's answer runs on to 2x the probe length and
#   must stay healthy; ``v19-m0``, the same without the margin, is today's default (chosen
#   leave-one-setting-out in 12 of 13 folds); ``v19-nob``: the sweep's answer may drop out
#   after the first rung (before ``baseline``); ``-m1``, ``-c3``, ``-lite``, ``-r1``: a
#   smaller margin, a longer confirmation, cheaper probes.
# Issue 25 removed the variants that swapped lrtune's private functions for the call (the
# candidate rule's offset/below, unsplit held-out batches, the curve's end rule): rounds 2-3
# of issue 14 (p50, p32, r3-*, p50-grid*, p50-k2, p50-reach2), v19-whole, v19-m0-end0 and
# sweep-end0. Their figures (issues 14 and 19 in docs/benchmarks-history.md, issue 22 in
# docs/BENCHMARKS.md) are reproduced by this script at commit 6a0af12.
_OLD = {"margin": 0.0, "confirm": None}
ALL_VARIANTS: dict[str, dict[str, Any]] = {
    "p50-k2-b0": {**_OLD, "steps": 50, "keep": 0.4},
    "v19": {"margin": 2.0},
    "v19-nob": {"margin": 2.0, "baseline": False},
    "v19-m0": {"margin": 0.0},
    "v19-m1": {"margin": 1.0},
    "v19-c3": {"margin": 2.0, "confirm": 3.0},
    # cheaper: 3 candidates, rungs of 12 and 24 steps, confirmation to 48
    "v19-lite": {"margin": 2.0, "steps": 24, "count": 3},
    # cheaper still: 3 candidates, one rung of 20 steps, confirmation to 40
    "v19-r1": {"margin": 2.0, "steps": 20, "count": 3, "rungs": 1},
}
DEFAULT_VARIANTS = ("v19", "v19-m0", "v19-pre", "v19-m0-pre")


def _finders() -> tuple[str, ...]:
    return (
        *(f"lrtune:{m}" for m in LRTUNE_METHODS),
        "lrtune:bracket-high",
        *(f"lrtune:verified-{v}" for v in VERIFY_VARIANTS),
        *(f"lrtune:verified-{v}" for v in FIT_VARIANTS),
        "lightning",
    )


_DERIVED = ("-fit", "-pre")


def choose_variants(names: Iterable[str], merging: bool = False) -> None:
    """Set the verified variants this run measures (a ``-fit`` or ``-pre`` name adds its
    base: ``-fit`` refines the base's winner between its neighbours, ``-pre`` is the base's
    winner before its confirmation)."""
    global VERIFY_VARIANTS, FIT_VARIANTS, FINDERS
    runs: dict[str, dict[str, Any]] = {}
    derived: dict[str, str] = {}
    for name in names:
        base = name
        for suffix in _DERIVED:
            base = base.removesuffix(suffix)
        if base not in ALL_VARIANTS and not merging:
            raise SystemExit(f"unknown variant {name!r}; known: {', '.join(ALL_VARIANTS)} "
                             "(each also with -fit or -pre)")  # fmt: skip
        runs[base] = ALL_VARIANTS.get(base, {})
        if name != base:
            derived[name] = base
    VERIFY_VARIANTS, FIT_VARIANTS = runs, derived
    FINDERS = _finders()


VERIFY_VARIANTS: dict[str, dict[str, Any]] = {}
FIT_VARIANTS: dict[str, str] = {}
FINDERS: tuple[str, ...] = ()
NUM_CLASSES = 10
CHANCE = 1.0 / NUM_CLASSES
GRID_POINTS_PER_DECADE = 2


@dataclass(frozen=True)
class Setting:
    """One model / batch size / input scale / budget configuration.

    ``raw``: the network sees raw pixels in [0, 1] (the datamodule's normalisation undone
    by its first layer), as many users' models do. ``model`` ``cnn-bn`` is this script's
    own LeNet-style CNN with BatchNorm after each convolution (no model of lrtune's).
    ``optimizers``: the ones this setting runs by default (``--optimizers`` overrides).
    """

    dataset: str
    model: str
    options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 64
    scale: float = 1.0
    epochs: int = 1
    raw: bool = False
    optimizers: tuple[str, ...] = ("momentum", "adam", "adamax", "rmsprop")


# Issue 14's five settings (calibration) and issue 19's widening: batch 16 to 512, raw and
# normalised inputs, MLP / CNN / CNN with BatchNorm / ResNet, digits and MNIST, and every
# optimizer of the registry (two per new setting). Epochs give about 60-300 training steps.
SETTINGS: dict[str, Setting] = {
    "digits-mlp": Setting("digits", "mlp", {"width": 128}, 64, 1.0, 3),
    "digits-cnn": Setting("digits", "cnn", {"width": 16}, 32, 1.0, 3),
    "digits-mlp-x10": Setting("digits", "mlp", {"width": 128}, 64, 10.0, 3),
    "mnist-mlp": Setting("mnist", "mlp", {"width": 256}, 128, 1.0, 1),
    "mnist-cnn": Setting("mnist", "cnn", {}, 64, 1.0, 1),
    "digits-cnn-b16": Setting("digits", "cnn", {"width": 16}, 16, epochs=2,
                              optimizers=("sgd", "adagrad")),
    "digits-mlp-raw-b32": Setting("digits", "mlp", {"width": 128}, 32, epochs=3, raw=True,
                                  optimizers=("rmsprop", "adamw")),
    "digits-cnnbn-b128": Setting("digits", "cnn-bn", {"width": 16}, 128, epochs=8,
                                 optimizers=("nesterov", "nadam")),
    "digits-resnet-b64": Setting("digits", "resnet", {"width": 8}, 64, epochs=3,
                                 optimizers=("radam", "momentum")),
    "mnist-cnn-raw-b128": Setting("mnist", "cnn", {}, 128, epochs=2, raw=True,
                                  optimizers=("adam", "adamax")),
    "mnist-mlp-raw-b512": Setting("mnist", "mlp", {"width": 256}, 512, epochs=8, raw=True,
                                  optimizers=("sgd", "adamw")),
    "mnist-cnnbn-b32": Setting("mnist", "cnn-bn", {"width": 16}, 32, epochs=1,
                               optimizers=("nesterov", "radam")),
    "mnist-resnet-b256": Setting("mnist", "resnet", {"width": 8}, 256, epochs=4,
                                 optimizers=("nadam", "adagrad")),
}  # fmt: skip
CALIBRATION_SETTINGS = ("digits-mlp", "digits-cnn", "digits-mlp-x10", "mnist-mlp", "mnist-cnn")
QUICK_SETTINGS = ("digits-mlp", "mnist-mlp")
QUICK_OPTIMIZERS = ("momentum", "adam")


class CNNBatchNorm(nn.Module):
    """conv-BN-ReLU-maxpool x2 (``width``, 2x``width`` channels), then a linear layer."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, width: int = 16):
        super().__init__()
        channels, height, width_px = input_shape
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width),
            nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(2 * width * (height // 4) * (width_px // 4), num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Raw(nn.Module):
    """Undo the datamodule's per-channel normalisation: the network sees pixels in [0, 1]."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.detach().clone().view(1, -1, 1, 1))
        self.register_buffer("std", std.detach().clone().view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean


class Scale(nn.Module):
    """Multiply the inputs by a constant (inputs ``factor`` times larger than normalised)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


# --------------------------------------------------------------------------- helpers
def quiet() -> None:
    """Silence Lightning's info lines and the known pytree deprecation warning."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    logging.getLogger("lrtune").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"lightning.*")


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (or ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_state() -> str:
    """``HEAD`` commit of the repository, with ``+dirty:<files>`` for uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=_REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "lrtune"], cwd=_REPO, capture_output=True, text=True
        ).stdout.split()
    except OSError:
        return "unknown"
    changed = [p for p in dirty if p.startswith("lrtune/")]
    return head + (f"+dirty:{','.join(changed)}" if changed else "")


def lr_grid(lo: float, hi: float, per_decade: int = GRID_POINTS_PER_DECADE) -> list[float]:
    """Log grid from ``lo`` to ``hi`` inclusive with ``per_decade`` points per decade."""
    decades = math.log10(hi / lo)
    points = round(decades * per_decade) + 1
    return [float(v) for v in np.logspace(math.log10(lo), math.log10(hi), points)]


def lr_key(lr: float) -> str:
    """Key under which runs at (numerically) equal LRs are shared."""
    return f"{lr:.10e}"


def seed_all(seed: int) -> None:
    pl.seed_everything(seed, verbose=False)


def make_datamodule(setting: Setting, seed: int, data_dir: Path) -> pl.LightningDataModule:
    if setting.dataset == "digits":
        dm: pl.LightningDataModule = DigitsDataModule(batch_size=setting.batch_size, seed=seed)
    else:
        dm = MNISTDataModule(data_dir, batch_size=setting.batch_size, seed=seed, download=False)
    dm.setup()
    return dm


def build_network(
    setting: Setting, input_shape: tuple[int, int, int], stats: tuple[Any, Any] | None = None
) -> nn.Module:
    if setting.model == "cnn-bn":
        model: nn.Module = CNNBatchNorm(input_shape, NUM_CLASSES, **setting.options)
    else:
        model = create_model(setting.model, input_shape, NUM_CLASSES, **setting.options)
    if setting.scale != 1.0:
        model = nn.Sequential(Scale(setting.scale), model)
    if setting.raw:
        assert stats is not None, "raw inputs need the datamodule's mean and std"
        model = nn.Sequential(Raw(*stats), model)
    return model


class Case:
    """One (setting, optimizer, seed): fixed initial weights and data order."""

    def __init__(
        self, name: str, setting: Setting, optimizer: str, seed: int, data_dir: Path
    ) -> None:
        self.name = name
        self.setting = setting
        self.optimizer = optimizer
        self.seed = seed
        self.data_dir = data_dir
        dm = self.datamodule()
        self.input_shape = dm.input_shape
        self.stats = (dm.splits.mean, dm.splits.std)
        seed_all(seed)
        net = build_network(setting, self.input_shape, self.stats)
        self.initial_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        self.cache: dict[str, dict[str, Any]] = {}
        self.shared: dict[str, dict[str, Any]] | None = None  # --cache: runs across calls
        self.ref_seeds = 1  # --ref-seeds: trainings averaged per LR

    def _shared_key(self, lr: float, data_seed: int) -> str:
        extra = "" if data_seed == self.seed else f"|d{data_seed}"
        return f"{self.name}|{self.optimizer}|{self.seed}|{lr_key(lr)}{extra}"

    def datamodule(self, data_seed: int | None = None) -> Any:
        return make_datamodule(
            self.setting, self.seed if data_seed is None else data_seed, self.data_dir
        )

    def module(self, lr: float) -> ClassifierModule:
        """A fresh module with the saved initial weights and a constant LR ``lr``."""
        seed_all(self.seed)
        net = build_network(self.setting, self.input_shape, self.stats)
        net.load_state_dict(self.initial_state)
        return ClassifierModule(net, NUM_CLASSES, OptimizerConfig(name=self.optimizer, lr=lr))

    def train_at(self, lr: float) -> dict[str, Any]:
        """Train briefly at ``lr`` and return test accuracy (cached per LR). With
        ``ref_seeds`` > 1 the accuracy is the mean over that many trainings from the same
        initial weights with different data orders (the case's seed, then seed + 1000,
        seed + 2000, ...): the reference noise of one training run averaged down."""
        key = lr_key(lr)
        if key not in self.cache:
            runs = [self._train_once(lr, self.seed + 1000 * k) for k in range(self.ref_seeds)]
            accs = [r["acc"] for r in runs]
            self.cache[key] = {
                **runs[0],
                "acc": statistics.fmean(accs),
                "accs": accs,
                "diverged": any(r["diverged"] for r in runs),
                "train_seconds": sum(r["train_seconds"] for r in runs),
            }
        return self.cache[key]

    def _train_once(self, lr: float, data_seed: int) -> dict[str, Any]:
        shared_key = self._shared_key(lr, data_seed)
        if self.shared is not None and shared_key in self.shared:
            return {**self.shared[shared_key], "cached": True}
        module = self.module(lr)
        dm = self.datamodule(data_seed)
        trainer = pl.Trainer(
            max_epochs=self.setting.epochs,
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
        )
        start = time.perf_counter()
        trainer.fit(module, datamodule=dm)
        seconds = time.perf_counter() - start
        acc, diverged = test_accuracy(module, dm)
        row = {"lr": lr, "acc": acc, "diverged": diverged, "train_seconds": seconds}
        if self.shared is not None:
            self.shared[shared_key] = row
        return row


def test_accuracy(module: ClassifierModule, dm: Any) -> tuple[float, bool]:
    """Accuracy on the official test split; chance (and ``True``) if logits are not finite."""
    module.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in dm.test_dataloader():
            logits = module(x)
            if not torch.isfinite(logits).all():
                return CHANCE, True
            correct += int((logits.argmax(dim=1) == y).sum())
            total += len(y)
    return correct / total, False


# --------------------------------------------------------------------------- finders
def pre_confirmation(winner: float | None, probes: list[dict[str, float]] | None) -> Any:
    """The winner before its confirmation: the first LR confirmed or rejected, else the
    suggestion itself (nothing was confirmed: the winner was the sweep's own answer)."""
    confirmed = [p["lr"] for p in probes or () if "confirm" in p]
    return confirmed[0] if confirmed else winner


def run_lrtune(
    case: Case, lo: float, hi: float, num_steps: int, verify: dict[str, Any] | None = None
) -> dict[str, Any]:
    """lrtune's find_lr; ``verify`` holds a variant's Verification fields, ``None`` (or
    ``sweep: True``) for the sweep alone."""
    module = case.module(get_optimizer_info(case.optimizer).lr_default)
    dm = case.datamodule()
    options = dict(verify or {})
    alone = verify is None or options.pop("sweep", False)  # the sweep's own answer
    start, cpu = time.perf_counter(), time.process_time()
    try:
        result = find_lr(
            module, datamodule=dm, min_lr=lo / 10, max_lr=hi * 10, num_steps=num_steps,
            verify=False if alone else Verification(**options),
        )  # fmt: skip
    except Exception as exc:  # recorded as a failure of every method, not a crash
        return {
            "seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu,
            "steps_run": 0,
            "suggestions": {},
            "error": f"{type(exc).__name__}: {exc}",
        }
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "steps_run": len(result.lrs),
        "stop_reason": result.stop_reason,
        "suggestions": dict(result.suggestions),
        "error": None,
        "default_suggestion": result.suggestion,
        "reason": result.reason,
        "bracket": list(result.bracket) if result.bracket else None,
        "lrs": result.lrs,
        "losses": [v if math.isfinite(v) else None for v in result.losses],
        "probes": result.probes,
    }


def run_lightning(case: Case, lo: float, hi: float, num_steps: int) -> dict[str, Any]:
    module = case.module(get_optimizer_info(case.optimizer).lr_default)
    dm = case.datamodule()
    error = None
    suggestion = None
    lrs: list[float] = []
    losses: list[float | None] = []
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu = time.perf_counter(), time.process_time()
        try:
            trainer = pl.Trainer(
                max_epochs=1000,
                accelerator="cpu",
                devices=1,
                default_root_dir=tmp,
                logger=False,
                enable_progress_bar=False,
                enable_model_summary=False,
            )
            finder = Tuner(trainer).lr_find(
                module,
                datamodule=dm,
                min_lr=lo / 10,
                max_lr=hi * 10,
                num_training=num_steps,
                update_attr=False,
            )
            if finder is not None:
                suggestion = finder.suggestion()
                lrs = [float(v) for v in finder.results["lr"]]
                losses = [float(v) if math.isfinite(v) else None for v in finder.results["loss"]]
        except Exception as exc:  # a crash of the baseline is a failure, not a stop
            error = f"{type(exc).__name__}: {exc}"
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "steps_run": len(lrs),
        "suggestion": float(suggestion) if suggestion is not None else None,
        "error": error,
        "lrs": lrs,
        "losses": losses,
    }


def warm_up(data_dir: Path) -> None:
    """One short untimed run of each finder, so neither pays first-call costs."""
    case = Case("warm-up", SETTINGS["digits-mlp"], "adam", 0, data_dir)
    run_lrtune(case, 1e-5, 1e-1, 20)
    run_lrtune(case, 1e-5, 1e-1, 20, {})  # the verification's first call, too
    run_lightning(case, 1e-5, 1e-1, 20)


# --------------------------------------------------------------------------- one case
def run_case(case: Case, num_steps: int, lightning_first: bool) -> dict[str, Any]:
    info = get_optimizer_info(case.optimizer)
    lo, hi = info.lr_range
    t0 = time.perf_counter()
    grid = [case.train_at(lr) for lr in lr_grid(lo, hi)]
    best = max(grid, key=lambda r: r["acc"])
    order = [run_lightning, run_lrtune] if lightning_first else [run_lrtune, run_lightning]
    outputs = {fn.__name__: fn(case, lo, hi, num_steps) for fn in order}
    lt, pl_out = outputs["run_lrtune"], outputs["run_lightning"]
    verified = {
        name: run_lrtune(case, lo, hi, num_steps, options)
        for name, options in VERIFY_VARIANTS.items()
    }
    suggestions = {f"lrtune:{m}": lt["suggestions"].get(m) for m in LRTUNE_METHODS}
    suggestions["lrtune:bracket-high"] = lt["bracket"][1] if lt.get("bracket") else None
    for name, out in verified.items():
        suggestions[f"lrtune:verified-{name}"] = out.get("default_suggestion")
    for name, base in FIT_VARIANTS.items():
        winner, probes = verified[base].get("default_suggestion"), verified[base].get("probes")
        if name.endswith("-pre"):
            suggestions[f"lrtune:verified-{name}"] = pre_confirmation(winner, probes)
            continue
        fitted = fit_probe(probes, winner) if winner is not None and probes else winner
        suggestions[f"lrtune:verified-{name}"] = fitted
    suggestions["lightning"] = pl_out["suggestion"]
    finders: dict[str, Any] = {}
    for name, lr in suggestions.items():
        if lr is None:
            finders[name] = {
                "suggestion": None,
                "acc": None,
                "regret": None,
                "failure_regret": 100 * (best["acc"] - CHANCE),
            }
            continue
        run = case.train_at(lr)
        finders[name] = {
            "suggestion": lr,
            "acc": run["acc"],
            "diverged": run["diverged"],
            "regret": 100 * (best["acc"] - run["acc"]),
        }
    return {
        "setting": case.name,
        "optimizer": case.optimizer,
        "seed": case.seed,
        "lr_range": [lo, hi],
        "grid": grid,
        "grid_best_lr": best["lr"],
        "grid_best_acc": best["acc"],
        "finders": finders,
        "lrtune": lt,
        "verified": verified,
        "lightning": pl_out,
        "lightning_first": lightning_first,
        "case_seconds": time.perf_counter() - t0,
    }


# --------------------------------------------------------------------------- summary
def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return statistics.fmean(values) if values else None


def spreads(rows: list[dict[str, Any]], finder: str) -> dict[tuple[str, str], float]:
    """max - min of log10(suggestion) across seeds, per (setting, optimizer)."""
    by_pair: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in rows:
        lr = row["finders"][finder]["suggestion"]
        if lr is not None:
            by_pair[(row["setting"], row["optimizer"])].append(math.log10(lr))
    return {pair: max(v) - min(v) for pair, v in by_pair.items() if len(v) >= 2}


def _run_of(row: dict[str, Any], finder: str) -> dict[str, Any]:
    if finder == "lightning":
        return row["lightning"]  # type: ignore[no-any-return]
    if finder.startswith("lrtune:verified-"):
        name = finder.removeprefix("lrtune:verified-")
        return row["verified"][FIT_VARIANTS.get(name, name)]  # type: ignore[no-any-return]
    return row["lrtune"]  # type: ignore[no-any-return]


def finder_seconds(rows: list[dict[str, Any]], finder: str, what: str = "seconds") -> list[float]:
    return [_run_of(row, finder)[what] for row in rows]


def lightning_beside(rows: list[dict[str, Any]], finder: str) -> list[float]:
    """Lightning's time in the same case and run as ``finder`` (a variant joined from
    another ``--merge`` file was timed beside that file's Lightning run)."""
    return [
        _run_of(row, finder).get("lightning_seconds", row["lightning"]["seconds"]) for row in rows
    ]


def finder_steps(rows: list[dict[str, Any]], finder: str) -> list[int]:
    return [_run_of(row, finder)["steps_run"] for row in rows]


def _regret(entry: dict[str, Any]) -> float:
    """A run's regret; a missing suggestion counts at its failure regret (grid-best - chance)."""
    return entry["regret"] if entry["regret"] is not None else entry["failure_regret"]


DISASTER = 5.0
"""Points of regret above which a run counts as a disaster (the user's run is lost)."""


def safety_key(regrets: list[float]) -> tuple[int, float, float]:
    """How variants are ranked: disasters first, then the worst run, then the mean."""
    return (sum(r > DISASTER for r in regrets), max(regrets), statistics.fmean(regrets))


def leave_one_setting_out(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Choose the verification variant on all settings but one (fewest runs over 5 points,
    then the lowest maximum, then the lowest mean regret: :func:`safety_key`), judge it on
    the one left out; per held-out setting: the variant chosen. Overall: mean, p90 and max
    regret, disasters and the spread over the held-out runs (every run is held out exactly
    once)."""
    variants = [f"lrtune:verified-{v}" for v in (*VERIFY_VARIANTS, *FIT_VARIANTS)]
    variants.append("lrtune:bracket")  # the sweep alone is a candidate default too
    settings = sorted({row["setting"] for row in rows})
    chosen: dict[str, str] = {}
    held: list[tuple[dict[str, Any], str]] = []
    for setting in settings:
        train = [r for r in rows if r["setting"] != setting] or rows
        chosen[setting] = min(
            variants, key=lambda v: safety_key([_regret(r["finders"][v]) for r in train])
        )
        held += [(r, chosen[setting]) for r in rows if r["setting"] == setting]
    regrets = [_regret(r["finders"][v]) for r, v in held]
    by_pair: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r, v in held:
        lr = r["finders"][v]["suggestion"]
        if lr is not None:
            by_pair[(r["setting"], r["optimizer"])].append(math.log10(lr))
    spread = [max(v) - min(v) for v in by_pair.values() if len(v) >= 2]
    return {
        "chosen": chosen,
        "mean_regret": _mean(regrets),
        "p90_regret": float(np.percentile(regrets, 90)) if regrets else None,
        "max_regret": max(regrets) if regrets else None,
        "disasters": sum(r > DISASTER for r in regrets),
        "mean_spread": _mean(spread),
        "max_spread": max(spread) if spread else None,
    }


def held_out_per_variant(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each finder judged setting by setting as if that setting were new: its regrets on
    each setting, pooled; for a fixed rule (no choice made on the data) this equals the
    in-sample figures, so the table shows what a rule does on settings it never saw only
    when read next to how it was chosen (:func:`leave_one_setting_out`). Also the worst
    setting's mean regret (leave-one-setting-out's worst fold)."""
    out: dict[str, dict[str, Any]] = {}
    settings = sorted({row["setting"] for row in rows})
    for finder in FINDERS:
        per_setting = {
            s: statistics.fmean(_regret(r["finders"][finder]) for r in rows if r["setting"] == s)
            for s in settings
        }
        worst = max(per_setting, key=per_setting.__getitem__)
        out[finder] = {"worst_setting": worst, "worst_setting_mean": per_setting[worst]}
    return out


def worst_runs(rows: list[dict[str, Any]], finder: str, count: int = 5) -> list[str]:
    """The ``count`` worst runs of ``finder``, by name, with LR and grid-best LR."""
    ranked = sorted(rows, key=lambda r: -_regret(r["finders"][finder]))[:count]
    out = []
    for r in ranked:
        e = r["finders"][finder]
        lr = "none" if e["suggestion"] is None else f"{e['suggestion']:.3g}"
        out.append(
            f"{r['setting']}/{r['optimizer']}/s{r['seed']}: regret {_regret(e):.1f} at {lr} "
            f"(grid best {r['grid_best_lr']:.3g}, {100 * r['grid_best_acc']:.1f}%)"
        )
    return out


def safety_table(rows: list[dict[str, Any]], agg: dict[str, dict[str, Any]]) -> str:
    """Disasters first: runs over 5 points, max, p90, mean regret, spread, time."""
    worst = held_out_per_variant(rows)
    lines = []
    for finder in FINDERS:
        regrets = [_regret(r["finders"][finder]) for r in rows]
        a = agg[finder]
        lines.append([
            finder, str(len(regrets)), str(sum(r > DISASTER for r in regrets)),
            fmt(max(regrets)), fmt(float(np.percentile(regrets, 90))),
            fmt(statistics.fmean(regrets)), fmt(a["mean_spread"], ".3f"),
            fmt(a["max_spread"], ".3f"),
            f"{worst[finder]['worst_setting']} ({fmt(worst[finder]['worst_setting_mean'])})",
            fmt(a["time_ratio_vs_lightning"]) + "x",
        ])  # fmt: skip
    headers = ["finder", "runs", f"runs > {DISASTER:g} pts", "max", "p90", "mean",
               "mean spread (dec)", "max spread (dec)", "worst setting (its mean)",
               "time vs Lightning"]  # fmt: skip
    return table(headers, lines)


def aggregate(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per finder/method: regret, failures, spread, time."""
    out: dict[str, dict[str, Any]] = {}
    pl_cpu = _mean(finder_seconds(rows, "lightning", "cpu_seconds"))
    for finder in FINDERS:
        pl_each = lightning_beside(rows, finder)
        pl_time = _mean(pl_each)
        entries = [row["finders"][finder] for row in rows]
        regrets = [e["regret"] for e in entries if e["regret"] is not None]
        failure_regrets = [e["failure_regret"] for e in entries if e["regret"] is None]
        spread = list(spreads(rows, finder).values())
        seconds = finder_seconds(rows, finder)
        mean_seconds = _mean(seconds)
        mean_cpu = _mean(finder_seconds(rows, finder, "cpu_seconds"))
        paired = [a / b for a, b in zip(seconds, pl_each, strict=True) if b > 0]
        out[finder] = {
            "runs": len(entries),
            "mean_regret": _mean(regrets),
            "median_regret": statistics.median(regrets) if regrets else None,
            "max_regret": max(regrets + failure_regrets) if entries else None,
            "within_2_points": sum(r <= 2.0 for r in regrets),
            "failures": len(failure_regrets),
            "mean_spread": _mean(spread),
            "max_spread": max(spread) if spread else None,
            "mean_seconds": mean_seconds,
            "mean_steps": _mean(finder_steps(rows, finder)),
            "time_ratio_vs_lightning": (
                mean_seconds / pl_time if mean_seconds is not None and pl_time else None
            ),
            "median_paired_time_ratio": statistics.median(paired) if paired else None,
            "mean_cpu_seconds": mean_cpu,
            "cpu_ratio_vs_lightning": (
                mean_cpu / pl_cpu if mean_cpu is not None and pl_cpu else None
            ),
        }
    return out


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def table(headers: list[str], lines: list[list[str]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(headers) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    text = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    text += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(text)


def aggregate_table(agg: dict[str, dict[str, Any]]) -> str:
    headers = [
        "finder / method",
        "mean regret (pts)",
        "median regret",
        "max regret",
        "regret ≤ 2",
        "failures",
        "mean spread (dec)",
        "max spread (dec)",
        "finder s / run",
        "steps / run",
        "time vs Lightning",
        "median paired ratio",
        "CPU s / run",
        "CPU vs Lightning",
    ]
    lines = []
    for finder, a in agg.items():
        lines.append(
            [
                finder,
                fmt(a["mean_regret"]),
                fmt(a["median_regret"]),
                fmt(a["max_regret"]),
                f"{a['within_2_points']}/{a['runs']}",
                str(a["failures"]),
                fmt(a["mean_spread"], ".3f"),
                fmt(a["max_spread"], ".3f"),
                fmt(a["mean_seconds"]),
                fmt(a["mean_steps"], ".1f"),
                fmt(a["time_ratio_vs_lightning"], ".2f") + "x",
                fmt(a["median_paired_time_ratio"], ".2f") + "x",
                fmt(a["mean_cpu_seconds"]),
                fmt(a["cpu_ratio_vs_lightning"], ".2f") + "x",
            ]
        )
    return table(headers, lines)


def per_setting_table(rows: list[dict[str, Any]]) -> str:
    """Mean regret (max in brackets) per setting and finder, plus failures."""
    headers = ["setting", *FINDERS, "lrtune s", "Lightning s"]
    lines = []
    for setting in dict.fromkeys(r["setting"] for r in rows):
        sub = [r for r in rows if r["setting"] == setting]
        line = [setting]
        for finder in FINDERS:
            a = aggregate(sub)[finder]
            cell = f"{fmt(a['mean_regret'])} ({fmt(a['max_regret'])})"
            if a["failures"]:
                cell += f", {a['failures']} fail"
            line.append(cell)
        line += [
            fmt(_mean(finder_seconds(sub, "lrtune"))),
            fmt(_mean(finder_seconds(sub, "lightning"))),
        ]
        lines.append(line)
    return table(headers, lines)


def per_pair_table(rows: list[dict[str, Any]]) -> str:
    """Per (setting, optimizer): grid-best, and each finder's median LR / mean regret."""
    headers = ["setting", "optimizer", "grid-best acc", "grid-best LR", *FINDERS]
    lines = []
    pairs = dict.fromkeys((r["setting"], r["optimizer"]) for r in rows)
    for setting, opt in pairs:
        sub = [r for r in rows if r["setting"] == setting and r["optimizer"] == opt]
        best_lrs = sorted({r["grid_best_lr"] for r in sub})
        line = [
            setting,
            opt,
            fmt(100 * _mean(r["grid_best_acc"] for r in sub), ".1f"),  # type: ignore[operator]
            ", ".join(f"{v:.2g}" for v in best_lrs),
        ]
        for finder in FINDERS:
            lrs = [r["finders"][finder]["suggestion"] for r in sub]
            ok = [v for v in lrs if v is not None]
            regrets = [r["finders"][finder]["regret"] for r in sub]
            ok_regrets = [v for v in regrets if v is not None]
            cell = (
                f"{statistics.median(ok):.2g} / {fmt(_mean(ok_regrets), '.1f')}" if ok else "none"
            )
            if len(ok) < len(lrs):
                cell += f" ({len(lrs) - len(ok)} fail)"
            line.append(cell)
        lines.append(line)
    return table(headers, lines, "llrl" + "r" * len(FINDERS))


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=None)
    parser.add_argument("--optimizers", nargs="+", default=None)
    parser.add_argument("--num-steps", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 settings, 2 optimizers")
    parser.add_argument("--out", type=Path, default=Path("results.json"))
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="JSON file of training runs (grid and suggestions) reused across calls: the "
        "training code does not change between finder variants, so a rerun only trains at "
        "new LRs (reused runs are marked 'cached' in --out)",
    )
    parser.add_argument(
        "--ref-seeds",
        type=int,
        default=1,
        help="trainings per LR (grid and suggestions), each with another data order from the "
        "same initial weights; regret uses their mean accuracy (default 1: one training)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(DEFAULT_VARIANTS),
        help=f"verified variants to run: {', '.join(ALL_VARIANTS)}, each also with -fit or "
        "-pre (derived from its base's probes)",
    )
    parser.add_argument(
        "--merge", nargs="+", default=None, metavar="FILE[:SUFFIX]",
        help="summarise the rows of these --out files together (runs nothing); FILE:SUFFIX "
        "renames that file's verified variants (e.g. r1.json:-old)",
    )  # fmt: skip
    return parser.parse_args(argv)


def report(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Print the tables for ``rows``; return the summary for ``--out``."""
    agg = aggregate(rows)
    print("## Aggregate\n")
    print(aggregate_table(agg))
    print("\n## Per setting: mean regret (max), points\n")
    print(per_setting_table(rows))
    print("\n## Per setting and optimizer: median suggestion / mean regret\n")
    print(per_pair_table(rows))
    print("\n## Safety: disasters first (regret in points; a missing suggestion counts at "
          "grid-best - chance)\n")  # fmt: skip
    print(safety_table(rows, agg))
    loo = leave_one_setting_out(rows)
    print("\n## Verification, chosen leave-one-setting-out (held-out regret)\n")
    print(table(
        ["held-out setting", "variant chosen on the others"],
        [[s, v.removeprefix("lrtune:verified-")] for s, v in loo["chosen"].items()],
    ))  # fmt: skip
    print(
        f"\nheld-out: {loo['disasters']} runs over {DISASTER:g} points; mean regret "
        f"{fmt(loo['mean_regret'])}, p90 {fmt(loo['p90_regret'])}, max "
        f"{fmt(loo['max_regret'])} points; spread mean {fmt(loo['mean_spread'])}, max "
        f"{fmt(loo['max_spread'])} decades"
    )
    for finder in (f"lrtune:verified-{next(iter(VERIFY_VARIANTS))}", "lrtune:bracket",
                   "lightning"):  # fmt: skip
        print(f"\nworst runs of {finder}:")
        for line in worst_runs(rows, finder):
            print(f"- {line}")
    return {
        "aggregate": agg,
        "leave_one_setting_out": loo,
        "spreads": {f: {f"{s}/{o}": v for (s, o), v in spreads(rows, f).items()} for f in FINDERS},
    }


def _join(rows: list[dict[str, Any]], more: list[dict[str, Any]]) -> None:
    """Add the verified variants of ``more`` to the same cases of ``rows`` (same setting,
    optimizer and seed), each with the Lightning time measured beside it."""
    by_case = {(r["setting"], r["optimizer"], r["seed"]): r for r in rows}
    for extra in more:
        row = by_case.get((extra["setting"], extra["optimizer"], extra["seed"]))
        if row is None:
            rows.append(extra)
            by_case[(extra["setting"], extra["optimizer"], extra["seed"])] = extra
            continue
        for name, run in extra["verified"].items():
            row["verified"].setdefault(
                name, {**run, "lightning_seconds": extra["lightning"]["seconds"]}
            )
        for name, entry in extra["finders"].items():
            row["finders"].setdefault(name, entry)


def _renamed(payload: dict[str, Any], suffix: str) -> dict[str, Any]:
    """``payload`` with ``suffix`` added to its verified variants' names (a file run at an
    older commit, whose ``v19`` is not today's)."""
    if not suffix:
        return payload

    def name(variant: str) -> str:  # v19-pre -> v19<suffix>-pre
        for ending in _DERIVED:
            if variant.endswith(ending):
                return variant.removesuffix(ending) + suffix + ending
        return variant + suffix

    prefix = "lrtune:verified-"
    payload["config"]["variants"] = [name(v) for v in payload["config"]["variants"]]
    for row in payload["rows"]:
        row["verified"] = {name(k): v for k, v in row["verified"].items()}
        row["finders"] = {
            (prefix + name(k.removeprefix(prefix)) if k.startswith(prefix) else k): v
            for k, v in row["finders"].items()
        }
    return payload


def merge(paths: list[str], out: Path) -> int:
    """Summarise the rows of several ``--out`` files together: files over other cases add
    rows; files over the same cases with other variants add those variants to them.
    ``FILE:SUFFIX`` adds SUFFIX to that file's verified variants' names."""
    payloads = []
    for spec in paths:
        path, _, suffix = spec.partition(":")
        payloads.append(_renamed(json.loads(Path(path).read_text()), suffix))
    variants = list(dict.fromkeys(v for p in payloads for v in p["config"]["variants"]))
    choose_variants(variants, merging=True)
    rows: list[dict[str, Any]] = []
    for payload in payloads:
        _join(rows, payload["rows"])
    missing = [f for f in FINDERS if any(f not in r["finders"] for r in rows)]
    if missing:
        raise SystemExit(f"--merge: not every case ran {', '.join(missing)}")
    print(f"# merged {len(rows)} cases from {', '.join(map(str, paths))}\n")
    summary = report(rows)
    config = {**payloads[0]["config"], "variants": variants}
    out.write_text(json.dumps({"merged": [str(p) for p in paths],
                               "envs": [p["env"] for p in payloads],
                               "config": config, **summary, "rows": rows},
                              indent=1))  # fmt: skip
    print(f"\nwrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out)
    choose_variants(args.variants)
    quiet()
    torch.set_num_threads(args.threads)
    settings = args.settings or list(QUICK_SETTINGS if args.quick else SETTINGS)
    optimizers = args.optimizers or (list(QUICK_OPTIMIZERS) if args.quick else None)
    seeds = args.seeds[:1] if args.quick else args.seeds
    for name in optimizers or ():
        get_optimizer_info(name)  # fail early on a typo
    env = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "argv": sys.argv,
        "git": git_state(),
    }
    config = {
        "settings": {s: SETTINGS[s].__dict__ for s in settings},
        "optimizers": optimizers or {s: SETTINGS[s].optimizers for s in settings},
        "seeds": seeds,
        "num_steps": args.num_steps,
        "grid_points_per_decade": GRID_POINTS_PER_DECADE,
        "variants": args.variants,
        "ref_seeds": args.ref_seeds,
        "data_dir": str(args.data_dir),
    }
    print(f"# {env['date']}  {env['cpu']}  torch {env['torch']}  lightning {env['lightning']}")
    total_start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        warm_up(args.data_dir)
    shared: dict[str, dict[str, Any]] | None = None
    if args.cache is not None:
        shared = json.loads(args.cache.read_text()) if args.cache.exists() else {}
    rows: list[dict[str, Any]] = []
    index = 0
    for setting in settings:
        for opt in optimizers or SETTINGS[setting].optimizers:
            for seed in seeds:
                case = Case(setting, SETTINGS[setting], opt, seed, args.data_dir)
                case.shared = shared
                case.ref_seeds = args.ref_seeds
                row = run_case(case, args.num_steps, lightning_first=index % 2 == 1)
                if args.cache is not None:
                    args.cache.write_text(json.dumps(shared))
                index += 1
                rows.append(row)
                regrets = " ".join(
                    f"{f.split(':')[-1]}={fmt(row['finders'][f]['regret'], '.1f')}" for f in FINDERS
                )
                print(
                    f"{setting:15s} {opt:9s} seed {seed}: best {100 * row['grid_best_acc']:.1f}"
                    f" @ {row['grid_best_lr']:.2g}; regret {regrets}; finder s "
                    f"lrtune {row['lrtune']['seconds']:.2f} verified "
                    f"{row['verified'][next(iter(VERIFY_VARIANTS))]['seconds']:.2f} lightning "
                    f"{row['lightning']['seconds']:.2f}; case {row['case_seconds']:.0f}s",
                    flush=True,
                )
    total = time.perf_counter() - total_start
    print(f"\nTotal {total:.0f} s for {len(rows)} cases.\n")
    summary = report(rows)
    payload = {
        "env": env,
        "config": config,
        "total_seconds": total,
        **summary,
        "rows": rows,
    }
    args.out.write_text(json.dumps(payload, indent=1))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
