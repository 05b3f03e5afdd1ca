"""Several worker processes on one machine, all running the same study on one storage.

This is Optuna's own distributed model: each worker is an ordinary process that runs
trials against the shared storage; nothing else coordinates them (see
:mod:`lrtune.study._coordination` for how set-up and the trial count stay exact). Workers on
other machines join by running the same ``lrtune search`` on the same storage URL.

Each worker gets ``cpu_count // workers`` torch threads (tiny models on a shared CPU run
10x slower when threads oversubscribe the cores) and, when there are several GPUs, one GPU
(``CUDA_VISIBLE_DEVICES``), round robin; ``workers: auto`` packs several workers onto each
GPU (:mod:`lrtune.study._packing`). Workers die with the parent process (Linux), so
killing ``lrtune search`` kills its workers; their running trials are failed and retried
on the next run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from lrtune.errors import ConfigError, LrtuneError, StudyFailedError
from lrtune.study._packing import Packing

if TYPE_CHECKING:
    from lrtune.config import StudyConfig
    from lrtune.hooks import SearchCallback

__all__ = ["run_workers", "worker_plan"]


def worker_plan(workers: int, gpus: int | None = None) -> Packing:
    """``workers`` processes: CPU threads split between them and, when there are several
    GPUs (``gpus``, default: the visible ones), one GPU each, round robin."""
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if gpus is None:
        gpus = 0
        with contextlib.suppress(Exception):
            import torch

            gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    threads = max(1, (os.cpu_count() or 1) // workers)
    where = tuple((i % gpus) if gpus > 1 else None for i in range(workers))
    return Packing(where, threads, 0, f"{workers} workers, as given")


def _die_with_parent(parent: int) -> None:
    """Linux: get SIGKILL when the parent dies (no orphaned workers after kill -9)."""
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _worker_main(
    index: int,
    parent: int,
    config_data: dict[str, Any],
    factories: tuple[Callable[..., Any] | None, Callable[..., Any] | None],
    gpu: int | None,
    threads: int,
    quiet: bool,
    callbacks: tuple[Any, ...],
    results: Any,
) -> None:
    _die_with_parent(parent)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    import optuna
    import torch

    torch.set_num_threads(threads)
    tag = f"w{index} "
    from lrtune._logging import log_to_stderr, quiet_lightning, tracebacks_to_file

    quiet_lightning()
    if not quiet:
        log_to_stderr(f"lrtune {tag}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tracebacks_to_file()  # failed trials' tracebacks: in this worker's log file

    from lrtune.config import StudyConfig
    from lrtune.study._objective import _error_text
    from lrtune.study._runner import run_worker

    try:
        run_worker(
            StudyConfig.model_validate(config_data),
            module_factory=factories[0],
            datamodule_factory=factories[1],
            progress=None if quiet else sys.stderr,
            callbacks=callbacks,
            tag=tag,
        )
    except StudyFailedError as error:
        results.put((index, "failed", str(error)))
    except LrtuneError as error:
        results.put((index, "error", str(error)))
    except KeyboardInterrupt:
        results.put((index, "interrupted", ""))
    except BaseException as error:
        results.put((index, "crashed", _error_text(error)))
        raise
    else:
        results.put((index, "ok", ""))


def run_workers(
    config: StudyConfig,
    workers: int | Packing,
    *,
    module_factory: Callable[..., Any] | None = None,
    datamodule_factory: Callable[..., Any] | None = None,
    quiet: bool = False,
    callbacks: Sequence[SearchCallback | Callable[..., Any]] = (),
) -> None:
    """Start ``workers`` processes on ``config``'s study and wait for all of them.

    ``workers`` is a count (see :func:`worker_plan`) or a :class:`Packing` that says where
    each worker runs (``workers: auto``, :func:`lrtune.study._packing.plan_packing`).

    A worker that dies (killed, out of memory) leaves its running trial to the others,
    which fail it and run its parameters again; the study still reaches ``n_trials``.
    Each worker gets a pickled copy of ``callbacks`` (the hooks of
    :func:`lrtune.study._runner.run_worker`).

    Raises:
        StudyFailedError: A worker stopped because its trials kept failing.
        LrtuneError: Every worker died, or one reported a configuration error.
    """
    import multiprocessing

    plan = workers if isinstance(workers, Packing) else worker_plan(workers)
    context = multiprocessing.get_context("spawn")
    results = context.SimpleQueue()
    processes = []
    for index, gpu in enumerate(plan.gpus):
        process = context.Process(
            target=_worker_main,
            args=(
                index,
                os.getpid(),
                config.to_dict(),
                (module_factory, datamodule_factory),
                gpu,
                plan.threads,
                quiet,
                tuple(callbacks),
                results,
            ),
            name=f"lrtune-worker-{index}",
        )
        process.start()
        processes.append(process)
    if not quiet:
        threads = plan.threads
        gpus = sorted({g for g in plan.gpus if g is not None})
        where = f"{threads} CPU thread{'s' * (threads > 1)} each"
        if gpus:
            where = f"GPUs {gpus}, {where}" + (f"; {plan.why}" if plan.per_gpu else "")
        print(f"lrtune: {plan.workers} workers on study {config.name!r} ({where})", file=sys.stderr)
    try:  # reap each worker as it ends (a killed one must not linger as a zombie)
        from multiprocessing.connection import wait

        pending = list(processes)
        while pending:
            ended = wait([p.sentinel for p in pending])
            for process in [p for p in pending if p.sentinel in ended]:
                process.join()
                pending.remove(process)
    except KeyboardInterrupt:
        deadline = time.monotonic() + 10
        for process in processes:  # they got the terminal's SIGINT too: let them fail cleanly
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
        raise
    reports: dict[int, tuple[str, str]] = {}
    while not results.empty():
        index, status, message = results.get()
        reports[index] = (status, message)
    failed = [msg for status, msg in reports.values() if status == "failed"]
    if failed:
        raise StudyFailedError(failed[0])
    errors = [msg for status, msg in reports.values() if status == "error"]
    if errors:
        raise LrtuneError(errors[0])
    dead = [f"w{i} (exit code {p.exitcode})" for i, p in enumerate(processes) if i not in reports]
    crashed = [f"w{i}: {msg}" for i, (status, msg) in reports.items() if status == "crashed"]
    if dead or crashed:
        logging.getLogger("lrtune").warning(
            "workers that did not finish: %s", "; ".join([*dead, *crashed])
        )
    if len(dead) + len(crashed) == plan.workers:
        raise LrtuneError(f"all {plan.workers} workers died ({'; '.join([*dead, *crashed])})")
