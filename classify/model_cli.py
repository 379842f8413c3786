"""``partrig model push``: hand a trained model folder to the rig for validation.

Registered in :mod:`web.cli` as the ``model`` group.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from rig.errors import RigError

console = Console()
err_console = Console(stderr=True)

model_app = typer.Typer(
    help="Upload trained models to a rig and make one live.", no_args_is_help=True
)
JsonOption = Annotated[
    bool, typer.Option("--json", help="print the rig's whole answer as JSON instead")
]


def _verdict(answer: dict[str, Any], as_json: bool) -> None:
    """Say what the rig made of an upload, in a sentence (or its JSON); exit 1 if rejected."""
    if as_json:
        console.print(json.dumps(answer, indent=2), highlight=False)
    model_id = answer.get("id")
    validation = answer.get("validation") or {}
    if answer.get("state") == "rejected":
        reason = validation.get("reason") or "a check failed"
        err_console.print(f"[bold red]rejected:[/] {model_id}: {reason}", highlight=False)
        raise typer.Exit(code=1)
    if as_json:
        return
    accuracy, shots = validation.get("accuracy"), validation.get("test_shots")
    measured = (
        f": accuracy {accuracy:.3f} on {shots} held-out test shots of "
        f"{validation.get('snapshot', 'its snapshot')} (needs "
        f"{validation.get('required_accuracy', 0):.3f})"
        if isinstance(accuracy, int | float)
        else ""
    )
    console.print(
        f"[green]{model_id} validated[/] on the rig{measured}. Make it live on the Models page "
        f"or with `partrig model activate {model_id}` (operator key).",
        highlight=False,
        soft_wrap=True,
    )


@model_app.command("push")
def push_command(
    url: Annotated[str, typer.Argument(help="the rig, e.g. http://partrig.local:8000")],
    model_dir: Annotated[Path, typer.Argument(help="folder written by `partrig train --out`")],
    key: Annotated[str | None, typer.Option(envvar="PARTRIG_KEY", help="trainer API key")] = None,
    as_json: JsonOption = False,
) -> None:
    """Upload MODEL_DIR; the rig validates it on its own held-out split before it can go live.

    Exits 1 when the rig rejected the model (the reason is printed), 2 on any other error.
    """
    from classify.push import push

    try:
        with console.status("uploading; the rig validates the model on its test split..."):
            answer = push(url, model_dir, key=key)
    except RigError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(code=2) from None
    _verdict(answer, as_json)


@model_app.command("activate")
def activate_command(
    model_id: Annotated[
        str | None,
        typer.Argument(help="e.g. model-0003 (default: the newest validated model)"),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(help="the rig (default: the server that owns this data folder)"),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="configuration file")
    ] = None,
) -> None:
    """Make a validated model live on the rig (its sorter switches to it without a restart).

    Uses the first operator key of auth.operator_keys.  Exits 2 on any error, with the reason.
    """
    from classify.activate_remote import activate_remotely

    try:
        record = activate_remotely(model_id, url, config)
    except RigError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(code=2) from None
    before = record.get("previous_model_id")
    console.print(
        f"[green]{record['model_id']} is live[/]"
        + (f" (was {before})" if before else "")
        + ("" if record.get("changed", True) else " (it already was)"),
        highlight=False,
    )


def _transfer(endpoint_url: str | None) -> Any:
    from dataclasses import replace

    from capture.publish.objstore import TransferSettings
    from rig.config import load_settings

    settings = TransferSettings.from_config(load_settings().storage)
    return replace(settings, endpoint_url=endpoint_url) if endpoint_url else settings


@model_app.command("publish")
def publish_command(
    model_dir: Annotated[Path, typer.Argument(help="folder written by `partrig train --out`")],
    url: Annotated[
        str | None, typer.Argument(help="s3://bucket/prefix (default: storage.url)")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="model name (default: the folder's name)")
    ] = None,
    endpoint_url: Annotated[str | None, typer.Option("--endpoint-url", help="S3 endpoint")] = None,
) -> None:
    """Publish MODEL_DIR to s3://bucket/prefix/models/NAME, where any rig can pull it."""
    from capture.publish.publisher import default_url
    from classify.model_store import publish_model
    from rig.config import load_settings

    try:
        target = default_url(load_settings().storage, url)
        chosen = name or re.sub(r"[^a-z0-9._-]+", "-", model_dir.resolve().name.lower()).strip("-")
        published = publish_model(model_dir, target, chosen, _transfer(endpoint_url))
    except RigError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(code=2) from None
    console.print(
        f"published {model_dir} as {published}; a rig takes it with "
        f"`partrig model pull {published} --rig URL`",
        highlight=False,
        soft_wrap=True,
    )


@model_app.command("pull")
def pull_command(
    url: Annotated[str, typer.Argument(help="s3://bucket/prefix/models/NAME")],
    rig: Annotated[str, typer.Option(help="the rig to hand it to, e.g. http://partrig.local:8000")],
    key: Annotated[str | None, typer.Option(envvar="PARTRIG_KEY", help="trainer API key")] = None,
    endpoint_url: Annotated[str | None, typer.Option("--endpoint-url", help="S3 endpoint")] = None,
    as_json: JsonOption = False,
) -> None:
    """Fetch a published model (sha256-checked) and upload it to the rig, which validates it in
    a child process on its own held-out split, exactly as for `model push`.

    Exits 1 when the rig rejected the model, 2 on any other error.
    """
    import tempfile

    from classify.model_store import fetch_model
    from classify.push import push

    try:
        with tempfile.TemporaryDirectory(prefix="partrig-model-") as tmp:
            folder = fetch_model(url, Path(tmp) / "model", _transfer(endpoint_url))
            answer = push(rig, folder, key=key)
    except RigError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(code=2) from None
    _verdict(answer, as_json)
