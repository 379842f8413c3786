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
    from capture.vision.backgrounds import print_sheets

    try:
        printed = print_sheets(out, paper=paper, dpi=dpi)
    except (RigError, ValueError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(code=2) from None
    for name, pdf in printed.pdfs.items():
        count = len(printed.pngs[name])
        console.print(f"{name}: {pdf} ({count} pages) and {count} PNG files", highlight=False)
    console.print("Print at 100 % (actual size), not 'fit to page'.")


@backgrounds_app.command("lens-board")
def lens_board_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for lens-board.png")] = Path(
        "backgrounds"
    ),
    dpi: Annotated[int, typer.Option(min=150, max=1200, help="print resolution")] = 300,
) -> None:
    """Write the ChArUco board for the one-time lens calibration (print at 100 %)."""
    from capture.vision.lens import print_board

    try:
        path = print_board(out, dpi=dpi)
    except (RigError, ValueError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(code=2) from None
    console.print(f"{path}: print at 100 % (actual size), then photograph it 8-20 times, tilted")


@backgrounds_app.command("calibrate-lens")
def calibrate_lens_command(
    photos: Annotated[list[Path], typer.Argument(help="photographs of the printed lens board")],
    data: Annotated[
        Path, typer.Option("--data", help="the data folder the calibration is stored in")
    ] = Path("data"),
) -> None:
    """Fit the lens from photographs of the board; stores data/calibration/lens.json.

    Measurements (docs/capture.md, "Measuring parts") then correct the lens's distortion and
    the parallax of parts lying on their side.
    """
    import cv2

    from capture.vision.lens import calibrate, save

    frames = []
    for p in photos:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            err_console.print(f"[bold red]error:[/] {p} is not a readable image", soft_wrap=True)
            raise typer.Exit(code=2)
        frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    try:
        cal = calibrate(frames)
        path = save(cal, data)
    except (RigError, ValueError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(code=2) from None
    console.print(
        f"{path}: {cal.views} views, reprojection error {cal.rms_px:.3f} px "
        f"(under 0.5 px is good), {cal.width}x{cal.height}",
        highlight=False,
    )
