"""``partrig dataset check`` and ``partrig dataset stats``: the store from the command line.

Why a sub-app here: each layer contributes its own typer app and :mod:`web.cli` mounts them
(``app.add_typer(dataset_app, name="dataset")``), so capture never imports web.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from rig.cli import ConfigOption, DataOption
from rig.errors import RigError

if TYPE_CHECKING:
    from capture.store import CheckReport, DatasetStore

dataset_app = typer.Typer(help="Check and count the dataset store.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


def _data_dir(data: Path | None, config: Path | None) -> Path:
    from rig.config import load_settings

    # NOTE: an explicit --data needs no configuration file, so a broken one cannot block a check.
    directory = Path(data if data is not None else load_settings(config).data.dir)
    if not directory.is_dir():
        raise RigError(f"{directory} is not a directory: pass --data DIR or set data.dir")
    return directory


def _open(data: Path | None, config: Path | None) -> DatasetStore:
    from capture.store import DatasetStore

    return DatasetStore.open(_data_dir(data, config))


@dataset_app.command("check")
def check(
    data: DataOption = None,
    config: ConfigOption = None,
    checksums: Annotated[bool, typer.Option(help="re-hash every file (slow on big stores)")] = True,
    remove_temporaries: Annotated[
        bool,
        typer.Option(
            "--remove-temporaries",
            help="delete the leftovers of interrupted writes it finds (only while nothing "
            "else uses the data folder)",
        ),
    ] = False,
) -> None:
    """Find orphan files, missing files, checksum mismatches, leftovers of interrupted writes
    and damaged database pages.  Exit 0 when clean, 1 when it lists problems, 2 when the
    database is damaged or the check cannot run."""
    from capture.store import DatasetStore

    directory: Path | None = None
    try:
        directory = _data_dir(data, config)
        with DatasetStore.open(directory) as store:
            report = store.check(verify_checksums=checksums)
            if remove_temporaries and report.removable():
                _remove_temporaries(store, report)
                report = store.check(verify_checksums=checksums)
            db_path = store.db_path
    except RigError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        if "is damaged" in str(exc) and directory is not None:
            from capture.store import DB_NAME

            _print_damaged(directory.resolve() / DB_NAME, None)
        raise typer.Exit(code=2) from None
    except OSError as exc:
        err_console.print(
            f"[bold red]error:[/] cannot read the data folder ({exc}); check that this user may "
            "read every file under it",
            soft_wrap=True,
        )
        raise typer.Exit(code=2) from None
    problems = report.problems()
    for line in problems:
        console.print(f"[red]problem[/]: {line}", highlight=False, soft_wrap=True)
    summary = f"{report.files_checked} files, {report.rows_checked} file references checked"
    if report.removable() and not remove_temporaries:
        console.print(
            f"{len(report.removable())} leftover(s) of interrupted writes: nothing refers to "
            "them; remove them with `partrig dataset check --remove-temporaries` (refused "
            "while a server or a run uses this data folder, which removes its own at start-up)",
            soft_wrap=True,
        )
    if report.database_damaged:
        _print_damaged(db_path, report.integrity)
        raise typer.Exit(code=2)
    if problems:
        console.print(f"[bold red]{len(problems)} problem(s)[/] ({summary})")
        raise typer.Exit(code=1)
    console.print(f"[green]ok[/]: {summary}; database integrity ok; no leftovers")


def _print_damaged(db_path: Path, detail: str | None) -> None:
    """Say that the database is damaged and print the steps that repair it."""
    from capture.store.base import damaged_db_message, damaged_db_steps

    if detail is not None:
        err_console.print(
            f"[bold red]error:[/] {damaged_db_message(db_path, detail)}",
            soft_wrap=True,
            highlight=False,
        )
    err_console.print("What to do:", highlight=False)
    err_console.print(damaged_db_steps(db_path), highlight=False, soft_wrap=True, markup=False)


def _remove_temporaries(store: DatasetStore, report: CheckReport) -> None:
    """Delete the report's leftovers while holding the data folder's lock (or refuse)."""
    from rig.owner import DataFolderLock

    # NOTE: the lock proves no server, run or snapshot is writing here right now: one that
    # is would hold it, and its half-written snapshot would look exactly like a leftover.
    with DataFolderLock(store.data_dir, "dataset check --remove-temporaries"):
        removed = store.remove_temporaries(report)
    sizes = {x.path: x.size for x in report.leftovers}
    freed = sum(sizes.get(p, 0) for p in removed)
    console.print(
        f"removed {len(removed)} leftover(s) of interrupted writes ({freed / 1e6:.1f} MB)",
        highlight=False,
    )


def _table(title: str, heading: str, counts: dict[str, int]) -> Table:
    table = Table(title=title)
    table.add_column(heading)
    table.add_column("shots", justify="right")
    for key, n in counts.items():
        table.add_row(key, str(n))
    return table


@dataset_app.command("stats")
def stats(data: DataOption = None, config: ConfigOption = None) -> None:
    """Shot counts per class, background, run, instance and class x background."""
    try:
        with _open(data, config) as store:
            s = store.stats()
            folder = Path(store.data_dir).resolve()
    except RigError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(code=2) from None
    console.print(
        f"[bold]{s.total}[/] shots in {folder} ({s.deleted} deleted, kept in {folder / 'trash'})",
        highlight=False,
        soft_wrap=True,
    )
    console.print(_table("per class", "label", s.by_label))
    console.print(_table("per background", "sheet", s.by_background))
    console.print(_table("per run", "run", s.by_run))
    console.print(_table("per instance", "instance", s.by_instance))
    console.print(_table("per source", "source", s.by_source))
    backgrounds = sorted({b for row in s.by_label_background.values() for b in row})
    grid = Table(title="class x background")
    grid.add_column("label")
    for b in backgrounds:
        grid.add_column(f"sheet {b}", justify="right")
    for label, row in s.by_label_background.items():
        grid.add_row(label, *(str(row.get(b, 0)) for b in backgrounds))
    console.print(grid)


# NOTE: imported last: the snapshot commands live in their own module and join this sub-app.
from capture.snapshots.cli import register as _register_snapshot_commands  # noqa: E402

_register_snapshot_commands(dataset_app)

from capture.publish.cli import register as _register_publish_commands  # noqa: E402

_register_publish_commands(dataset_app)

from capture.imports.cli import register as _register_import_commands  # noqa: E402

_register_import_commands(dataset_app)

from capture.catalogue.cli import register as _register_catalogue_commands  # noqa: E402

_register_catalogue_commands(dataset_app)
