"""Device-resident batching (``DeviceBatches``) vs ``DataLoader(TensorDataset)``.

Measures, in one process and one run, images per second of

* MNIST training split (``MNISTDataModule(...).setup()``, ``.splits.train_x`` ...):

  (a) ``dm.train_dataloader()`` -- lrtune's ``DeviceBatches``: uint8 split on the device,
      one ``randperm`` per epoch, batches indexed, converted and normalised there;
  (b) the baseline named in the issue, as an optuna-examples style objective writes it:
      ``DataLoader(TensorDataset(x_float_normalised_on_cpu, y), batch_size, shuffle=True)``
      with ``num_workers=0``, each batch moved with ``.to(device)``;

  for the data path alone (iterate full epochs, touch each batch with a sum) and, as (c)
  and (d), for the same two pipelines feeding a real training step of lrtune's ``cnn``
  model with Adam (forward + backward + step). The training comparison has a control
  row, ``dataloader_cl``: (b)'s batches copied into the strides of (a)'s batches. For
  one-channel images ``DeviceBatches``' ``addcmul`` yields strides ``(H*W, 1, W, 1)``,
  which ``conv2d`` treats as channels-last, so the control separates the effect of the
  memory layout from that of the pipeline;

* an augmented, CIFAR-shaped variant on a synthetic uint8 ``(5000, 3, 32, 32)`` tensor:
  ``DeviceBatches(augment=True)`` (batched reflect-pad random crop + flip) vs a
  ``DataLoader`` over a ``Dataset`` whose ``__getitem__`` converts, normalises, pads,
  crops and flips one image at a time (the torchvision-transform way, without
  torchvision) -- data path only.

Each measurement is ``--epochs`` full epochs, after one warm-up epoch; the pipelines of a
comparison are timed in turn within each repeat and the median over ``--repeats`` is
reported (min and max too), with the ratios ``device_batches / dataloader`` of images/s.
Timings use ``time.perf_counter`` (with ``torch.cuda.synchronize`` on CUDA); ``torch``
threads are left at their default.

Run from the repository root::

    python benchmarks/bench_batching.py [--data-dir ../shared/data/mnist] [--batch-size 64]
        [--epochs 3] [--repeats 3] [--device cpu|cuda] [--json]

Measured results are recorded in ``docs/BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

_REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = _REPO.parent / "shared" / "data" / "mnist"

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


# --------------------------------------------------------------------------- helpers
def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so wall-clock timings are complete."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (or ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class ToDevice:
    """Iterate ``loader`` and move each batch with ``.to(device)`` (the baseline's step).

    With ``strides`` (those of a ``DeviceBatches`` batch), each image batch is then copied
    into a tensor with those strides: the control run, DataLoader batches laid out in
    memory like ``DeviceBatches``' ones.
    """

    def __init__(
        self,
        loader: DataLoader,
        device: torch.device,
        strides: tuple[int, ...] | None = None,
    ) -> None:
        self.loader = loader
        self.device = device
        self.strides = strides

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.loader:
            x = x.to(self.device)
            if self.strides is not None:  # batch dim outermost: fits any batch size
                x = torch.empty_strided(
                    x.shape, self.strides, dtype=x.dtype, device=x.device
                ).copy_(x)
            yield x, y.to(self.device)


class PerSampleAugment(Dataset):
    """One image at a time: to float, normalise, reflect-pad, random crop, random flip.

    The torchvision ``ToTensor, Normalize, RandomCrop(padding_mode="reflect"),
    RandomHorizontalFlip`` pipeline written with plain torch ops (same random draws as
    torchvision: ``torch.randint`` for the crop offset, ``torch.rand(1) < 0.5`` for the
    flip), producing what ``DeviceBatches(augment=True)`` produces for a batch.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: torch.Tensor,
        std: torch.Tensor,
        pad: int = 4,
    ) -> None:
        self.images = images
        self.labels = labels
        self.mean = mean.view(-1, 1, 1)
        self.std = std.view(-1, 1, 1)
        self.pad = pad

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[index].float().div_(255.0)
        x = (x - self.mean) / self.std
        p = self.pad
        _, height, width = x.shape
        x = F.pad(x[None], (p, p, p, p), mode="reflect")[0]
        top = int(torch.randint(0, 2 * p + 1, (1,)).item())
        left = int(torch.randint(0, 2 * p + 1, (1,)).item())
        x = x[:, top : top + height, left : left + width]
        if torch.rand(1).item() < 0.5:
            x = x.flip(-1)
        return x, self.labels[index]


# --------------------------------------------------------------------------- workloads
def data_path(batches: Batches, epochs: int, *, device: torch.device) -> int:
    """Iterate ``epochs`` full epochs, touching each batch; returns images seen."""
    images = 0
    checksum = torch.zeros((), device=device)
    for _ in range(epochs):
        for x, y in batches:
            checksum += x.sum()
            images += y.shape[0]
    float(checksum)  # one read-back at the end (synchronises on CUDA)
    return images


def train_path(
    batches: Batches, model: nn.Module, optimizer: torch.optim.Optimizer, epochs: int
) -> int:
    """Train ``epochs`` full epochs (forward, cross-entropy, backward, step)."""
    model.train()
    images = 0
    loss_sum = None
    for _ in range(epochs):
        for x, y in batches:
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            loss_sum = loss.detach() if loss_sum is None else loss_sum + loss.detach()
            images += y.shape[0]
    if loss_sum is not None and not torch.isfinite(loss_sum):
        raise RuntimeError("training diverged")
    return images


@dataclass
class Measurement:
    """Timings of one pipeline on one workload."""

    benchmark: str
    pipeline: str
    images_per_run: int = 0
    seconds: list[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def images_per_s(self) -> float:
        return self.images_per_run / self.median_s

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(median_s=self.median_s, images_per_s=self.images_per_s)
        return out


def compare(
    benchmark: str,
    runs: dict[str, Callable[[int], int]],
    *,
    epochs: int,
    repeats: int,
    device: torch.device,
) -> list[Measurement]:
    """Warm each pipeline up with one epoch, then time them alternately ``repeats`` times."""
    for run in runs.values():
        run(1)
        synchronize(device)
    results = {name: Measurement(benchmark, name) for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            synchronize(device)
            start = time.perf_counter()
            images = run(epochs)
            synchronize(device)
            results[name].seconds.append(time.perf_counter() - start)
            results[name].images_per_run = images
    return list(results.values())


# --------------------------------------------------------------------------- benchmarks
def mnist_benchmarks(args: argparse.Namespace, device: torch.device) -> list[Measurement]:
    from lrtune.data import MNISTDataModule
    from lrtune.models import create_model

    seed_everything(args.seed)
    dm = MNISTDataModule(
        args.data_dir, batch_size=args.batch_size, device=device, seed=args.seed, download=False
    )
    dm.setup()
    splits = dm.splits
    # The baseline's input: the same split, normalised once, as float on the CPU.
    mean = splits.mean.cpu().view(1, -1, 1, 1)
    std = splits.std.cpu().view(1, -1, 1, 1)
    x_float = (splits.train_x.cpu().float() / 255.0 - mean) / std
    y_cpu = splits.train_y.cpu()

    def device_batches() -> Batches:
        return dm.train_dataloader()

    def dataloader(strides: tuple[int, ...] | None = None) -> Batches:
        loader = DataLoader(
            TensorDataset(x_float, y_cpu),
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=0,
            generator=torch.Generator().manual_seed(args.seed),
        )
        return ToDevice(loader, device, strides)

    # Both pipelines yield normalised float32 batches of the same shape on the device.
    (xa, ya), (xb, yb) = next(iter(device_batches())), next(iter(dataloader()))
    assert xa.shape == xb.shape and xa.dtype == xb.dtype == torch.float32, (xa.shape, xb.shape)
    assert xa.device == xb.device and ya.dtype == yb.dtype == torch.int64

    sources = {"device_batches": device_batches(), "dataloader": dataloader()}
    measurements = compare(
        "mnist data path",
        {name: partial(data_path, b, device=device) for name, b in sources.items()},
        epochs=args.epochs,
        repeats=args.repeats,
        device=device,
    )

    def trainer(batches: Batches) -> Callable[[int], int]:
        torch.manual_seed(args.seed)  # identical initial weights for every pipeline
        model = create_model("cnn", dm.input_shape, dm.num_classes).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        return lambda e: train_path(batches, model, optimizer, e)

    seed_everything(args.seed)
    # Control: DeviceBatches' (N, 1, H, W) batches come out of ``addcmul`` with strides
    # (H*W, 1, W, 1), which conv2d reads as channels-last and runs faster on CPU; the
    # DataLoader's stacked batches have plain (H*W, H*W, W, 1). Copying the DataLoader's
    # batches into DeviceBatches' strides separates the layout from the pipeline.
    sources = {
        "device_batches": device_batches(),
        "dataloader": dataloader(),
        "dataloader_cl": dataloader(strides=xa.stride()),
    }
    measurements += compare(
        "mnist train cnn+adam",
        {name: trainer(b) for name, b in sources.items()},
        epochs=args.epochs,
        repeats=args.repeats,
        device=device,
    )
    return measurements


def cifar_aug_benchmarks(args: argparse.Namespace, device: torch.device) -> list[Measurement]:
    from lrtune.data import DeviceBatches

    seed_everything(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    images = torch.randint(
        0, 256, (args.cifar_images, 3, 32, 32), dtype=torch.uint8, generator=generator
    )
    labels = torch.randint(0, 10, (args.cifar_images,), generator=generator)
    pixels = images.float().div(255.0).transpose(0, 1).reshape(3, -1)
    mean, std = pixels.mean(dim=1), pixels.std(dim=1)

    device_batches = DeviceBatches(
        images.to(device),
        labels.to(device),
        mean=mean.to(device),
        std=std.to(device),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        augment=True,
        seed=args.seed,
    )
    loader = DataLoader(
        PerSampleAugment(images, labels, mean, std),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=0,
        generator=torch.Generator().manual_seed(args.seed),
    )
    per_sample = ToDevice(loader, device)

    (xa, _), (xb, _) = next(iter(device_batches)), next(iter(per_sample))
    assert xa.shape == xb.shape and xa.dtype == xb.dtype == torch.float32, (xa.shape, xb.shape)

    sources: dict[str, Batches] = {"device_batches": device_batches, "dataloader": per_sample}
    return compare(
        "cifar-shaped augmented data path",
        {name: partial(data_path, b, device=device) for name, b in sources.items()},
        epochs=args.epochs,
        repeats=args.repeats,
        device=device,
    )


# --------------------------------------------------------------------------- report
def ratios(measurements: list[Measurement]) -> dict[str, dict[str, float]]:
    """Per benchmark, ``device_batches / <other pipeline>`` of median images/s."""
    out: dict[str, dict[str, float]] = {}
    for benchmark in dict.fromkeys(m.benchmark for m in measurements):
        runs = {m.pipeline: m for m in measurements if m.benchmark == benchmark}
        fast = runs.pop("device_batches")
        out[benchmark] = {
            f"device_batches/{name}": fast.images_per_s / other.images_per_s
            for name, other in runs.items()
        }
    return out


def print_table(measurements: list[Measurement], ratio: dict[str, dict[str, float]]) -> None:
    header = (
        f"{'benchmark':<33} {'pipeline':<15} {'images/run':>10} "
        f"{'median s':>8} {'min s':>7} {'max s':>7} {'images/s':>9}"
    )
    print(header)
    print("-" * len(header))
    for m in measurements:
        print(
            f"{m.benchmark:<33} {m.pipeline:<15} {m.images_per_run:>10} {m.median_s:>8.3f} "
            f"{min(m.seconds):>7.3f} {max(m.seconds):>7.3f} {m.images_per_s:>9,.0f}"
        )
    print()
    for benchmark, values in ratio.items():
        for name, value in values.items():
            print(f"{benchmark}: {name.replace('/', ' / ')} = {value:.2f}x")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="folder with the MNIST IDX files (default: %(default)s)",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="full epochs per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; median reported")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--cifar-images",
        type=int,
        default=5000,
        help="size of the synthetic CIFAR-shaped set (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)
    if min(args.batch_size, args.epochs, args.repeats, args.cifar_images) < 1:
        parser.error("--batch-size, --epochs, --repeats and --cifar-images must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    import lightning

    env = {
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    print(
        f"torch {env['torch']}, lightning {env['lightning']}, device {device}"
        + (f" ({env['gpu']})" if env["gpu"] else "")
        + f", CPU {env['cpu']} x{env['cpu_count']}, torch threads {env['torch_threads']}"
    )
    print(
        f"batch size {args.batch_size}, {args.epochs} epochs per run, "
        f"median of {args.repeats} runs after 1 warm-up epoch",
        flush=True,
    )
    start = time.perf_counter()
    measurements = mnist_benchmarks(args, device)
    measurements += cifar_aug_benchmarks(args, device)
    total_s = time.perf_counter() - start
    ratio = ratios(measurements)
    print()
    print_table(measurements, ratio)
    print(f"\ntotal {total_s:.1f}s", flush=True)
    if args.json:
        env["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
        record = {
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "env": env,
            "results": [m.to_dict() for m in measurements],
            "ratios": ratio,
            "total_s": total_s,
        }
        print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
