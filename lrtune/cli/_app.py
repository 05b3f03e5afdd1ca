"""The shared core of the ``lrtune`` command line: the typer ``app`` and its helpers.

Owns the ``app`` object every command registers on, the root callback (``--version``), the
click exception bases ``main`` catches, and the helpers the commands share: ``KEY=VALUE``
parsing, nested-override building, config-field-to-flag error rewriting, strict JSON output,
and turning the training flags into a validated ``TrainConfig``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from lrtune.errors import LrtuneError

app = typer.Typer(
    name="lrtune",
    help=(
        "Learning-rate range tests and Optuna studies for PyTorch Lightning models.\n\n"
        "Start with `lrtune train --help`, `lrtune find-lr --help` or `lrtune list`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# typer vendors click in recent versions and depends on it in older ones: find the base
# classes through the public BadParameter either way.
_CLICK_BASES = {cls.__name__: cls for cls in typer.BadParameter.__mro__}
_ClickException: type[Exception] = _CLICK_BASES["ClickException"]

# CLI flag for each config field, so errors name what the user typed.
_FLAGS = {
    "optimizer.lr": "--lr",
    "optimizer.name": "--optimizer",
    "optimizer": "--optimizer",
    "schedule.name": "--schedule",
    "schedule": "--schedule",
    "clip.kind": "--clip",
    "clip.threshold": "--clip-threshold",
    "clip": "--clip",
    "dataset": "--dataset",
    "model": "--model",
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "seed": "--seed",
    "data_dir": "--data-dir",
    "device": "--device",
    "precision": "--precision",
    "channels_last": "--channels-last",
    "compile": "--compile",
    "val_fraction": "--val-fraction",
}


def _parse_pairs(pairs: list[str] | None, flag: str, form: str = "KEY=VALUE") -> dict[str, Any]:
    """``["beta1=0.95", "act=gelu"]`` -> ``{"beta1": 0.95, "act": "gelu"}`` (YAML scalars)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise LrtuneError(f"{flag} expects {form}, got {pair!r}")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or "invalid YAML"
            raise LrtuneError(f"{flag} {key.strip()}: cannot parse {value!r} ({problem})") from None
    return out


def _put(target: dict[str, Any], path: Sequence[str], value: Any) -> None:
    """Set ``target[path[0]][path[1]]... = value``, creating the nested mappings.

    Raises:
        LrtuneError: Two overrides clash (``--set space.lr=auto --set space.lr.low=1e-3``):
            one sets a value where the other needs a mapping.
    """
    dotted = ".".join(path)
    for depth, key in enumerate(path[:-1]):
        inner = target.setdefault(key, {})
        if not isinstance(inner, dict):
            above = ".".join(path[: depth + 1])
            raise LrtuneError(
                f"--set {dotted}: clashes with {above}={inner!r}, set before; give one of them"
            )
        target = inner
    old = target.get(path[-1])
    if isinstance(old, dict) and old and not isinstance(value, dict):
        raise LrtuneError(
            f"--set {dotted}={value!r}: clashes with the {dotted}.* values set before; "
            "give one of them"
        )
    target[path[-1]] = value


def _flag_message(message: str, given: set[str]) -> str:
    """Rewrite a leading config field path into the CLI flag the user gave."""
    match = re.match(r"^([a-z_]+(?:\.[a-z_]+)?)(?=[ :.])", message)
    if match and match.group(1) in _FLAGS and _FLAGS[match.group(1)] in given:
        return _FLAGS[match.group(1)] + message[match.end() :]
    return message


def _emit_json(payload: dict[str, Any]) -> None:
    """Print ``payload`` as the last stdout line (strict JSON: NaN/inf become null)."""
    print(json.dumps(payload, allow_nan=False, default=str))


def _train_config(config_file: Path | None, flags: dict[str, tuple[tuple[str, ...], Any]]) -> Any:
    """Validate flags (``--flag: (config path, value)``, ``None`` = not given) over a file."""
    from lrtune.config import load_yaml, study_config_from, train_config_from

    overrides: dict[str, Any] = {}
    given: set[str] = set()
    for flag, (path, value) in flags.items():
        if value is None:
            continue
        given.add(flag)
        _put(overrides, path, value)
    try:
        if config_file is not None and {"space", "budget"} & set(load_yaml(config_file)):
            # a study file: its training fields (dataset/model or module/datamodule)
            base = study_config_from(config_file).base_train_config().to_dict()
            for searched in ("optimizer", "schedule", "clip"):  # the study's space, not a base
                del base[searched]
            return train_config_from(None, {**base, **overrides})
        return train_config_from(config_file, overrides)
    except LrtuneError as error:
        message = _flag_message(str(error), given) if config_file is None else str(error)
        raise LrtuneError(message) from None


def _common_flags(
    *,
    dataset: str | None,
    model: str | None,
    schedule: str | None,
    clip: str | None,
    clip_threshold: float | None,
    batch_size: int | None,
    seed: int | None,
    data_dir: Path | None,
    no_download: bool,
    schedule_param: list[str] | None,
    model_option: list[str] | None,
    device: str | None,
    precision: str | None,
) -> dict[str, tuple[tuple[str, ...], Any]]:
    return {
        "--dataset": (("dataset",), dataset),
        "--model": (("model",), model),
        "--schedule": (("schedule", "name"), schedule),
        "--clip": (("clip", "kind"), clip),
        "--clip-threshold": (("clip", "threshold"), clip_threshold),
        "--batch-size": (("batch_size",), batch_size),
        "--seed": (("seed",), seed),
        "--data-dir": (("data_dir",), data_dir),
        "--no-download": (("download",), False if no_download else None),
        "--schedule-param": (
            ("schedule", "params"),
            _parse_pairs(schedule_param, "--schedule-param") or None,
        ),
        "--model-option": (
            ("model_options",),
            _parse_pairs(model_option, "--model-option") or None,
        ),
        "--device": (("device",), device),
        "--precision": (("precision",), precision),
    }


def _version(value: bool) -> None:
    if value:
        from lrtune import __version__

        print(f"lrtune {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_version
        ),
    ] = False,
) -> None:
    pass
