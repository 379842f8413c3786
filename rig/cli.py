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
    typer.Option(
        "--config", "-c", help="configuration file (default: $PARTRIG_CONFIG or ./partrig.toml)"
    ),
]
SimOption = Annotated[bool, typer.Option("--sim", help="use the simulated rig")]
DataOption = Annotated[
    Path | None,
    typer.Option("--data", help="data directory (default: data.dir from the configuration)"),
]

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
    if settings.camera.driver == "sim" and not settings.sim:
        # NOTE: the same combination `partrig capture` accepts (rig.rig.open_rig).
        console.print(
            f"board bring-up: the real board on {settings.serial.port} with the simulated "
            "camera, which follows the angle the board reports"
        )


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


# --- partrig demo, partrig rig ... ------------------------------------------------------------

rig_app = typer.Typer(help="Drive the turntable and lights directly.", no_args_is_help=True)


def demo(
    data: Annotated[Path | None, typer.Option("--data", help="data directory")] = None,
    firmware: Annotated[
        str, typer.Option("--firmware", help="simulated firmware: partrig or marlin")
    ] = "partrig",
    config: ConfigOption = None,
) -> None:
    """A short turntable session on the simulated rig (real time), printed as it happens."""
    from rig.config import apply_sim
    from rig.demo import run_demo

    try:
        settings = apply_sim(load_settings(config))
        settings.simulator.firmware = firmware  # type: ignore[assignment]
        settings.simulator.time_scale = 1.0
        if data is not None:
            settings.data.dir = data
        run_demo(settings, console)
    except (RigError, ValueError) as exc:
        raise fail(exc) from None


def _with_rig(config: Path | None, sim: bool, action) -> None:
    from rig.rig import open_rig

    try:
        with open_rig(load_settings(config, sim=sim), with_camera=False) as rig:
            action(rig)
            console.print_json(data=rig.status())
    except RigError as exc:
        raise fail(exc) from None


@rig_app.command("status")
def rig_status(config: ConfigOption = None, sim: SimOption = False) -> None:
    """Open the rig, print link, firmware, angle, lights and fault as JSON."""
    _with_rig(config, sim, lambda rig: None)


@rig_app.command("rotate")
def rig_rotate(
    degrees: float,
    mode: Annotated[str | None, typer.Option(help="absolute or shortest")] = None,
    config: ConfigOption = None,
    sim: SimOption = False,
) -> None:
    """Turn the table to DEGREES and verify it got there."""

    def act(rig) -> None:
        rig.turntable.rotate_to(degrees, mode)
        console.print(f"at {rig.turntable.wait():.3f}°")

    _with_rig(config, sim, act)


@rig_app.command("zero")
def rig_zero(config: ConfigOption = None, sim: SimOption = False) -> None:
    """Confirm the table is at its zero mark (G92 X0)."""
    _with_rig(config, sim, lambda rig: rig.turntable.set_zero())


@rig_app.command("home")
def rig_home(config: ConfigOption = None, sim: SimOption = False) -> None:
    """Home on the X-min endstop (turntable.endstop = "x_min")."""
    _with_rig(config, sim, lambda rig: rig.turntable.home())


@rig_app.command("lights")
def rig_lights(level: float, config: ConfigOption = None, sim: SimOption = False) -> None:
    """Set the light to LEVEL (0..1)."""
    _with_rig(config, sim, lambda rig: rig.lights.set(level))
