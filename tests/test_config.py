"""TrainConfig: defaults, normalisation, resolved parameters, and one-line error messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from lrtune.config import (
    ClipConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    load_yaml,
    train_config_from,
)
from lrtune.errors import ConfigError
from lrtune.models import get_model_info
from lrtune.optimizers import get_optimizer_info, list_optimizers
from lrtune.schedules import get_schedule_info, list_schedules

OPTIMIZER_NAMES = ", ".join(list_optimizers())


def _error(overrides: dict[str, Any] | None = None, file: Path | None = None) -> str:
    """The ConfigError message for building a config; it must be a single line."""
    with pytest.raises(ConfigError) as excinfo:
        train_config_from(file, overrides)
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.strip() == message
    return message


def _yaml(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- defaults


def test_defaults() -> None:
    config = TrainConfig()
    assert config.dataset == "digits"
    assert config.data_dir is None
    assert config.download is True
    assert config.model == "mlp"
    assert config.model_options == get_model_info("mlp").options
    assert config.model_options == {"width": 256, "depth": 2, "activation": "relu", "dropout": 0.0}
    assert config.optimizer.name == "adam"
    assert config.optimizer.lr == get_optimizer_info("adam").lr_default == 1e-3
    assert config.optimizer.params == {
        "beta1": 0.9,
        "beta2": 0.999,
        "eps": 1e-8,
        "weight_decay": 0.0,
    }
    assert config.schedule.name == "constant"
    assert config.schedule.params == {}
    assert config.clip.kind == "none"
    assert config.clip.threshold is None
    assert config.clip.trainer_kwargs == {}
    assert config.epochs == 10
    assert config.batch_size is None
    assert config.resolved_batch_size == 64
    assert config.val_fraction == 0.1
    assert config.augment is None
    assert config.resolved_augment is False
    assert config.seed == 0
    assert config.device == "auto"
    assert config.precision == "32-true"


def test_no_file_no_overrides_gives_defaults() -> None:
    assert train_config_from() == TrainConfig()
    assert train_config_from(None, {}) == TrainConfig()


def test_config_is_frozen() -> None:
    config = TrainConfig()
    with pytest.raises(ValidationError):
        config.epochs = 3  # type: ignore[misc]


def test_to_dict_is_json() -> None:
    config = train_config_from(None, {"data_dir": "/tmp/data", "schedule": {"name": "cosine"}})
    data = config.to_dict()
    assert data["data_dir"] == "/tmp/data"
    assert data["schedule"] == {"name": "cosine", "params": {"min_factor": 0.0}}
    assert json.loads(json.dumps(data)) == data
    assert TrainConfig.model_validate(data) == config


@pytest.mark.parametrize("name", list_optimizers())
def test_optimizer_defaults_come_from_the_registry(name: str) -> None:
    info = get_optimizer_info(name)
    config = OptimizerConfig(name=name)
    assert config.name == name
    assert config.lr == info.lr_default
    assert config.params == info.defaults()


def test_optimizer_params_are_resolved_with_defaults() -> None:
    config = OptimizerConfig(name="momentum", params={"momentum": 0.8})
    assert config.lr == 1e-2
    assert config.params == {"momentum": 0.8, "weight_decay": 0.0}
    config = OptimizerConfig(name="adamw", lr=3e-4, params={"beta2": 0.95, "eps": "1e-6"})
    assert config.lr == 3e-4
    assert config.params == {"beta1": 0.9, "beta2": 0.95, "eps": 1e-6, "weight_decay": 1e-2}
    assert OptimizerConfig(name="sgd", params=None).params == {"weight_decay": 0.0}


def test_explicit_none_lr_takes_the_default() -> None:
    assert OptimizerConfig(name="sgd", lr=None).lr == 1e-2


@pytest.mark.parametrize("name", list_schedules())
def test_schedule_defaults_come_from_the_registry(name: str) -> None:
    config = ScheduleConfig(name=name)
    assert config.params == {p.name: p.default for p in get_schedule_info(name).params}


def test_schedule_params_are_resolved() -> None:
    config = ScheduleConfig(name="step", params={"step_size": 5.0, "gamma": 0.5})
    assert config.params == {"step_size": 5, "gamma": 0.5}
    # stored as floats (the field is dict[str, float]); create_scheduler re-validates them
    assert get_schedule_info("step").resolve(config.params) == {"step_size": 5, "gamma": 0.5}


def test_model_options_are_resolved() -> None:
    config = TrainConfig(model="CNN", model_options={"width": 8.0, "activation": "gelu"})
    assert config.model == "cnn"
    assert config.model_options == {
        "width": 8,
        "hidden": 128,
        "activation": "gelu",
        "dropout": 0.0,
    }


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("spelling", "name"),
    [("AdamW", "adamw"), ("SGDM", "momentum"), ("nag", "nesterov"), (" RAdam ", "radam")],
)
def test_optimizer_name_is_normalised(spelling: str, name: str) -> None:
    config = TrainConfig(optimizer={"name": spelling})
    assert config.optimizer.name == name
    assert config.optimizer.params == get_optimizer_info(name).defaults()


def test_adamw_gets_its_own_weight_decay_default() -> None:
    assert TrainConfig(optimizer={"name": "AdamW"}).optimizer.params["weight_decay"] == 1e-2


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("one-cycle", "onecycle"),
        ("1cycle", "onecycle"),
        ("Warmup-Cosine", "warmup_cosine"),
        ("COSINE", "cosine"),
    ],
)
def test_schedule_name_is_normalised(spelling: str, name: str) -> None:
    config = TrainConfig(schedule={"name": spelling})
    assert config.schedule.name == name
    assert set(config.schedule.params) == set(get_schedule_info(name).param_names)


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("fashion_mnist", "fashion-mnist"),
        ("FMNIST", "fashion-mnist"),
        ("CIFAR-10", "cifar10"),
        ("cifar-100", "cifar100"),
        ("MNIST", "mnist"),
    ],
)
def test_dataset_name_is_normalised(spelling: str, name: str) -> None:
    assert TrainConfig(dataset=spelling).dataset == name


def test_dataset_defaults_for_batch_size_and_augment() -> None:
    cifar = TrainConfig(dataset="cifar10")
    assert cifar.resolved_batch_size == 512
    assert cifar.resolved_augment is True
    custom = TrainConfig(dataset="cifar100", batch_size=32, augment=False)
    assert custom.resolved_batch_size == 32
    assert custom.resolved_augment is False


# ----------------------------------------------------------------------------- clipping


def test_clip_norm_without_threshold_defaults_to_one() -> None:
    clip = TrainConfig(clip={"kind": "norm"}).clip
    assert clip.threshold == 1.0
    assert clip.trainer_kwargs == {"gradient_clip_val": 1.0, "gradient_clip_algorithm": "norm"}


def test_clip_value_with_threshold() -> None:
    clip = ClipConfig(kind="value", threshold=0.5)
    assert clip.trainer_kwargs == {"gradient_clip_val": 0.5, "gradient_clip_algorithm": "value"}


def test_clip_none_ignores_the_threshold() -> None:
    clip = ClipConfig(kind="none", threshold=2.0)
    assert clip.trainer_kwargs == {}
    assert ClipConfig().threshold is None


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"optimizer": {"lr": -1.0}}, "optimizer.lr must be > 0, got -1.0"),
        ({"optimizer": {"lr": 0}}, "optimizer.lr must be > 0, got 0.0"),
        ({"optimizer": {"lr": float("nan")}}, "optimizer.lr must be > 0, got nan"),
        ({"optimizer": {"lr": "fast"}}, "optimizer.lr must be a number, got 'fast'"),
        ({"epochs": 0}, "epochs must be >= 1, got 0"),
        ({"epochs": "ten"}, "epochs must be an integer, got 'ten'"),
        ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
        ({"seed": -1}, "seed must be >= 0, got -1"),
        ({"val_fraction": 1.0}, "val_fraction must be < 1.0, got 1.0"),
        ({"val_fraction": 0}, "val_fraction must be > 0.0, got 0"),
        ({"download": "maybe"}, "download must be a boolean, got 'maybe'"),
        (
            {"optimizer": {"params": {"beta1": 1.5}}},
            "optimizer.params.beta1 must be in [0, 1), got 1.5",
        ),
        (
            {"optimizer": {"name": "momentum", "params": {"momentum": -0.5}}},
            "optimizer.params.momentum must be in [0, 1), got -0.5",
        ),
        (
            {"optimizer": {"name": "sgd", "params": {"beta1": 0.9}}},
            "optimizer.params.beta1 is not taken by sgd (it takes: weight_decay)",
        ),
        ({"optimizer": {"params": [1]}}, "optimizer.params must be a mapping, got [1]"),
        (
            {"optimizer": {"name": "lion"}},
            f"optimizer: unknown optimizer 'lion'; known: {OPTIMIZER_NAMES}",
        ),
        (
            {"optimizer": {"learning_rate": 0.1}},
            "optimizer.learning_rate is not a known field, got 0.1",
        ),
        ({"foo": 1}, "foo is not a known field, got 1"),
        (
            {"clip": {"kind": "bogus"}},
            "clip.kind must be one of 'none', 'norm' or 'value', got 'bogus'",
        ),
        (
            {"device": "tpu"},
            "device must be one of 'auto', 'cpu', 'gpu', 'cuda' or 'mps', got 'tpu'",
        ),
        (
            {"schedule": {"name": "linear"}},
            "schedule: unknown schedule 'linear'; known: constant, step, exponential, cosine, "
            "onecycle, warmup_cosine",
        ),
        (
            {"schedule": {"name": "cosine", "params": {"min_factor": 2}}},
            "schedule.params.min_factor must be in [0, 1], got 2.0",
        ),
        (
            {"schedule": {"name": "cosine", "params": {"gamma": 0.5}}},
            "schedule.params.gamma is not taken by cosine (it takes: min_factor)",
        ),
        (
            {"schedule": {"name": "step", "params": {"step_size": 1.5}}},
            "schedule.params.step_size must be a whole number of steps, got 1.5",
        ),
        (
            {"dataset": "svhn"},
            "dataset: unknown dataset 'svhn'; known: digits, mnist, fashion-mnist, cifar10, "
            "cifar100",
        ),
        ({"model": "vit"}, "unknown model 'vit'; known: mlp, cnn, resnet"),
        ({"model_options": {"width": 0}}, "model.width has an invalid value 0"),
        (
            {"model_options": {"hidden": 8}},
            "model 'mlp' takes no option 'hidden' (known: width, depth, activation, dropout)",
        ),
        (
            {"model_options": {"activation": "swish"}},
            "model.activation: unknown activation 'swish'; known: relu, gelu, silu, tanh, "
            "leaky_relu",
        ),
        ({"model_options": [1]}, "model_options must be a mapping, got [1]"),
    ],
)
def test_error_messages(overrides: dict[str, Any], message: str) -> None:
    assert _error(overrides) == message


def test_invalid_clip_threshold_is_an_error() -> None:
    for threshold in (-1.0, 0.0, float("inf")):
        message = _error({"clip": {"kind": "norm", "threshold": threshold}})
        assert message.startswith("clip")
        assert f"must be > 0, got {threshold!r}" in message


def test_clip_threshold_error_names_the_field() -> None:
    assert _error({"clip": {"kind": "norm", "threshold": -1.0}}) == (
        "clip.threshold must be > 0, got -1.0"
    )


def test_non_mapping_section_message() -> None:
    assert _error({"optimizer": 3}) == "optimizer must be a mapping of fields, got 3"
    assert _error({"clip": [1]}) == "clip must be a mapping of fields, got [1]"


def test_sections_accept_a_name_as_shorthand() -> None:
    config = train_config_from(None, {"optimizer": "nag", "schedule": "one-cycle", "clip": "value"})
    assert config.optimizer.name == "nesterov" and config.optimizer.lr == 1e-2
    assert config.schedule.name == "onecycle"
    assert config.clip.kind == "value" and config.clip.threshold == 1.0


def test_fractional_epochs_message() -> None:
    assert _error({"epochs": 1.5}) == "epochs must be an integer, got 1.5"


# ----------------------------------------------------------------------------- files


def test_file_values_are_read(tmp_path: Path) -> None:
    path = _yaml(
        tmp_path,
        "dataset: fashion_mnist\n"
        "epochs: 3\n"
        "optimizer:\n"
        "  name: nesterov\n"
        "  lr: 0.05\n"
        "  params: {momentum: 0.8}\n"
        "schedule:\n"
        "  name: one-cycle\n"
        "  params: {pct_start: 0.25}\n"
        "clip: {kind: value}\n",
    )
    config = train_config_from(path)
    assert config.dataset == "fashion-mnist"
    assert config.epochs == 3
    assert config.optimizer == OptimizerConfig(name="nesterov", lr=0.05, params={"momentum": 0.8})
    assert config.optimizer.params == {"momentum": 0.8, "weight_decay": 0.0}
    assert config.schedule.name == "onecycle"
    assert config.schedule.params == {
        "pct_start": 0.25,
        "div_factor": 25.0,
        "final_div_factor": 1e4,
    }
    assert config.clip.trainer_kwargs == {
        "gradient_clip_val": 1.0,
        "gradient_clip_algorithm": "value",
    }
    assert train_config_from(str(path)) == config


def test_overrides_win_and_nested_mappings_merge(tmp_path: Path) -> None:
    path = _yaml(
        tmp_path,
        "epochs: 3\n"
        "seed: 7\n"
        "optimizer:\n"
        "  name: sgd\n"
        "  lr: 0.1\n"
        "  params: {weight_decay: 0.0001}\n"
        "model_options: {width: 32, depth: 1}\n",
    )
    config = train_config_from(
        path,
        {"epochs": 5, "optimizer": {"lr": 0.2}, "model_options": {"width": 64}},
    )
    assert config.epochs == 5
    assert config.seed == 7
    assert config.optimizer.name == "sgd"
    assert config.optimizer.lr == 0.2
    assert config.optimizer.params == {"weight_decay": 1e-4}
    assert config.model_options["width"] == 64
    assert config.model_options["depth"] == 1


def test_override_replaces_a_non_mapping_value(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "schedule: {name: step, params: {gamma: 0.5}}\n")
    config = train_config_from(path, {"schedule": {"params": {"step_size": 4}}})
    assert config.schedule.params == {"step_size": 4, "gamma": 0.5}
    config = train_config_from(path, {"schedule": {"name": "cosine", "params": None}})
    assert config.schedule.name == "cosine"
    assert config.schedule.params == {"min_factor": 0.0}


def test_file_error_starts_with_the_path(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "optimizer:\n  lr: -1.0\n")
    assert _error(file=path) == f"{path}: optimizer.lr must be > 0, got -1.0"


def test_file_error_for_unknown_names(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "model: vit\n")
    assert _error(file=path) == f"{path}: unknown model 'vit'; known: mlp, cnn, resnet"
    path = _yaml(tmp_path, "optimizer: {name: lion}\n")
    assert _error(file=path) == f"{path}: optimizer: unknown optimizer 'lion'; known: " + (
        OPTIMIZER_NAMES
    )


def test_bad_override_with_a_file_names_the_file(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "epochs: 3\n")
    assert _error({"epochs": 0}, path) == f"{path}: epochs must be >= 1, got 0"
    assert _error({"bogus": True}, path) == f"{path}: bogus is not a known field, got True"


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("epochs: 3\noptimizer:\n  name: adam\n  lr: [0.1\n", 5, "expected ',' or ']'"),
        ("epochs: 3\n  bad: indent\n", 2, "mapping values are not allowed here"),
        ("a: b: c\n", 1, "mapping values are not allowed here"),
    ],
)
def test_invalid_yaml_names_file_and_line(
    tmp_path: Path, text: str, line: int, problem: str
) -> None:
    path = _yaml(tmp_path, text)
    message = _error(file=path)
    assert message.startswith(f"{path}: line {line}: {problem}")


def test_invalid_yaml_without_a_position(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "epochs: 3\x00\n")
    message = _error(file=path)
    assert message.startswith(f"{path}: ")
    assert "::" not in message


@pytest.mark.parametrize(
    ("text", "kind"), [("- 1\n- 2\n", "list"), ("just text\n", "str"), ("3\n", "int")]
)
def test_yaml_must_hold_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    path = _yaml(tmp_path, text)
    assert _error(file=path) == f"{path}: must hold a mapping of fields, got {kind}"


def test_empty_yaml_gives_defaults(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "# nothing here\n")
    assert load_yaml(path) == {}
    assert train_config_from(path) == TrainConfig()


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert _error(file=path) == f"{path}: no such file"
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such file$"):
        load_yaml(str(path))


def test_undecodable_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"epochs: \xff\xfe\n")
    message = _error(file=path)
    assert message.startswith(f"{path}: cannot read (")
