"""``partrig dataset catalogue import|export|show`` and ``partrig dataset measure``.

Why both write commands refuse while a server owns the data folder (contracts, #7): the
server's own capture and labelling write the same rows; two writers would interleave.  The
page has the same catalogue import (``POST /api/dataset/catalogue/import``), and
``partrig dataset measure`` is for the quiet time after ``calibrate-lens``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rig.cli import ConfigOption, DataOption
from rig.errors import RigError

catalogue_app = typer.Typer(
    help="The parts catalogue: each label's category, colour and attributes.",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)


def _directory(data: Path | None, config: Path | None) -> Path:
    from rig.config import load_settings

    return Path(data if data is not None else load_settings(config).data.dir)


def _fail(exc: RigError) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True, highlight=False, markup=False)
    return typer.Exit(code=2)


@catalogue_app.command("import")
def import_command(
    csv_file: Annotated[Path, typer.Argument(help="the parts list: label,name,category,...")],
    data: DataOption = None,
    config: ConfigOption = None,
) -> None:
    """Import a parts list (CSV with a header row): every row or none; each problem is named
    by its row and column.  Each row sets that part's attributes to exactly its cells."""
    from capture.catalogue.csv_import import import_catalogue, read_catalogue_csv
    from capture.store import DatasetStore
    from rig.owner import DataFolderLock, current_owner, refuse

    try:
        rows = read_catalogue_csv(csv_file)
        directory = _directory(data, config)
        owner = current_owner(directory)
        if owner is not None:
            raise refuse(owner, "`partrig dataset catalogue import`",
                         "import on the dataset page, or stop it first")  # fmt: skip
        with (
            DataFolderLock(directory, "dataset catalogue import"),
            DatasetStore.open(directory) as store,
        ):
            done = import_catalogue(store, rows)
    except RigError as exc:
        raise _fail(exc) from None
    new = f"; new parts: {', '.join(done.new_labels)}" if done.new_labels else ""
    console.print(
        f"[green]{done.parts} part(s) imported[/] with attributes {', '.join(done.attributes)}"
        f"{new}",
        highlight=False,
        soft_wrap=True,
    )


@catalogue_app.command("export")
def export_command(
    out: Annotated[Path | None, typer.Option(help="write here instead of printing")] = None,
    data: DataOption = None,
    config: ConfigOption = None,
) -> None:
    """Write the catalogue as a parts list (the same CSV the import reads)."""
    from capture.catalogue.csv_import import catalogue_csv
    from capture.store import DatasetStore
    from capture.store.catalogue import catalogue

    try:
        with DatasetStore.open(_directory(data, config)) as store:
            text = catalogue_csv(catalogue(store.db.conn))
    except RigError as exc:
        raise _fail(exc) from None
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {out}", highlight=False)


@catalogue_app.command("show")
def show_command(data: DataOption = None, config: ConfigOption = None) -> None:
    """Every part with its attributes."""
    from capture.store import DatasetStore
    from capture.store.catalogue import catalogue, iter_attribute_columns

    try:
        with DatasetStore.open(_directory(data, config)) as store:
            parts = catalogue(store.db.conn)
    except RigError as exc:
        raise _fail(exc) from None
    columns = list(iter_attribute_columns(parts))
    table = Table(title=f"{len(parts)} part(s)")
    for heading in ("label", "name", *columns):
        table.add_column(heading)
    for label, entry in parts.items():
        attrs = entry["attributes"]
        table.add_row(label, entry["name"], *(str(attrs.get(c, "")) for c in columns))
    console.print(table)


def measure_command(
    run: Annotated[int | None, typer.Option("--run", min=1, help="re-measure this run")] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="re-measure every run")] = False,
    data: DataOption = None,
    config: ConfigOption = None,
) -> None:
    """Recompute shots' sizes in millimetres from their stored image, mask, reference frame and
    the data folder's lens calibration (after `partrig backgrounds calibrate-lens`).  Resumable:
    run it again with the same scope to finish an interrupted job."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from capture.store import DatasetStore
    from capture.vision.remeasure import Remeasure
    from rig.owner import DataFolderLock, current_owner, refuse

    try:
        directory = _directory(data, config)
        owner = current_owner(directory)
        if owner is not None:
            raise refuse(owner, "`partrig dataset measure`", "stop it, measure, then start it")
        with (
            DataFolderLock(directory, "dataset measure"),
            DatasetStore.open(directory) as store,
            Progress(
                "re-measuring",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            ) as bar,
        ):
            task = bar.add_task("re-measuring", total=None)
            report = Remeasure(store).run(
                run_id=run,
                all_runs=all_runs,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    except RigError as exc:
        raise _fail(exc) from None
    resumed = " (resumed an interrupted job)" if report.resumed else ""
    console.print(
        f"[green]job {report.job_id}[/]{resumed}: {report.measured} measured, "
        f"{report.marker_missing} with the marker not found (flagged), {report.no_part} with no "
        f"part in the mask, {report.skipped} without a mask or reference (left as they were)",
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Add ``catalogue`` and ``measure`` to the ``dataset`` sub-app."""
    app.add_typer(catalogue_app, name="catalogue")
    app.command("measure")(measure_command)
