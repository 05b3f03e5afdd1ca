"""Typed, frozen configuration objects, validated once at the edge.

Raw input (CLI flags, YAML files, dicts from a notebook) becomes a :class:`TrainConfig` here;
everything after this module trusts these objects. Validation errors become one
:class:`~lrtune.errors.ConfigError` whose message names the field (and the file, when one
was read), e.g. ``run.yaml: optimizer.lr must be > 0, got -1.0``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lrtune.data._catalog import get_dataset_info
from lrtune.errors import ConfigError
from lrtune.models import get_model_info
from lrtune.optimizers import get_optimizer_info
from lrtune.schedules import get_schedule_info

__all__ = [
    "ClipConfig",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainConfig",
    "format_validation_error",
    "load_yaml",
    "train_config_from",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _positive_finite(value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"must be > 0, got {value!r}")
    return value


def _params(data: Mapping[str, Any]) -> Mapping[str, Any]:
    params = data.get("params") or {}
    if not isinstance(params, Mapping):
        raise ValueError(f"params must be a mapping, got {params!r}")
    return params


class OptimizerConfig(_Frozen):
    """An optimizer and its hyperparameters.

    Args:
        name: Registry name or alias (``adam``, ``nesterov``, ...); stored normalised.
        lr: Learning rate; ``None`` takes the registry default for ``name``.
        params: Other hyperparameters in lrtune names (``beta1``, ``momentum``,
            ``weight_decay``, ...). After validation it holds every declared
            hyperparameter, defaults filled in.
    """

    name: str = "adam"
    lr: float | None = None
    params: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any) -> Any:
        if isinstance(data, str):  # shorthand: `optimizer: adam`
            data = {"name": data}
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        info = get_optimizer_info(data.get("name", "adam"))
        data["name"] = info.name
        if data.get("lr") is None:
            data["lr"] = info.lr_default
        data["params"] = info.resolve(_params(data), prefix="params.")
        return data

    @field_validator("lr")
    @classmethod
    def _lr_positive(cls, value: float | None) -> float | None:
        return None if value is None else _positive_finite(value)


class ScheduleConfig(_Frozen):
    """An LR schedule, stepped per optimizer step.

    Args:
        name: Registry name (``constant``, ``step``, ``exponential``, ``cosine``,
            ``onecycle``, ``warmup_cosine``); default ``constant``.
        params: Its parameters; after validation every declared one, defaults filled in.
    """

    name: str = "constant"
    params: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any) -> Any:
        if isinstance(data, str):  # shorthand: `schedule: cosine`
            data = {"name": data}
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        info = get_schedule_info(data.get("name", "constant"))
        data["name"] = info.name
        data["params"] = info.resolve(_params(data), prefix="params.")
        return data


class ClipConfig(_Frozen):
    """Gradient clipping, applied by Lightning's Trainer before each optimizer step.

    Args:
        kind: ``none`` (default), ``norm`` (rescale so the total 2-norm is at most
            ``threshold``) or ``value`` (clamp each element to ±``threshold``).
        threshold: Clipping threshold (> 0); default 1.0 when clipping.
    """

    kind: Literal["none", "norm", "value"] = "none"
    threshold: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"kind": data} if isinstance(data, str) else data

    @field_validator("threshold")
    @classmethod
    def _threshold_positive(cls, value: float | None) -> float | None:
        return None if value is None else _positive_finite(value)

    @model_validator(mode="after")
    def _threshold(self) -> ClipConfig:
        if self.kind != "none" and self.threshold is None:
            object.__setattr__(self, "threshold", 1.0)
        return self

    @property
    def trainer_kwargs(self) -> dict[str, Any]:
        """``gradient_clip_val`` / ``gradient_clip_algorithm`` for ``lightning.Trainer``."""
        if self.kind == "none":
            return {}
        return {"gradient_clip_val": self.threshold, "gradient_clip_algorithm": self.kind}


class TrainConfig(_Frozen):
    """Everything needed to train one configuration.

    Args:
        dataset: ``digits`` (embedded default), ``mnist``, ``fashion-mnist``, ``cifar10``,
            ``cifar100``.
        data_dir: Folder with the dataset's files; default ``~/.cache/lrtune/<dataset>``
            (or ``$LRTUNE_DATA_DIR/<dataset>``).
        download: Download missing files from the official sources (checksums verified).
        model: ``mlp``, ``cnn`` or ``resnet``.
        model_options: Model options (``width``, ``activation``, ...).
        optimizer: Optimizer and its hyperparameters.
        schedule: LR schedule.
        clip: Gradient clipping.
        epochs: Training epochs (>= 1).
        batch_size: Batch size; default per dataset (digits and MNIST 64, CIFAR 512).
        val_fraction: Fraction of the training set held out for validation.
        augment: Random crop + flip on training batches; default on for CIFAR only.
        seed: Seeds weights, data split and batch order.
        device: ``auto`` (GPU if present), ``cpu``, ``gpu``/``cuda`` or ``mps``.
        precision: Lightning precision, e.g. ``32-true`` or ``bf16-mixed``.
    """

    dataset: str = "digits"
    data_dir: Path | None = None
    download: bool = True
    model: str = "mlp"
    model_options: dict[str, Any] = Field(default_factory=dict)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    clip: ClipConfig = Field(default_factory=ClipConfig)
    epochs: int = Field(10, ge=1)
    batch_size: int | None = Field(None, ge=1)
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    augment: bool | None = None
    seed: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    precision: Literal["32-true", "32", "16-mixed", "bf16-mixed", "bf16-true", "64-true"] = (
        "32-true"
    )

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str) -> str:
        return get_dataset_info(value).name

    @model_validator(mode="before")
    @classmethod
    def _model(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or not isinstance(data.get("model", "mlp"), str):
            return data
        data = dict(data)
        info = get_model_info(data.get("model", "mlp"))
        data["model"] = info.name
        options = data.get("model_options") or {}
        if not isinstance(options, Mapping):
            raise ValueError(f"model_options must be a mapping, got {options!r}")
        data["model_options"] = info.resolve(dict(options))
        return data

    @property
    def resolved_batch_size(self) -> int:
        """``batch_size``, or the dataset's default."""
        return self.batch_size or get_dataset_info(self.dataset).batch_size

    @property
    def resolved_augment(self) -> bool:
        """``augment``, or the dataset's default."""
        return get_dataset_info(self.dataset).augment if self.augment is None else self.augment

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (paths as strings)."""
        return self.model_dump(mode="json")


# ----------------------------------------------------------------------------- errors

_BUILTIN_MESSAGES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "literal_error": "must be one of {expected}",
    "model_type": "must be a mapping of fields",
    "model_attributes_type": "must be a mapping of fields",
    "dict_type": "must be a mapping",
    "int_from_float": "must be an integer",
}
_RELATIVE_FIELD = re.compile(r"^[a-z_][\w.]* (must|is|has|takes) ")


def format_validation_error(error: ValidationError, source: str | None = None) -> str:
    """One line for the first error in ``error``: ``[source: ]field message, got value``."""
    first = error.errors(include_url=False)[0]
    loc = ".".join(str(part) for part in first["loc"])
    kind = first["type"]
    if kind == "value_error":
        msg = str(first.get("ctx", {}).get("error", first["msg"]))
        if msg.startswith("must "):
            line = f"{loc} {msg}" if loc else msg
        elif _RELATIVE_FIELD.match(msg) and loc:
            line = f"{loc}.{msg}"
        else:
            line = f"{loc}: {msg}" if loc else msg
    else:
        template = _BUILTIN_MESSAGES.get(kind)
        if template is not None:
            msg = template.format(**first.get("ctx", {}))
        elif kind.endswith(("_type", "_parsing")):
            msg = "must be " + kind.rsplit("_", 1)[0].replace("_", " ").replace("bool", "a boolean")
            msg = msg.replace("be int", "be an integer").replace("be float", "be a number")
            msg = msg.replace("be string", "be a string").replace("be dict", "be a mapping")
        else:
            msg = first["msg"]
        line = f"{loc or '(top level)'} {msg}"
        if kind not in ("missing",) and "input" in first and not isinstance(first["input"], dict):
            line += f", got {first['input']!r}"
    return f"{source}: {line}" if source else line


def _validate(model: type[BaseModel], data: Mapping[str, Any], source: str | None) -> Any:
    try:
        return model.model_validate(dict(data))
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, source)) from None
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}" if source else str(error)) from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path``; errors name the file (and line for syntax errors)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read ({error})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        if mark is not None:
            problem = getattr(error, "problem", None) or "invalid YAML"
            raise ConfigError(f"{path}: line {mark.line + 1}: {problem}") from None
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(error).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must hold a mapping of fields, got {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def train_config_from(
    file: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> TrainConfig:
    """Build a :class:`TrainConfig` from an optional YAML file plus overrides.

    Args:
        file: YAML file with :class:`TrainConfig` fields (nested mappings for
            ``optimizer``, ``schedule``, ``clip``).
        overrides: Values that win over the file's (nested mappings are merged).

    Raises:
        ConfigError: One line naming the file (when given) and the field.
    """
    data: dict[str, Any] = load_yaml(file) if file is not None else {}
    if overrides:
        data = _merge(data, overrides)
    return _validate(TrainConfig, data, str(file) if file is not None else None)
