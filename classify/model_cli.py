"""``partrig model push``: hand a trained model folder to the rig for validation.

Registered in :mod:`web.cli` as the ``model`` group.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from classify.push import push
from rig.errors import RigError

console = Console()
err_console = Console(stderr=True)

model_app = typer.Typer(help="Upload trained models to a rig.", no_args_is_help=True)


@model_app.command("push")
def push_command(
    url: Annotated[str, typer.Argument(help="the rig, e.g. http://partrig.local:8000")],
    model_dir: Annotated[Path, typer.Argument(help="folder written by `partrig train --out`")],
    key: Annotated[str | None, typer.Option(envvar="PARTRIG_KEY", help="trainer API key")] = None,
) -> None:
    """Upload MODEL_DIR; the rig validates it on its own held-out split before it can go live.

    Exits 1 when the rig rejected the model (the reason is printed), 2 on any other error.
    """
    try:
        answer = push(url, model_dir, key=key)
    except RigError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=2) from None
    console.print(json.dumps(answer, indent=2))
    if answer.get("state") == "rejected":
        err_console.print(f"[bold red]rejected:[/] model {answer.get('id')} did not validate")
        raise typer.Exit(code=1)
