"""Bad input to `lrtune search / best / report / dashboard / train`: one line, exit 2, no change.

The rule: bad input prints ONE line on stderr, ``lrtune: error: ...``, naming the field, flag
or file; exits with code 2; prints no traceback and no warnings; and changes no storage (a
journal file or database that existed is byte-identical, one that did not exist is not
created, and no ``*.artifacts`` / ``lrtune-artifacts`` folder appears).

Complements tests/study/test_study_errors.py (study-file fields), tests/test_cli.py (train and
find-lr flags), tests/test_report.py (report) and tests/test_dashboard.py (dashboard as a
process): the cases here are the ones those files do not have. Each case runs the CLI in
this process with the working directory in ``tmp_path`` and compares a snapshot of every
file under ``tmp_path`` before and after. Nothing trains: every error comes before training.

Each case once found a bug (a traceback, a file written to, a misleading message) or guards
against one; see git history for the ones fixed with this suite.
"""

from __future__ import annotations

import gzip
import os
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from tests.cli_errors import assert_one_line_error, fresh_lrtune_logger, run_cli

# A valid, tiny study (as in tests/study/test_study_errors.py).
BASE = """\
name: bad
dataset: digits
model: mlp
model_options: {width: 8}
budget: {epochs: 1}
n_trials: 2
space:
  optimizers: [adam]
"""

PASSWORD = "hunter2"


# ----------------------------------------------------------------------------- helpers


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str, list[str]]:
    return run_cli(capsys, *args)


def _assert_one_line_error(code: int, out: str, err: str, shown: list[str], *fragments: str) -> str:
    return assert_one_line_error(code, out, err, shown, *fragments, secret=PASSWORD)


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``root``, by relative path."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def _journal(path: Path, *names: str) -> Path:
    """A journal file holding empty studies ``names`` (written by Optuna, not lrtune)."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(path)))
    for name in names:
        optuna.create_study(storage=storage, study_name=name)
    return path


def _sqlite(path: Path, *names: str) -> str:
    url = f"sqlite:///{path}"
    storage = optuna.storages.RDBStorage(url)
    for name in names:
        optuna.create_study(storage=storage, study_name=name)
    storage.engine.dispose()
    return url


def _study_names(url: str) -> list[str]:
    storage = optuna.storages.RDBStorage(url)
    try:
        return sorted(optuna.study.get_all_study_names(storage))
    finally:
        storage.engine.dispose()


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """cwd in tmp_path (so ``lrtune-artifacts`` or ``best-*.yaml`` would show in the
    snapshot), a fresh `lrtune` logger, and a dashboard that stops at once should a case
    wrongly start one (instead of serving forever)."""
    from wsgiref.simple_server import WSGIServer

    def stop_at_once(self: WSGIServer, poll_interval: float = 0.5) -> None:
        raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(WSGIServer, "serve_forever", stop_at_once)
    with fresh_lrtune_logger():
        yield


def _study_file(tmp_path: Path, text: str = BASE, name: str = "ok") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- 1. search flags

# (id, flags ("{file}": a regular file in tmp_path), fragments of the error line)
SEARCH_FLAGS: list[Any] = [
    ("workers-0", ["--workers", "0"],
     ["Invalid value for '--workers'", "a number >= 1 or auto", "'0'"]),
    ("workers-negative", ["--workers", "-2"],
     ["Invalid value for '--workers'", "a number >= 1 or auto", "'-2'"]),
    ("workers-not-an-integer", ["--workers", "abc"],
     ["Invalid value for '--workers'", "a number >= 1 or auto", "'abc'"]),
    ("n-trials-negative", ["--n-trials", "-5"], ["n_trials must be >= 1, got -5"]),
    ("timeout-negative", ["--timeout", "-1"], ["timeout must be > 0", "got -1.0"]),
    ("timeout-zero", ["--timeout", "0"], ["timeout must be > 0", "got 0.0"]),
    ("timeout-not-a-number", ["--timeout", "soon"],
     ["Invalid value for '--timeout'", "valid number"]),
    ("seed-negative", ["--seed", "-1"], ["seed must be >= 0, got -1"]),
    ("set-dotted-without-value", ["--set", "budget.epochs"],
     ["--set expects FIELD=VALUE, got 'budget.epochs'"]),
    ("set-unknown-nested-field", ["--set", "budget.epoch=3"],
     ["budget.epoch is not a known field"]),
    ("set-unknown-section", ["--set", "budgt.epochs=3"], ["budgt is not a known field"]),
    ("set-wrong-type", ["--set", "budget.epochs=abc"],
     ["budget.epochs must be an integer, got 'abc'"]),
    ("set-float-for-integer", ["--set", "n_trials=1.5"],
     ["n_trials must be an integer, got 1.5"]),
    ("set-scalar-for-mapping", ["--set", "budget=3"],
     ["budget must be a mapping of fields, got 3"]),
    ("set-unknown-optimizer-in-list", ["--set", "space.optimizers=[adam, lion]"],
     ["space.optimizers: unknown optimizer 'lion'"]),
    ("artifacts-is-a-file", ["--artifacts", "{file}"], ["artifacts {file}: not a folder"]),
    pytest.param(
        "study-name-empty", ["--study-name", ""], ["--study-name"],
        id="study-name-empty",
    ),
]  # fmt: skip


def _ids(cases: list[Any]) -> list[str]:
    return [c[0] if isinstance(c, tuple) else c.id for c in cases]


@pytest.mark.parametrize(("name", "flags", "fragments"), SEARCH_FLAGS, ids=_ids(SEARCH_FLAGS))
def test_search_bad_flag(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    flags: list[str],
    fragments: list[str],
) -> None:
    """An existing journal (another study in it) stays byte-identical."""
    path = _study_file(tmp_path)
    journal = _journal(tmp_path / "s.journal", "other")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    before = _tree(tmp_path)
    args = [a.format(file=blocker) for a in flags]
    result = _run(capsys, "search", str(path), "--storage", str(journal), *args)
    _assert_one_line_error(*result, *(f.format(file=blocker) for f in fragments))
    assert _tree(tmp_path) == before


# ----------------------------------------------------------------------------- 1b. the study file


def _directory(path: Path) -> None:
    path.mkdir()


def _text(text: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(text, encoding="utf-8")


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


# (id, writes the study file at the given path, fragments after "{path}: ")
STUDY_FILES: list[Any] = [
    ("directory", _directory, ["cannot read", "Is a directory"]),
    ("ini-not-yaml", _text("[study]\nname = x\n"), ["line 2: expected '<document start>'"]),
    ("tab-indented", _text("name: x\n\tbudget: 1\n"),
     ["line 2: found character '\\t' that cannot start any token"]),
    ("list-of-mappings", _text("- name: x\n  budget: {epochs: 1}\n"),
     ["must hold a mapping of fields, got list"]),
    ("a-number", _text("42\n"), ["must hold a mapping of fields, got int"]),
    ("empty", _text(""), ["is empty (no fields)"]),
    ("comments-only", _text("# to do\n\n"), ["is empty (no fields)"]),
    ("binary-garbage", _bytes(bytes(range(256)) * 4), ["cannot read", "can't decode byte 0x80"]),
    ("nul-byte", _bytes(b"name: x\x00\n"), ["invalid YAML", "unacceptable character #x0000"]),
    pytest.param(
        "duplicate-key", _text(BASE + "budget: {epochs: 0}\n"), ["duplicate", "budget"],
        id="duplicate-key",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("name", "write", "fragments"), STUDY_FILES, ids=_ids(STUDY_FILES))
def test_search_bad_study_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    write: Callable[[Path], None],
    fragments: list[str],
) -> None:
    """No journal is created."""
    path = tmp_path / "study.yaml"
    write(path)
    before = _tree(tmp_path)
    result = _run(capsys, "search", str(path), "--storage", str(tmp_path / "s.journal"))
    line = _assert_one_line_error(*result, *fragments)
    assert line.startswith(f"lrtune: error: {path}: "), line
    assert _tree(tmp_path) == before


def test_search_unreadable_study_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    path = _study_file(tmp_path)
    path.chmod(0)
    try:
        result = _run(capsys, "search", str(path), "--storage", str(tmp_path / "s.journal"))
        _assert_one_line_error(*result, f"{path}: cannot read", "Permission denied")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.yaml"]
    finally:
        path.chmod(0o644)


# ----------------------------------------------------------------------------- 2. storage URLs

# Storage specs: "{tmp}" is tmp_path; "pg-nodb" / "mysql-nodb" are resolved from the test
# servers' admin URLs (tests/dbs.py) with database no_such_db_xyz.
NODB = "no_such_db_xyz"


def _resolve(spec: str, tmp_path: Path) -> str:
    if spec in ("pg-nodb", "mysql-nodb"):
        from tests.dbs import mysql_admin_url, postgres_admin_url, url_string

        admin = postgres_admin_url() if spec == "pg-nodb" else mysql_admin_url()
        return url_string(admin.set(database=NODB))
    return spec.format(tmp=tmp_path)


def _shown(url: str) -> str:
    """``url`` as errors must show it: any password as ***."""
    if "://" not in url or "@" not in url:
        return url
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def _password(url: str) -> str | None:
    if "://" not in url:
        return None
    from sqlalchemy.engine import make_url

    return make_url(url).password


READ = ("report", "best", "dashboard")
ALL = ("search", *READ)

# (id, storage spec, commands, fragments: "{shown}" is the storage with its password masked)
STORAGES: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = [
    ("unknown-scheme", "foo://x", ALL, ("storage foo://x: cannot open",)),
    ("postgres-nothing-listening", "postgresql://postgres@127.0.0.1:1/x", ALL,
     ("storage {shown}: cannot open", "Connection refused")),
    ("postgres-password", f"postgresql://me:{PASSWORD}@127.0.0.1:1/x", ("best", "dashboard"),
     ("storage postgresql://me:***@127.0.0.1:1/x: cannot open",)),
    ("mysql-nothing-listening", "mysql://root@127.0.0.1:1/x", ALL,
     ("storage {shown}: cannot open", "Connection refused")),
    ("mysql-password", f"mysql://root:{PASSWORD}@127.0.0.1:1/x", ALL,
     ("storage mysql://root:***@127.0.0.1:1/x: cannot open",)),
    ("sqlite-missing-dir", "sqlite:///{tmp}/missing/x.db", ("best", "dashboard"),
     ("--storage: no SQLite database at {tmp}/missing/x.db",)),
    ("journal-is-a-dir", "{tmp}/store.journal", READ,
     ("--storage: {tmp}/store.journal is a directory, expected a journal file",)),
    ("postgres-no-such-database", "pg-nodb", ALL,
     ("storage {shown}: cannot open", f'database "{NODB}" does not exist')),
    ("mysql-no-such-database", "mysql-nodb", ALL, ("storage {shown}: cannot open", NODB)),
]  # fmt: skip


def _storage_params() -> list[Any]:
    params = []
    for name, spec, commands, fragments in STORAGES:
        marks = []
        if spec == "pg-nodb":
            marks = [pytest.mark.postgres]
        elif spec == "mysql-nodb":
            marks = [pytest.mark.mysql]
        for command in commands:
            params.append(
                pytest.param(command, spec, fragments, marks=marks, id=f"{command}-{name}")
            )
    return params


def _command(command: str, tmp_path: Path, storage: str) -> list[str]:
    if command == "search":
        return ["search", str(_study_file(tmp_path)), "--storage", storage]
    if command == "report":
        return ["report", "--storage", storage, "--out", str(tmp_path / "r.html")]
    if command == "dashboard":
        return ["dashboard", "--storage", storage, "--port", "0"]
    return [command, "--storage", storage]


@pytest.mark.parametrize(("command", "spec", "fragments"), _storage_params())
def test_bad_storage(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    spec: str,
    fragments: tuple[str, ...],
) -> None:
    """Nothing is created: no journal, database file, artifact folder or report."""
    if request.node.get_closest_marker("postgres"):
        from tests.dbs import require_postgres

        require_postgres()
    if request.node.get_closest_marker("mysql"):
        from tests.dbs import require_mysql

        require_mysql()
    url = _resolve(spec, tmp_path)
    if spec.endswith("store.journal"):
        Path(url).mkdir()
    args = _command(command, tmp_path, url)
    before = _tree(tmp_path)
    result = _run(capsys, *args)
    shown = _shown(url)
    _assert_one_line_error(*result, *(f.format(tmp=tmp_path, shown=shown) for f in fragments))
    password = _password(url)
    assert not password or password not in result[2], result[2]
    assert _tree(tmp_path) == before


def test_password_with_at_sign_is_not_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _run(capsys, "best", "--storage", "mysql://me:hunt@er2@127.0.0.1:1/x")
    line = _assert_one_line_error(*result, "storage mysql://me:***@")
    assert "hunt" not in line and "er2" not in line, line


@pytest.mark.parametrize(
    "artifacts", [False, True], ids=["default-artifacts", "artifacts-elsewhere"]
)
def test_search_storage_under_a_regular_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], artifacts: bool
) -> None:
    """The storage is blamed, not the default artifact folder beside it."""
    path = _study_file(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    before = _tree(tmp_path)
    extra = ["--artifacts", str(tmp_path / "art")] if artifacts else []
    result = _run(capsys, "search", str(path), "--storage", str(blocker / "s.journal"), *extra)
    _assert_one_line_error(*result, f"storage {blocker / 's.journal'}: {blocker} is not a folder")
    assert _tree(tmp_path) == before


def test_yaml_file_given_as_journal_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A multi-line file that is not a journal (here a study file) is left alone."""
    path = _study_file(tmp_path)
    before = _tree(tmp_path)
    for args in (["search", str(path), "--storage", str(path)], ["best", "--storage", str(path)]):
        result = _run(capsys, *args)
        _assert_one_line_error(*result, f"storage {path}: ")
        assert _tree(tmp_path) == before


@pytest.mark.parametrize(
    "command",
    [
        "search",
        "best",
        "dashboard",
    ],
)  # fmt: skip
def test_one_line_text_file_given_as_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("remember to rerun with 20 trials\n")
    args = _command(command, tmp_path, str(notes))
    before = _tree(tmp_path)
    result = _run(capsys, *args)
    _assert_one_line_error(*result, str(notes), "not an Optuna journal")
    assert _tree(tmp_path) == before


def test_best_on_empty_sqlite_file_leaves_it_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "empty.db"
    db.write_bytes(b"")
    before = _tree(tmp_path)
    result = _run(capsys, "best", "--storage", f"sqlite:///{db}")
    _assert_one_line_error(*result, f"sqlite:///{db}")
    assert _tree(tmp_path) == before


@pytest.mark.postgres
def test_report_on_empty_postgres_database_creates_no_tables(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sqlalchemy import create_engine, inspect

    result = _run(capsys, "report", "--storage", postgres_url, "--out", str(tmp_path / "r.html"))
    _assert_one_line_error(*result, "holds no Optuna study")
    engine = create_engine(postgres_url)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


# ----------------------------------------------------------------------------- 3. data files


def _idx(array: np.ndarray, magic: int | None = None) -> bytes:
    """``array`` (uint8) as an IDX file (see lrtune/data/_idx.py), gzip-compressed."""
    array = np.asarray(array, dtype=np.uint8)
    magic = 0x0800 | array.ndim if magic is None else magic
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.tobytes())


TRAIN_X, TRAIN_Y = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
TEST_X, TEST_Y = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"


def _mnist(root: Path) -> Path:
    """Valid MNIST files, 20 training and 10 test images (random pixels)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    (root / TRAIN_X).write_bytes(_idx(rng.integers(0, 256, (20, 28, 28))))
    (root / TRAIN_Y).write_bytes(_idx(rng.integers(0, 10, 20)))
    (root / TEST_X).write_bytes(_idx(rng.integers(0, 256, (10, 28, 28))))
    (root / TEST_Y).write_bytes(_idx(rng.integers(0, 10, 10)))
    return root


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _mnist_truncated(d: Path) -> list[str]:
    _truncate(d / TRAIN_X)
    return [f"{d / TRAIN_X}: corrupt gzip file", "end-of-stream marker"]


def _mnist_wrong_magic(d: Path) -> list[str]:
    (d / TRAIN_X).write_bytes(_idx(np.zeros((20, 28, 28)), magic=0x000D0803))
    return [f"{d / TRAIN_X}: not an IDX image file: bad magic number 0x000d0803 "
            "(expected 0x00000803)"]  # fmt: skip


def _mnist_labels_as_images(d: Path) -> list[str]:
    (d / TRAIN_X).write_bytes((d / TRAIN_Y).read_bytes())
    return [f"{d / TRAIN_X}: wrong IDX image file", "(this looks like a label file)"]


def _mnist_count_mismatch(d: Path) -> list[str]:
    (d / TRAIN_Y).write_bytes(_idx(np.zeros(19)))
    return [f"{d / TRAIN_Y}: holds 19 labels but {d / TRAIN_X} holds 20 images"]


def _mnist_not_gzip(d: Path) -> list[str]:
    (d / TEST_Y).write_text("<html><body>404 Not Found</body></html>\n")  # a failed download
    return [f"{d / TEST_Y}: not an IDX label file: bad magic number 0x3c68746d"]


def _mnist_empty_file(d: Path) -> list[str]:
    (d / TEST_X).write_bytes(b"")
    return [f"{d / TEST_X}: not an IDX image file: only 0 bytes"]


def _mnist_label_out_of_range(d: Path) -> list[str]:
    (d / TEST_Y).write_bytes(_idx(np.full(10, 12)))
    return [f"{d / TEST_Y}: label 12 at index 0 is out of range [0, 10)"]


def _mnist_wrong_image_size(d: Path) -> list[str]:
    (d / TEST_X).write_bytes(_idx(np.zeros((10, 32, 32))))
    return [f"{d / TEST_X}: images are 32x32, expected 28x28"]


def _cifar10_archive(d: Path) -> Path:
    from tests.conftest import write_cifar

    return write_cifar(d, "cifar10", per_batch=4, archive=True)


def _cifar_truncated_archive(d: Path) -> list[str]:
    _truncate(_cifar10_archive(d))
    return [f"{d / 'cifar-10-python.tar.gz'}: truncated or corrupt tar.gz archive"]


def _cifar_archive_not_gzip(d: Path) -> list[str]:
    (d / "cifar-10-python.tar.gz").write_text("<html>rate limited</html>\n")
    return [f"{d / 'cifar-10-python.tar.gz'}: truncated or corrupt tar.gz archive: "
            "Not a gzipped file"]  # fmt: skip


def _cifar_batch_not_a_dict(d: Path) -> list[str]:
    from tests.conftest import write_cifar
    from tests.data.test_cifar import py2_pickle

    write_cifar(d, "cifar10", per_batch=4, archive=False)
    (d / "cifar-10-batches-py" / "data_batch_3").write_bytes(py2_pickle([1, 2, 3]))
    return [f"{d / 'cifar-10-batches-py' / 'data_batch_3'}: expected a dict batch, got list"]


def _cifar_archive_member_not_a_dict(d: Path) -> list[str]:
    from tests.data.test_cifar import py2_pickle, write_tar

    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    files = {f"cifar-10-batches-py/{n}": py2_pickle("not a batch") for n in names}
    archive = write_tar(d / "cifar-10-python.tar.gz", files)
    return [f"{archive} (member 'cifar-10-batches-py/data_batch_1'): "
            "expected a dict batch, got bytes"]  # fmt: skip


def _cifar100_truncated_pickle(d: Path) -> list[str]:
    from tests.conftest import write_cifar

    write_cifar(d, "cifar100", per_batch=4, archive=False)
    test = d / "cifar-100-python" / "test"
    _truncate(test)
    return [f"{test}: truncated or corrupt pickle"]


def _data_dir_is_a_file(d: Path) -> list[str]:
    import shutil

    shutil.rmtree(d)
    d.write_text("x")
    return [f"{d}: exists but is not a directory"]


# (id, dataset, breaker: writes bad files in the data folder, returns the fragments)
DATA: list[tuple[str, str, Callable[[Path], list[str]]]] = [
    ("mnist-truncated-gzip", "mnist", _mnist_truncated),
    ("mnist-wrong-magic", "mnist", _mnist_wrong_magic),
    ("mnist-label-file-as-images", "mnist", _mnist_labels_as_images),
    ("mnist-count-mismatch", "mnist", _mnist_count_mismatch),
    ("mnist-html-named-gz", "mnist", _mnist_not_gzip),
    ("mnist-empty-file", "mnist", _mnist_empty_file),
    ("mnist-label-out-of-range", "mnist", _mnist_label_out_of_range),
    ("mnist-wrong-image-size", "mnist", _mnist_wrong_image_size),
    ("mnist-data-dir-is-a-file", "mnist", _data_dir_is_a_file),
    ("cifar10-truncated-tar-gz", "cifar10", _cifar_truncated_archive),
    ("cifar10-tar-gz-not-gzip", "cifar10", _cifar_archive_not_gzip),
    ("cifar10-batch-not-a-dict", "cifar10", _cifar_batch_not_a_dict),
    ("cifar10-archive-member-not-a-dict", "cifar10", _cifar_archive_member_not_a_dict),
    ("cifar100-truncated-pickle", "cifar100", _cifar100_truncated_pickle),
]


@pytest.mark.parametrize(("dataset", "breaker"), [c[1:] for c in DATA], ids=[c[0] for c in DATA])
def test_train_bad_data_files(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    dataset: str,
    breaker: Callable[[Path], list[str]],
) -> None:
    """The data folder is left as it was: nothing downloaded, extracted or written."""
    data = tmp_path / "data"
    if dataset == "mnist":
        _mnist(data)
    else:
        data.mkdir()
    fragments = breaker(data)
    before = _tree(tmp_path)
    result = _run(
        capsys, "train", "--dataset", dataset, "--data-dir", str(data), "--no-download",
        "--model-option", "width=8", "--epochs", "1",
    )  # fmt: skip
    _assert_one_line_error(*result, *fragments)
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("storage", ["new-journal", "existing-journal", "new-sqlite"])
def test_search_with_corrupt_data_creates_no_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], storage: str
) -> None:
    data = _mnist(tmp_path / "data")
    fragments = _mnist_truncated(data)
    text = BASE.replace("dataset: digits", "dataset: mnist") + f"data_dir: {data}\n"
    path = _study_file(tmp_path, text + "download: false\n")
    url = {
        "new-journal": str(tmp_path / "s.journal"),
        "existing-journal": str(_journal(tmp_path / "s.journal", "bad", "other")),
        "new-sqlite": f"sqlite:///{tmp_path / 's.db'}",
    }[storage]
    before = _tree(tmp_path)
    result = _run(capsys, "search", str(path), "--storage", url)
    _assert_one_line_error(*result, *fragments)
    assert _tree(tmp_path) == before


# ----------------------------------------------------------------------------- 4. report/best/dash


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["best", "--study-name", "nope"],
         ["--study-name: no study 'nope' in {url}", "(studies there: a, b)"]),
        (["report", "--study-name", "nope", "--out", "{tmp}/r.html"],
         ["--study-name: no study 'nope' in {url}", "(studies there: a, b)"]),
        (["best"], ["--study-name: {url} holds 2 studies (a, b); name one"]),
        (["report", "--top", "-3", "--out", "{tmp}/r.html"],
         ["Invalid value for '--top'", "greater than or equal to 1"]),
        (["report", "--top", "many", "--out", "{tmp}/r.html"],
         ["Invalid value for '--top'", "valid integer"]),
        (["report", "--study-name", "a", "--out", "{tmp}/file/r.html"],
         ["--out: cannot write {tmp}/file/r.html"]),
        (["dashboard", "--port", "70000"],
         ["Invalid value for '--port'", "less than or equal to 65535"]),
        (["dashboard", "--port", "-1"],
         ["Invalid value for '--port'", "greater than or equal to 0"]),
        (["dashboard", "--port", "http"], ["Invalid value for '--port'", "valid integer"]),
        (["dashboard", "--port", "0", "--artifacts", "{tmp}/file/art"],
         ["artifacts {tmp}/file/art: {tmp}/file is not a folder"]),
        pytest.param(
            ["dashboard", "--port", "0", "--host", "no.such.host.invalid"],
            ["--host: cannot resolve 'no.such.host.invalid'"],
            id="dashboard-host-does-not-resolve",
        ),
    ],
    ids=["best-no-such-study", "report-no-such-study", "best-two-studies-no-name",
         "report-top-negative", "report-top-not-an-integer", "report-out-under-a-file",
         "dashboard-port-70000", "dashboard-port-negative", "dashboard-port-not-an-integer",
         "dashboard-artifacts-under-a-file", "dashboard-host-does-not-resolve"],
)  # fmt: skip
def test_read_commands_bad_input_on_sqlite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], fragments: list[str]
) -> None:
    """On an SQLite database with two studies (a, b), left byte-identical."""
    url = _sqlite(tmp_path / "s.db", "a", "b")
    (tmp_path / "file").write_text("x")
    before = _tree(tmp_path)
    filled = [a.format(tmp=tmp_path) for a in args]
    result = _run(capsys, filled[0], "--storage", url, *filled[1:])
    _assert_one_line_error(*result, *(f.format(tmp=tmp_path, url=url) for f in fragments))
    assert _tree(tmp_path) == before


def test_best_on_empty_journal_and_study_without_trials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.journal"
    empty.write_bytes(b"")
    one = _journal(tmp_path / "one.journal", "only")
    before = _tree(tmp_path)
    result = _run(capsys, "best", "--storage", str(empty))
    _assert_one_line_error(*result, f"--storage: {empty} holds no study yet")
    result = _run(capsys, "best", "--storage", str(one))
    _assert_one_line_error(*result, "study 'only' has no complete trial yet")
    assert _tree(tmp_path) == before


def test_dashboard_port_in_use_creates_no_artifact_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tests/test_dashboard.py checks the message; this checks nothing is created."""
    journal = _journal(tmp_path / "s.journal", "only")
    before = _tree(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run(capsys, "dashboard", "--storage", str(journal), "--port", str(port))
    _assert_one_line_error(*result, f"--port: cannot listen on 127.0.0.1:{port} (in use)")
    assert _tree(tmp_path) == before


@pytest.mark.parametrize(
    "kind", [pytest.param("postgres", marks=pytest.mark.postgres),
             pytest.param("mysql", marks=pytest.mark.mysql)],
)  # fmt: skip
def test_database_with_no_such_study(
    request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """A live database holding study 'a': `best` and `report` name the missing study and
    leave the database's studies as they were."""
    url = request.getfixturevalue(f"{kind}_url")
    storage = optuna.storages.RDBStorage(url)
    optuna.create_study(storage=storage, study_name="a")
    storage.engine.dispose()
    before = _tree(tmp_path)
    for args in (["best"], ["report", "--out", str(tmp_path / "r.html")]):
        result = _run(capsys, args[0], "--storage", url, "--study-name", "nope", *args[1:])
        _assert_one_line_error(
            *result, f"--study-name: no study 'nope' in {_shown(url)}", "(studies there: a)"
        )
    assert _study_names(url) == ["a"]
    assert _tree(tmp_path) == before


# ----------------------------------------------------------------------------- KEY=VALUE values


@pytest.mark.parametrize(
    ("command", "flag", "pair"),
    [("search", "--set", "space.lr.low=[1"), ("train", "--opt-param", "beta1=[0.9"),
     ("train", "--model-option", "width={")],
    ids=["search-set", "train-opt-param", "train-model-option"],
)  # fmt: skip
def test_flag_value_that_is_not_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, flag: str, pair: str
) -> None:
    args = [command] + (["--storage", str(tmp_path / "s.journal")] if command == "search" else [])
    if command == "search":
        args.insert(1, str(_study_file(tmp_path)))
    before = _tree(tmp_path)
    result = _run(capsys, *args, flag, pair)
    _assert_one_line_error(*result, flag, pair.split("=")[0])
    assert _tree(tmp_path) == before
