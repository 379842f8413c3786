"""``partrig backgrounds print``: write the printable background sheets (PNG and PDF).

Why a sub-app here: each layer contributes its own typer app and :mod:`web.cli` mounts them
(``app.add_typer(backgrounds_app, name="backgrounds")``), so capture never imports web.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from rig.errors import RigError

backgrounds_app = typer.Typer(help="Printable background sheets.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


@backgrounds_app.callback()
def backgrounds() -> None:
    """Printable background sheets: each with its ArUco marker and colour patch strip."""


@backgrounds_app.command("print")
def print_command(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="folder for the PNG and PDF files")
    ] = Path("backgrounds"),
    paper: Annotated[
        Literal["a4", "letter", "both"], typer.Option(help="paper size (landscape)")
    ] = "both",
    dpi: Annotated[int, typer.Option(min=50, max=1200, help="print resolution")] = 300,
) -> None:
    """Write one PNG per sheet and paper size, and one multi-page PDF per paper size.

    Print at 100 % (actual size), not "fit to page", so textures keep their scale.
    """
    from capture.backgrounds import print_sheets

    try:
        printed = print_sheets(out, paper=paper, dpi=dpi)
    except (RigError, ValueError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(code=2) from None
    for name, pdf in printed.pdfs.items():
        count = len(printed.pngs[name])
        console.print(f"{name}: {pdf} ({count} pages) and {count} PNG files", highlight=False)
    console.print("Print at 100 % (actual size), not 'fit to page'.")
