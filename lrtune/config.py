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
    "Budget",
    "ClipConfig",
    "LRSpace",
    "Objective",
    "OptimizerConfig",
    "PrunerConfig",
    "Range",
    "SamplerConfig",
    "ScheduleChoice",
    "ScheduleConfig",
    "SpaceConfig",
    "StudyConfig",
    "TrainConfig",
    "format_validation_error",
    "load_yaml",
    "study_config_from",
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
        channels_last: Keep conv weights and inputs in channels-last memory layout (default
            on; a faster conv path on CPUs and on GPU tensor cores; no effect on models
            without convolutions).
        compile: ``torch.compile`` the network, once per process: later runs of the same
            model and input shape reuse the compiled code with fresh weights (default off;
            worth it on a GPU over many trials, not for a few short CPU runs).
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
    channels_last: bool = True
    compile: bool = False

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
    "too_short": "must not be empty",
    "string_too_short": "must not be empty",
}
# pydantic puts union members into the location (``function-after[_ordered(), Range]``,
# ``float``); they mean nothing to a user.
_UNION_TAG = re.compile(r"^(function-\w+\[.*\]|float|int|str|bool|[A-Z]\w*|literal\[.*\])$")
_RELATIVE_FIELD = re.compile(r"^[a-z_][\w.]* (must|is|has|takes) ")


def format_validation_error(error: ValidationError, source: str | None = None) -> str:
    """One line for the first error in ``error``: ``[source: ]field message, got value``."""
    errors = error.errors(include_url=False)
    # of several errors for one union field, the one a validator wrote says most
    first = next((e for e in errors if e["type"] == "value_error"), errors[0])
    loc = ".".join(str(part) for part in first["loc"] if not _UNION_TAG.match(str(part)))
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


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML keeps the last)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


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
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
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


# ----------------------------------------------------------------------------- studies


ClipKind = Literal["none", "norm", "value"]


class Range(_Frozen):
    """A search range. ``log`` searches on a log scale (both ends must then be > 0)."""

    low: float
    high: float
    log: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        for name in ("low", "high"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            if self.log and value <= 0:
                raise ValueError(f"{name} must be > 0 on a log scale, got {value!r}")
        if self.low >= self.high:
            raise ValueError(f"low must be < high, got low={self.low!r}, high={self.high!r}")
        return self


class LRSpace(_Frozen):
    """How the learning rate is searched.

    Args:
        auto: Run an LR range test per optimizer once per study and search each
            optimizer's LR within its bracket, widened ``widen`` times each way.
        low: Lower bound for every optimizer (default: each optimizer's registry range).
        high: Upper bound for every optimizer.
        widen: Factor the range-test bracket is widened by, each way (default 3).
        num_steps: Steps of each range test (default 100).
        linked: One LR parameter per optimizer (``adam.lr``, ``sgd.lr``) so a model-based
            sampler learns LR per optimizer (default ``True``); ``False``: one shared ``lr``.
    """

    auto: bool = False
    low: float | None = Field(None, gt=0)
    high: float | None = Field(None, gt=0)
    widen: float = Field(3.0, ge=1.0)
    num_steps: int = Field(100, ge=10)
    linked: bool = True

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if data == "auto":
            return {"auto": True}
        return data

    @model_validator(mode="after")
    def _bounds(self) -> LRSpace:
        if (self.low is None) != (self.high is None):
            raise ValueError("give both low and high, or neither")
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError(f"low must be < high, got low={self.low!r}, high={self.high!r}")
        if self.auto and self.low is not None:
            raise ValueError("auto takes its bounds from the range test; drop low/high")
        return self


class ScheduleChoice(_Frozen):
    """A schedule the search may pick, with fixed values or ranges for its parameters."""

    name: str
    params: dict[str, float | Range] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any) -> Any:
        if isinstance(data, str):
            data = {"name": data}
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        info = get_schedule_info(data.get("name", ""))
        data["name"] = info.name
        params = dict(_params(data))
        for key, value in params.items():
            declared = info.param(key)  # unknown -> error naming it
            if isinstance(value, Mapping):
                for end in ("low", "high"):
                    if end in value:
                        declared.check(value[end], field_name=f"params.{key}.{end}")
            else:
                declared.check(value, field_name=f"params.{key}")
        data["params"] = params
        return data


class SpaceConfig(_Frozen):
    """What a study searches.

    Args:
        optimizers: Optimizers to choose from (registry names).
        lr: ``auto``, ``{low, high}``, or omitted for each optimizer's registry range.
        hyperparameters: Ranges for optimizer hyperparameters by lrtune name (``beta1``,
            ``beta2``, ``momentum``, ``alpha``, ``eps``, ``weight_decay``), or ``false`` to
            keep the registry default. Omitted ones: searched over the registry range if the
            registry marks them tunable. Each is searched only for optimizers that take it.
        schedules: Schedules to choose from (names, or ``{name, params}`` with ranges).
        clip: Clipping kinds to choose from (``none``, ``norm``, ``value``).
        clip_threshold: Range of the clipping threshold (default 0.1..10, log).
        batch_size: Batch sizes to choose from (off by default).
        model_options: Model options to choose from, e.g. ``{width: [64, 128]}``.
    """

    optimizers: list[str] = Field(min_length=1)
    lr: LRSpace = Field(default_factory=lambda: LRSpace())
    hyperparameters: dict[str, Range | Literal[False]] = Field(default_factory=dict)
    schedules: list[ScheduleChoice] = Field(
        default_factory=lambda: [ScheduleChoice(name="constant")], min_length=1
    )
    clip: list[ClipKind] = Field(default_factory=lambda: list[ClipKind](["none"]), min_length=1)
    clip_threshold: Range = Field(default_factory=lambda: Range(low=0.1, high=10.0))
    batch_size: list[int] | None = None
    model_options: dict[str, list[Any]] = Field(default_factory=dict)

    @field_validator("optimizers")
    @classmethod
    def _optimizers(cls, value: list[str]) -> list[str]:
        names = [get_optimizer_info(name).name for name in value]
        if len(set(names)) != len(names):
            raise ValueError(f"must not repeat an optimizer, got {value!r}")
        return names

    @field_validator("hyperparameters")
    @classmethod
    def _hyperparameters(cls, value: dict[str, Any]) -> dict[str, Any]:
        from lrtune.optimizers import OPTIMIZERS

        declared = {h.name: h for info in OPTIMIZERS.values() for h in info.hyperparameters}
        for key, rng in value.items():
            if key not in declared:
                known = ", ".join(sorted(declared))
                raise ValueError(f"unknown hyperparameter {key!r}; known: {known}")
            if isinstance(rng, Range):
                for end in ("low", "high"):
                    declared[key].check(getattr(rng, end), field_name=f"{key}.{end}")
        return value

    @field_validator("batch_size")
    @classmethod
    def _batch_sizes(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or any(v < 1 for v in value)):
            raise ValueError(f"must be a non-empty list of sizes >= 1, got {value!r}")
        return value

    @field_validator("model_options")
    @classmethod
    def _model_options(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, choices in value.items():
            if not choices:
                raise ValueError(f"{key} must list at least one choice")
        return value


class Budget(_Frozen):
    """Training budget of one trial: ``epochs``, or ``steps`` with a report interval."""

    epochs: int | None = Field(None, ge=1)
    steps: int | None = Field(None, ge=1)
    report_every: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one(self) -> Budget:
        if (self.epochs is None) == (self.steps is None):
            raise ValueError("give exactly one of epochs or steps")
        if self.epochs is not None and self.report_every is not None:
            raise ValueError("report_every is for a steps budget (epochs report every epoch)")
        return self


class Objective(_Frozen):
    """The metric a study optimises (reported after each validation)."""

    metric: Literal["val_acc", "val_loss"] = "val_acc"
    direction: Literal["maximize", "minimize"] | None = None

    @property
    def resolved_direction(self) -> str:
        """``direction``, or maximize for accuracy and minimize for loss."""
        if self.direction is not None:
            return self.direction
        return "maximize" if self.metric.endswith("acc") else "minimize"


class SamplerConfig(_Frozen):
    """An Optuna sampler by name, with keyword options passed to it."""

    name: Literal["tpe", "random", "gp", "cmaes", "grid"] = "tpe"
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data


class PrunerConfig(_Frozen):
    """An Optuna pruner by name, with keyword options passed to it."""

    name: Literal["median", "hyperband", "successive-halving", "none"] = "median"
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            data = {"name": data}
        if isinstance(data, Mapping) and isinstance(data.get("name"), str):
            data = {**data, "name": data["name"].replace("_", "-")}
        return data


class StudyConfig(_Frozen):
    """A study file, validated.

    The training fields (``dataset`` ... ``precision``) are the base every trial starts
    from (see :class:`TrainConfig`); ``space`` says what each trial changes.
    """

    name: str = Field(min_length=1)
    question: str = ""
    expected_cost: str = ""
    dataset: str = "digits"
    data_dir: Path | None = None
    download: bool = True
    model: str = "mlp"
    model_options: dict[str, Any] = Field(default_factory=dict)
    batch_size: int | None = Field(None, ge=1)
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    augment: bool | None = None
    device: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    precision: Literal["32-true", "32", "16-mixed", "bf16-mixed", "bf16-true", "64-true"] = (
        "32-true"
    )
    channels_last: bool = True
    compile: bool = False
    budget: Budget
    objective: Objective = Field(default_factory=Objective)
    n_trials: int | None = Field(None, ge=1)
    timeout: float | None = Field(None, gt=0)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    pruner: PrunerConfig = Field(default_factory=PrunerConfig)
    seed: int = Field(0, ge=0)
    storage: str | None = None
    artifacts: Path | None = None
    enqueue_defaults: bool = False
    test: Literal["end", "improving", "every", "never"] = "end"
    """When the test split is evaluated. ``end`` (default): once, when the search ends, for
    the best trial of each optimizer (their weights are kept in memory meanwhile), stored
    in the study's user attrs as ``lrtune.test.<trial>``; ``improving``: right after each
    trial that beats its optimizer's best so far (visible during the search, costs more
    passes); ``every`` trial; or ``never``."""
    space: SpaceConfig

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str) -> str:
        return TrainConfig._dataset(value)  # type: ignore[operator]

    @model_validator(mode="before")
    @classmethod
    def _model(cls, data: Any) -> Any:
        return TrainConfig._model(data)  # type: ignore[operator]

    @model_validator(mode="after")
    def _stop(self) -> StudyConfig:
        if self.n_trials is None and self.timeout is None:
            raise ValueError("n_trials or timeout is required (or both)")
        for key, choices in self.space.model_options.items():
            for choice in choices:
                try:
                    get_model_info(self.model).resolve({key: choice})
                except ConfigError as error:
                    raise ValueError(f"space.model_options.{key}: {error}") from None
        return self

    def base_train_config(self) -> TrainConfig:
        """The :class:`TrainConfig` every trial starts from (optimizer etc. at defaults)."""
        return TrainConfig(
            dataset=self.dataset,
            data_dir=self.data_dir,
            download=self.download,
            model=self.model,
            model_options=self.model_options,
            epochs=self.budget.epochs or 1,
            batch_size=self.batch_size,
            val_fraction=self.val_fraction,
            augment=self.augment,
            seed=self.seed,
            device=self.device,
            precision=self.precision,
            channels_last=self.channels_last,
            compile=self.compile,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return self.model_dump(mode="json")


def study_config_from(
    file: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> StudyConfig:
    """Load and validate a study file; ``overrides`` win (nested mappings merge).

    Raises:
        ConfigError: One line naming the file and the field.
    """
    data: dict[str, Any] = load_yaml(file) if file is not None else {}
    if file is not None and not data:
        raise ConfigError(f"{file}: is empty (no fields)")
    if overrides:
        data = _merge(data, overrides)
    if "name" not in data and file is not None:
        data["name"] = Path(file).stem
    return _validate(StudyConfig, data, str(file) if file is not None else None)
