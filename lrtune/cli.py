"""The ``lrtune`` command line: a thin shell over the Python API.

Bad input (unknown names, out-of-range values, missing or corrupt files) prints one line,
``lrtune: error: ...``, on stderr and exits with code 2.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from lrtune._logging import log_to_stderr as _log_to_stderr
from lrtune._logging import quiet_lightning as _quiet_lightning
from lrtune.errors import LrtuneError

__all__ = ["app", "main"]

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
    """Set ``target[path[0]][path[1]]... = value``, creating the nested mappings."""
    for key in path[:-1]:
        target = target.setdefault(key, {})
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


# Options shared by the commands that build a training configuration.
DatasetOpt = Annotated[
    str | None,
    typer.Option(help="digits (embedded, default), mnist, fashion-mnist, cifar10, cifar100."),
]
ModelOpt = Annotated[str | None, typer.Option(help="mlp (default), cnn or resnet.")]
ScheduleOpt = Annotated[
    str | None, typer.Option(help="LR schedule (`lrtune list schedules`); default constant.")
]
ClipOpt = Annotated[
    str | None, typer.Option(help="Gradient clipping: none (default), norm or value.")
]
ClipThresholdOpt = Annotated[
    float | None, typer.Option(help="Clipping threshold (default 1.0 when clipping).")
]
BatchSizeOpt = Annotated[int | None, typer.Option(help="Batch size (default per dataset).")]
SeedOpt = Annotated[int | None, typer.Option(help="Random seed (default 0).")]
DataDirOpt = Annotated[
    Path | None, typer.Option(help="Folder with the dataset files; missing ones are downloaded.")
]
NoDownloadOpt = Annotated[
    bool, typer.Option("--no-download", help="Fail instead of downloading missing files.")
]
ScheduleParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--schedule-param", metavar="KEY=VALUE", help="Schedule parameter KEY=VALUE (repeatable)."
    ),
]
ModelOptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--model-option", metavar="KEY=VALUE", help="Model option KEY=VALUE, e.g. width=128."
    ),
]
DeviceOpt = Annotated[
    str | None, typer.Option(help="auto (GPU if present, default), cpu, gpu or mps.")
]
PrecisionOpt = Annotated[
    str | None, typer.Option(help="32-true (default), bf16-mixed, 16-mixed, ...")
]
ChannelsLastOpt = Annotated[
    bool | None,
    typer.Option(
        "--channels-last/--no-channels-last",
        help="Channels-last memory layout for conv models (default on: faster convs).",
    ),
]
CompileOpt = Annotated[
    bool | None,
    typer.Option("--compile/--no-compile", help="torch.compile the network (default off)."),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="YAML file with the training fields; flags override it."),
]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        help="Optuna storage URL (sqlite:///x.db, postgresql://...) or journal file; "
        "default lrtune-studies.journal."
    ),
]
StudyNameOpt = Annotated[
    str | None, typer.Option(help="Study name (default: the storage's only study).")
]
ArtifactsOpt = Annotated[
    Path | None,
    typer.Option(
        help="Folder for Optuna artifacts (range-test curves, reports) that optuna-dashboard "
        "shows; default beside the storage file, or ./lrtune-artifacts for database URLs."
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the result as one JSON object (last line).")
]


def _train_config(config_file: Path | None, flags: dict[str, tuple[tuple[str, ...], Any]]) -> Any:
    """Validate flags (``--flag: (config path, value)``, ``None`` = not given) over a file."""
    from lrtune.config import train_config_from

    overrides: dict[str, Any] = {}
    given: set[str] = set()
    for flag, (path, value) in flags.items():
        if value is None:
            continue
        given.add(flag)
        _put(overrides, path, value)
    try:
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
    json_out: JsonOpt = False,
) -> None:
    """LR range test per optimizer, same initial weights and data order: suggestions compared.

    Prints a table (optimizer, suggested LR, bracket of LRs where the loss falls well, lowest
    loss, steps run). With --json the last line is {"results": [{"optimizer", "suggestion",
    "bracket", ...}, ...]}.

    Example: lrtune find-lr --dataset mnist --data-dir DIR --model cnn --optimizers sgd,adam
    --out curves.html
    """
    from lrtune.finder import compare_optimizers
    from lrtune.lr_range import METHODS

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
    from lrtune.lr_range import lr_sweep

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
        progress=report,
    )  # fmt: skip
    if out is not None:
        from lrtune.report import lr_curves_figure, write_html

        title = f"LR range test: {cfg.dataset} / {cfg.model}, batch {cfg.resolved_batch_size}"
        write_html(lr_curves_figure(results, title=title), out)
    if json_out:
        rows = []
        for r in results:
            row = r.to_dict()
            rows.append({"optimizer": r.label, **{k: v for k, v in row.items() if k != "label"}})
        _emit_json({"results": rows, "out": str(out) if out else None})
        return
    header = f"{'optimizer':<10} {'suggestion':>10} {'bracket':>21} {'min loss':>9} {'steps':>6}"
    print(header)
    for r in results:
        bracket = f"{_fmt_lr(r.bracket[0])} - {_fmt_lr(r.bracket[1])}" if r.bracket else "-"
        min_loss = f"{r.min_loss:.4g}" if r.min_loss is not None else "-"
        print(
            f"{r.label:<10} {_fmt_lr(r.suggestion):>10} {bracket:>21} {min_loss:>9} {len(r.lrs):>6}"
        )
        if r.suggestion is None:
            print(f"{'':<10} {r.reason}")
    if out is not None:
        print(f"curves: {out}")


@app.command("search")
def search_command(
    study_file: Annotated[
        Path, typer.Argument(help="Study file (YAML), e.g. studies/quickstart.yaml.")
    ],
    n_trials: Annotated[
        int | None, typer.Option(help="Stop when this many trials have finished (overrides).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Stop starting trials after this many seconds.")
    ] = None,
    storage: StorageOpt = None,
    study_name: Annotated[
        str | None, typer.Option(help="Study name (default: the file's `name`).")
    ] = None,
    seed: SeedOpt = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="FIELD=VALUE",
            help="Override any study-file field, dotted, e.g. --set budget.epochs=3 "
            "--set space.lr=auto (repeatable).",
        ),
    ] = None,
    best_out: Annotated[
        Path | None,
        typer.Option(help="Write the best configuration as YAML (default best-<study>.yaml)."),
    ] = None,
    artifacts: ArtifactsOpt = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes on this machine, all on the same storage (CPU threads "
            "split between them; one GPU each when there are several). Other machines join "
            "with the same command and storage URL.",
        ),
    ] = 1,
    json_out: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-trial lines.")] = False,
) -> None:
    """Run or resume an Optuna study described by a study file.

    Rerunning the same command resumes the study until n_trials trials have finished
    (complete or pruned); trials left running by a killed process are failed and retried.
    During the search the study note in optuna-dashboard shows the best so far, and the
    LR range-test curves are uploaded as an artifact. At the end: best trial per optimizer,
    the best config written as YAML for `lrtune train --config`, and the study report
    (`lrtune report`) uploaded as an artifact. See them with `lrtune dashboard`.

    Scale out: --workers N runs N processes here; more machines join by running the same
    command with the same --storage (PostgreSQL/MySQL URL, or a journal file on a shared
    filesystem). The study stops at n_trials finished trials across all of them.
    Exit codes: 0 done, 2 bad input, 1 trials kept failing the same way (study stopped).
    """

    if study_name is not None and not study_name.strip():
        raise LrtuneError("--study-name must not be empty")
    overrides: dict[str, Any] = {}
    for key, value in _parse_pairs(set_, "--set", "FIELD=VALUE").items():
        _put(overrides, key.split("."), value)
    given: dict[str, Any] = {
        "n_trials": n_trials, "timeout": timeout, "storage": storage, "name": study_name,
        "seed": seed, "artifacts": artifacts,
    }  # fmt: skip
    overrides.update({key: value for key, value in given.items() if value is not None})
    from lrtune.config import study_config_from

    config = study_config_from(study_file, overrides)
    _quiet_lightning()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not quiet:
        _log_to_stderr()
    from lrtune.study import best_config, search

    out = best_out or Path(f"best-{config.name}.yaml")
    study = search(
        study_file, overrides=overrides, progress=None if quiet else sys.stderr, best_out=out,
        workers=workers,
    )  # fmt: skip
    from lrtune.study import DEFAULT_STORAGE, mask_url

    storage_shown = mask_url(config.storage or DEFAULT_STORAGE)
    written = out if out.exists() and any(t.value is not None for t in study.trials) else None
    if json_out:
        payload: dict[str, Any] = {"study_name": study.study_name, "storage": storage_shown}
        try:
            payload.update(
                value=study.best_value,
                params=study.best_params,
                config=best_config(study).to_dict(),
                best_config_path=str(written),
            )
        except LrtuneError:
            payload.update(value=None, params=None)
        _emit_json(payload)
        return
    if written is not None:
        print(f"best value {study.best_value:.4f} (trial {study.best_trial.number})")
        print(f"best config: {written}  (lrtune train --config {written})")
    print(f"storage: {storage_shown}  study: {study.study_name}")
    flag = f" --storage {storage_shown}" if config.storage else ""
    print(f"look: lrtune report{flag} --study-name {study.study_name} --out report.html; "
          f"lrtune dashboard{flag}")  # fmt: skip


@app.command("best")
def best_command(
    study_name: StudyNameOpt = None,
    storage: StorageOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Print a study's best value, params and resolved configuration."""
    import optuna

    from lrtune.study import best_config, load_study, trials_with_tests

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = load_study(storage, study_name)
    study_name = study.study_name
    config = best_config(study)
    trial = study.best_trial
    merged = next(t for t in trials_with_tests(study) if t.number == trial.number)
    tests = {k: v for k, v in merged.user_attrs.items() if k.startswith("test_")}
    if json_out:
        _emit_json(
            {
                "study_name": study_name,
                "value": trial.value,
                "params": trial.params,
                "trial": trial.number,
                "test": tests,
                "config": config.to_dict(),
            }
        )
        return
    import yaml

    print(f"study {study_name}: best value {trial.value:.4f} (trial {trial.number})")
    if tests:
        print("test split: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(tests.items())))
    print("params:")
    for key, value in trial.params.items():
        print(f"  {key}: {value:.4g}" if isinstance(value, float) else f"  {key}: {value}")
    print("config:")
    print("  " + yaml.safe_dump(config.to_dict(), sort_keys=False).replace("\n", "\n  ").rstrip())


@app.command("report")
def report_command(
    storage: StorageOpt = None,
    study_name: StudyNameOpt = None,
    out: Annotated[Path, typer.Option(help="HTML file to write (one file, opens offline).")] = Path(
        "report.html"
    ),
    top: Annotated[int, typer.Option(min=1, help="Rows in the top-trials table.")] = 10,
) -> None:
    """Write a study report: one self-contained HTML file that opens offline.

    It shows the study at a glance (best config, best per optimizer, complete / pruned /
    diverged / failed trials, wall time), the optimization history, the metric per
    optimizer, hyperparameter importances, parallel coordinates, LR vs metric with the
    range-test bracket, learning curves (pruned trials visible), the LR range-test curves
    and the top trials with their full configs. Works on a study that is still running.

    Example: lrtune report --study-name quickstart --out report.html
    """
    import optuna

    from lrtune.report import write_report
    from lrtune.study import DEFAULT_STORAGE, load_study, mask_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if out.is_dir():
        raise LrtuneError(f"--out: {out} is a folder; give an .html file name")
    study = load_study(storage, study_name)
    try:
        path = write_report(study, out, storage=mask_url(storage or DEFAULT_STORAGE), top=top)
    except OSError as error:
        raise LrtuneError(f"--out: cannot write {out} ({error.strerror or error})") from None
    trials = len(study.get_trials(deepcopy=False))
    print(f"report: {path} (study {study.study_name}, {trials} trials)")


@app.command("dashboard")
def dashboard_command(
    storage: StorageOpt = None,
    host: Annotated[
        str,
        typer.Option(
            help="Interface to listen on. 127.0.0.1 (default) keeps the dashboard on this "
            "machine; 0.0.0.0 opens it to the network (it has no login)."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8080,
    artifacts: ArtifactsOpt = None,
) -> None:
    """Start optuna-dashboard on the study storage (Ctrl-C stops it).

    The dashboard shows every study in the storage: its note (question, space, best so
    far, best per optimizer), trials with their user attrs (why a trial was pruned or
    diverged), Optuna's plots, and the artifacts lrtune uploaded (LR range-test curves,
    reports). Default artifact folder: the one the studies recorded, else beside the
    storage.

    Example: lrtune dashboard --storage lrtune-studies.journal --port 8080
    """
    import optuna

    from lrtune.dashboard import serve

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _log_to_stderr()
    serve(storage, host=host, port=port, artifacts=artifacts, stream=sys.stderr)


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


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (2 for bad input, with a one-line message)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        result = app(args=args, prog_name="lrtune", standalone_mode=False)
    except LrtuneError as error:
        from lrtune.errors import StudyFailedError
        from lrtune.study import mask_url

        print(f"lrtune: error: {mask_url(str(error))}", file=sys.stderr)
        return 1 if isinstance(error, StudyFailedError) else 2
    except _ClickException as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # bare `lrtune`: the help, exit 0
            print(error.ctx.get_help())  # type: ignore[attr-defined]
            return 0
        message = error.format_message()  # type: ignore[attr-defined]
        print(f"lrtune: error: {' '.join(message.split())}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, typer.Abort):
        print("lrtune: interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
