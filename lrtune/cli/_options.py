"""The command-line options several ``lrtune`` commands share, as ``Annotated`` types.

Each alias carries its typer ``Option`` (flag name, help text), so a command declares
``dataset: DatasetOpt = None`` and every command shows the same flag and help.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
    typer.Option(
        "--config",
        help=(
            "YAML file with the training fields (dataset/model, or module/datamodule with "
            "class_path and init_args for your own LightningModule/DataModule), or a study "
            "file (its training fields); flags override it."
        ),
    ),
]
# Options shared by the commands that read or write a study.
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
