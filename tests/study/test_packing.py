"""``workers: auto``: the packing of workers onto GPUs, planned from fake device lists on
the CPU (issue 23), and ``--workers``/``--trials-per-gpu`` at the edges."""

from __future__ import annotations

from pathlib import Path

import pytest

from lrtune.errors import ConfigError
from lrtune.study import _packing
from lrtune.study._packing import (
    CONTEXT_BYTES,
    MAX_PER_GPU,
    Device,
    TrialFootprint,
    plan_packing,
)
from lrtune.study._workers import worker_plan
from tests.cli_errors import assert_one_line_error, run_cli

GiB = 2**30


def _gpus(n: int, free_gib: float = 70.0) -> list[Device]:
    return [Device(i, "fake H100", int(free_gib * GiB), 80 * GiB) for i in range(n)]


def test_no_gpu_is_one_worker_on_every_core() -> None:
    packing = plan_packing([], 16, footprint=TrialFootprint(GiB, 0.1))
    assert packing.gpus == (None,) and packing.threads == 16 and "no GPU" in packing.why


def test_trials_per_gpu_as_given_pins_k_workers_to_each_gpu_and_splits_the_threads() -> None:
    packing = plan_packing(_gpus(2), 16, trials_per_gpu=3)
    assert packing.gpus == (0, 0, 0, 1, 1, 1)
    assert packing.per_gpu == 3 and packing.workers == 6 and packing.threads == 2
    assert "as given" in packing.why
    assert plan_packing(_gpus(1), 2, trials_per_gpu=4).threads == 1  # at least one thread


def test_memory_decides_when_the_trial_is_large() -> None:
    footprint = TrialFootprint(peak_bytes=2 * GiB - CONTEXT_BYTES, busy=0.05)
    packing = plan_packing(_gpus(1, free_gib=10), 8, footprint=footprint)
    assert packing.per_gpu == 4  # 90% of 10 GiB / 2 GiB = 4.5
    assert "memory fits 4" in packing.why


def test_a_busy_gpu_gets_fewer_workers() -> None:
    small = TrialFootprint(peak_bytes=200 * 2**20, busy=0.4)
    assert plan_packing(_gpus(1), 8, footprint=small).per_gpu == 3  # ceil(1 / 0.4)
    idle = TrialFootprint(peak_bytes=200 * 2**20, busy=0.02)
    assert plan_packing(_gpus(1), 8, footprint=idle).per_gpu == MAX_PER_GPU
    unknown = TrialFootprint(peak_bytes=200 * 2**20, busy=None)
    packing = plan_packing(_gpus(1), 8, footprint=unknown, max_per_gpu=5)
    assert packing.per_gpu == 5 and "busy unknown" in packing.why


def test_the_smallest_gpu_sets_the_memory_cap() -> None:
    devices = [Device(0, "big", 70 * GiB, 80 * GiB), Device(1, "small", 5 * GiB, 16 * GiB)]
    packing = plan_packing(devices, 4, footprint=TrialFootprint(GiB - CONTEXT_BYTES, 0.01))
    assert packing.per_gpu == 4 and packing.gpus == (0, 0, 0, 0, 1, 1, 1, 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"trials_per_gpu": 0}, "trials_per_gpu must be >= 1"),
        ({}, "needs trials_per_gpu or a measured trial footprint"),
        ({"footprint": TrialFootprint(100 * GiB)}, r"one trial needs 100\.00 GiB"),
    ],
)
def test_impossible_plans_are_config_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        plan_packing(_gpus(1), 4, **kwargs)


def test_a_worker_count_shares_several_gpus_round_robin() -> None:
    assert worker_plan(3, gpus=2).gpus == (0, 1, 0)
    assert worker_plan(3, gpus=1).gpus == (None, None, None)  # one GPU: all see it
    with pytest.raises(ConfigError, match="workers must be >= 1"):
        worker_plan(0)


def test_visible_devices_is_empty_without_cuda() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present (tests/gpu covers it)")
    assert _packing.visible_devices() == []


# ----------------------------------------------------------------------------- the edges
_STUDY = """\
name: packed
dataset: digits
model: mlp
model_options: {width: 8}
budget: {epochs: 1}
n_trials: 2
device: cpu
space:
  optimizers: [adam]
"""


def test_workers_auto_on_the_cpu_runs_one_worker_in_this_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = tmp_path / "s.yaml"
    study.write_text(_STUDY + "workers: auto\n")
    code, _, err, _ = run_cli(
        capsys, "search", study, "--storage", tmp_path / "s.journal", "--best-out",
        tmp_path / "best.yaml",
    )  # fmt: skip
    assert code == 0, err
    assert "lrtune: workers auto: 1 worker (no GPU: one worker on every CPU core)" in err


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (
            ("--workers", "two"),
            ("Invalid value for '--workers': expected a number >= 1 or auto", "'two'"),
        ),
        (("--workers", "0"), ("Invalid value for '--workers'",)),
        (("--trials-per-gpu", "2"), ("trials_per_gpu applies to workers: auto",)),
    ],
)
def test_bad_worker_flags_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: tuple[str, ...], fragments: tuple
) -> None:
    study = tmp_path / "s.yaml"
    study.write_text(_STUDY)
    journal = tmp_path / "s.journal"
    result = run_cli(capsys, "search", study, "--storage", journal, *flags)
    assert_one_line_error(*result, *fragments)
    assert not journal.exists()


def test_changing_the_workers_does_not_change_the_study(tmp_path: Path) -> None:
    """workers and trials_per_gpu say where trials run, not what they mean: a rerun with
    other values continues the study."""
    from lrtune.config import StudyConfig
    from lrtune.study import search

    data = {
        "name": "w", "dataset": "digits", "model": "mlp", "model_options": {"width": 8},
        "budget": {"epochs": 1}, "n_trials": 1, "device": "cpu",
        "storage": str(tmp_path / "w.journal"), "space": {"optimizers": ["adam"]},
    }  # fmt: skip
    search(StudyConfig.model_validate(data), progress=None, publish=False)
    again = StudyConfig.model_validate({**data, "n_trials": 2, "workers": "auto"})
    study = search(again, progress=None, publish=False)
    assert len(study.trials) == 2
