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

import contextlib
import importlib
import inspect
import io
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from lrtune.config import OptimizerConfig, TrainConfig
from lrtune.errors import ConfigError
from lrtune.module import configure_optimization

__all__ = [
    "SETUP_HOOKS",
    "add_import_paths",
    "build_datamodule",
    "build_module",
    "check_components",
    "describe_user_error",
    "import_class",
    "inject_optimization",
    "namespace",
    "overrides",
    "trainer_class",
    "user_code_origin",
]

_NAMESPACES = ("lightning.pytorch", "pytorch_lightning")
"""Lightning ships one framework under two names (the ``lightning`` and the
``pytorch-lightning`` packages); a class written against either trains with that
namespace's Trainer. lrtune's callbacks are duck-typed hooks and run in both."""


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


def _bases(name: str) -> list[type]:
    """``name`` (``LightningModule``, ...) in each Lightning namespace already imported
    (a user's class imports its own; nothing else is imported here)."""
    return [getattr(sys.modules[ns], name) for ns in _NAMESPACES if ns in sys.modules]


SETUP_HOOKS = frozenset({
    "__init__", "prepare_data", "setup", "configure_model", "train_dataloader",
    "val_dataloader", "test_dataloader", "predict_dataloader", "on_fit_start",
    "on_train_start", "param_groups",
})  # fmt: skip
"""Hooks of a module or datamodule that do not depend on a trial's hyperparameters: when
one raises, every trial would fail the same way, so a study stops at the first."""


def _library_dirs() -> tuple[str, ...]:
    """Folders of the packages whose code is not the user's (Lightning, torch, lrtune)."""
    dirs = []
    for name in ("lrtune", "lightning", "pytorch_lightning", "torch", "torchmetrics"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            dirs.append(str(Path(module.__file__).parent) + os.sep)  # type: ignore[arg-type]
    return tuple(dirs)


def user_code_origin(error: BaseException) -> tuple[str, str] | None:
    """``(class, hook)``: the method of the user's own LightningModule or LightningDataModule
    that ``error`` came out of (the outermost such frame of its traceback: the hook Lightning
    or lrtune called), or ``None`` when the error did not pass through the user's code."""
    bases = tuple(_bases("LightningModule") + _bases("LightningDataModule"))
    if not bases:
        return None
    libraries = _library_dirs()
    tb = error.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        owner = frame.f_locals.get("self")
        if (
            owner is not None
            and isinstance(owner, bases)
            and not frame.f_code.co_filename.startswith(libraries)
        ):
            return type(owner).__qualname__, frame.f_code.co_name
        tb = tb.tb_next
    return None


def describe_user_error(error: BaseException) -> str | None:
    """One line for an error from the user's code: ``Class.hook raised Type: message``;
    Lightning's complaints about a module (``MisconfigurationException``) as they are.
    ``None`` for any other error (lrtune's own, or the machine's)."""
    origin = user_code_origin(error)
    if origin is not None:
        return f"{origin[0]}.{origin[1]} raised {_first_line(error)}"
    if type(error).__name__ == "MisconfigurationException":
        return _first_line(error)
    return None


def namespace(obj: object) -> str:
    """``lightning.pytorch`` or ``pytorch_lightning``: which Lightning ``obj`` is written
    against (``lightning.pytorch`` when neither)."""
    for ns in _NAMESPACES:
        module = sys.modules.get(ns)
        if module is not None and isinstance(
            obj, (module.LightningModule, module.LightningDataModule, module.Callback)
        ):
            return ns
    return "lightning.pytorch"


def trainer_class(module: object) -> type:
    """The ``Trainer`` of ``module``'s Lightning namespace (see :func:`namespace`)."""
    return sys.modules[namespace(module)].Trainer  # type: ignore[no-any-return]


def overrides(obj: object, method: str) -> bool:
    """Does ``obj``'s class override ``method`` of its Lightning base class?"""
    for base in (*_bases("LightningModule"), *_bases("LightningDataModule")):
        if isinstance(obj, base):
            return getattr(type(obj), method, None) is not getattr(base, method, None)
    return callable(getattr(obj, method, None))


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
            f"{field}.class_path: {class_path!r} is not a dotted path such as mypkg.models.LitNet"
        )
    said = io.StringIO()  # what the module prints while importing (argparse's usage: ...)
    try:
        with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
            module = importlib.import_module(module_name)
    except SystemExit as error:  # sys.exit() or argparse at import: not lrtune's exit
        printed = next((line.strip() for line in said.getvalue().splitlines()
                        if line.strip()), "")  # fmt: skip
        shown = f"; it printed {printed[:120]!r}" if printed else ""
        raise ConfigError(
            f"{field}.class_path: importing {module_name} called sys.exit({error.code!r})"
            f"{shown} (does it parse the command line or run a script at import? Move that "
            'under `if __name__ == "__main__":`)'
        ) from None
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
    if not issubclass(cls, tuple(_bases(base.__name__)) or base):
        raise ConfigError(
            f"{field}.class_path: {class_path} is not a {base.__name__} (of "
            "lightning.pytorch or pytorch_lightning)"
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
    add_import_paths([config.code_dir] if config.code_dir else [])
    cls = import_class(config.module.class_path, field="module", base=pl.LightningModule)
    # a study's trial has its space.model_options in init_args already
    module = _instantiate(cls, config.module.init_args, "module")
    return inject_optimization(module, config.optimizer, config)


def build_datamodule(config: TrainConfig) -> pl.LightningDataModule:
    """The user's datamodule from ``config.datamodule``."""
    assert config.datamodule is not None
    add_import_paths([config.code_dir] if config.code_dir else [])
    cls = import_class(
        config.datamodule.class_path, field="datamodule", base=pl.LightningDataModule
    )
    return _instantiate(cls, _datamodule_args(config, cls), "datamodule")  # type: ignore[no-any-return]


def check_components(
    config: TrainConfig, *, searched: Iterable[str] = (), batch_size_searched: bool = False
) -> None:
    """Import and build the configured module and datamodule once, before anything is
    written, so a bad class path or rejected ``init_args`` is a one-line error up front.

    Args:
        config: The base configuration.
        searched: ``init_args`` keys a study searches (``space.model_options``): the
            module's constructor must take them.
        batch_size_searched: A study searches ``batch_size``: the datamodule must take it.

    Raises:
        ConfigError: Naming the field and the class's own message.
    """
    if config.module is not None:
        module = build_module(config)
        for key in searched:
            if not _accepts(type(module), key):
                raise ConfigError(
                    f"space.model_options.{key}: {type(module).__name__} takes no argument {key!r}"
                )
    if config.datamodule is not None:
        datamodule = build_datamodule(config)
        if batch_size_searched and not _accepts(type(datamodule), "batch_size"):
            raise ConfigError(
                f"space.batch_size: {type(datamodule).__name__} takes no batch_size argument"
            )
        if config.module is not None and namespace(module) != namespace(datamodule):
            raise ConfigError(
                f"datamodule: {type(module).__name__} is written against "
                f"{namespace(module)}, {type(datamodule).__name__} against "
                f"{namespace(datamodule)}: import Lightning the same way in both"
            )


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
    assert optimizer.lr is not None  # filled with the registry default by validation
    lr = optimizer.lr

    def configure_optimizers() -> Any:
        groups = _groups(module, lr)
        return configure_optimization(groups, optimizer, config.schedule, module.trainer)

    module.configure_optimizers = configure_optimizers  # type: ignore[method-assign]
    return module
