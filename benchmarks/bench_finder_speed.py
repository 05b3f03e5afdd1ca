"""Wall time of the LR range test: ``lrtune.find_lr`` vs Lightning's ``Tuner.lr_find``.

Timing only (``bench_lr_finder.py`` measures how good the suggestions are). For each
setting and optimizer, lrtune's sweep alone (``verify=False``), lrtune's default (the
sweep and its verification probes) and Lightning's finder sweep the same module from the
same initial weights over the same LR range at ``--num-steps`` steps, alternating,
``--repeats`` times after one untimed warm-up each; Lightning's Trainer is the one a user
would pass (logger off, no progress bar, a temporary ``default_root_dir``). Printed:
median seconds per run, steps run, and the ratio lrtune / Lightning per case, per setting
and overall (median and mean of the per-case ratios). ``--variants`` also times
verification variants of ``bench_lr_finder.py`` (same names), interleaved with the rest.

Run from the repository root::

    python benchmarks/bench_finder_speed.py --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import copy
import functools
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_lr_finder import ALL_VARIANTS as VARIANTS  # noqa: E402  (the same variants)

SETTINGS = {  # name: (dataset, model, width, batch)
    "digits-mlp": ("digits", "mlp", 128, 64),
    "digits-cnn": ("digits", "cnn", 16, 32),
    "mnist-mlp": ("mnist", "mlp", 256, 128),
    "mnist-cnn": ("mnist", "cnn", 32, 64),
}


def _time_case(dm: Any, net: Any, initial: dict, name: str, args: argparse.Namespace) -> dict:
    """Median seconds (and steps) of each finder on one (setting, optimizer)."""
    import lightning.pytorch as pl
    from lightning.pytorch.tuner import Tuner

    from lrtune import Verification, find_lr
    from lrtune.config import OptimizerConfig
    from lrtune.module import ClassifierModule
    from lrtune.optimizers import get_optimizer_info

    low, high = get_optimizer_info(name).lr_range
    bounds = {"min_lr": low / 10, "max_lr": high * 10}

    def module() -> ClassifierModule:
        net.load_state_dict(initial)
        return ClassifierModule(net, dm.num_classes, OptimizerConfig(name=name))

    def ours(verify: bool, **options: Any) -> tuple[float, int]:
        m = module()
        start = time.perf_counter()
        plan = Verification(**options) if verify and options else verify
        result = find_lr(m, datamodule=dm, num_steps=args.num_steps, verify=plan, **bounds)
        return time.perf_counter() - start, len(result.lrs)

    def lightning() -> tuple[float, int]:
        m = module()
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            trainer = pl.Trainer(max_epochs=1000, default_root_dir=tmp, logger=False,
                                 enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
            found = Tuner(trainer).lr_find(
                m, datamodule=dm, num_training=args.num_steps, update_attr=False, **bounds
            )
            found.suggestion()
            return time.perf_counter() - start, len(found.results["lr"])

    runs: dict[str, Any] = {
        "sweep": lambda: ours(False),
        "lightning": lightning,
        "default": lambda: ours(True),
        **{v: functools.partial(ours, True, **VARIANTS[v]) for v in args.variants},
    }
    for run in runs.values():  # warm-up
        run()
    times: dict[str, list[tuple[float, int]]] = {key: [] for key in runs}
    for _ in range(args.repeats):
        for key, run in runs.items():
            times[key].append(run())
    return {key: (statistics.median(t for t, _ in v), v[0][1]) for key, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared/data/mnist")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--optimizers", nargs="+", default=["adam", "momentum"])
    parser.add_argument("--num-steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--variants", nargs="*", default=[], choices=list(VARIANTS),
        help="verification variants of bench_lr_finder.py to time beside the default",
    )  # fmt: skip
    args = parser.parse_args()

    import lightning.pytorch as pl
    import torch

    from lrtune._logging import quiet_lightning
    from lrtune.data import create_datamodule
    from lrtune.models import create_model

    quiet_lightning()
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.ERROR)
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), lightning "
          f"{pl.__version__}; {args.num_steps} steps, median of {args.repeats}")  # fmt: skip
    ratios: dict[str, dict[str, list[float]]] = {}
    for setting in args.settings:
        dataset, model, width, batch = SETTINGS[setting]
        options: dict[str, Any] = {"data_dir": args.data_dir, "download": False}
        dm = create_datamodule(dataset, batch_size=batch, seed=0,
                               **(options if dataset == "mnist" else {}))  # fmt: skip
        dm.prepare_data()
        torch.manual_seed(0)
        net = create_model(model, dm.input_shape, dm.num_classes, width=width)
        initial = copy.deepcopy(net.state_dict())
        for name in args.optimizers:
            case = _time_case(dm, net, initial, name, args)
            theirs, their_steps = case.pop("lightning")
            mine, steps = case["sweep"]
            line = (f"{setting:<11} {name:<9} lightning {theirs:.3f} s ({their_steps} steps)"
                    f"  sweep {mine:.3f} s ({steps} steps)")  # fmt: skip
            for key, (seconds, _) in case.items():
                ratios.setdefault(key, {}).setdefault(setting, []).append(seconds / theirs)
                if key != "sweep":
                    line += f"  {key} {seconds:.3f} s"
            line += "  ratios " + ", ".join(
                f"{key} {seconds / theirs:.2f}x" for key, (seconds, _) in case.items()
            )
            print(line, flush=True)
    for label, table in ratios.items():
        every = [r for values in table.values() for r in values]
        for setting, values in table.items():
            print(f"{label}, {setting}: median ratio {statistics.median(values):.2f}x")
        print(f"{label}, overall: median ratio {statistics.median(every):.2f}x over "
              f"{len(every)} cases; mean {statistics.fmean(every):.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
