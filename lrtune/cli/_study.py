"""The study commands of the ``lrtune`` CLI: ``search``, ``best``, ``report``, ``dashboard``.

They run or resume an Optuna study from a study file, and read a study back from its
storage: the best configuration, the HTML report, and optuna-dashboard.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from lrtune._logging import log_to_stderr as _log_to_stderr
from lrtune._logging import quiet_lightning as _quiet_lightning
from lrtune.cli._app import _emit_json, _parse_pairs, _put, app
from lrtune.cli._options import ArtifactsOpt, JsonOpt, SeedOpt, StorageOpt, StudyNameOpt
from lrtune.errors import LrtuneError


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
        str | None,
        typer.Option(
            metavar="N|auto",
            help="Worker processes on this machine, all on the same storage (CPU threads "
            "split between them; one GPU each when there are several). 'auto' fills every "
            "visible GPU with several workers each (see --trials-per-gpu); without a GPU it "
            "is one worker. Other machines join with the same command and storage URL. "
            "[default: the study file's workers, else 1]",
        ),
    ] = None,
    trials_per_gpu: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="With --workers auto: this many workers on each GPU [default: measured from "
            "one short trial: as many as fit in GPU memory and keep the GPU busy, at most 8].",
        ),
    ] = None,
    json_out: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-trial lines.")] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Print the traceback of every failed trial (by default they go to a log "
            "file, whose path the error line names).",
        ),
    ] = False,
) -> None:
    """Run or resume an Optuna study described by a study file.

    Rerunning the same command resumes the study until n_trials trials have finished
    (complete or pruned); trials left running by a killed process are failed and retried.
    During the search the study note in optuna-dashboard shows the best so far, and the
    LR range-test curves are uploaded as an artifact. At the end: best trial per optimizer,
    the best config written as YAML for `lrtune train --config`, and the study report
    (`lrtune report`) uploaded as an artifact. See them with `lrtune dashboard`.

    Scale out: --workers N runs N processes here (--workers auto packs several onto each
    GPU); more machines join by running the same
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
        "seed": seed, "artifacts": artifacts, "trials_per_gpu": trials_per_gpu,
        "workers": _workers(workers) if workers is not None else None,
    }  # fmt: skip
    overrides.update({key: value for key, value in given.items() if value is not None})
    from lrtune.config import study_config_from

    config = study_config_from(study_file, overrides)
    _quiet_lightning()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not verbose:
        from lrtune._logging import tracebacks_to_file

        tracebacks_to_file()
    if not quiet:
        _log_to_stderr()
    from lrtune.storage import closing_storage
    from lrtune.study import search

    out = best_out or Path(f"best-{config.name}.yaml")
    study = search(
        study_file, overrides=overrides, progress=None if quiet else sys.stderr, best_out=out,
    )  # fmt: skip
    with closing_storage(study):
        _print_searched(study, config, out, json_out)


def _workers(value: str) -> int | str:
    """``--workers``: a count >= 1 or ``auto``."""
    if value.strip().lower() == "auto":
        return "auto"
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise LrtuneError(
            f"Invalid value for '--workers': expected a number >= 1 or auto, got {value!r}"
        )
    return count


def _print_searched(study: Any, config: Any, out: Path, json_out: bool) -> None:
    """What ``lrtune search`` prints at the end (after the summary)."""
    from lrtune.study import DEFAULT_STORAGE, best_config, mask_url

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

    from lrtune.storage import closing_storage
    from lrtune.study import load_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with closing_storage(load_study(storage, study_name)) as study:
        _print_best(study, json_out)


def _print_best(study: Any, json_out: bool) -> None:
    from lrtune.study import best_config, trials_with_tests

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
    from lrtune.storage import closing_storage
    from lrtune.study import DEFAULT_STORAGE, load_study, mask_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if out.is_dir():
        raise LrtuneError(f"--out: {out} is a folder; give an .html file name")
    with closing_storage(load_study(storage, study_name)) as study:
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
