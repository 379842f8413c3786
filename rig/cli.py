"""Command-line commands of the rig layer: ``partrig config ...`` and ``partrig rig ...``.

The full ``partrig`` command is assembled in :mod:`web.cli`, the top layer, because only it may
import every package; each layer contributes its own typer sub-app from a module like this.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from rig.config import dump_settings, find_config, load_settings
from rig.errors import RigError

console = Console()
err_console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="configuration file (default: $PARTRIG_CONFIG or ./partrig.toml)"),
]
SimOption = Annotated[bool, typer.Option("--sim", help="use the simulated rig")]

config_app = typer.Typer(help="Check and show the configuration.", no_args_is_help=True)


def fail(exc: Exception) -> typer.Exit:
    """Print a RigError for the operator (no traceback) and return the exit to raise."""
    err_console.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(code=2)


@config_app.command("check")
def config_check(config: ConfigOption = None) -> None:
    """Validate the configuration file and report every bad key."""
    try:
        settings = load_settings(config)
    except RigError as exc:
        raise fail(exc) from None
    where = settings.source or "built-in defaults (no partrig.toml found)"
    console.print(f"[green]ok[/]: {where}")


@config_app.command("show")
def config_show(config: ConfigOption = None, sim: SimOption = False) -> None:
    """Print the effective configuration, defaults included, as TOML."""
    try:
        settings = load_settings(config, sim=sim)
    except RigError as exc:
        raise fail(exc) from None
    src = find_config(config)
    console.print(f"# effective configuration (from {src or 'built-in defaults'})", markup=False)
    console.print(dump_settings(settings), markup=False, highlight=False)
