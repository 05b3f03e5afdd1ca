"""Bad study files and flags for `lrtune search` / `lrtune best`: one line, exit 2, no storage.

Each case writes a small study file to tmp_path and runs
``main(["search", path, "--storage", tmp_path / "s.journal"])``. It must exit with code 2,
print exactly one line on stderr (``lrtune: error: ...``) that names the file and the field
(or the storage, for storage errors), print no traceback and no warnings (which the real CLI
would show on stderr), and leave the storage alone: no journal file is created, and an
existing study keeps its trials and attributes.

Only one test trains (a 2-trial study on digits, a few seconds, shared by the tests that need
an existing study); every other case fails before any training.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest

from lrtune.cli import main
from tests.cli_errors import assert_one_line_error, fresh_lrtune_logger, run_cli

# A valid, tiny study; each case changes one thing. `space` is last so cases can add to it.
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


def _replace(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new)


# (id, study file text, fragments the error line must contain besides the file path)
CASES: list[tuple[str, str, tuple[str, ...]]] = [
    ("unknown-top-level-key", BASE + "epochz: 3\n", ("epochz is not a known field",)),
    ("unknown-space-key", BASE + "  optimisers: [sgd]\n", ("space.optimisers is not a known",)),
    (
        "n_trials-wrong-type",
        _replace("n_trials: 2", 'n_trials: "ten"'),
        ("n_trials must be an integer", "'ten'"),
    ),
    ("n_trials-zero", _replace("n_trials: 2", "n_trials: 0"), ("n_trials must be >= 1",)),
    (
        "n_trials-and-timeout-missing",
        _replace("n_trials: 2\n", ""),
        ("n_trials or timeout is required",),
    ),
    ("timeout-negative", BASE + "timeout: -5\n", ("timeout must be > 0",)),
    (
        "report_every-above-steps",
        _replace("budget: {epochs: 1}", "budget: {steps: 10, report_every: 100}"),
        ("budget: report_every (100) is above steps (10)", "validation would never run"),
    ),
    ("seed-too-large", BASE + "seed: 99999999999\n", ("seed", "99999999999")),
    ("workers-zero", BASE + "workers: 0\n", ("workers must be >= 1 or 'auto'", "0")),
    ("workers-word", BASE + "workers: many\n", ("workers", "'many'")),
    (
        "trials_per_gpu-without-auto",
        BASE + "workers: 2\ntrials_per_gpu: 2\n",
        ("trials_per_gpu applies to workers: auto",),
    ),
    ("trials_per_gpu-zero", BASE + "workers: auto\ntrials_per_gpu: 0\n", ("trials_per_gpu",)),
    ("lr-high-infinite", BASE + "  lr: {low: 0.001, high: .inf}\n", ("space.lr.high",)),
    ("lr-widen-infinite", BASE + "  lr: {auto: true, widen: .inf}\n", ("space.lr.widen",)),
    ("budget-missing", _replace("budget: {epochs: 1}\n", ""), ("budget is required",)),
    (
        "budget-epochs-and-steps",
        _replace("budget: {epochs: 1}", "budget: {epochs: 1, steps: 50}"),
        ("budget", "exactly one of epochs or steps"),
    ),
    (
        "budget-epochs-zero",
        _replace("budget: {epochs: 1}", "budget: {epochs: 0}"),
        ("budget.epochs must be >= 1",),
    ),
    (
        "optimizers-empty",
        _replace("optimizers: [adam]", "optimizers: []"),
        ("space.optimizers must not be empty",),
    ),
    (
        "optimizers-repeated",
        _replace("optimizers: [adam]", "optimizers: [adam, sgd, adam]"),
        ("space.optimizers must not repeat",),
    ),
    (
        "optimizers-not-a-list",
        _replace("optimizers: [adam]", "optimizers: adam"),
        ("space.optimizers must be",),
    ),
    (
        "optimizer-unknown",
        _replace("optimizers: [adam]", "optimizers: [adam, adamx]"),
        ("space.optimizers", "unknown optimizer 'adamx'", "known: sgd"),
    ),
    (
        "schedule-unknown",
        BASE + "  schedules: [constant, linear]\n",
        ("space.schedules.1", "unknown schedule 'linear'", "known: constant"),
    ),
    (
        "schedule-param-unknown",
        BASE + "  schedules: [{name: step, params: {gama: 0.5}}]\n",
        ("space.schedules.0", "'gama'", "step_size, gamma"),
    ),
    (
        "schedule-param-out-of-range",
        BASE + "  schedules: [{name: onecycle, params: {pct_start: 1.5}}]\n",
        ("space.schedules.0.params.pct_start must be in (0, 1]", "1.5"),
    ),
    (
        "schedule-param-not-a-number",
        BASE + "  schedules: [{name: step, params: {gamma: half}}]\n",
        ("space.schedules.0.params.gamma must be a number", "'half'"),
    ),
    (
        "sampler-unknown",
        BASE + "sampler: {name: bayes}\n",
        ("sampler.name must be one of", "'bayes'"),
    ),
    ("pruner-unknown", BASE + "pruner: asha\n", ("pruner.name must be one of", "'asha'")),
    (
        "objective-metric-unknown",
        BASE + "objective: {metric: accuracy}\n",
        ("objective.metric must be one of", "'accuracy'"),
    ),
    (
        "lr-low-above-high",
        BASE + "  lr: {low: 0.1, high: 0.001}\n",
        ("space.lr.low must be < high", "low=0.1, high=0.001"),
    ),
    ("lr-negative-bound", BASE + "  lr: {low: -0.1, high: 0.1}\n", ("space.lr.low must be > 0",)),
    (
        "lr-one-bound",
        BASE + "  lr: {low: 0.001}\n",
        ("space.lr", "give both low and high"),
    ),
    (
        "lr-auto-with-bounds",
        BASE + "  lr: {auto: true, low: 0.001, high: 0.1}\n",
        ("space.lr", "auto takes its bounds from the range test"),
    ),
    ("lr-bad-shorthand", BASE + "  lr: automatic\n", ("space.lr must be a mapping", "automatic")),
    (
        "hyperparameter-unknown",
        BASE + "  hyperparameters: {gamma: {low: 0.1, high: 0.9}}\n",
        ("space.hyperparameters", "unknown hyperparameter 'gamma'", "known: alpha, beta1"),
    ),
    (
        "hyperparameter-low-equals-high",
        BASE + "  hyperparameters: {beta1: {low: 0.9, high: 0.9}}\n",
        ("space.hyperparameters.beta1", "low must be < high"),
    ),
    (
        "hyperparameter-negative-log-bound",
        BASE + "  hyperparameters: {weight_decay: {low: -1.0e-4, high: 1.0e-2}}\n",
        ("space.hyperparameters.weight_decay", "low must be > 0 on a log scale"),
    ),
    (
        "clip-kind-unknown",
        BASE + "  clip: [none, l2]\n",
        ("space.clip.1 must be one of 'none', 'norm' or 'value'", "'l2'"),
    ),
    (
        "clip-threshold-reversed",
        BASE + "  clip: [norm]\n  clip_threshold: {low: 10, high: 0.1}\n",
        ("space.clip_threshold.low must be < high",),
    ),
    (
        "batch-size-empty",
        BASE + "  batch_size: []\n",
        ("space.batch_size must be a non-empty list",),
    ),
    (
        "batch-size-zero",
        BASE + "  batch_size: [32, 0]\n",
        ("space.batch_size must be a non-empty list of sizes >= 1", "[32, 0]"),
    ),
    (
        "model-options-no-choices",
        BASE + "  model_options: {width: []}\n",
        ("space.model_options.width must list at least one choice",),
    ),
    (
        "model-options-not-a-list",
        BASE + "  model_options: {width: 8}\n",
        ("space.model_options.width must be",),
    ),
    (
        "dataset-unknown",
        _replace("dataset: digits", "dataset: imagenet"),
        ("dataset", "unknown dataset 'imagenet'"),
    ),
    ("val-fraction-one", BASE + "val_fraction: 1.0\n", ("val_fraction must be < 1",)),
    ("device-unknown", BASE + "device: tpu\n", ("device must be one of", "'tpu'")),
    (
        "top-level-model-option",
        _replace("model_options: {width: 8}", "model_options: {width: 0}"),
        ("model.width",),
    ),
    (
        "duplicate-key",
        BASE + "model_options: {width: 0}\n",
        ("line 9: duplicate key 'model_options'",),
    ),
    # Bugs (see each reason); strict, so they flip when fixed.
    pytest.param(
        "sampler-bad-option",
        BASE + "sampler: {name: tpe, options: {bogus: 1}}\n",
        ("sampler.options", "bogus"),
        id="sampler-bad-option",
    ),
    pytest.param(
        "pruner-bad-option",
        BASE + "pruner: {name: median, options: {bogus: 1}}\n",
        ("pruner.options", "bogus"),
        id="pruner-bad-option",
    ),
    # option values Optuna does not check (they failed every trial later, "failed with ?")
    (
        "sampler-option-wrong-type",
        BASE + "sampler: {name: tpe, options: {n_startup_trials: ten}}\n",
        ("sampler.options.n_startup_trials", "valid integer", "'ten'"),
    ),
    (
        "pruner-option-wrong-type",
        BASE + "pruner: {name: median, options: {n_warmup_steps: 1.5}}\n",
        ("pruner.options.n_warmup_steps", "valid integer", "1.5"),
    ),
    (
        "sampler-options-that-clash",
        BASE + "sampler: {name: tpe, options: {multivariate: false, group: true}}\n",
        ("sampler.options", "group", "multivariate"),
    ),
    pytest.param(
        "model-options-invalid-choice",
        BASE + "  model_options: {width: [0]}\n",
        ("space.model_options.width", "0"),
        id="model-options-invalid-choice",
    ),
    pytest.param(
        "model-options-unknown-option",
        BASE + "  model_options: {widht: [8]}\n",
        ("space.model_options", "'widht'"),
        id="model-options-unknown-option",
    ),
    pytest.param(
        "hyperparameter-range-clean-message",
        BASE + "  hyperparameters: {beta1: {low: 0.9, high: 0.8}}\n",
        ("space.hyperparameters.beta1.low must be < high",),
        id="hyperparameter-range-clean-message",
    ),
    pytest.param(
        "schedule-range-reversed",
        BASE + "  schedules: [{name: onecycle, params: {pct_start: {low: 0.5, high: 0.1}}}]\n",
        ("space.schedules.0.params.pct_start", "low must be < high"),
        id="schedule-range-reversed",
    ),
    pytest.param(
        "hyperparameter-range-outside-valid-values",
        BASE + "  hyperparameters: {beta1: {low: 0.9, high: 1.5}}\n",
        ("space.hyperparameters.beta1", "1.5"),
        id="hyperparameter-range-outside-valid-values",
    ),
    pytest.param(
        "schedule-range-outside-valid-values",
        BASE + "  schedules: [{name: onecycle, params: {pct_start: {low: 1.5, high: 2.0}}}]\n",
        ("space.schedules.0.params.pct_start", "(0, 1]"),
        id="schedule-range-outside-valid-values",
    ),
    pytest.param(
        "name-empty",
        _replace("name: bad", 'name: ""'),
        ("name must not be empty",),
        id="name-empty",
    ),
]


def _ids(case: Any) -> str:
    return case[0] if isinstance(case, tuple) else case.id


_run = run_cli
_assert_one_line_error = assert_one_line_error


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _snapshot(journal: Path) -> dict[str, Any]:
    """Every study in the journal: its attributes and its trials."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(journal)))
    out = {}
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = [
            (t.number, t.state, t.params, t.values, t.user_attrs, t.intermediate_values)
            for t in study.get_trials(deepcopy=False)
        ]
        out[summary.study_name] = (study.user_attrs, trials)
    return out


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fresh `lrtune` logger; cwd in tmp_path, so a case that wrongly ran a search leaves
    no best-*.yaml in the repository."""
    monkeypatch.chdir(tmp_path)
    with fresh_lrtune_logger():
        yield


@pytest.mark.parametrize(("name", "text", "fragments"), CASES, ids=[_ids(c) for c in CASES])
def test_bad_study_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    text: str,
    fragments: tuple[str, ...],
) -> None:
    path = _write(tmp_path, name, text)
    journal = tmp_path / "s.journal"
    result = _run(capsys, "search", str(path), "--storage", str(journal))
    line = _assert_one_line_error(*result, *fragments)
    assert line.startswith(f"lrtune: error: {path}: "), line
    assert not journal.exists()


def test_yaml_syntax_error_names_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "syntax", _replace("\nmodel: mlp", "\n  model: mlp"))  # line 3
    journal = tmp_path / "s.journal"
    result = _run(capsys, "search", str(path), "--storage", str(journal))
    _assert_one_line_error(*result, f"{path}: line 3: mapping values are not allowed here")
    assert not journal.exists()
    path.write_text(_replace("n_trials: 2", "n_trials: [2"))  # the list opened on line 6 ...
    result = _run(capsys, "search", str(path), "--storage", str(journal))
    _assert_one_line_error(*result, f"{path}: line 7: expected ',' or ']'")  # ... ends on 7
    assert not journal.exists()


@pytest.mark.parametrize(
    ("text", "kind"), [("- adam\n- sgd\n", "list"), ("just a string\n", "str")], ids=["list", "str"]
)
def test_study_file_not_a_mapping(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, kind: str
) -> None:
    path = _write(tmp_path, "notamap", text)
    journal = tmp_path / "s.journal"
    result = _run(capsys, "search", str(path), "--storage", str(journal))
    _assert_one_line_error(*result, f"{path}: must hold a mapping of fields, got {kind}")
    assert not journal.exists()


def test_study_file_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.yaml"
    journal = tmp_path / "s.journal"
    result = _run(capsys, "search", str(path), "--storage", str(journal))
    _assert_one_line_error(*result, f"{path}: no such file")
    assert not journal.exists()


def test_missing_data_names_the_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    text = _replace("dataset: digits", "dataset: mnist") + f"data_dir: {empty}\ndownload: false\n"
    path = _write(tmp_path, "nodata", text)
    journal = tmp_path / "s.journal"
    result = _run(capsys, "search", str(path), "--storage", str(journal))
    _assert_one_line_error(*result, str(empty), "train-images-idx3-ubyte.gz", "download disabled")
    assert not journal.exists()
    assert list(empty.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "fragments"),
    [
        (
            "postgresql://user:secret@127.0.0.1:1/x",
            ("storage postgresql://user:***@127.0.0.1:1/x: cannot open",),
        ),
        ("sqlite:////nonexistent-dir/sub/x.db", ("storage sqlite:////nonexistent-dir/sub/x.db",)),
    ],
    ids=["postgresql", "sqlite-missing-dir"],
)
def test_bad_storage_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, fragments: tuple[str, ...]
) -> None:
    """Exit 2, one line naming the storage with the password masked (warnings: see below)."""
    path = _write(tmp_path, "ok", BASE)
    code, out, err, _ = _run(capsys, "search", str(path), "--storage", url)
    _assert_one_line_error(code, out, err, [], *fragments)
    assert "secret" not in err


def test_bad_storage_url_prints_no_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "ok", BASE)
    result = _run(
        capsys, "search", str(path), "--storage", "postgresql://user:secret@127.0.0.1:1/x"
    )
    _assert_one_line_error(*result, "user:***@")


def test_storage_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "ok", BASE)
    folder = tmp_path / "store"
    folder.mkdir()
    result = _run(capsys, "search", str(path), "--storage", str(folder))
    _assert_one_line_error(*result, f"storage {folder}: is a directory")
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "fragments", "names_file"),
    [
        (["--set", "n_trials"], ("--set expects FIELD=VALUE, got 'n_trials'",), False),
        (["--set", "=3"], ("--set expects FIELD=VALUE, got '=3'",), False),
        (["--set", "epochz=3"], ("epochz is not a known field",), True),
        (["--set", "space.lr.low=abc"], ("space.lr.low must be a number", "'abc'"), True),
        (["--set", "budget.epochs=0"], ("budget.epochs must be >= 1",), True),
        (["--n-trials", "0"], ("n_trials must be >= 1",), True),
        (["--n-trials", "ten"], ("'--n-trials'",), False),
    ],
    ids=["set-no-equals", "set-no-field", "set-unknown-field", "set-bad-value", "set-epochs-0",
         "n-trials-0", "n-trials-not-int"],
)  # fmt: skip
def test_bad_flags(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    fragments: tuple[str, ...],
    names_file: bool,
) -> None:
    path = _write(tmp_path, "ok", BASE)
    journal = tmp_path / "s.journal"
    result = _run(capsys, "search", str(path), "--storage", str(journal), *args)
    line = _assert_one_line_error(*result, *fragments)
    if names_file:
        assert f"{path}: " in line
    assert not journal.exists()


# ----------------------------------------------------------------------------- existing study


@pytest.fixture(scope="module")
def existing(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A real 2-trial study (digits, MLP width 8, 1 epoch): (study file, journal)."""
    root = tmp_path_factory.mktemp("existing")
    path = root / "tiny.yaml"
    path.write_text(BASE.replace("name: bad", "name: tiny"), encoding="utf-8")
    journal = root / "studies.journal"
    with fresh_lrtune_logger():
        code = main(
            ["search", str(path), "--storage", str(journal), "--quiet",
             "--best-out", str(root / "best.yaml")]
        )  # fmt: skip
    assert code == 0
    snapshot = _snapshot(journal)
    assert list(snapshot) == ["tiny"] and len(snapshot["tiny"][1]) == 2
    return path, journal


def test_rerun_with_changed_space_is_refused(
    existing: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, journal = existing
    before = _snapshot(journal)
    changed = _write(tmp_path, "tiny", path.read_text().replace("[adam]", "[adam, sgd]"))
    result = _run(capsys, "search", str(changed), "--storage", str(journal))
    _assert_one_line_error(
        *result,
        f"study 'tiny' in {journal} was created with a different configuration",
        "changed: space",
        "use another --study-name",
    )
    assert _snapshot(journal) == before


@pytest.mark.parametrize(
    "text",
    [
        BASE.replace("name: bad", "name: tiny") + "epochz: 3\n",
        BASE.replace("name: bad", "name: tiny") + "pruner: {name: median, options: {bogus: 1}}\n",
        BASE.replace("name: bad", "name: tiny") + "sampler: {name: tpe, options: {bogus: 1}}\n",
    ],
    ids=["unknown-key", "pruner-bad-option", "sampler-bad-option"],
)
def test_bad_rerun_leaves_existing_study_unchanged(
    existing: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    _, journal = existing
    before = _snapshot(journal)
    path = _write(tmp_path, "tiny", text)
    code, out, err, _ = _run(capsys, "search", str(path), "--storage", str(journal))
    assert code == 2 and err.startswith("lrtune: error: ") and err.count("\n") == 1, err
    assert out == ""
    assert _snapshot(journal) == before


def test_best_unknown_study_lists_the_studies(
    existing: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, journal = existing
    before = _snapshot(journal)
    result = _run(capsys, "best", "--study-name", "nope", "--storage", str(journal))
    _assert_one_line_error(
        *result, f"--study-name: no study 'nope' in {journal}", "(studies there: tiny)"
    )
    assert _snapshot(journal) == before


def test_best_on_missing_journal_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "typo" / "s.journal"
    result = _run(capsys, "best", "--study-name", "nope", "--storage", str(journal))
    _assert_one_line_error(*result, "--storage: no journal file at", str(journal))
    assert not journal.exists() and not journal.parent.exists()


def test_a_lock_study_name_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A study named like a set-up lock would be deleted by the next search as a stale lock."""
    path = _write(tmp_path, "ok", BASE)
    journal = tmp_path / "s.journal"
    result = _run(capsys, "search", str(path), "--storage", str(journal),
                  "--study-name", "mine.lrtune-lock")  # fmt: skip
    _assert_one_line_error(*result, "name: 'mine.lrtune-lock' ends with '.lrtune-lock'")
    assert not journal.exists()


def test_another_tools_study_is_never_written_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An existing plain Optuna study of the same name (no lrtune config) is refused
    before lrtune adds anything to it."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    journal = tmp_path / "s.journal"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    other = optuna.create_study(study_name="theirs", storage=storage)
    other.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=3)
    before = _snapshot(journal)
    path = _write(tmp_path, "ok", BASE)
    result = _run(capsys, "search", str(path), "--storage", str(journal),
                  "--study-name", "theirs")  # fmt: skip
    _assert_one_line_error(
        *result, "study 'theirs'", "already holds 3 trials and was not made by lrtune",
        "(direction minimize, parameters: x)",
    )  # fmt: skip
    assert _snapshot(journal) == before


def test_a_study_named_like_a_lock_is_never_taken_for_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another tool's study named ``<name>.lrtune-lock`` with trials is not a set-up lock:
    the search of ``<name>`` stops with one line instead of deleting it as a stale lock."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    journal = tmp_path / "s.journal"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    other = optuna.create_study(study_name="bad.lrtune-lock", storage=storage)
    other.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=2)
    path = _write(tmp_path, "ok", BASE)
    result = _run(capsys, "search", str(path), "--storage", str(journal))
    _assert_one_line_error(
        *result, "study 'bad.lrtune-lock' is in the storage and is not an lrtune set-up lock"
    )
    kept = optuna.load_study(study_name="bad.lrtune-lock", storage=storage)
    assert len(kept.trials) == 2


@pytest.mark.parametrize("url", ["sqlite:/studies.db", "sqlite:studies.db", "postgresql:/x"])
def test_a_database_url_missing_a_slash_is_refused(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not taken for a journal file in a new folder named ``sqlite:``."""
    path = _write(tmp_path, "ok", BASE)
    result = _run(capsys, "search", str(path), "--storage", url)
    _assert_one_line_error(*result, f"storage {url}: looks like a database URL without '://'")
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize(
    ("sets", "fragment"),
    [(("space.lr=auto", "space.lr.low=0.001"),
      "--set space.lr.low: clashes with space.lr='auto', set before"),
     (("space.lr.low=0.001", "space.lr=auto"),
      "--set space.lr='auto': clashes with the space.lr.* values set before")],
)  # fmt: skip
def test_clashing_set_overrides_are_refused(
    sets: tuple[str, str], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "ok", BASE)
    journal = tmp_path / "s.journal"
    args = [a for pair in sets for a in ("--set", pair)]
    result = _run(capsys, "search", str(path), "--storage", str(journal), *args)
    _assert_one_line_error(*result, fragment)
    assert not journal.exists()


@pytest.mark.parametrize("where", ["folder", "under-a-file", "long-name"])
def test_bad_outputs_are_refused_before_any_trial(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--best-out a folder or under a file, and a study name too long to name files, are
    refused before the storage is touched (they used to fail after the trials ran)."""
    path = _write(tmp_path, "ok", BASE)
    journal = tmp_path / "s.journal"
    (tmp_path / "afolder").mkdir()
    (tmp_path / "afile").write_text("x")
    extra, fragment = {
        "folder": (["--best-out", str(tmp_path / "afolder")], "best_out: "),
        "under-a-file": (["--best-out", str(tmp_path / "afile" / "b.yaml")],
                         "which is not a folder"),
        "long-name": (["--study-name", "n" * 300], "name: 300 bytes long, at most 200"),
    }[where]  # fmt: skip
    result = _run(capsys, "search", str(path), "--storage", str(journal), *extra)
    _assert_one_line_error(*result, fragment)
    assert not journal.exists()


def test_yaml_aliases_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A few nested aliases expand to gigabytes (an alias bomb): aliases are refused."""
    bomb = BASE + 'question: &a ["lol", "lol", "lol"]\nexpected_cost: &b [*a, *a, *a]\n'
    path = _write(tmp_path, "bomb", bomb)
    journal = tmp_path / "s.journal"
    result = _run(capsys, "search", str(path), "--storage", str(journal))
    _assert_one_line_error(*result, "line 10: YAML aliases (*name) are not allowed")
    assert not journal.exists()


@pytest.mark.parametrize("source", ["big-file", "dev-zero"])
def test_endless_or_huge_files_are_refused(
    source: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """At most a megabyte is read: /dev/zero does not exhaust the memory."""
    if source == "dev-zero":
        path = Path("/dev/zero")
        if not path.exists():
            pytest.skip("no /dev/zero here")
    else:
        path = _write(tmp_path, "big", BASE + "question: " + "x" * 1_100_000 + "\n")
    journal = tmp_path / "s.journal"
    result = _run(capsys, "search", str(path), "--storage", str(journal))
    _assert_one_line_error(*result, f"{path}: more than 1000000 characters")
    assert not journal.exists()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [(BASE.replace("dataset: digits", "dataset: " + "d" * 500), "dataset"),
     (BASE.replace("n_trials: 2", "n_trials: " + "9" * 500 + "x"), "n_trials"),
     (BASE.replace("[adam]", "[" + ", ".join(["adam"] * 400) + "]"), "space.optimizers")],
    ids=["long-string", "long-number-text", "long-list"],
)  # fmt: skip
def test_a_long_value_is_cut_in_the_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, fragment: str
) -> None:
    """A value quoted in an error is cut to about 80 characters, and the line stays short."""
    path = _write(tmp_path, "long", text)
    line = _assert_one_line_error(*_run(capsys, "search", str(path)), fragment)
    assert len(line) < 700 and "characters)" in line, line


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (not a database)."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


@pytest.mark.parametrize("scheme", ["mysql", "mysql+pymysql", "postgresql", "postgresql+psycopg2"])
def test_a_port_where_no_database_speaks_ends_in_one_line(
    scheme: str,
    silent_server: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`--storage mysql://...` at a port that accepts but never answers used to hang."""
    import importlib.util
    import time

    import lrtune.storage

    module = {"mysql": "MySQLdb", "mysql+pymysql": "pymysql", "postgresql": "psycopg",
              "postgresql+psycopg2": "psycopg2"}[scheme]  # fmt: skip
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    monkeypatch.setattr(lrtune.storage, "CONNECT_TIMEOUT_S", 1)
    path = _write(tmp_path, "ok", BASE)
    url = f"{scheme}://user@127.0.0.1:{silent_server}/db"
    start = time.monotonic()
    result = _run(capsys, "search", str(path), "--storage", url)
    _assert_one_line_error(*result, "storage", "cannot open")
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("damage", ["torn-line", "unknown-operation"])
def test_a_damaged_journal_is_named_at_its_line(
    damage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A torn journal line used to be reported at "line 1 column 31" (of that line), and an
    unknown operation as "Should not reach."; both name the file's line now, in words."""
    import json

    from optuna.storages.journal import JournalFileBackend, JournalStorage

    journal = tmp_path / "s.journal"
    study = optuna.create_study(
        study_name="tiny", storage=JournalStorage(JournalFileBackend(str(journal)))
    )
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    lines = journal.read_text().splitlines()
    if damage == "torn-line":
        lines[5] = lines[5][:30]
        fragments = ("line 6 is not a whole JSON operation", "a write cut short")
    else:
        entry = json.loads(lines[5])
        entry["op_code"] = 99
        lines[5] = json.dumps(entry)
        fragments = ("line 6 holds an unknown operation (op_code 99",)
    journal.write_text("\n".join(lines) + "\n")
    before = journal.read_bytes()
    for command in (
        ["best", "--study-name", "tiny"],
        ["search", str(_write(tmp_path, "ok", BASE))],
    ):
        result = _run(capsys, *command, "--storage", str(journal))
        _assert_one_line_error(*result, f"storage {journal}: cannot open", *fragments)
    assert journal.read_bytes() == before
