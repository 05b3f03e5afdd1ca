"""The one lean ``Trainer`` builder, shared by training, studies and the range test.

Lean: no logger, no checkpoint files, no progress bar, no model summary, no sanity
validation. :class:`TrainerOptions` are the Trainer arguments a user may hand to
:func:`~lrtune.find_lr`; :func:`options_for` reads them from a ``TrainConfig``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

import lightning.pytorch as pl

from lrtune.errors import ConfigError

if TYPE_CHECKING:
    from lrtune.config import TrainConfig

__all__ = ["ACCELERATORS", "TrainerOptions", "check_options", "lean_trainer", "options_for"]

# lrtune's device names (TrainConfig.device, the CLI's --device) -> Lightning's accelerators
ACCELERATORS = {"auto": "auto", "cpu": "cpu", "gpu": "gpu", "cuda": "gpu", "mps": "mps"}

_LEAN: dict[str, Any] = {
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "num_sanity_val_steps": 0,
}


class TrainerOptions(TypedDict, total=False):
    """The ``Trainer`` arguments :func:`~lrtune.find_lr` takes as keywords.

    Attributes:
        accelerator: Lightning accelerator (default ``auto``: GPU when present); lrtune's
            ``cuda`` means ``gpu``.
        devices: Which one device, as Lightning takes it (default 1: the first; ``[2]``: the
            third GPU).
        precision: Lightning precision, e.g. ``bf16-mixed`` (default: Lightning's).
        gradient_clip_val: Clip gradients (default: no clipping).
        gradient_clip_algorithm: ``norm`` (default when clipping) or ``value``.
        accumulate_grad_batches: Micro-batches per optimizer step (default 1).
        callbacks: Extra callbacks.
    """

    accelerator: str
    devices: int | list[int]
    precision: str | None
    gradient_clip_val: float | None
    gradient_clip_algorithm: str | None
    accumulate_grad_batches: int
    callbacks: Sequence[pl.Callback]


def check_options(options: Mapping[str, Any], caller: str) -> TrainerOptions:
    """``options`` as :class:`TrainerOptions`; an unknown name is a :class:`ConfigError`."""
    known = TrainerOptions.__annotations__
    for name in options:
        if name not in known:
            raise ConfigError(
                f"{caller}: unknown Trainer option {name!r}; known: {', '.join(known)}"
            )
    return TrainerOptions(**options)  # type: ignore[typeddict-item]


def options_for(config: TrainConfig) -> TrainerOptions:
    """The device, precision and clipping of ``config`` as :class:`TrainerOptions`."""
    options = TrainerOptions(accelerator=config.device, precision=config.precision)
    if config.clip.kind != "none":
        options["gradient_clip_val"] = config.clip.threshold
        options["gradient_clip_algorithm"] = config.clip.kind
    return options


def lean_trainer(module: object = None, **kwargs: Any) -> pl.Trainer:
    """A lean Trainer: ``kwargs`` (any ``Trainer`` argument) win over the lean defaults.

    ``accelerator`` may be one of lrtune's device names; ``precision=None`` and
    ``gradient_clip_val=None`` leave Lightning's defaults; a clip value without an
    algorithm clips by norm.

    Args:
        module: The module it will train: one written against ``pytorch_lightning`` gets
            that package's ``Trainer`` (default: ``lightning.pytorch``'s).
        **kwargs: ``Trainer`` arguments.
    """
    kwargs = {**_LEAN, **kwargs}
    if "accelerator" in kwargs:
        kwargs["accelerator"] = ACCELERATORS.get(kwargs["accelerator"], kwargs["accelerator"])
    for name in ("precision", "gradient_clip_val", "gradient_clip_algorithm"):
        if name in kwargs and kwargs[name] is None:
            del kwargs[name]
    if "gradient_clip_val" in kwargs:
        kwargs.setdefault("gradient_clip_algorithm", "norm")
    kwargs["callbacks"] = list(kwargs.get("callbacks", ()))
    if module is not None:
        from lrtune.components import trainer_class

        return trainer_class(module)(**kwargs)  # type: ignore[no-any-return]
    return pl.Trainer(**kwargs)
