"""Shared fixtures: real MNIST from ../shared/data, small CIFAR files in the real format."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


@pytest.fixture(autouse=True)
def _closes_its_connections(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test that leaves a database connection open (tests/leaks.py, issue 26).

    Autouse, so it is set up first and torn down last: after the test's own fixtures
    (``postgres_url`` and the like) have had their chance to close what they opened.
    """
    from tests import leaks

    leaks.install()
    start = leaks.mark()
    yield
    leaked = leaks.leaked_since(start)
    if leaked:
        leaks.close_quietly(leaked)
        kinds = ", ".join(sorted({leaks.describe(c) for c in leaked}))
        pytest.fail(
            f"{request.node.nodeid} left {len(leaked)} database connection(s) open ({kinds}): "
            "close them, or dispose of the engine or Optuna RDBStorage that holds them",
            pytrace=False,
        )


@pytest.fixture(autouse=True, scope="session")
def _quiet_lightning() -> None:
    import lightning.pytorch  # noqa: F401  (sets its loggers to INFO on import)

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread is faster than two on a busy 2-core machine. A test
    module asks for it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST files (6,309 train / 10,000 test images)."""
    if not (SHARED_MNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST not found at {SHARED_MNIST} (see ../shared/data/README.md)")
    return SHARED_MNIST


def write_cifar(root: Path, variant: str, *, per_batch: int, archive: bool, seed: int = 0) -> Path:
    """Write a small CIFAR-10/100 'python version' dataset (tar.gz or folder) under ``root``.

    Images are class-dependent (a bright square at a class-specific place plus noise) so a
    few training steps can learn them.
    """
    from tests.data.test_cifar import py2_pickle, write_folder, write_tar

    num_classes = 10 if variant == "cifar10" else 100
    rng = np.random.default_rng(seed)

    def batch(n: int) -> dict[bytes, object]:
        labels = rng.integers(0, num_classes, size=n)
        images = rng.integers(0, 60, size=(n, 3, 32, 32), dtype=np.uint8)
        for i, label in enumerate(labels):
            y, x = divmod(int(label) % 16, 4)
            images[i, label % 3, 8 * y : 8 * y + 8, 8 * x : 8 * x + 8] = 250
        key = b"labels" if variant == "cifar10" else b"fine_labels"
        out: dict[bytes, object] = {
            b"batch_label": b"batch",
            b"data": images.reshape(n, 3072),
            key: [int(v) for v in labels],
            b"filenames": [b"x.png"] * n,
        }
        if variant == "cifar100":
            out[b"coarse_labels"] = [int(v) // 5 for v in labels]
        return out

    files: dict[str, bytes] = {}
    if variant == "cifar10":
        folder = "cifar-10-batches-py"
        for i in range(1, 6):
            files[f"{folder}/data_batch_{i}"] = py2_pickle(batch(per_batch))
        files[f"{folder}/test_batch"] = py2_pickle(batch(per_batch))
        files[f"{folder}/batches.meta"] = py2_pickle({b"label_names": [b"c"] * 10})
    else:
        folder = "cifar-100-python"
        files[f"{folder}/train"] = py2_pickle(batch(5 * per_batch))
        files[f"{folder}/test"] = py2_pickle(batch(per_batch))
        files[f"{folder}/meta"] = py2_pickle({b"fine_label_names": [b"c"] * 100})
    root.mkdir(parents=True, exist_ok=True)
    if archive:
        name = "cifar-10-python.tar.gz" if variant == "cifar10" else "cifar-100-python.tar.gz"
        return write_tar(root / name, files)
    return write_folder(root, files)


FINISHED_STUDY_YAML = """\
name: finished
question: Which of SGD and Adam trains the digits MLP best in 3 epochs?
dataset: digits
model: mlp
model_options: {width: 32}
batch_size: 64
budget: {epochs: 3}
objective: {metric: val_acc}
n_trials: 8
pruner: {name: median, options: {n_startup_trials: 2, n_warmup_steps: 0}}
seed: 0
enqueue_defaults: true
space:
  optimizers: [sgd, adam]
  lr: {auto: true, num_steps: 30}
  schedules: [constant, cosine]
"""


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A small real study run by ``lrtune.search`` (range tests, pruning, note, artifacts).

    Returns ``{"storage", "study_name", "artifacts", "study_file"}``; treat it as read-only.
    """
    from lrtune.study import search

    root = tmp_path_factory.mktemp("finished-study")
    study_file = root / "finished.yaml"
    study_file.write_text(FINISHED_STUDY_YAML)
    storage = root / "studies.journal"
    search(study_file, storage=str(storage), progress=None)
    return {
        "storage": str(storage),
        "study_name": "finished",
        "artifacts": root / "studies.artifacts",
        "study_file": study_file,
    }


# --- Real databases (PostgreSQL, MariaDB/MySQL) for Optuna RDB storages: see tests/dbs.py ---
# Self-contained block: it imports what it needs itself (tests.dbs inside the fixtures).


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """SQLAlchemy URL of a new, empty PostgreSQL database, dropped after the test.

    Skips when PostgreSQL is unavailable (fails under CI). The test must be marked
    ``@pytest.mark.postgres``.
    """
    from tests.dbs import check_marked, fresh_postgres_db, require_postgres

    check_marked(request.node, "postgres", "postgres_url")
    require_postgres()
    with fresh_postgres_db() as url:
        yield url


@pytest.fixture
def mysql_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """SQLAlchemy URL of a new, empty MariaDB/MySQL database (utf8mb4), dropped after the test.

    Skips when MariaDB/MySQL is unavailable (fails under CI). The test must be marked
    ``@pytest.mark.mysql``.
    """
    from tests.dbs import check_marked, fresh_mysql_db, require_mysql

    check_marked(request.node, "mysql", "mysql_url")
    require_mysql()
    with fresh_mysql_db() as url:
        yield url


# --- end of real-database fixtures ---


# --- The lowest-versions subset (issue 25): see .ci/lowest.txt and .ci/run ------------------
# Self-contained block. CI installs the lowest versions that pyproject.toml allows into a second
# virtual environment and runs `pytest -m lowest` there: every test in these modules, found by
# file name wherever it lives under tests/. Together they cover the configs, the range-test math,
# find_lr and its callback, Lightning parity, the study runner with Optuna (sampler, pruning
# callback, dashboard notes), torchmetrics, plotly reports and the CLI, in about two minutes on
# two cores with neither a real database nor a browser (the second run must not need them).

LOWEST_MODULES = frozenset(
    {
        "test_lr_range.py",
        "test_finder.py",
        "test_callbacks.py",
        "test_verify.py",
        "test_lightning_parity.py",
        "test_study.py",
        "test_trial_callbacks.py",
        "test_sampler.py",
        "test_compat.py",
        "test_cli.py",
        "test_config.py",
        "test_space.py",
        "test_module.py",
        "test_datamodules.py",
        "test_hooks.py",
        "test_optimizers.py",
        "test_own_module_errors.py",
        "test_report.py",
        "test_dashboard.py",
        "test_doctests.py",
        "test_packing.py",
    }
)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of :data:`LOWEST_MODULES` ``lowest``. Under ``-m lowest`` over the whole
    suite (no paths given), fail when a module named there was not collected: renamed or gone."""
    found: set[str] = set()
    for item in items:
        if item.path.name in LOWEST_MODULES:
            item.add_marker(pytest.mark.lowest)
            found.add(item.path.name)
    whole_suite = config.args_source is pytest.Config.ArgsSource.TESTPATHS
    if (config.option.markexpr or "").strip() == "lowest" and whole_suite:
        missing = sorted(LOWEST_MODULES - found)
        if missing:
            raise pytest.UsageError(
                f"LOWEST_MODULES in tests/conftest.py names modules not collected: {missing}"
            )


# --- end of the lowest-versions subset ---
