"""The study config: :class:`StudyConfig` (a study file, validated) and its parts: the
search space (:class:`Range`, :class:`LRSpace`, :class:`ScheduleChoice`,
:class:`SpaceConfig`), :class:`Budget`, :class:`Objective`, :class:`SamplerConfig` and
:class:`PrunerConfig`; plus :func:`study_config_from` (YAML file + overrides -> StudyConfig).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from lrtune.config._base import _Frozen, _merge, _params, _validate, load_yaml
from lrtune.config._train import ComponentConfig, TrainConfig, excluded_fields, with_code_dir
from lrtune.errors import ConfigError
from lrtune.models import get_model_info
from lrtune.optimizers import get_optimizer_info
from lrtune.schedules import get_schedule_info

__all__ = [
    "Budget",
    "LRSpace",
    "Objective",
    "PrunerConfig",
    "Range",
    "SamplerConfig",
    "ScheduleChoice",
    "SpaceConfig",
    "StudyConfig",
    "study_config_from",
]

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
        verify: Verify each range test's suggestion with constant-LR probes (see
            :class:`~lrtune.LRRangeTest`) and centre the optimizer's range on the verified
            LR, as wide (in decades) as the widened bracket (default ``False``: on the study
            efficiency benchmark the verified centre gave more diverging trials and no
            fewer trials to a good result, for 2.5x the range tests' cost; see
            docs/benchmarks-history.md, issue 14).
        range_tests: When ``auto``'s range tests run. ``first_use`` (default): each
            optimizer's just before its first trial, so the first model trains after one
            range test instead of all of them, and an optimizer the search never samples
            costs nothing (docs/BENCHMARKS.md, issue 20). ``upfront``: all of them in the
            study's set-up, before any trial (also what ``enqueue_defaults`` does: its
            trials need every range). The ranges are the same either way.
    """

    auto: bool = False
    low: float | None = Field(None, gt=0, allow_inf_nan=False)
    high: float | None = Field(None, gt=0, allow_inf_nan=False)
    widen: float = Field(3.0, ge=1.0, allow_inf_nan=False)
    num_steps: int = Field(100, ge=10)
    linked: bool = True
    verify: bool = False
    range_tests: Literal["first_use", "upfront"] = "first_use"

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
        grow: Let the space grow with the budget (default ``True``): each optimizer's
            tunable registry hyperparameters that ``hyperparameters`` does not name (β,
            momentum, α, weight decay) stay at their registry defaults, and only the LR is
            searched, until ``n_trials`` gives that optimizer 10 trials per dimension it
            would search (adam's LR, β1, β2 and weight decay: 40 trials of adam, 160 with
            four optimizers). A short study spends its trials on what matters most. With
            only a ``timeout`` the whole space is searched. ``False``: search everything
            from the first trial.
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
    grow: bool = True

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
        steps, every = self.steps, self.report_every
        if steps is not None and every is not None and every > steps:  # no validation ever
            raise ValueError(
                f"report_every ({every}) is above steps ({steps}): validation would never "
                "run, so no trial could be scored"
            )
        return self


LRTUNE_METRICS = ("val_acc", "val_loss")
"""What lrtune's models log in validation (a module of your own logs what it logs)."""


class Objective(_Frozen):
    """The metric a study optimises (reported after each validation).

    Args:
        metric: A metric logged in validation: ``val_acc`` (default) or ``val_loss`` for
            lrtune's models; any name your own module logs (``self.log(name, ...)``).
        direction: ``maximize`` or ``minimize``; default maximize for names ending in
            ``acc``, minimize for ``loss``, required for other names.
    """

    metric: str = Field("val_acc", min_length=1)
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

    The training fields (``dataset`` ... ``precision``, or ``module``/``datamodule`` for
    your own LightningModule and LightningDataModule) are the base every trial starts from
    (see :class:`TrainConfig`); ``space`` says what each trial changes. With ``module``,
    ``space.model_options`` searches keys of ``module.init_args``.
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
    seed: int = Field(0, ge=0, lt=2**32)
    storage: str | None = None
    artifacts: Path | None = None
    workers: int | Literal["auto"] = 1
    """Worker processes on this machine, all on the study's storage (default 1: the search
    runs in its own process). ``auto`` fills every visible GPU: ``trials_per_gpu`` workers on
    each, or as many as a short measurement of one trial says pay (``lrtune.study._packing``);
    without a GPU, ``auto`` is one worker."""
    trials_per_gpu: int | None = Field(None, ge=1)
    """With ``workers: auto``, this many workers on each GPU (default: measured)."""
    enqueue_defaults: bool = False
    """Run each optimizer once at its registry defaults first (default ``False``)."""
    enqueue_finder: bool = True
    """With ``space.lr: auto``, the first trials run each optimizer at the LR its range test
    suggested, other hyperparameters at registry defaults, so a good model appears within
    the first few trials; the sampler explores from there (default ``True``)."""
    baselines: list[str] = Field(default_factory=list)
    """Tuning-free optimizers (``prodigy``, ``schedulefree_adamw``) run once each at their
    registry defaults as the first trials, never pruned, so the summary, the report and the
    dashboard note can show the best tuned trial against the best tuning-free one
    (default: none)."""
    test: Literal["end", "improving", "every", "never"] = "end"
    """When the test split is evaluated. ``end`` (default): once, when the search ends, for
    the best trial of each optimizer (their weights are kept in memory meanwhile), stored
    in the study's user attrs as ``lrtune.test.<trial>``; ``improving``: right after each
    trial that beats its optimizer's best so far (visible during the search, costs more
    passes); ``every`` trial; or ``never``."""
    space: SpaceConfig
    module: ComponentConfig | None = None
    datamodule: ComponentConfig | None = None
    code_dir: Path | None = None

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str) -> str:
        return TrainConfig._dataset(value)  # type: ignore[operator]

    @field_validator("baselines")
    @classmethod
    def _baselines(cls, value: list[str]) -> list[str]:
        from lrtune.optimizers import OPTIMIZERS

        names = [get_optimizer_info(name).name for name in value]
        for name in names:
            if not OPTIMIZERS[name].tuning_free:
                free = ", ".join(n for n, info in OPTIMIZERS.items() if info.tuning_free)
                raise ValueError(
                    f"{name!r} needs its LR searched, so it is no baseline; the tuning-free "
                    f"optimizers are: {free} (search {name} in space.optimizers)"
                )
        if len(set(names)) != len(names):
            raise ValueError(f"lists an optimizer twice: {names}")
        return names

    @model_validator(mode="before")
    @classmethod
    def _model(cls, data: Any) -> Any:
        return TrainConfig._model(data)  # type: ignore[operator]

    @model_validator(mode="after")
    def _stop(self) -> StudyConfig:
        if self.n_trials is None and self.timeout is None:
            raise ValueError("n_trials or timeout is required (or both)")
        if isinstance(self.workers, int) and self.workers < 1:
            raise ValueError(f"workers must be >= 1 or 'auto', got {self.workers}")
        if self.trials_per_gpu is not None and self.workers != "auto":
            raise ValueError(
                f"trials_per_gpu applies to workers: auto (workers is {self.workers!r})"
            )
        if self.module is None and self.objective.metric not in LRTUNE_METRICS:
            raise ValueError(
                f"objective.metric must be one of {', '.join(map(repr, LRTUNE_METRICS))} (what "
                f"lrtune's models log; your own module can log others), got "
                f"{self.objective.metric!r}"
            )
        if self.objective.direction is None and not self.objective.metric.endswith(("acc", "loss")):
            raise ValueError(
                f"objective.direction is required for metric {self.objective.metric!r} "
                "(maximize or minimize)"
            )
        for key, choices in self.space.model_options.items():
            if self.module is not None:
                break  # keys of the user's init_args: checked when the module is built
            for choice in choices:
                try:
                    get_model_info(self.model).resolve({key: choice})
                except ConfigError as error:
                    raise ValueError(f"space.model_options.{key}: {error}") from None
        return self

    def base_train_config(self) -> TrainConfig:
        """The :class:`TrainConfig` every trial starts from (optimizer etc. at defaults)."""
        fields: dict[str, Any] = {
            "dataset": self.dataset,
            "data_dir": self.data_dir,
            "download": self.download,
            "model": self.model,
            "model_options": self.model_options,
            "epochs": self.budget.epochs or 1,
            "batch_size": self.batch_size,
            "val_fraction": self.val_fraction,
            "augment": self.augment,
            "seed": self.seed,
            "device": self.device,
            "precision": self.precision,
            "channels_last": self.channels_last,
            "compile": self.compile,
            "module": self.module,
            "datamodule": self.datamodule,
            "code_dir": self.code_dir,
        }
        for key in excluded_fields(self.module, self.datamodule):
            del fields[key]
        return TrainConfig(**fields)

    @property
    def data_label(self) -> str:
        """What the trials train on: the dataset, or your datamodule's class path."""
        return self.datamodule.class_path if self.datamodule is not None else self.dataset

    @property
    def model_label(self) -> str:
        """What the trials train: the model, or your module's class path."""
        return self.module.class_path if self.module is not None else self.model

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; with ``module``/``datamodule``, without the fields they
        replace (so it validates again)."""
        excluded = excluded_fields(self.module, self.datamodule)
        excluded |= {k for k in ("module", "datamodule", "code_dir") if getattr(self, k) is None}
        return self.model_dump(mode="json", exclude=excluded)


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
    return _validate(
        StudyConfig, with_code_dir(data, file), str(file) if file is not None else None
    )
