"""Every study file in studies/ loads, documents its question and cost, and samples cleanly."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from lrtune.config import study_config_from
from lrtune.space import default_params, lr_ranges, suggest_config

STUDIES = Path(__file__).resolve().parents[2] / "studies"
STUDY_FILES = sorted(STUDIES.glob("*.yaml"))
EXPECTED = {
    "quickstart",
    "mnist-optimizers",
    "fashion-mnist-optimizers",
    "cifar10-optimizers",
    "adam-vs-adamax",
    "schedules",
    "clipping",
}


def _header(path: Path) -> list[str]:
    """The comment block the file starts with."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


def test_the_expected_study_files_exist() -> None:
    assert {path.stem for path in STUDY_FILES} >= EXPECTED


@pytest.mark.parametrize("path", STUDY_FILES, ids=[p.stem for p in STUDY_FILES])
def test_study_file_loads_and_documents_itself(path: Path) -> None:
    config = study_config_from(path)
    assert config.name == path.stem
    header = _header(path)
    assert header, f"{path.name} has no header comment"
    assert any(line.startswith("# Question:") for line in header), header
    assert any(line.startswith("# Expected cost:") for line in header), header
    assert config.n_trials is not None or config.timeout is not None


@pytest.mark.parametrize("path", STUDY_FILES, ids=[p.stem for p in STUDY_FILES])
def test_study_space_samples_valid_configs(path: Path) -> None:
    """Defaults and 40 random trials resolve to valid training configs (no training).

    Catches ranges that validate in the study file but give invalid values at trial time.
    """
    config = study_config_from(path)
    ranges = lr_ranges(config)  # lr: auto falls back to each optimizer's registry range here
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for name in config.space.optimizers:
        study.enqueue_trial(default_params(config, name, ranges))
    seen = set()
    for _ in range(len(config.space.optimizers) + 40):
        trial = study.ask()
        train = suggest_config(trial, config, ranges)
        study.tell(trial, 0.0)
        seen.add(train.optimizer.name)
        assert train.dataset == config.dataset and train.model == config.model
    assert seen == set(config.space.optimizers)
