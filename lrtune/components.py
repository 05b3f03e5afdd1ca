"""Your own LightningModule and LightningDataModule, named in a config by ``class_path`` and
``init_args`` (LightningCLI's convention): import, check, build, and inject the trial's
optimization into the unchanged module.

Injection works the way LightningCLI injects ``optimizer:``: the instance's
``configure_optimizers`` is replaced by one that builds the configured optimizer (lrtune's
registry: name, LR, β, momentum, weight decay, ...) over the module's parameters, plus the
configured per-step LR schedule. The module's own ``configure_optimizers`` is never called.
Gradient clipping goes through the Trainer (``gradient_clip_val``), as for lrtune's models.

A module that wants parameter groups (e.g. no weight decay on norms, a smaller LR for a
backbone) defines ``param_groups(self) -> list[dict]``: torch-style groups (``params`` plus
per-group options in torch's names). A group's ``lr_scale`` multiplies the trial's LR; a
group that gives ``lr`` instead keeps its ratio to the largest ``lr`` of the groups.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from lrtune.config import ComponentConfig, OptimizerConfig, TrainConfig
from lrtune.errors import ConfigError
from lrtune.optimizers import get_optimizer_info
from lrtune.schedules import create_scheduler

__all__ = [
    "add_import_paths",
    "build_datamodule",
    "build_module",
    "check_components",
    "import_class",
    "inject_optimization",
]

_PL_HINT = (
    "lrtune trains with lightning.pytorch (the same API, from the `lightning` package): "
    "change `import pytorch_lightning as pl` to `import lightning.pytorch as pl`"
)


def add_import_paths(paths: Iterable[str | Path] = ()) -> None:
    """Make class paths importable from the current folder and ``paths`` (e.g. the study
    file's folder), after everything already on ``sys.path`` (nothing installed is
    shadowed). A console script's ``sys.path`` does not hold the current folder."""
    for entry in [os.getcwd(), *map(str, paths)]:
        entry = str(Path(entry).resolve())
        if entry not in sys.path:
            sys.path.append(entry)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def _namespace_error(cls: type, field: str, class_path: str, kind: str) -> ConfigError | None:
    """A pytorch_lightning class where lightning.pytorch is needed: say what to change."""
    names = {f"{c.__module__}.{c.__name__}" for c in cls.__mro__}
    if f"pytorch_lightning.core.module.{kind}" in names or any(
        n.startswith("pytorch_lightning.") and n.endswith(f".{kind}") for n in names
    ):
        return ConfigError(
            f"{field}.class_path: {class_path} is a pytorch_lightning.{kind}; {_PL_HINT}"
        )
    return None


def import_class(class_path: str, *, field: str, base: type) -> type:
    """The class at ``class_path`` (``package.module.Class``), a subclass of ``base``.

    Raises:
        ConfigError: One line naming ``field``: the path is not dotted, the module does
            not import (its own error), it has no such attribute, the attribute is not a
            class, or the class is not a ``base`` (a ``pytorch_lightning`` class gets the
            change to make).
    """
    module_name, _, name = class_path.rpartition(".")
    if not module_name or not name:
        raise ConfigError(
            f"{field}.class_path: {class_path!r} is not a dotted path such as "
            "mypkg.models.LitNet"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise ConfigError(
                f"{field}.class_path: no module named {error.name!r} (run lrtune from the "
                "folder that holds it, put it beside the study file, or install it)"
            ) from None
        raise ConfigError(
            f"{field}.class_path: importing {module_name} failed ({_first_line(error)})"
        ) from None
    except Exception as error:  # the user's module raised while importing
        raise ConfigError(
            f"{field}.class_path: importing {module_name} failed ({_first_line(error)})"
        ) from None
    cls = getattr(module, name, None)
    if cls is None:
        raise ConfigError(f"{field}.class_path: module {module_name} has no {name!r}")
    if not isinstance(cls, type):
        raise ConfigError(
            f"{field}.class_path: {class_path} is a {type(cls).__name__}, not a class"
        )
    if not issubclass(cls, base):
        error = _namespace_error(cls, field, class_path, base.__name__)
        if error is not None:
            raise error
        raise ConfigError(
            f"{field}.class_path: {class_path} is not a lightning.pytorch.{base.__name__}"
        )
    return cls


def _instantiate(cls: type, init_args: Mapping[str, Any], field: str) -> Any:
    try:
        return cls(**init_args)
    except Exception as error:  # the class's own message, one line
        raise ConfigError(f"{field}.init_args: {cls.__name__}: {_first_line(error)}") from None


def _accepts(cls: type, name: str) -> bool:
    try:
        parameters = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
    except (TypeError, ValueError):
        return True
    return name in parameters or any(
        p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


def _module_args(config: TrainConfig) -> dict[str, Any]:
    """The module's init_args with the trial's ``model_options`` on top."""
    assert config.module is not None
    return {**config.module.init_args, **config.model_options}


def _datamodule_args(config: TrainConfig, cls: type) -> dict[str, Any]:
    """The datamodule's init_args; ``batch_size`` (config or trial) goes in when given."""
    assert config.datamodule is not None
    args = dict(config.datamodule.init_args)
    if config.batch_size is not None:
        if not _accepts(cls, "batch_size"):
            raise ConfigError(
                f"batch_size: {config.datamodule.class_path} takes no batch_size argument; "
                "remove batch_size (and space.batch_size) or add the argument"
            )
        args["batch_size"] = config.batch_size
    return args


def build_module(config: TrainConfig) -> pl.LightningModule:
    """The user's module from ``config.module``, with the trial's optimization injected."""
    assert config.module is not None
    cls = import_class(config.module.class_path, field="module", base=pl.LightningModule)
    module = _instantiate(cls, _module_args(config), "module")
    return inject_optimization(module, config.optimizer, config)


def build_datamodule(config: TrainConfig) -> pl.LightningDataModule:
    """The user's datamodule from ``config.datamodule``."""
    assert config.datamodule is not None
    cls = import_class(
        config.datamodule.class_path, field="datamodule", base=pl.LightningDataModule
    )
    return _instantiate(cls, _datamodule_args(config, cls), "datamodule")  # type: ignore[no-any-return]


def check_components(config: TrainConfig) -> None:
    """Import and build the configured module and datamodule once, before anything is
    written, so a bad class path or rejected ``init_args`` is a one-line error up front.

    Raises:
        ConfigError: Naming ``module`` or ``datamodule`` and the class's own message.
    """
    if config.module is not None:
        build_module(config)
    if config.datamodule is not None:
        build_datamodule(config)


def _groups(module: pl.LightningModule, lr: float) -> list[dict[str, Any]]:
    """The module's ``param_groups()`` (if any) with each group's LR set from ``lr``."""
    hook = getattr(module, "param_groups", None)
    if not callable(hook):
        return [{"params": [p for p in module.parameters() if p.requires_grad], "lr": lr}]
    groups = [dict(group) for group in hook()]
    if not groups or not all(isinstance(g, dict) and "params" in g for g in groups):
        raise ConfigError(
            f"{type(module).__name__}.param_groups() must return a list of dicts with "
            "'params' (torch's param groups)"
        )
    given = [float(g["lr"]) for g in groups if "lr" in g and "lr_scale" not in g]
    top = max(given) if given else 1.0
    for group in groups:
        scale = group.pop("lr_scale", None)
        if scale is None:
            scale = float(group["lr"]) / top if "lr" in group else 1.0
        group["params"] = list(group["params"])
        group["lr"] = lr * float(scale)
    return groups


def inject_optimization(
    module: pl.LightningModule, optimizer: OptimizerConfig, config: TrainConfig
) -> pl.LightningModule:
    """Replace ``module.configure_optimizers`` (on this instance) with one that builds
    ``optimizer`` and ``config.schedule`` (stepped every optimizer step over the Trainer's
    ``estimated_stepping_batches``). Returns ``module``."""
    info = get_optimizer_info(optimizer.name)
    lr = optimizer.lr if optimizer.lr is not None else info.lr_default
    schedule = config.schedule

    def configure_optimizers() -> Any:
        built = info.create(_groups(module, lr), lr, optimizer.params)
        total_steps = max(1, int(module.trainer.estimated_stepping_batches))
        scheduler = create_scheduler(built, schedule.name, total_steps, schedule.params)
        return {
            "optimizer": built,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }

    module.configure_optimizers = configure_optimizers  # type: ignore[method-assign]
    module.lrtune_optimizer = optimizer  # type: ignore[assignment]  # what was injected
    return module
