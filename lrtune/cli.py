"""The ``lrtune`` command line: a thin shell over the Python API.

Bad input (unknown names, out-of-range values, missing or corrupt files) prints one line,
``lrtune: error: ...``, on stderr and exits with code 2.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from lrtune.errors import LrtuneError

__all__ = ["app", "main"]

app = typer.Typer(
    name="lrtune",
    help=(
        "Learning-rate range tests and Optuna studies for PyTorch Lightning models.\n\n"
        "Start with `lrtune train --help` or `lrtune list`."
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
    "val_fraction": "--val-fraction",
}


def _quiet_lightning() -> None:
    """Keep Lightning's info chatter and known-harmless warnings off the terminal."""
    import lightning.pytorch  # noqa: F401  (sets its loggers to INFO on import)

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def _log_to_stderr() -> None:
    """Show lrtune's own progress messages (data loading, downloads) on stderr."""
    logger = logging.getLogger("lrtune")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("lrtune: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _parse_pairs(pairs: list[str] | None, flag: str) -> dict[str, Any]:
    """``["beta1=0.95", "act=gelu"]`` -> ``{"beta1": 0.95, "act": "gelu"}`` (YAML scalars)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise LrtuneError(f"{flag} expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return out


def _flag_message(message: str, given: set[str]) -> str:
    """Rewrite a leading config field path into the CLI flag the user gave."""
    match = re.match(r"^([a-z_]+(?:\.[a-z_]+)?)(?=[ :.])", message)
    if match and match.group(1) in _FLAGS and _FLAGS[match.group(1)] in given:
        return _FLAGS[match.group(1)] + message[match.end() :]
    return message


def _emit_json(payload: dict[str, Any]) -> None:
    """Print ``payload`` as the last stdout line (strict JSON: NaN/inf become null)."""
    print(json.dumps(payload, allow_nan=False, default=str))


@app.command("train")
def train_command(
    dataset: Annotated[
        str | None,
        typer.Option(help="digits (embedded, default), mnist, fashion-mnist, cifar10, cifar100."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="mlp (default), cnn or resnet.")] = None,
    optimizer: Annotated[
        str | None, typer.Option(help="Optimizer name (`lrtune list optimizers`); default adam.")
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate; default: the optimizer's default.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs (default 10).")] = None,
    schedule: Annotated[
        str | None, typer.Option(help="LR schedule (`lrtune list schedules`); default constant.")
    ] = None,
    clip: Annotated[
        str | None, typer.Option(help="Gradient clipping: none (default), norm or value.")
    ] = None,
    clip_threshold: Annotated[
        float | None, typer.Option(help="Clipping threshold (default 1.0 when clipping).")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Batch size (default per dataset).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default 0).")] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Folder with the dataset files; missing ones are downloaded."),
    ] = None,
    no_download: Annotated[
        bool, typer.Option("--no-download", help="Fail instead of downloading missing files.")
    ] = False,
    opt_param: Annotated[
        list[str] | None,
        typer.Option(
            "--opt-param",
            metavar="KEY=VALUE",
            help="Optimizer hyperparameter KEY=VALUE, e.g. beta1=0.95 (repeatable).",
        ),
    ] = None,
    schedule_param: Annotated[
        list[str] | None,
        typer.Option(
            "--schedule-param",
            metavar="KEY=VALUE",
            help="Schedule parameter KEY=VALUE (repeatable).",
        ),
    ] = None,
    model_option: Annotated[
        list[str] | None,
        typer.Option(
            "--model-option", metavar="KEY=VALUE", help="Model option KEY=VALUE, e.g. width=128."
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto (GPU if present, default), cpu, gpu or mps.")
    ] = None,
    precision: Annotated[
        str | None, typer.Option(help="32-true (default), bf16-mixed, 16-mixed, ...")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="YAML file with the same fields; flags override it."),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the result as one JSON object (last line).")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-epoch lines.")] = False,
) -> None:
    """Train one configuration and report validation and test accuracy.

    Per-epoch progress goes to stderr; the result to stdout.

    Example: lrtune train --dataset digits --model mlp --optimizer adam --lr 3e-3 --epochs 10
    """
    overrides: dict[str, Any] = {}
    given: set[str] = set()

    def put(flag: str, path: tuple[str, ...], value: Any) -> None:
        if value is None:
            return
        given.add(flag)
        target = overrides
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value

    put("--dataset", ("dataset",), dataset)
    put("--model", ("model",), model)
    put("--optimizer", ("optimizer", "name"), optimizer)
    put("--lr", ("optimizer", "lr"), lr)
    put("--epochs", ("epochs",), epochs)
    put("--schedule", ("schedule", "name"), schedule)
    put("--clip", ("clip", "kind"), clip)
    put("--clip-threshold", ("clip", "threshold"), clip_threshold)
    put("--batch-size", ("batch_size",), batch_size)
    put("--seed", ("seed",), seed)
    put("--data-dir", ("data_dir",), data_dir)
    put("--device", ("device",), device)
    put("--precision", ("precision",), precision)
    if no_download:
        put("--no-download", ("download",), False)
    put("--opt-param", ("optimizer", "params"), _parse_pairs(opt_param, "--opt-param") or None)
    put(
        "--schedule-param",
        ("schedule", "params"),
        _parse_pairs(schedule_param, "--schedule-param") or None,
    )
    put(
        "--model-option",
        ("model_options",),
        _parse_pairs(model_option, "--model-option") or None,
    )

    from lrtune.config import train_config_from

    try:
        cfg = train_config_from(config, overrides)
    except LrtuneError as error:
        message = _flag_message(str(error), given) if config is None else str(error)
        raise LrtuneError(message) from None

    _quiet_lightning()
    if not quiet:
        _log_to_stderr()
    from lrtune.training import train

    result = train(cfg, progress=None if quiet else sys.stderr)
    if json_out:
        _emit_json(result.to_dict())
    else:
        print(
            f"{cfg.dataset} {cfg.model} {cfg.optimizer.name} lr={cfg.optimizer.lr:g} "
            f"schedule={cfg.schedule.name} clip={cfg.clip.kind}: "
            f"test_acc {result.test_acc:.4f}  val_acc {result.val_acc:.4f}  "
            f"epochs {result.epochs}  {result.seconds:.1f}s"
        )


@app.command("list")
def list_command(
    what: Annotated[
        str, typer.Argument(help="optimizers, schedules, models or datasets (default: all).")
    ] = "all",
    json_out: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the registered optimizers, schedules, models and datasets with their options."""
    from lrtune.data import DATASETS
    from lrtune.models import MODELS
    from lrtune.optimizers import OPTIMIZERS
    from lrtune.schedules import SCHEDULES

    tables: dict[str, list[dict[str, Any]]] = {
        "optimizers": [
            {
                "name": info.name,
                "description": info.description,
                "lr_default": info.lr_default,
                "lr_range": list(info.lr_range),
                "hyperparameters": {
                    h.name: {"default": h.default, "range": [h.low, h.high]}
                    for h in info.hyperparameters
                },
            }
            for info in OPTIMIZERS.values()
        ],
        "schedules": [
            {
                "name": info.name,
                "description": info.description,
                "params": {p.name: {"default": p.default, "help": p.help} for p in info.params},
            }
            for info in SCHEDULES.values()
        ],
        "models": [
            {"name": info.name, "description": info.description, "options": info.options}
            for info in MODELS.values()
        ],
        "datasets": [
            {
                "name": info.name,
                "description": info.description,
                "input_shape": list(info.input_shape),
                "num_classes": info.num_classes,
                "batch_size": info.batch_size,
            }
            for info in DATASETS.values()
        ],
    }
    if what != "all" and what not in tables:
        raise LrtuneError(f"list: unknown kind {what!r}; known: {', '.join(tables)}")
    chosen = tables if what == "all" else {what: tables[what]}
    if json_out:
        _emit_json(chosen)
        return
    for kind, rows in chosen.items():
        print(f"{kind}:")
        for row in rows:
            extra = ""
            if kind == "optimizers":
                hps = ", ".join(f"{k}={v['default']:g}" for k, v in row["hyperparameters"].items())
                extra = f"  lr={row['lr_default']:g}" + (f", {hps}" if hps else "")
            elif kind == "schedules" and row["params"]:
                extra = "  " + ", ".join(f"{k}={v['default']:g}" for k, v in row["params"].items())
            elif kind == "models":
                extra = "  " + ", ".join(f"{k}={v}" for k, v in row["options"].items())
            print(f"  {row['name']:<14} {row['description']}{extra}")


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", is_eager=True)
    ] = False,
) -> None:
    if version:
        from lrtune import __version__

        print(f"lrtune {__version__}")
        raise typer.Exit(0)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (2 for bad input, with a one-line message)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        result = app(args=args, prog_name="lrtune", standalone_mode=False)
    except LrtuneError as error:
        print(f"lrtune: error: {error}", file=sys.stderr)
        return 2
    except _ClickException as error:
        message = error.format_message()  # type: ignore[attr-defined]
        print(f"lrtune: error: {' '.join(message.split())}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, typer.Abort):
        print("lrtune: interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
