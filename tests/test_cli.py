"""`lrtune train` / `lrtune list` end to end, and the one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lrtune.cli import main


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_train_digits_acceptance(capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's acceptance command: test_acc >= 0.95 (measured ~0.98 in ~1.5 s)."""
    code, out, err = _run(
        capsys, "train", "--dataset", "digits", "--model", "mlp", "--optimizer", "adam",
        "--lr", "3e-3", "--epochs", "10", "--json",
    )  # fmt: skip
    assert code == 0, err
    result = _last_json(out)
    assert result["test_acc"] >= 0.95
    assert result["epochs"] == 10 and result["seconds"] < 60
    assert {"val_acc", "val_loss", "test_loss", "train_loss", "steps", "config", "history"} <= set(
        result
    )
    assert result["config"]["optimizer"] == {
        "name": "adam",
        "lr": 3e-3,
        "params": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
    }
    assert len(result["history"]) == 10
    assert err.count("epoch ") == 10  # one progress line per epoch on stderr


def test_train_mnist_acceptance(capsys: pytest.CaptureFixture[str], mnist_dir: Path) -> None:
    """Real MNIST (6,309 training images), CNN, 2 epochs: test_acc >= 0.96."""
    code, out, err = _run(
        capsys, "train", "--dataset", "mnist", "--data-dir", str(mnist_dir), "--model", "cnn",
        "--optimizer", "adam", "--lr", "3e-3", "--epochs", "2", "--json", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    result = _last_json(out)
    assert result["test_acc"] >= 0.96, result["test_acc"]
    assert result["steps"] == 2 * (5678 // 64)
    assert "epoch" not in err


def test_same_seed_same_result_and_human_output(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "--epochs", "2", "--seed", "5", "--model-option", "width=32", "--quiet"]
    code1, out1, _ = _run(capsys, *args, "--json")
    code2, out2, _ = _run(capsys, *args, "--json")
    assert code1 == code2 == 0
    assert _last_json(out1)["val_loss"] == _last_json(out2)["val_loss"]
    code, out, _ = _run(capsys, *args)
    assert code == 0 and out.startswith("digits mlp adam lr=0.001") and "test_acc 0." in out


def test_config_file_and_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        "model: cnn\nmodel_options: {width: 4, hidden: 16}\n"
        "optimizer: {name: momentum, lr: 0.05, params: {momentum: 0.8}}\n"
        "schedule: {name: onecycle}\nclip: {kind: norm}\nepochs: 3\n"
    )
    code, out, err = _run(
        capsys, "train", "--config", str(config), "--epochs", "1", "--json", "--quiet",
        "--schedule-param", "pct_start=0.25",
    )  # fmt: skip
    assert code == 0, err
    cfg = _last_json(out)["config"]
    assert cfg["epochs"] == 1 and cfg["model"] == "cnn"
    assert cfg["optimizer"]["params"]["momentum"] == 0.8 and cfg["optimizer"]["lr"] == 0.05
    assert cfg["schedule"] == {
        "name": "onecycle",
        "params": {"pct_start": 0.25, "div_factor": 25.0, "final_div_factor": 1e4},
    }
    assert cfg["clip"] == {"kind": "norm", "threshold": 1.0}


BAD_INPUTS = [
    (["--optimizer", "adamx"], "--optimizer: unknown optimizer 'adamx'; known: sgd, momentum"),
    (["--dataset", "imagenet"], "--dataset: unknown dataset 'imagenet'; known: digits, mnist"),
    (["--model", "vgg"], "unknown model 'vgg'; known: mlp, cnn, resnet"),
    (["--schedule", "linear"], "unknown schedule 'linear'; known: constant, step"),
    (["--lr", "0"], "--lr must be > 0, got 0.0"),
    (["--lr", "-1"], "--lr must be > 0, got -1.0"),
    (["--lr", "nan"], "--lr must be > 0, got nan"),
    (["--lr", "abc"], "'--lr'"),
    (["--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--clip", "l2"], "--clip must be one of 'none', 'norm' or 'value', got 'l2'"),
    (["--clip", "norm", "--clip-threshold", "-1"], "must be > 0, got -1.0"),
    (["--optimizer", "sgd", "--opt-param", "beta1=0.9"], "params.beta1 is not taken by sgd"),
    (["--opt-param", "beta1=1.5"], "optimizer.params.beta1 must be in [0, 1), got 1.5"),
    (["--opt-param", "beta1"], "--opt-param expects KEY=VALUE, got 'beta1'"),
    (["--model-option", "width=0"], "model.width has an invalid value 0"),
    (["--device", "tpu"], "--device must be one of"),
    (["--bogus"], "No such option: --bogus"),
    (["--config", "/nonexistent/run.yaml"], "/nonexistent/run.yaml: no such file"),
]


@pytest.mark.parametrize(("args", "expected"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    code, out, err = _run(capsys, "train", *args)
    assert code == 2
    assert err.startswith("lrtune: error: ") and err.count("\n") == 1, err
    assert expected in err
    assert "Traceback" not in err and out == ""


def test_missing_and_corrupt_data_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mnist_dir: Path
) -> None:
    code, _, err = _run(
        capsys, "train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--no-download"
    )
    assert code == 2 and err.count("\n") == 1
    assert "t10k-images-idx3-ubyte.gz" in err and str(tmp_path) in err
    for f in mnist_dir.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    code, _, err = _run(capsys, "train", "--dataset", "mnist", "--data-dir", str(tmp_path))
    assert code == 2 and err.count("\n") == 1
    assert str(tmp_path / "train-images-idx3-ubyte.gz") in err


def test_bad_config_file_names_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("optimizer: {name: adam, lr: -3}\n")
    code, _, err = _run(capsys, "train", "--config", str(config))
    assert code == 2
    assert err == f"lrtune: error: {config}: optimizer.lr must be > 0, got -3.0\n"
    config.write_text("epochs: [1\n")
    code, _, err = _run(capsys, "train", "--config", str(config))
    assert code == 2 and err.startswith(f"lrtune: error: {config}: line ") and err.count("\n") == 1


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "list", "optimizers", "--json")
    assert code == 0
    names = [row["name"] for row in _last_json(out)["optimizers"]]
    assert names == [
        "sgd", "momentum", "nesterov", "rmsprop", "adagrad", "adam", "adamw", "adamax",
        "nadam", "radam", "schedulefree_adamw", "schedulefree_sgd", "prodigy",
    ]  # fmt: skip
    free = [r["name"] for r in _last_json(out)["optimizers"] if r["tuning_free"]]
    assert free == ["schedulefree_adamw", "prodigy"]
    code, out, _ = _run(capsys, "list")
    assert code == 0 and "warmup_cosine" in out and "resnet" in out and "cifar100" in out
    code, _, err = _run(capsys, "list", "losses")
    assert code == 2 and "unknown kind 'losses'" in err


def test_entry_points_run_without_traceback() -> None:
    """`python -m lrtune` is the installed CLI; bad input is one line, exit 2."""
    proc = subprocess.run(
        [sys.executable, "-m", "lrtune", "train", "--lr", "-1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr == "lrtune: error: --lr must be > 0, got -1.0\n"
    proc = subprocess.run(
        [sys.executable, "-m", "lrtune", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "train" in proc.stdout and "list" in proc.stdout


@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
def test_train_resnet_on_cifar_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], variant: str
) -> None:
    """CIFAR in the real archive format, augmented on the device, through ResNet-9."""
    from tests.conftest import write_cifar

    write_cifar(tmp_path, variant, per_batch=40, archive=True)
    code, out, err = _run(
        capsys, "train", "--dataset", variant, "--data-dir", str(tmp_path), "--model", "resnet",
        "--model-option", "width=8", "--batch-size", "32", "--epochs", "2", "--optimizer",
        "nesterov", "--schedule", "onecycle", "--clip", "norm", "--json", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    result = _last_json(out)
    assert result["steps"] == 2 * (180 // 32)
    assert result["config"]["augment"] is None  # dataset default: on for CIFAR
    assert 0.0 <= result["test_acc"] <= 1.0


def test_find_lr_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_html = tmp_path / "curves.html"
    code, out, err = _run(
        capsys, "find-lr", "--dataset", "digits", "--model", "mlp", "--model-option", "width=32",
        "--optimizers", "sgd,adam", "--num-steps", "40", "--out", str(out_html), "--json",
    )  # fmt: skip
    assert code == 0, err
    payload = _last_json(out)
    results = payload["results"]
    assert [r["optimizer"] for r in results] == ["sgd", "adam"]
    for r in results:
        assert r["num_steps"] == 40 and 10 <= r["steps_run"] <= 40
        if r["suggestion"] is not None:
            lo, hi = r["bracket"]
            assert lo <= hi and isinstance(r["suggestion"], float)
    # each sweep used the optimizer's own default range: sgd starts 10x lower than adam's top
    assert results[0]["lrs"][0] == pytest.approx(1e-5) and results[1]["lrs"][0] == pytest.approx(
        1e-6
    )
    html = out_html.read_text()
    assert "Plotly.newPlot" in html and "<script src=" not in html  # plotly.js inlined
    assert "sgd" in html and "adam" in html
    assert err.count("suggestion") >= 2  # progress lines on stderr


def test_find_lr_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(
        capsys, "find-lr", "--optimizers", "momentum", "--num-steps", "30",
        "--min-lr", "1e-4", "--max-lr", "1",
    )  # fmt: skip
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].split() == [
        "optimizer", "suggestion", "sweep", "bracket", "min", "loss", "steps", "probes"
    ]  # fmt: skip
    cells = lines[1].split()
    assert cells[0] == "momentum" and int(cells[-1]) >= 2  # verified by default
    code, out, err = _run(
        capsys, "find-lr", "--optimizers", "momentum", "--num-steps", "30",
        "--min-lr", "1e-4", "--max-lr", "1", "--no-verify",
    )  # fmt: skip
    plain = out.strip().splitlines()[1].split()
    assert code == 0 and plain[-1] == "0" and plain[1] == plain[2] == cells[2]


FIND_LR_BAD = [
    (["--optimizers", "sgd,lion"], "--optimizers: unknown optimizer 'lion'; known: sgd"),
    (["--optimizers", ","], "--optimizers: give at least one optimizer name"),
    (["--num-steps", "5"], "num_steps must be >= 10, got 5"),
    (["--min-lr", "1", "--max-lr", "0.1"], "max_lr must be > min_lr (1.0), got 0.1"),
    (["--min-lr", "-1"], "min_lr must be > 0, got -1.0"),
    (["--method", "magic"], "--method: unknown method 'magic'; known: steepest, valley"),
    (["--dataset", "svhn"], "--dataset: unknown dataset 'svhn'"),
]


@pytest.mark.parametrize(
    ("args", "expected"), FIND_LR_BAD, ids=[" ".join(a) for a, _ in FIND_LR_BAD]
)
def test_find_lr_bad_input(
    capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    code, out, err = _run(capsys, "find-lr", *args)
    assert code == 2 and out == ""
    assert err.startswith("lrtune: error: ") and err.count("\n") == 1, err
    assert expected in err


def test_version_and_bare_command(capsys: pytest.CaptureFixture[str]) -> None:
    from lrtune import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"lrtune {__version__}"
    assert main([]) == 0  # bare `lrtune`: the help, every command listed
    out = capsys.readouterr().out
    assert out.startswith("Usage: lrtune")
    for command in ("train", "find-lr", "search", "best", "report", "dashboard", "list"):
        assert f"  {command} " in out, command
