"""Training-step time of lrtune's models by precision and memory layout, in one run.

For each model (``cnn`` width 16 on MNIST-shaped 1x28x28 inputs, batch 64; ``resnet``
width 16 on CIFAR-shaped 3x32x32 inputs, batch 128) four variants are timed, interleaved
(round-robin, so a slow patch of the machine hits all of them): float32 or bfloat16
autocast, times contiguous (NCHW) or channels-last weights and inputs. One step is forward,
cross-entropy, backward, SGD step. Printed: median milliseconds per step over the rounds
(the first round is a warm-up) and each variant's speed-up over float32 NCHW.

``torch.compile`` (``--compile``) adds a compiled float32 channels-last variant; its
compile time is printed separately.

Run from the repository root::

    python benchmarks/bench_layout.py [--device cuda] [--rounds 6] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lrtune.models import create_model


def _variants(name: str, shape: tuple[int, int, int], device: str, compile_: bool) -> dict:
    out = {}
    for bf16 in (False, True):
        for channels_last in (False, True):
            torch.manual_seed(0)
            model = create_model(name, shape, 10, width=16).to(device)
            if channels_last:
                model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            label = f"{'bf16' if bf16 else 'fp32'} {'channels_last' if channels_last else 'nchw'}"
            out[label] = (model, bf16, channels_last)
    if compile_:
        torch.manual_seed(0)
        model = create_model(name, shape, 10, width=16).to(device)
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        out["fp32 channels_last compiled"] = (torch.compile(model), False, True)
    return out


def bench(name: str, shape: tuple[int, int, int], batch: int, args: argparse.Namespace) -> None:
    device = args.device
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    variants = _variants(name, shape, device, args.compile)
    optimizers = {k: torch.optim.SGD(m.parameters(), lr=0.01) for k, (m, _, _) in variants.items()}
    times: dict[str, list[float]] = {k: [] for k in variants}

    def steps(label: str, n: int) -> float:
        model, bf16, channels_last = variants[label]
        inputs = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(n):
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                loss = torch.nn.functional.cross_entropy(model(inputs), y)
            loss.backward()
            optimizers[label].step()
            optimizers[label].zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / n

    for label in variants:  # warm-up (and compilation)
        start = time.perf_counter()
        steps(label, 2)
        if "compiled" in label:
            print(f"{name}: compiling took {time.perf_counter() - start:.1f} s", flush=True)
    for _ in range(args.rounds):
        for label in variants:
            times[label].append(steps(label, args.steps))
    base = statistics.median(times["fp32 nchw"])
    for label, values in times.items():
        ms = statistics.median(values) * 1000
        print(f"{name:>6} {label:<28} {ms:8.2f} ms/step  {base * 1000 / ms:5.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed round")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.device}")
    bench("cnn", (1, 28, 28), 64, args)
    bench("resnet", (3, 32, 32), 128, args)


if __name__ == "__main__":
    main()
