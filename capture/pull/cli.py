"""``partrig dataset pull``: mirror a snapshot from a rig onto a training machine.

Why it is a thin shell over :func:`capture.pull.client.pull`: training scripts call the same
function
directly, so the command only turns options into arguments and typed errors into one clear line
and an exit code (2 for refusals and bad input, 1 for failures worth retrying).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from capture.snapshots.formats import FORMATS
from capture.units import human_bytes
from rig.errors import AccessDenied, NotFound, RigError

err_console = Console(stderr=True)


def pull_command(
    url: Annotated[
        str, typer.Argument(help="http://rig.local:8000 or s3://bucket/prefix/<rig.id>")
    ],
    snapshot: Annotated[str, typer.Option("--snapshot", "-s", help="snapshot id, e.g. snap-0003")],
    dest: Annotated[Path, typer.Option("--dest", "-d", help="folder that holds pulled snapshots")],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help=f"one of: {', '.join(FORMATS)}")
    ] = "webdataset",
    key: Annotated[
        str | None,
        typer.Option("--key", envvar="PARTRIG_KEY", help="trainer API key (or $PARTRIG_KEY)"),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="parallel downloads")] = 8,
    retries: Annotated[int, typer.Option(min=0, max=20, help="re-fetches per bad file")] = 3,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Pull one snapshot into DEST/<id>/: parallel, resumable, sha256-verified; files an earlier
    pull into the same DEST already has are linked, not downloaded again."""
    if url.startswith("s3://"):
        # NOTE: a published snapshot (docs/datasets.md): URL is s3://bucket/prefix/<rig.id>.
        from capture.publish.cli import pull_s3

        pull_s3(url, snapshot, dest, fmt, workers, quiet)
        return
    if not key:
        err_console.print(
            "[bold red]error:[/] no API key: pass --key or set PARTRIG_KEY to a trainer key "
            "(an operator makes one with `partrig auth new-key --role trainer`)",
            soft_wrap=True,
        )
        raise typer.Exit(2)
    from capture.pull.client import pull

    try:
        result = pull(
            url,
            snapshot,
            dest,
            key=key,
            fmt=fmt,
            workers=workers,
            retries=retries,
            progress=not quiet,
        )
    except (AccessDenied, NotFound) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    except RigError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"{result.snapshot_id} ({fmt}) in {result.root}: {result.files} files, "
        f"{human_bytes(result.bytes_total)}; downloaded {result.fetched_files} "
        f"({human_bytes(result.bytes_fetched)}), reused {result.reused_files}, already here "
        f"{result.skipped_files}; {result.seconds:.1f} s"
    )
