"""The ``lrtune list`` command: the registered optimizers, schedules, models and datasets.

Reads the registries and prints them as a table per kind, or as JSON with ``--json``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from lrtune.cli._app import _emit_json, app
from lrtune.errors import LrtuneError


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
                "tuning_free": info.tuning_free,
                "needs": f"pip install 'lrtune[{info.extra}]'" if info.extra else None,
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
                extra += f"  (tuning-free; {row['needs']})" if row["tuning_free"] else ""
                extra += f"  ({row['needs']})" if row["needs"] and not row["tuning_free"] else ""
            elif kind == "schedules" and row["params"]:
                extra = "  " + ", ".join(f"{k}={v['default']:g}" for k, v in row["params"].items())
            elif kind == "models":
                extra = "  " + ", ".join(f"{k}={v}" for k, v in row["options"].items())
            print(f"  {row['name']:<18} {row['description']}{extra}")
