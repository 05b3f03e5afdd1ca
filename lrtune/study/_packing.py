"""Packing worker processes onto GPUs: ``--workers auto`` and ``--trials-per-gpu K``.

One small trial leaves a GPU mostly idle, so ``workers: auto`` runs ``k`` workers on every
visible GPU, each pinned to its device (``CUDA_VISIBLE_DEVICES``), with the CPU's threads
split between all of them. ``k`` is ``--trials-per-gpu`` when given; otherwise it comes
from a short measurement of one trial on the first GPU (:func:`measure_trial`):

- **memory**: as many workers as fit in 90 % of the GPU's free memory, each taking the
  trial's peak memory plus a CUDA context (:data:`CONTEXT_BYTES`);
- **what pays**: no more workers than keep the GPU busy, ``ceil(1 / busy)`` where ``busy``
  is the fraction of the trial's time the GPU was busy (read from NVML when
  ``torch.cuda.utilization`` can; unknown otherwise);
- at most :data:`MAX_PER_GPU`.

Without a GPU, ``auto`` is one worker: a CPU trial already uses every core. The plan is a
pure function of a device list (:func:`plan_packing`), so it is tested on CPU with fake
devices; only :func:`visible_devices` and :func:`measure_trial` touch CUDA.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from lrtune.errors import ConfigError

if TYPE_CHECKING:
    from lrtune.config import StudyConfig

__all__ = [
    "CONTEXT_BYTES",
    "MAX_PER_GPU",
    "Device",
    "Packing",
    "TrialFootprint",
    "measure_trial",
    "plan_packing",
    "visible_devices",
]

MAX_PER_GPU = 8
"""Most workers ``auto`` puts on one GPU (published gains of several jobs per GPU level off
at 4-8: arXiv 2209.06018)."""

CONTEXT_BYTES = 512 * 2**20
"""GPU memory a worker process takes before its first tensor (the CUDA context)."""

MEMORY_SHARE = 0.9
"""Share of a GPU's free memory that ``auto`` plans to fill."""


@dataclass(frozen=True)
class Device:
    """One visible GPU: its index, name, and free and total memory in bytes."""

    index: int
    name: str
    free_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class TrialFootprint:
    """What one trial takes from a GPU: peak memory in bytes, and the fraction of its time
    the GPU was busy (``None``: unknown)."""

    peak_bytes: int
    busy: float | None = None


@dataclass(frozen=True)
class Packing:
    """Where each worker runs: ``gpus[i]`` (an index, or ``None`` for the CPU) and
    ``threads`` CPU threads each; ``per_gpu`` workers on each GPU; ``why`` says how
    ``per_gpu`` was chosen, in words."""

    gpus: tuple[int | None, ...]
    threads: int
    per_gpu: int
    why: str

    @property
    def workers(self) -> int:
        return len(self.gpus)


def _memory_cap(devices: list[Device], footprint: TrialFootprint) -> int:
    need = footprint.peak_bytes + CONTEXT_BYTES
    return min(int(d.free_bytes * MEMORY_SHARE // need) for d in devices)


def plan_packing(
    devices: list[Device],
    cpu_count: int,
    *,
    trials_per_gpu: int | None = None,
    footprint: TrialFootprint | None = None,
    max_per_gpu: int = MAX_PER_GPU,
) -> Packing:
    """The workers for ``workers: auto`` on ``devices`` (see the module docstring).

    Args:
        devices: The visible GPUs (empty: the CPU only).
        cpu_count: CPU cores to split between the workers.
        trials_per_gpu: Workers per GPU, as given (``--trials-per-gpu``); wins over the
            measurement.
        footprint: One trial's measured peak memory and busy fraction (needed unless
            ``trials_per_gpu`` is given).
        max_per_gpu: Cap on workers per GPU (default :data:`MAX_PER_GPU`).

    Raises:
        ConfigError: ``trials_per_gpu`` < 1, or neither it nor a footprint with GPUs, or
            a trial that does not fit in the free memory of a GPU.
    """
    if trials_per_gpu is not None and trials_per_gpu < 1:
        raise ConfigError(f"trials_per_gpu must be >= 1, got {trials_per_gpu}")
    if not devices:
        return Packing((None,), max(1, cpu_count), 0, "no GPU: one worker on every CPU core")
    if trials_per_gpu is not None:
        per_gpu = trials_per_gpu
        why = f"{per_gpu} per GPU, as given (trials_per_gpu)"
    elif footprint is None:
        raise ConfigError("workers: auto needs trials_per_gpu or a measured trial footprint")
    else:
        memory = _memory_cap(devices, footprint)
        if memory < 1:
            free = min(d.free_bytes for d in devices) / 2**30
            raise ConfigError(
                f"workers: auto: one trial needs {footprint.peak_bytes / 2**30:.2f} GiB and a "
                f"CUDA context, more than 90% of the {free:.2f} GiB free on a GPU"
            )
        pays = max_per_gpu if footprint.busy is None else math.ceil(1 / max(footprint.busy, 0.01))
        per_gpu = max(1, min(memory, pays, max_per_gpu))
        busy = "unknown" if footprint.busy is None else f"{footprint.busy:.0%}"
        why = (
            f"{per_gpu} per GPU: memory fits {memory} (trial peak "
            f"{footprint.peak_bytes / 2**20:.0f} MiB), GPU busy {busy} of a lone trial, "
            f"cap {max_per_gpu}"
        )
    gpus = tuple(d.index for d in devices for _ in range(per_gpu))
    return Packing(gpus, max(1, cpu_count // len(gpus)), per_gpu, why)


def visible_devices() -> list[Device]:
    """The GPUs this process sees (none without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    devices = []
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        devices.append(Device(index, torch.cuda.get_device_name(index), free, total))
    return devices


class _BusySampler:
    """Samples ``torch.cuda.utilization()`` (NVML) every 0.1 s in a thread."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import torch

        while not self._stop.is_set():
            try:
                self.samples.append(torch.cuda.utilization() / 100)
            except Exception:  # no NVML (pynvml) here: the busy fraction stays unknown
                return
            time.sleep(0.1)

    def __enter__(self) -> _BusySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def busy(self) -> float | None:
        return sum(self.samples) / len(self.samples) if len(self.samples) >= 3 else None


def measure_trial(config: StudyConfig, steps: int = 50) -> TrialFootprint:
    """Train the study's base configuration for ``steps`` steps on the first GPU and
    measure its peak memory and how busy it kept the GPU."""
    import torch

    from lrtune.training import build_trainer, datamodule_for, module_for

    base = config.base_train_config().model_copy(update={"device": "cuda"})
    datamodule = datamodule_for(base)
    datamodule.prepare_data()
    module = module_for(base, datamodule)
    trainer = build_trainer(base, module=module, max_steps=steps, limit_val_batches=0)
    torch.cuda.reset_peak_memory_stats()
    with _BusySampler() as sampler:
        trainer.fit(module, datamodule=datamodule)
        torch.cuda.synchronize()
    return TrialFootprint(torch.cuda.max_memory_reserved(), sampler.busy)


Workers = int | Literal["auto"]
