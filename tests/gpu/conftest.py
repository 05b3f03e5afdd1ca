"""The ``gpu`` marker and the fixtures of the CUDA tests (tests/gpu, issue 23).

Every test module here marks itself ``gpu`` and skips, with the reason, where
``torch.cuda.is_available()`` is false; ``pytest -m gpu tests/gpu`` runs them on a GPU
machine (``bash benchmarks/gpu_check.sh`` does, and keeps the report).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# cuBLAS picks a deterministic workspace only when told before its first use (in this
# process: before any test here runs a matmul); the bit-for-bit tests turn on
# torch.use_deterministic_algorithms, which asks for it.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; skipped without one")


@pytest.fixture
def fit_witness(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A :class:`tests.gpu._helpers.DeviceWitness` put into every Trainer lrtune builds
    during the test (training, study trials, test passes, the range tests of ``find_lr``
    and ``lr: auto``), in this process."""
    import lrtune.range_test._find
    import lrtune.training
    from tests.gpu._helpers import DeviceWitness

    witness = DeviceWitness()
    for owner in (lrtune.training, lrtune.range_test._find):
        original = owner.lean_trainer

        def with_witness(module: object = None, _original=original, **kwargs: object) -> object:
            callbacks = list(kwargs.pop("callbacks", None) or ())  # type: ignore[call-overload]
            return _original(module, callbacks=[*callbacks, witness], **kwargs)

        monkeypatch.setattr(owner, "lean_trainer", with_witness)
    yield witness


@pytest.fixture
def deterministic() -> Iterator[None]:
    """Deterministic CUDA kernels where torch has them (warn where it has none), so that two
    identical fits compare bit for bit and only lrtune's restore is under test."""
    import torch

    was, warn_only = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(was, warn_only=warn_only)
