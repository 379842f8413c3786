"""``partrig dataset import SRC``: photos from a folder, a CSV/JSONL list or another rig's snapshot.

Registered on the ``dataset`` sub-app by :mod:`capture.dataset_cli`.  Exit codes: 0 done,
2 an error whose message says what to fix (a bad label names its folder or row).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rig.cli import ConfigOption, DataOption
from rig.errors import RigError

console = Console()
err_console = Console(stderr=True)


def import_command(
    src: Annotated[
        Path,
        typer.Argument(
            help="a folder with one sub-folder per class (reference/ holds empty-background "
            "frames), a .csv/.jsonl list (file, label; optional instance, session, split, box), "
            "or another partrig snapshot folder"
        ),
    ],
    new_labels: Annotated[
        bool,
        typer.Option(
            "--new-labels", help="confirm that labels not yet in the parts catalogue are new parts"
        ),
    ] = False,
    rig_id: Annotated[
        str | None,
        typer.Option("--rig-id", help="whose snapshot this is (prefixes its instance ids)"),
    ] = None,
    max_distance: Annotated[
        int,
        typer.Option(min=0, max=128, help="crop-hash distance (bits of 256) that links photos"),
    ] = 8,
    time_gap: Annotated[
        float,
        typer.Option(min=0, help="seconds between photos that still count as one sitting"),
    ] = 300.0,
    data: DataOption = None,
    config: ConfigOption = None,
) -> None:
    """Import photos as shots (source "import"), content-addressed and resumable: run it again
    to finish an interrupted import or to add new photos of the same source.  Where the source
    names no instances, near-duplicate crops and photos close in time are grouped
    (imp-<import>-<n>) so that a snapshot never splits one part across train and test."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TimeRemainingColumn,
    )

    from capture.imports.importer import ImportOptions, import_photos
    from capture.store import DatasetStore
    from rig.config import load_settings
    from rig.owner import DataFolderLock, current_owner, refuse

    opts = ImportOptions(
        new_labels=new_labels, max_distance=max_distance, time_gap=time_gap, rig_id=rig_id
    )
    try:
        directory = data if data is not None else load_settings(config).data.dir
        owner = current_owner(directory)
        if owner is not None:
            raise refuse(owner, "`partrig dataset import`", "stop it, import, then start it again")
        with (
            DataFolderLock(directory, "dataset import"),
            DatasetStore.open(directory) as store,
            Progress(
                "{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            ) as bar,
        ):
            tasks: dict[str, TaskID] = {}

            def progress(phase: str, done: int, total: int) -> None:
                if phase not in tasks:
                    tasks[phase] = bar.add_task(phase, total=total)
                bar.update(tasks[phase], completed=done)

            result = import_photos(store, src, opts, progress)
    except RigError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(code=2) from None
    console.print(
        f"[green]import {result.import_id}[/] ({result.kind}): {result.added} photo(s) added, "
        f"{result.already_in} already in, {len(result.duplicates)} duplicate(s) of stored "
        f"photos skipped; {len(result.labels)} class(es); boxes from {result.boxes_from}",
        highlight=False,
    )
    if result.groups:
        table = Table(title=f"inferred groups (imp-{result.import_id}-<n>), per class")
        table.add_column("label")
        table.add_column("groups", justify="right")
        for label, n in sorted(result.groups.items()):
            table.add_row(label, str(n))
        console.print(table)
        console.print(
            f"{result.new_groups} new group(s). A snapshot splits by these groups; a class "
            "with fewer than 3 cannot get train, val and test.",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    """Add ``import`` to the ``dataset`` sub-app."""
    app.command("import")(import_command)
