"""``lrtune.search`` on CUDA: pruning and ``lr: auto`` in bf16-mixed and 32-true, and
several worker processes on one GPU (``workers: 2``; ``workers="auto"`` with
``trials_per_gpu=2``), every fit on the GPU (tests/study/test_study.py, test_workers.py on
the CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import optuna
import pytest
import torch
from optuna.trial import TrialState

from lrtune import StudyConfig, search
from lrtune.study import closing_storage, open_storage
from tests.gpu._helpers import NO_CUDA, DeviceWitness, WorkerWitness

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _config(tmp_path: Path, **fields: Any) -> StudyConfig:
    data: dict[str, Any] = {
        "name": "gpu",
        "dataset": "digits",
        "model": "mlp",
        "model_options": {"width": 32},
        "device": "cuda",
        "budget": {"epochs": 2},
        "n_trials": 4,
        "seed": 0,
        "storage": str(tmp_path / "studies.journal"),
        "pruner": {"name": "median", "options": {"n_startup_trials": 1, "n_warmup_steps": 0}},
        "space": {"optimizers": ["sgd", "adam"], "lr": {"auto": True, "num_steps": 20}},
    }
    data.update(fields)
    return StudyConfig.model_validate(data)


def _bf16() -> Any:
    unsupported = torch.cuda.is_available() and not torch.cuda.is_bf16_supported()
    return pytest.param(
        "bf16-mixed",
        marks=pytest.mark.skipif(unsupported, reason="this GPU has no bfloat16"),
    )


@pytest.mark.parametrize("precision", [_bf16(), "32-true"])
def test_search_prunes_and_tests_lrs_on_the_gpu(
    tmp_path: Path, precision: str, fit_witness: DeviceWitness
) -> None:
    study = search(_config(tmp_path, precision=precision), progress=None, publish=False)
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == 4, [(t.number, t.state.name, t.user_attrs) for t in trials]
    assert not [t for t in trials if t.state == TrialState.FAIL]
    # the pruning callback reported the epochs of every trial (but one that diverged early)
    assert all(t.intermediate_values for t in finished if "diverged" not in t.user_attrs)
    for trial in finished:
        assert trial.user_attrs["config"]["device"] == "cuda"
        assert trial.user_attrs["config"]["precision"] == precision
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    assert complete and all(0.0 <= float(t.value) <= 1.0 for t in complete)  # type: ignore[arg-type]
    # lr: auto ran its range tests once (on the GPU, see below) and stored them
    auto = study.user_attrs["lrtune.lr_auto"]
    assert set(auto) == {"sgd", "adam"}
    assert all(len(entry["result"]["lrs"]) >= 10 for entry in auto.values())
    # every fit (range tests, trials) and the test pass ran on the GPU, in that precision
    fit_witness.assert_all_on("cuda")
    assert fit_witness.count("fit parameter") > 0 and fit_witness.count("train batch") > 0
    assert fit_witness.count("test batch") > 0  # test: end, the best trial of each optimizer
    assert set(fit_witness.precisions) == {precision}
    assert len(fit_witness.precisions) >= 2 + len(finished)  # 2 range tests, the trials


@pytest.mark.parametrize(
    ("workers", "trials_per_gpu"),
    [("auto", 2), (2, None)],
    ids=["auto-2-per-gpu", "workers-2"],
)
def test_several_workers_share_one_gpu(
    tmp_path: Path, workers: int | Literal["auto"], trials_per_gpu: int | None
) -> None:
    gpus = torch.cuda.device_count()
    expect = 2 * gpus if workers == "auto" else 2  # auto: trials_per_gpu on every GPU
    n_trials = max(4, expect)
    config = _config(
        tmp_path, name="gpu-workers", device="auto", n_trials=n_trials, pruner="none",
        budget={"epochs": 1}, space={"optimizers": ["adam"], "lr": {"low": 1e-4, "high": 1e-2}},
    )  # fmt: skip
    search(
        config, workers=workers, trials_per_gpu=trials_per_gpu, progress=None, publish=False,
        callbacks=[WorkerWitness(expect)],
    )  # fmt: skip
    with closing_storage(open_storage(config.storage)) as storage:
        study = optuna.load_study(study_name="gpu-workers", storage=storage)
        trials = study.get_trials(deepcopy=False)
        attrs = dict(study.user_attrs)
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == n_trials, [(t.number, t.state.name, t.user_attrs) for t in trials]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    ran = {t.user_attrs["worker"] for t in finished}
    assert len(ran) == expect, ran  # every worker process ran trials
    # each worker process used the GPU (its trials put their data and model there) ...
    seen = {key.removeprefix("gpu_check."): value for key, value in attrs.items()
            if key.startswith("gpu_check.")}  # fmt: skip
    assert set(seen) == ran
    for worker, record in seen.items():
        assert record["cuda_initialized"] and record["max_memory_allocated"] > 0, (worker, record)
    # ... and workers: auto pinned each one to a GPU
    if workers == "auto":
        assert {r["visible_devices"] for r in seen.values()} == {str(i) for i in range(gpus)}
