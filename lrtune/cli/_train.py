"""The training commands of the ``lrtune`` CLI: ``train`` and ``find-lr``.

``train`` trains one configuration; ``find-lr`` runs an LR range test per optimizer and
compares the suggestions. Both build their configuration from the shared training flags.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from lrtune._logging import log_to_stderr as _log_to_stderr
from lrtune._logging import quiet_lightning as _quiet_lightning
from lrtune.cli._app import _common_flags, _emit_json, _parse_pairs, _train_config, app
from lrtune.cli._options import (
    BatchSizeOpt,
    ChannelsLastOpt,
    ClipOpt,
    ClipThresholdOpt,
    CompileOpt,
    ConfigOpt,
    DataDirOpt,
    DatasetOpt,
    DeviceOpt,
    JsonOpt,
    ModelOpt,
    ModelOptionOpt,
    NoDownloadOpt,
    PrecisionOpt,
    ScheduleOpt,
    ScheduleParamOpt,
    SeedOpt,
)
from lrtune.errors import LrtuneError


@app.command("train")
def train_command(
    dataset: DatasetOpt = None,
    model: ModelOpt = None,
    optimizer: Annotated[
        str | None, typer.Option(help="Optimizer name (`lrtune list optimizers`); default adam.")
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate; default: the optimizer's default.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs (default 10).")] = None,
    schedule: ScheduleOpt = None,
    clip: ClipOpt = None,
    clip_threshold: ClipThresholdOpt = None,
    batch_size: BatchSizeOpt = None,
    seed: SeedOpt = None,
    data_dir: DataDirOpt = None,
    no_download: NoDownloadOpt = False,
    opt_param: Annotated[
        list[str] | None,
        typer.Option(
            "--opt-param",
            metavar="KEY=VALUE",
            help="Optimizer hyperparameter KEY=VALUE, e.g. beta1=0.95 (repeatable).",
        ),
    ] = None,
    schedule_param: ScheduleParamOpt = None,
    model_option: ModelOptionOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    channels_last: ChannelsLastOpt = None,
    compile_model: CompileOpt = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-epoch lines.")] = False,
) -> None:
    """Train one configuration and report validation and test accuracy.

    Per-epoch progress goes to stderr; the result to stdout.

    Example: lrtune train --dataset digits --model mlp --optimizer adam --lr 3e-3 --epochs 10
    """
    flags = _common_flags(
        dataset=dataset, model=model, schedule=schedule, clip=clip,
        clip_threshold=clip_threshold, batch_size=batch_size, seed=seed, data_dir=data_dir,
        no_download=no_download, schedule_param=schedule_param, model_option=model_option,
        device=device, precision=precision,
    )  # fmt: skip
    flags["--optimizer"] = (("optimizer", "name"), optimizer)
    flags["--lr"] = (("optimizer", "lr"), lr)
    flags["--epochs"] = (("epochs",), epochs)
    flags["--channels-last"] = (("channels_last",), channels_last)
    flags["--compile"] = (("compile",), compile_model)
    flags["--opt-param"] = (
        ("optimizer", "params"),
        _parse_pairs(opt_param, "--opt-param") or None,
    )
    cfg = _train_config(config, flags)

    _quiet_lightning()
    if not quiet:
        _log_to_stderr()
    from lrtune.training import train

    result = train(cfg, progress=None if quiet else sys.stderr)
    if json_out:
        _emit_json(result.to_dict())
    elif cfg.module is not None:  # your own module: every metric it logged
        shown = "  ".join(
            f"{k} {v:.4f}" for k, v in sorted(result.metrics.items())
            if k.startswith(("val", "test"))
        )  # fmt: skip
        print(
            f"{cfg.module.class_path} {cfg.optimizer.name} lr={cfg.optimizer.lr:g} "
            f"schedule={cfg.schedule.name} clip={cfg.clip.kind}: {shown}  "
            f"epochs {result.epochs}  {result.seconds:.1f}s"
        )
    else:
        print(
            f"{cfg.dataset} {cfg.model} {cfg.optimizer.name} lr={cfg.optimizer.lr:g} "
            f"schedule={cfg.schedule.name} clip={cfg.clip.kind}: "
            f"test_acc {result.test_acc:.4f}  val_acc {result.val_acc:.4f}  "
            f"epochs {result.epochs}  {result.seconds:.1f}s"
        )


def _fmt_lr(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


@app.command("find-lr")
def find_lr_command(
    dataset: DatasetOpt = None,
    model: ModelOpt = None,
    optimizers: Annotated[
        str,
        typer.Option(help="Comma-separated optimizers to test, e.g. sgd,adam,adamax,rmsprop."),
    ] = "sgd,momentum,adam,adamax,rmsprop",
    num_steps: Annotated[
        int, typer.Option(help="Optimizer steps per sweep (default 100, at least 10).")
    ] = 100,
    min_lr: Annotated[
        float | None,
        typer.Option(help="First LR of each sweep (default: optimizer's search range low / 10)."),
    ] = None,
    max_lr: Annotated[
        float | None,
        typer.Option(help="Last LR of each sweep (default: optimizer's search range high x 10)."),
    ] = None,
    method: Annotated[
        str, typer.Option(help="Suggestion method: bracket (default), steepest, valley, minimum.")
    ] = "bracket",
    schedule: ScheduleOpt = None,
    clip: ClipOpt = None,
    clip_threshold: ClipThresholdOpt = None,
    batch_size: BatchSizeOpt = None,
    seed: SeedOpt = None,
    data_dir: DataDirOpt = None,
    no_download: NoDownloadOpt = False,
    schedule_param: ScheduleParamOpt = None,
    model_option: ModelOptionOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    config: ConfigOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Write the loss-vs-LR curves, overlaid, to this HTML file (offline)."),
    ] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify",
            help=(
                "Check each suggestion with short constant-LR probes at and above it, "
                "scored on held-out batches; a winner above the sweep's answer must stay "
                "healthy over a longer run, else the next one down (default on; "
                "--no-verify: the sweep's own suggestion, about a third of the time)."
            ),
        ),
    ] = True,
    json_out: JsonOpt = False,
) -> None:
    """LR range test per optimizer, same initial weights and data order: suggestions compared.

    Prints a table (optimizer, suggested LR, the sweep's own suggestion before the
    verification, bracket of LRs where the loss falls well, lowest loss, steps run,
    verification probes). With --json the last line is {"results": [{"optimizer", "suggestion",
    "bracket", ...}, ...]}.

    Example: lrtune find-lr --dataset mnist --data-dir DIR --model cnn --optimizers sgd,adam
    --out curves.html
    """
    from lrtune.range_test import METHODS
    from lrtune.range_test._find import compare_optimizers

    names = [name.strip() for name in optimizers.split(",") if name.strip()]
    if not names:
        raise LrtuneError("--optimizers: give at least one optimizer name")
    if method not in METHODS:
        raise LrtuneError(f"--method: unknown method {method!r}; known: {', '.join(METHODS)}")
    from lrtune.optimizers import get_optimizer_info

    try:
        names = [get_optimizer_info(name).name for name in names]
    except LrtuneError as error:
        raise LrtuneError(f"--optimizers: {error}") from None
    flags = _common_flags(
        dataset=dataset, model=model, schedule=schedule, clip=clip,
        clip_threshold=clip_threshold, batch_size=batch_size, seed=seed, data_dir=data_dir,
        no_download=no_download, schedule_param=schedule_param, model_option=model_option,
        device=device, precision=precision,
    )  # fmt: skip
    cfg = _train_config(config, flags)
    from lrtune.range_test import lr_sweep

    for name in names:  # check the bounds before any work
        low, high = get_optimizer_info(name).lr_range
        try:
            lr_sweep(min_lr or low / 10, max_lr or high * 10, num_steps)
        except LrtuneError as error:
            raise LrtuneError(f"find-lr: {error}") from None

    _quiet_lightning()
    _log_to_stderr()

    def report(result: Any) -> None:
        print(
            f"lrtune: {result.label}: suggestion {_fmt_lr(result.suggestion)} "
            f"({len(result.lrs)} steps, {result.seconds:.1f}s)",
            file=sys.stderr,
            flush=True,
        )

    results = compare_optimizers(
        cfg, names, min_lr=min_lr, max_lr=max_lr, num_steps=num_steps, method=method,
        progress=report, verify=verify,
    )  # fmt: skip
    if out is not None:
        from lrtune.report import lr_curves_figure, write_html

        if cfg.module is not None:
            title = f"LR range test: {cfg.module.class_path}"
        else:
            title = f"LR range test: {cfg.dataset} / {cfg.model}, batch {cfg.resolved_batch_size}"
        write_html(lr_curves_figure(results, title=title), out)
    if json_out:
        rows = []
        for r in results:
            row = r.to_dict()
            rows.append({"optimizer": r.label, **{k: v for k, v in row.items() if k != "label"}})
        _emit_json({"results": rows, "out": str(out) if out else None})
        return
    w = max([10, *(len(r.label) for r in results)])
    header = (f"{'optimizer':<{w}} {'suggestion':>10} {'sweep':>10} {'bracket':>21} "
              f"{'min loss':>9} {'steps':>6} {'probes':>6}")  # fmt: skip
    print(header)
    for r in results:
        bracket = f"{_fmt_lr(r.bracket[0])} - {_fmt_lr(r.bracket[1])}" if r.bracket else "-"
        min_loss = f"{r.min_loss:.4g}" if r.min_loss is not None else "-"
        print(f"{r.label:<{w}} {_fmt_lr(r.suggestion):>10} {_fmt_lr(r.sweep_suggestion):>10} "
              f"{bracket:>21} {min_loss:>9} {len(r.lrs):>6} {len(r.probes):>6}")  # fmt: skip
        if r.suggestion is None:
            print(f"{'':<{w}} {r.reason}")
    if out is not None:
        print(f"curves: {out}")
