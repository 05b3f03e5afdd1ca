"""The training config: :class:`TrainConfig` (everything needed to train one
configuration) and its parts :class:`OptimizerConfig`, :class:`ScheduleConfig`,
:class:`ClipConfig` and :class:`ComponentConfig` (your own module or datamodule, by class
path), plus :func:`train_config_from` (YAML file + overrides -> TrainConfig).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from lrtune.config._base import _Frozen, _merge, _params, _positive_finite, _validate, load_yaml
from lrtune.datasets import get_dataset_info
from lrtune.models import get_model_info
from lrtune.optimizers import get_optimizer_info
from lrtune.schedules import get_schedule_info

__all__ = [
    "ClipConfig",
    "ComponentConfig",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainConfig",
    "train_config_from",
]


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


_CLASS_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


class ComponentConfig(_Frozen):
    """Your own class, named the LightningCLI way: ``class_path`` plus ``init_args``.

    Args:
        class_path: Import path ``package.module.Class``, importable from the current
            folder, the study file's folder, or installed.
        init_args: Keyword arguments for its constructor (default none).
    """

    class_path: str
    init_args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"class_path": data} if isinstance(data, str) else data

    @field_validator("class_path")
    @classmethod
    def _dotted(cls, value: str) -> str:
        if not _CLASS_PATH.match(value):
            raise ValueError(
                f"must be a dotted import path such as mypkg.models.LitNet, got {value!r}"
            )
        return value


MODEL_FIELDS = ("model", "model_options")
"""Fields for lrtune's models; ``module`` (your own LightningModule) replaces them."""
DATASET_FIELDS = ("dataset", "data_dir", "download", "val_fraction", "augment")
"""Fields for lrtune's datasets; ``datamodule`` (your own) replaces them."""


def check_styles(data: Mapping[str, Any]) -> None:
    """``module`` excludes ``model``/``model_options``; ``datamodule`` excludes the dataset
    fields and needs ``module``.

    Raises:
        ValueError: Naming the fields that cannot go together.
    """
    if data.get("module") is not None:
        given = [key for key in MODEL_FIELDS if data.get(key) not in (None, {})]
        if given:
            raise ValueError(
                f"module and {'/'.join(given)} are exclusive: give module (your "
                "LightningModule: class_path, init_args) or model (lrtune's mlp, cnn, "
                "resnet), not both"
            )
    if data.get("datamodule") is not None:
        given = [key for key in DATASET_FIELDS if data.get(key) is not None]
        if given:
            raise ValueError(
                f"datamodule and {'/'.join(given)} are exclusive: give datamodule (your "
                "LightningDataModule: class_path, init_args) or dataset (lrtune's), not both"
            )
        if data.get("module") is None:
            raise ValueError(
                "datamodule needs module: lrtune's models take their input shape from "
                "lrtune's datasets; give module (your LightningModule) as well"
            )


def with_code_dir(data: dict[str, Any], file: str | Path | None) -> dict[str, Any]:
    """``data`` read from ``file``: its class paths also import from the file's folder."""
    if file is None or data.get("code_dir") is not None:
        return data
    if data.get("module") is None and data.get("datamodule") is None:
        return data
    return {**data, "code_dir": str(Path(file).resolve().parent)}


def excluded_fields(module: object, datamodule: object) -> set[str]:
    """The fields a config of that style does not write out (see :func:`check_styles`)."""
    return (set(MODEL_FIELDS) if module is not None else set()) | (
        set(DATASET_FIELDS) if datamodule is not None else set()
    )


class TrainConfig(_Frozen):
    """Everything needed to train one configuration.

    Args:
        dataset: ``digits`` (embedded default), ``mnist``, ``fashion-mnist``, ``cifar10``,
            ``cifar100``.
        data_dir: Folder with the dataset's files; default ``~/.cache/lrtune/data/<dataset>``
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
        seed: Seeds weights and batch order (the train/validation split is fixed).
        device: ``auto`` (GPU if present), ``cpu``, ``gpu``/``cuda`` or ``mps``.
        precision: Lightning precision, e.g. ``32-true`` or ``bf16-mixed``.
        channels_last: Keep conv weights and inputs in channels-last memory layout (default
            on; a faster conv path on CPUs and on GPU tensor cores; no effect on models
            without convolutions).
        compile: ``torch.compile`` the network, once per process: later runs of the same
            model and input shape reuse the compiled code with fresh weights (default off;
            worth it on a GPU over many trials, not for a few short CPU runs).
        module: Your own LightningModule (``class_path``, ``init_args``) instead of
            ``model``: lrtune injects the optimizer, schedule and clipping into it.
        datamodule: Your own LightningDataModule instead of ``dataset`` (needs
            ``module``); ``batch_size`` goes to its ``init_args`` when given.
        code_dir: A folder the class paths of ``module``/``datamodule`` import from,
            besides the current folder and installed packages (default: the folder of the
            file the config was read from).
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
    seed: int = Field(0, ge=0, lt=2**32)
    device: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    precision: Literal["32-true", "32", "16-mixed", "bf16-mixed", "bf16-true", "64-true"] = (
        "32-true"
    )
    channels_last: bool = True
    compile: bool = False
    module: ComponentConfig | None = None
    datamodule: ComponentConfig | None = None
    code_dir: Path | None = None

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str) -> str:
        return get_dataset_info(value).name

    @model_validator(mode="before")
    @classmethod
    def _model(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            check_styles(data)
            if data.get("module") is not None:
                return data
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

    @model_validator(mode="after")
    def _schedule_free(self) -> TrainConfig:
        info = get_optimizer_info(self.optimizer.name)
        if info.schedule_free and self.schedule.name != "constant":
            raise ValueError(
                f"schedule: {info.name} replaces the LR schedule with its own averaging, so "
                f"it takes none (got {self.schedule.name!r}); use schedule: constant, and "
                "optimizer.params.warmup_steps for a warm-up"
            )
        return self

    @property
    def resolved_batch_size(self) -> int:
        """``batch_size``, or the dataset's default."""
        return self.batch_size or get_dataset_info(self.dataset).batch_size

    @property
    def resolved_augment(self) -> bool:
        """``augment``, or the dataset's default."""
        return get_dataset_info(self.dataset).augment if self.augment is None else self.augment

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (paths as strings); with ``module``/``datamodule``, without
        the fields they replace (so it validates again)."""
        excluded = excluded_fields(self.module, self.datamodule)
        excluded |= {k for k in ("module", "datamodule", "code_dir") if getattr(self, k) is None}
        return self.model_dump(mode="json", exclude=excluded)


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
    return _validate(
        TrainConfig, with_code_dir(data, file), str(file) if file is not None else None
    )
