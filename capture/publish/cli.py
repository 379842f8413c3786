"""``partrig dataset publish`` and ``partrig dataset pull s3://...``: snapshots in object storage.

Registered on the ``dataset`` sub-app by :mod:`capture.dataset_cli`; ``dataset pull`` hands an
``s3://`` URL to :func:`pull_s3`.  Exit codes: 0 done, 1 a failure worth retrying (network,
storage), 2 an error whose message says what to fix (bad URL, no credentials, id clash).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from capture.units import human_bytes
from rig.cli import ConfigOption, DataOption
from rig.errors import AccessDenied, ConfigError, NotFound, QueryError, RigError, StoreError

console = Console()
err_console = Console(stderr=True)
_REFUSALS = (AccessDenied, ConfigError, NotFound, QueryError, StoreError)


def _exit_for(exc: RigError) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
    return typer.Exit(code=2 if isinstance(exc, _REFUSALS) else 1)


def _transfer(storage: Any, endpoint_url: str | None, concurrency: int | None) -> Any:
    from dataclasses import replace

    from capture.publish.objstore import TransferSettings

    settings = TransferSettings.from_config(storage)
    if endpoint_url:
        settings = replace(settings, endpoint_url=endpoint_url)
    if concurrency:
        settings = replace(settings, concurrency=concurrency)
    return settings


EndpointOption = Annotated[
    str | None,
    typer.Option(
        "--endpoint-url", help="S3 endpoint, e.g. http://minio:9000 (storage.endpoint_url)"
    ),
]
ConcurrencyOption = Annotated[
    int | None, typer.Option(min=1, max=64, help="parallel transfers (storage.concurrency)")
]


def publish_command(
    snapshot: Annotated[str, typer.Argument(help="snapshot id, e.g. snap-0003")],
    url: Annotated[
        str | None,
        typer.Argument(help="s3://bucket/prefix (default: storage.url)", show_default=False),
    ] = None,
    rig_id: Annotated[
        str | None, typer.Option("--rig-id", help="namespace (default: rig.id)")
    ] = None,
    endpoint_url: EndpointOption = None,
    concurrency: ConcurrencyOption = None,
    data: DataOption = None,
    config: ConfigOption = None,
) -> None:
    """Upload SNAPSHOT to s3://bucket/prefix/<rig.id>/SNAPSHOT: files named by sha256 (shared
    with earlier versions, so only new files travel), the manifest last; safe to re-run."""
    from pydantic import ValidationError

    from capture.publish.publisher import default_url
    from rig.config import RigIdentity, load_settings

    try:
        settings = load_settings(config)
        try:
            rig = RigIdentity(id=rig_id) if rig_id else settings.rig
        except ValidationError as exc:
            raise ConfigError(f"--rig-id {rig_id!r}: {exc.errors()[0]['msg']}") from None
        directory = data if data is not None else settings.data.dir
        transfer = _transfer(settings.storage, endpoint_url, concurrency)
        result = _publish(directory, snapshot, default_url(settings.storage, url), rig.id, transfer)
    except RigError as exc:
        raise _exit_for(exc) from None
    if result.already_published:
        console.print(f"{result.url}: already published, nothing to upload")


def _publish(directory: Path, snapshot: str, url: str, rig_id: str, transfer: Any) -> Any:
    from capture.publish.publisher import publish_snapshot

    with console.status(f"publishing {snapshot}..."):
        result = publish_snapshot(directory, snapshot, url, rig_id=rig_id, settings=transfer)
    console.print(
        f"[green]{result.url}[/]: {result.files} files, {human_bytes(result.total_bytes)}; "
        f"uploaded {result.uploaded_objects} objects ({human_bytes(result.uploaded_bytes)}), "
        f"reused {result.reused_objects} ({human_bytes(result.reused_bytes)}); "
        f"{result.seconds:.1f} s",
        soft_wrap=True,
    )
    return result


def publish_after_snapshot(settings: Any, directory: Path, snapshot: str) -> None:
    """The ``storage.publish_after_snapshot`` hook: publish, or warn and keep the snapshot."""
    from capture.publish.publisher import default_url

    try:
        transfer = _transfer(settings.storage, None, None)
        _publish(Path(directory), snapshot, default_url(settings.storage, None), settings.rig.id,
                 transfer)  # fmt: skip
    except RigError as exc:
        # NOTE: the snapshot is written and recorded either way; publishing can be re-run.
        err_console.print(
            f"[yellow]warning:[/] {snapshot} was not published: {escape(str(exc))}; run "
            f"`partrig dataset publish {snapshot}` when storage is reachable",
            soft_wrap=True,
        )


def _publish_if_configured(settings: Any, directory: Path, snapshot: str) -> None:
    if settings.storage.publish_after_snapshot:
        publish_after_snapshot(settings, directory, snapshot)


def pull_s3(url: str, snapshot: str, dest: Path, fmt: str, workers: int, quiet: bool) -> None:
    """``partrig dataset pull s3://bucket/prefix/<rig.id> --snapshot snap-NNNN --dest DIR``."""
    from dataclasses import replace

    from capture.publish.objstore import S3Location
    from capture.publish.published import pull_published
    from rig.config import load_settings

    try:
        location = S3Location.parse(url)
        full = (
            location.url() if location.prefix.endswith(snapshot) else location.child(snapshot).url()
        )
        transfer = replace(_transfer(load_settings(None).storage, None, None), concurrency=workers)
        if quiet:
            result = pull_published(full, dest, transfer, fmt=fmt)
        else:
            with console.status(f"pulling {full}..."):
                result = pull_published(full, dest, transfer, fmt=fmt)
    except RigError as exc:
        raise _exit_for(exc) from None
    typer.echo(
        f"{snapshot} ({fmt}) in {result.root}: {result.files} files, "
        f"{human_bytes(result.total_bytes)}; downloaded {result.fetched_files} "
        f"({human_bytes(result.fetched_bytes)}), already here {result.present_files}; "
        f"{result.seconds:.1f} s"
    )


def register(app: typer.Typer) -> None:
    from capture.snapshots.cli import AFTER_SNAPSHOT

    if _publish_if_configured not in AFTER_SNAPSHOT:
        AFTER_SNAPSHOT.append(_publish_if_configured)
    app.command("publish")(publish_command)
