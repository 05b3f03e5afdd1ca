"""`search()` end to end on digits: trials, attrs, resume, dead trials, divergence, CLI."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from lrtune.cli import main
from lrtune.config import StudyConfig, study_config_from, train_config_from
from lrtune.errors import ConfigError
from lrtune.study import open_storage, search, trials_with_tests

ROOT = Path(__file__).resolve().parents[2]


def _study_file(tmp_path: Path, **fields: object) -> Path:
    data: dict[str, object] = {
        "name": "tiny",
        "dataset": "digits",
        "model": "mlp",
        "model_options": {"width": 16, "depth": 1},
        "budget": {"epochs": 3},
        "n_trials": 6,
        "seed": 0,
        "storage": str(tmp_path / "studies.journal"),
        "pruner": {"name": "median", "options": {"n_startup_trials": 2, "n_warmup_steps": 0}},
        "space": {"optimizers": ["sgd", "adam"], "schedules": ["constant", "cosine"]},
    }
    data.update(fields)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _load(tmp_path: Path, name: str = "tiny") -> optuna.Study:
    return optuna.load_study(
        study_name=name, storage=open_storage(str(tmp_path / "studies.journal"))
    )


def test_search_records_trials_and_resumes(tmp_path: Path) -> None:
    path = _study_file(tmp_path, enqueue_defaults=True)
    out = io.StringIO()
    study = search(path, progress=out, best_out=tmp_path / "best.yaml")
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 6
    # the two enqueued trials are the optimizers at their defaults
    first = study.trials[:2]
    assert [t.params["optimizer"] for t in first] == ["sgd", "adam"]
    assert first[1].params["adam.lr"] == pytest.approx(1e-3)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    for trial in complete:
        attrs = trial.user_attrs
        assert {"config", "seconds", "epochs", "val_acc", "val_loss", "worker"} <= set(attrs)
        assert "test_acc" not in attrs  # test: end stores it in the study, once per optimizer
        assert attrs["epochs"] == 3
        assert trial.value == attrs["val_acc"]
        assert attrs["config"]["optimizer"]["name"] == trial.params["optimizer"]
    merged = {t.number: t for t in trials_with_tests(study)}
    best_trial = merged[study.best_trial.number]
    assert 0 <= best_trial.user_attrs["test_acc"] <= 1
    # progress lines, one per finished trial, the test passes and the summary
    lines = out.getvalue().splitlines()
    assert sum(line.startswith("[") for line in lines) == 6
    assert f"test split, best {best_trial.params['optimizer']} trial {best_trial.number}: " in (
        out.getvalue()
    )
    assert any(line.startswith("study tiny:") for line in lines)
    assert "nan" not in lines[-1] and "nan" not in lines[-2]  # each optimizer's best has test_acc
    # the best config is a train config that reproduces the best trial's value, and its
    # test accuracy: the test pass at the end ran on that trial's own weights
    best = train_config_from(tmp_path / "best.yaml")
    assert best.to_dict() == study.best_trial.user_attrs["config"]
    from lrtune.training import train

    again = train(best)
    assert again.val_acc == pytest.approx(study.best_value, abs=1e-6)
    assert again.test_acc == pytest.approx(best_trial.user_attrs["test_acc"], abs=1e-6)
    # the study note is there for optuna-dashboard
    from optuna_dashboard import get_note

    note = get_note(study)
    assert note.startswith("# tiny") and "Best per optimizer" in note
    # rerun: nothing to do; raise n_trials: exactly the missing ones run
    search(path, progress=None)
    assert len(_load(tmp_path).trials) == len(study.trials)
    search(path, n_trials=8, progress=None)  # field overrides as keywords
    states = [t.state for t in _load(tmp_path).trials]
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 8
    assert TrialState.RUNNING not in states


def test_speed_switches_and_test_policy_may_change_on_resume(tmp_path: Path) -> None:
    """A rerun may turn channels_last/compile or the test policy on or off: same study."""
    search(_study_file(tmp_path, n_trials=1), progress=None, publish=False)
    again = _study_file(tmp_path, n_trials=2, channels_last=False, test="never")
    study = search(again, progress=None, publish=False)
    assert len(study.trials) == 2


def test_changed_study_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = _study_file(tmp_path, n_trials=1)
    search(path, progress=None)
    before = [(t.number, t.state, t.params) for t in _load(tmp_path).trials]
    changed = _study_file(tmp_path, n_trials=2, space={"optimizers": ["adamax"]})
    with pytest.raises(ConfigError, match="was created with a different configuration"):
        search(changed, progress=None)
    assert [(t.number, t.state, t.params) for t in _load(tmp_path).trials] == before


def test_diverging_trials_are_pruned_with_a_reason(tmp_path: Path) -> None:
    path = _study_file(
        tmp_path,
        n_trials=2,
        sampler={"name": "random"},
        space={"optimizers": ["sgd"], "lr": {"low": 1e3, "high": 1e4}},
    )
    study = search(path, progress=None)
    assert [t.state for t in study.trials] == [TrialState.PRUNED, TrialState.PRUNED]
    for trial in study.trials:
        reason = trial.user_attrs["diverged"]
        assert reason.startswith("diverged at step ") and trial.user_attrs["seconds"] > 0


def test_running_trial_of_a_dead_process_is_failed_and_retried(tmp_path: Path) -> None:
    path = _study_file(tmp_path, n_trials=2)
    config = study_config_from(path)
    storage = open_storage(config.storage)
    study = optuna.create_study(storage=storage, study_name="tiny", direction="maximize")
    study.set_user_attr("lrtune.study_config", config.to_dict())  # as lrtune's set-up does
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    trial = study.ask({"optimizer": optuna.distributions.CategoricalDistribution(["sgd", "adam"])})
    trial.set_user_attr("worker", f"{os.uname().nodename}:{dead}")
    search(path, progress=None)
    trials = _load(tmp_path).trials
    assert trials[0].state == TrialState.FAIL
    retry = [t for t in trials if t.user_attrs.get("retry_of") == 0]
    assert len(retry) == 1 and retry[0].params["optimizer"] == trials[0].params["optimizer"]
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 2


def test_lr_auto_runs_once_and_is_stored(tmp_path: Path) -> None:
    path = _study_file(
        tmp_path, n_trials=2, space={"optimizers": ["adam", "momentum"], "lr": {"auto": True,
                                                                                  "num_steps": 30}}
    )  # fmt: skip
    out = io.StringIO()
    study = search(path, progress=out)
    stored = study.user_attrs["lrtune.lr_auto"]
    assert set(stored) == {"adam", "momentum"}
    # enqueue_finder: the first trials run each optimizer at its range test's suggestion,
    # the rest at registry defaults; a 2-trial study searches the LR alone (space.grow)
    for trial, name in zip(study.trials, ["adam", "momentum"], strict=True):
        assert trial.user_attrs["start"] == "lr finder"
        assert trial.params == {
            "optimizer": name,
            f"{name}.lr": pytest.approx(stored[name]["result"]["suggestion"]),
            "schedule": "constant",
            "clip": "none",
        }
    assert "searched: adam: lr; beta1, beta2, weight_decay at registry defaults" in out.getvalue()
    for name, entry in stored.items():
        low, high = entry["range"]
        assert 0 < low < high
        assert len(entry["result"]["lrs"]) <= 30
        for trial in study.trials:
            if trial.params["optimizer"] == name:
                assert low <= trial.params[f"{name}.lr"] <= high
    # a resumed run reuses the stored ranges instead of testing again
    import lrtune.range_test._find

    calls = []
    original = lrtune.range_test._find.compare_optimizers
    lrtune.range_test._find.compare_optimizers = lambda *a, **k: (  # type: ignore[assignment]
        calls.append(1) or original(*a, **k)
    )
    try:
        study = search(path, overrides={"n_trials": 3}, progress=None)
    finally:
        lrtune.range_test._find.compare_optimizers = original
    assert calls == []
    assert "start" not in study.trials[2].user_attrs  # queued once per study, not per run


@pytest.mark.parametrize("when", ["upfront", "first_use"])
def test_the_timeout_counts_the_range_tests(tmp_path: Path, when: str) -> None:
    """timeout: is a wall budget from the call: range tests that outlast it leave no time
    for a trial (they used to start the clock only after them). On first use, a range test
    runs before its optimizer's first trial, so a spent budget runs neither."""
    path = _study_file(
        tmp_path, n_trials=None, timeout=0.001,
        space={"optimizers": ["adam"], "lr": {"auto": True, "num_steps": 30, "range_tests": when}},
    )  # fmt: skip
    study = search(path, progress=None)
    if when == "upfront":
        assert study.user_attrs["lrtune.lr_auto"]["adam"]["result"]["seconds"] > 0.001
        assert [t.state for t in study.trials] == [TrialState.WAITING]  # the finder's, queued
    else:
        assert "lrtune.lr_auto" not in study.user_attrs
        assert study.trials == []


def test_search_and_best_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _study_file(tmp_path, n_trials=3)
    storage = str(tmp_path / "studies.journal")
    code = main(["search", str(path), "--json", "--best-out", str(tmp_path / "b.yaml"),
                 "--set", "budget.epochs=2"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    payload = json.loads(out.strip().splitlines()[-1])
    assert payload["study_name"] == "tiny" and 0 < payload["value"] <= 1
    assert payload["config"]["epochs"] == 2 and (tmp_path / "b.yaml").exists()
    code = main(["best", "--study-name", "tiny", "--storage", storage, "--json"])
    out, _ = capsys.readouterr()
    best = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and best["value"] == payload["value"] and best["params"] == payload["params"]
    assert 0 < best["test"]["test_acc"] <= 1  # measured when the search ended (test: end)
    assert main(["best", "--study-name", "tiny", "--storage", storage]) == 0
    assert f"test split: test_acc {best['test']['test_acc']:.4f}" in capsys.readouterr().out
    # the storage is a standard Optuna storage: optuna's own CLI lists the trials
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "optuna"), "trials", "--storage", storage,
         "--study-name", "tiny", "-f", "json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 3


def test_kill_mid_trial_then_resume(tmp_path: Path) -> None:
    """SIGKILL the command while a trial runs; rerunning completes exactly n_trials."""
    path = _study_file(tmp_path, n_trials=4, budget={"epochs": 60})
    storage = str(tmp_path / "studies.journal")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lrtune", "search", str(path), "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            time.sleep(0.1)
            if not Path(storage).exists():
                continue
            try:
                trials = _load(tmp_path).trials
            except KeyError:
                continue
            if any(t.state == TrialState.RUNNING for t in trials):
                break
        else:
            pytest.fail("no trial started within 120 s")
        time.sleep(0.2)  # mid-trial (a trial takes seconds)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert any(t.state == TrialState.RUNNING for t in _load(tmp_path).trials)
    code = main(["search", str(path), "--quiet", "--best-out", str(tmp_path / "b.yaml")])
    assert code == 0
    states = [t.state for t in _load(tmp_path).trials]
    assert TrialState.RUNNING not in states
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 4
    assert states.count(TrialState.FAIL) >= 1


@pytest.mark.skipif(not (ROOT / "studies" / "quickstart.yaml").exists(), reason="no quickstart")
def test_quickstart_file_is_valid() -> None:
    config = study_config_from(ROOT / "studies" / "quickstart.yaml")
    assert config.name == "quickstart" and config.space.lr.auto and config.dataset == "digits"


@pytest.mark.parametrize("policy", ["end", "improving", "every", "never"])
def test_test_split_policy(tmp_path: Path, policy: str) -> None:
    """`test:` decides which trials evaluate the test split: `improving` tests exactly the
    trials that beat every earlier complete trial of their optimizer, right away; `end`
    (the default) only the best trial of each optimizer, once the search is over."""
    config = StudyConfig.model_validate(
        {
            "name": f"policy-{policy}", "dataset": "digits", "model": "mlp",
            "model_options": {"width": 16}, "budget": {"epochs": 1}, "n_trials": 8,
            "pruner": "none", "test": policy, "storage": str(tmp_path / "p.journal"),
            "space": {"optimizers": ["sgd", "adam"], "lr": {"low": 1e-3, "high": 0.3}},
        }
    )  # fmt: skip
    study = search(config, progress=None, publish=False)
    complete = sorted(
        (t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.datetime_complete
    )
    tested = {t.number for t in complete if "test_acc" in t.user_attrs}
    if policy == "end":
        assert tested == set()  # nothing on the trials themselves
        by_number = {t.number: t for t in trials_with_tests(study)}
        tested = {n for n in by_number if "test_acc" in by_number[n].user_attrs}
        best_of: dict[str, optuna.trial.FrozenTrial] = {}
        for trial in complete:
            name = trial.params["optimizer"]
            if name not in best_of or trial.value > best_of[name].value:
                best_of[name] = trial
        assert tested == {t.number for t in best_of.values()}
        assert len(tested) == 2 and study.best_trial.number in tested
        return
    if policy == "every":
        assert tested == {t.number for t in complete}
    elif policy == "never":
        assert tested == set()
    else:
        best: dict[str, float] = {}
        expected = set()
        for trial in complete:
            name = trial.params["optimizer"]
            if name not in best or trial.value > best[name]:
                expected.add(trial.number)
                best[name] = trial.value
        assert tested == expected
        assert study.best_trial.number in tested
        assert len(tested) < len(complete)  # some trials skipped the test pass


def test_compiled_trials_reuse_one_compilation(tmp_path: Path) -> None:
    """``compile: true``: the first trial compiles the network; later trials (and the test
    pass at the end) reuse it with fresh weights instead of compiling again."""
    import shutil

    if not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
        pytest.skip("torch.compile on CPU needs a C++ compiler")
    from torch._dynamo.utils import counters

    config = StudyConfig.model_validate(
        {
            "name": "compiled", "dataset": "digits", "model": "mlp",
            "model_options": {"width": 16}, "budget": {"epochs": 1}, "n_trials": 1,
            "pruner": "none", "compile": True, "storage": str(tmp_path / "c.journal"),
            "space": {"optimizers": ["sgd", "adam"], "lr": {"low": 1e-3, "high": 0.1}},
        }
    )  # fmt: skip
    search(config, progress=None, publish=False)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 1
    study = search(config, n_trials=4, progress=None, publish=False)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    assert counters["stats"]["unique_graphs"] == graphs
    best = {t.number: t for t in trials_with_tests(study)}[study.best_trial.number]
    assert 0.5 < best.user_attrs["test_acc"] <= 1


def test_divergence_check_reads_a_gpu_loss_every_tenth_step() -> None:
    """Reading a GPU loss waits for the step to finish: the divergence check does it on every
    10th step there (a NaN stays NaN), and on every step on a CPU."""
    from types import SimpleNamespace

    from lrtune.study._objective import _monitor_callback

    reads: list[int] = []

    class Loss:
        def __init__(self, value: float, device: str) -> None:
            self.value, self.device = value, SimpleNamespace(type=device)

        def __float__(self) -> float:
            reads.append(1)
            return self.value

    attrs: dict[str, object] = {}
    trial = SimpleNamespace(set_user_attr=attrs.__setitem__)
    for device, expected in (("cpu", 24), ("cuda", 3)):  # cuda: first step, steps 10 and 20
        reads.clear()
        check = _monitor_callback(trial)  # type: ignore[arg-type]
        for step in range(24):
            trainer = SimpleNamespace(global_step=step + 1)
            check.on_train_batch_end(trainer, None, Loss(2.0, device), None, step)  # type: ignore[arg-type]
        assert len(reads) == expected, device
    with pytest.raises(optuna.TrialPruned, match="diverged at step 30: loss is nan"):
        for step in range(24, 40):
            trainer = SimpleNamespace(global_step=step + 1)
            check.on_train_batch_end(trainer, None, Loss(math.nan, "cuda"), None, step)  # type: ignore[arg-type]
    assert "loss is nan" in str(attrs["diverged"])
