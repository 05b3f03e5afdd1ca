"""Bad input around your own module and datamodule: one ``lrtune: error:`` line naming the
field, exit code 2, and the storage exactly as it was (nothing written)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest

from tests.cli_errors import assert_one_line_error, fresh_lrtune_logger, run_cli

SPY = "tests.own_pkg.spy"

BASE = f"""\
name: own
module:
  class_path: {SPY}.Spy
  init_args: {{hidden: 16}}
datamodule:
  class_path: {SPY}.Data
  init_args: {{batch_size: 32}}
budget: {{epochs: 1}}
objective: {{metric: val_loss}}
n_trials: 2
pruner: none
space:
  optimizers: [adam]
  lr: {{low: 0.001, high: 0.01}}
"""


def _with(**replace: str) -> str:
    """BASE with whole lines replaced (``key: "new line"``) or removed (``""``)."""
    lines = []
    skip_block = False
    for line in BASE.splitlines():
        key = line.split(":", 1)[0]
        if skip_block and line.startswith("  "):
            continue
        skip_block = False
        if key in replace:
            if replace[key]:
                lines.append(replace[key])
            skip_block = not line.strip().endswith("}") and not line.strip().endswith("]")
            continue
        lines.append(line)
    return "\n".join(lines) + "\n"


def _module(class_path: str, init_args: str = "{}") -> str:
    return f"module: {{class_path: {class_path}, init_args: {init_args}}}"


def _datamodule(class_path: str, init_args: str = "{}") -> str:
    return f"datamodule: {{class_path: {class_path}, init_args: {init_args}}}"


# (id, study file text, fragments of the one error line)
CASES: list[tuple[str, str, list[str]]] = [
    ("module-and-model", BASE + "model: cnn\n",
     ["module and model are exclusive", "not both"]),
    ("module-and-model-options", BASE + "model_options: {width: 8}\n",
     ["module and model_options are exclusive"]),
    ("datamodule-and-dataset", BASE + "dataset: mnist\n",
     ["datamodule and dataset are exclusive"]),
    ("datamodule-without-module", _with(module="", objective="objective: {metric: val_acc}"),
     ["datamodule needs module"]),
    ("class-path-not-dotted", _with(module=_module("Spy")),
     ["module.class_path must be a dotted import path", "'Spy'"]),
    ("class-path-no-such-module", _with(module=_module("nopkg.models.LitNet")),
     ["module.class_path: no module named 'nopkg'", "run lrtune from the folder"]),
    ("class-path-no-such-class", _with(module=_module(f"{SPY}.Nope")),
     ["module.class_path: module tests.own_pkg.spy has no 'Nope'"]),
    ("class-path-not-a-class", _with(module=_module(f"{SPY}.CONSTANT")),
     ["module.class_path: tests.own_pkg.spy.CONSTANT is a int, not a class"]),
    ("class-path-not-a-module", _with(module=_module("collections.OrderedDict")),
     ["module.class_path: collections.OrderedDict is not a LightningModule"]),
    ("datamodule-is-a-module", _with(datamodule=_datamodule(f"{SPY}.Spy")),
     ["datamodule.class_path: tests.own_pkg.spy.Spy is not a LightningDataModule"]),
    ("import-raises", _with(module=_module("tests.own_pkg.broken.Model")),
     ["module.class_path: importing tests.own_pkg.broken failed",
      "RuntimeError: cannot import: the user's settings are missing"]),
    ("import-exits", _with(module=_module("tests.own_pkg.exits.Model")),
     ["module.class_path: importing tests.own_pkg.exits called sys.exit(0)"]),
    ("import-parses-the-command-line", _with(module=_module("tests.own_pkg.argparsing.Model")),
     ["module.class_path: importing tests.own_pkg.argparsing called sys.exit(2)",
      "it printed 'usage: train.py [-h] --data DATA'"]),
    ("init-args-unknown", _with(module=_module(f"{SPY}.Spy", "{hiden: 3}")),
     ["module.init_args: Spy: TypeError:", "unexpected keyword argument 'hiden'"]),
    ("init-args-rejected-by-the-class", _with(module=_module(f"{SPY}.Spy", "{hidden: 0}")),
     ["module.init_args: Spy: ValueError: hidden must be >= 1, got 0"]),
    ("init-args-not-a-mapping", _with(module=_module(f"{SPY}.Spy", "[1, 2]")),
     ["module.init_args must be a mapping"]),
    ("module-unknown-key", _with(module=f"module: {{class_path: {SPY}.Spy, init_arg: {{}}}}"),
     ["module.init_arg is not a known field"]),
    ("model-options-key-not-an-argument", BASE + "  model_options: {width: [8, 16]}\n",
     ["space.model_options.width: Spy takes no argument 'width'"]),
    ("batch-size-not-an-argument", _with(datamodule=_datamodule(f"{SPY}.FixedBatch"))
     + "batch_size: 64\n",
     ["batch_size: tests.own_pkg.spy.FixedBatch takes no batch_size argument"]),
    ("space-batch-size-not-an-argument", _with(datamodule=_datamodule(f"{SPY}.FixedBatch"))
     + "  batch_size: [16, 32]\n",
     ["space.batch_size: FixedBatch takes no batch_size argument"]),
    ("custom-metric-without-direction", _with(objective="objective: {metric: val_f1}"),
     ["objective.direction is required for metric 'val_f1'"]),
    ("lrtune-model-custom-metric", _with(module="", datamodule="",
                                         objective="objective: {metric: val_f1}"),
     ["objective.metric must be one of 'val_acc', 'val_loss'", "'val_f1'"]),
    ("namespaces-mixed", _with(datamodule=_datamodule("tests.own_pkg.spy_pl.Data")),
     ["datamodule: Spy is written against lightning.pytorch, Data against pytorch_lightning",
      "import Lightning the same way in both"]),
]  # fmt: skip


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}  # fmt: skip


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    with fresh_lrtune_logger():
        yield


@pytest.mark.parametrize(("name", "text", "fragments"), CASES, ids=[c[0] for c in CASES])
def test_search_bad_module_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str,
    fragments: list[str],
) -> None:  # fmt: skip
    if "pytorch_lightning" in " ".join(fragments):
        pytest.importorskip("pytorch_lightning", reason="pip install pytorch-lightning")
    study = tmp_path / "study.yaml"
    study.write_text(text)
    journal = tmp_path / "s.journal"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(journal)))  # fmt: skip
    optuna.create_study(study_name="other", storage=storage)
    before = _tree(tmp_path)
    result = run_cli(capsys, "search", study, "--storage", journal)
    assert_one_line_error(*result, *fragments)
    assert _tree(tmp_path) == before


TRAIN_CASES: list[tuple[str, list[str], list[str]]] = [
    ("train-module-and-model-flag", ["train", "--model", "cnn"],
     ["module and model are exclusive"]),
    ("train-bad-init-args", ["train", "--epochs", "1"], ["module.init_args: Spy: TypeError"]),
    ("find-lr-bad-init-args", ["find-lr", "--optimizers", "adam"],
     ["module.init_args: Spy: TypeError"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "args", "fragments"), TRAIN_CASES,
                         ids=[c[0] for c in TRAIN_CASES])  # fmt: skip
def test_train_and_find_lr_bad_module_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, args: list[Any],
    fragments: list[str],
) -> None:  # fmt: skip
    init_args = "{hidden: 16}" if name == "train-module-and-model-flag" else "{hiden: 16}"
    config = tmp_path / "run.yaml"
    config.write_text(
        f"module: {{class_path: {SPY}.Spy, init_args: {init_args}}}\ndatamodule: {SPY}.Data\n"
    )
    before = _tree(tmp_path)
    result = run_cli(capsys, *args, "--config", config)
    assert_one_line_error(*result, *fragments)
    assert _tree(tmp_path) == before


# (id, study file text, extra CLI args, exit code, fragments of the one error line)
RUNTIME_CASES: list[tuple[str, str, list[str], int, list[str]]] = [
    ("setup-raises", _with(datamodule=_datamodule(f"{SPY}.BrokenSetup")), [], 2,
     ["BrokenSetup.setup raised FileNotFoundError: the user's data folder /data/train is "
      "missing"]),
    ("setup-raises-quiet", _with(datamodule=_datamodule(f"{SPY}.BrokenSetup")), ["-q"], 2,
     ["BrokenSetup.setup raised FileNotFoundError"]),
    ("setup-raises-in-the-range-tests",
     _with(datamodule=_datamodule(f"{SPY}.BrokenSetup")).replace(
         "lr: {low: 0.001, high: 0.01}", "lr: auto"), [], 2,
     ["BrokenSetup.setup raised FileNotFoundError"]),
    ("training-step-raises", _with(module=_module(f"{SPY}.Spy", "{fail: true}")), [], 1,
     ["Spy.training_step raised RuntimeError: the user's training_step is broken",
      "3 trials in a row failed"]),
    ("training-step-returns-no-loss", _with(module=_module(f"{SPY}.NoLoss")), [], 2,
     ["'loss' key needs to be present"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "args", "code", "fragments"), RUNTIME_CASES,
                         ids=[c[0] for c in RUNTIME_CASES])  # fmt: skip
def test_an_error_in_the_users_code_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, args: list[str],
    code: int, fragments: list[str],
) -> None:  # fmt: skip
    """The user's hook raising during the trials or the range tests: one line naming the
    class and the hook, no traceback on the terminal; the tracebacks are in the log file
    that the line names. No trial completes."""
    study = tmp_path / "study.yaml"
    study.write_text(text.replace("n_trials: 2", "n_trials: 4"))
    journal = tmp_path / "s.journal"
    result = run_cli(capsys, "search", study, "--storage", journal, *args)
    # without -q, the progress lines (and the summary of a stopped study) come before the
    # one error line; none of them is a traceback or an Optuna warning
    status, out, err, shown = result
    lines = err.splitlines()
    assert not any(x.startswith(("[W", "  File ", "Traceback")) for x in lines), lines
    if "-q" in args:
        assert len(lines) == 1, lines
    line = assert_one_line_error(code if code == 2 else 2, out, lines[-1] + "\n", shown,
                                 *fragments)  # fmt: skip
    assert status == code, err
    log = Path(line.rpartition("(traceback")[2].partition(": ")[2].rstrip(")"))
    assert log.is_file() and "Traceback (most recent call last)" in log.read_text(), line
    if journal.exists():
        storage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(journal)))  # fmt: skip
        for summary in optuna.get_all_study_summaries(storage):
            trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
            assert not any(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


def test_find_lr_names_the_users_hook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(f"module: {SPY}.Spy\ndatamodule: {SPY}.BrokenSetup\n")
    result = run_cli(capsys, "find-lr", "--config", config, "--optimizers", "adam")
    line = assert_one_line_error(*result, "BrokenSetup.setup raised FileNotFoundError")
    assert "(traceback: " in line
