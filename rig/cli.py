"""Command-line commands of the rig layer: ``partrig config ...`` and ``partrig rig ...``.

The full ``partrig`` command is assembled in :mod:`web.cli`, the top layer, because only it may
import every package; each layer contributes its own typer sub-app from a module like this.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console

from rig.errors import ConfigError, GcodeError, RigError

if TYPE_CHECKING:
    from rig.config import Settings
    from rig.owner import Owner
    from rig.rig import Rig
    from rig.turntable import Mode

console = Console()
err_console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="configuration file (default: $PARTRIG_CONFIG or ./partrig.toml)"
    ),
]
SimOption = Annotated[bool, typer.Option("--sim", help="use the simulated rig")]
JsonOption = Annotated[
    bool, typer.Option("--json", help="print the rig's status as JSON instead of a summary")
]
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
    from rig.config import load_settings

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
    from rig.config import dump_settings, find_config, load_settings

    try:
        settings = load_settings(config, sim=sim)
    except RigError as exc:
        raise fail(exc) from None
    src = find_config(config)
    console.print(f"# effective configuration (from {src or 'built-in defaults'})", markup=False)
    console.print(dump_settings(settings), markup=False, highlight=False)


# --- partrig demo, partrig rig ... ------------------------------------------------------------

rig_app = typer.Typer(
    help="Drive the turntable and lights directly (through a running server's API when one "
    "owns the rig).",
    no_args_is_help=True,
)


def demo(
    data: Annotated[Path | None, typer.Option("--data", help="data directory")] = None,
    firmware: Annotated[
        str, typer.Option("--firmware", help="simulated firmware: partrig or marlin")
    ] = "partrig",
    config: ConfigOption = None,
) -> None:
    """A short turntable session on the simulated rig (real time), printed as it happens."""
    from rig.config import apply_sim, load_settings
    from rig.demo import run_demo

    try:
        settings = apply_sim(load_settings(config))
        settings.simulator.firmware = _sim_firmware(firmware)
        settings.simulator.time_scale = 1.0
        if data is not None:
            settings.data.dir = data
        run_demo(settings, console)
    except (RigError, ValueError) as exc:
        raise fail(exc) from None


def print_status(status: dict[str, Any], as_json: bool) -> None:
    """The rig's status as a person reads it first (or as JSON with ``--json``)."""
    if as_json:
        console.print_json(data=status)
        return
    if not isinstance(status, dict) or "link" not in status:
        console.print_json(data=status)  # NOTE: an answer of another shape: show it whole
        return
    fw = status.get("firmware") or {}
    where = "simulated rig" if status.get("simulated") else f"rig on {status.get('port')}"
    angle, lights = status.get("angle_deg"), status.get("lights")
    console.print(
        f"{where}: link {status.get('link')}, firmware {fw.get('name', '?')} "
        f"{fw.get('version', '')} ({fw.get('dialect', '?')} dialect), "
        + (f"at {angle:.3f}°, " if isinstance(angle, int | float) else "")
        + (f"lights {lights:.0%}, " if isinstance(lights, int | float) else "")
        + f"camera {status.get('camera') or 'none'}, resets {status.get('resets', 0)}",
        highlight=False,
        soft_wrap=True,
    )
    fault = status.get("fault")
    if fault:
        console.print(f"[bold red]fault latched:[/] {fault}", highlight=False, soft_wrap=True)
    else:
        console.print("no fault latched", highlight=False)


def _with_rig(
    config: Path | None,
    sim: bool,
    action: Callable[[Rig], None],
    *,
    command: str,
    remote: tuple[str, str, dict[str, Any] | None] | None = None,
    as_json: bool = False,
) -> None:
    """Run ``action`` on the rig opened here, or, when a server owns it, ``remote`` on its API.

    ``remote`` is (method, path, JSON body) of the server's equivalent; None when it has none,
    and then the command refuses, naming the server (one process owns the rig, contracts.md).
    """
    from rig.config import load_settings
    from rig.owner import DataFolderLock, hardware_owner, refuse
    from rig.rig import open_rig

    try:
        settings = load_settings(config, sim=sim)
        owner = hardware_owner(
            settings.data.dir, settings.web.host, settings.web.port, probe_port=not settings.sim
        )
        if owner is not None:
            if remote is None or not owner.is_server:
                what = (
                    "use the Rig page of the web app for this, or stop the server"
                    if owner.is_server
                    else "wait until it ends"
                )
                raise refuse(owner, f"`partrig rig {command}`", what)
            print_status(_through_server(settings, owner, command, *remote), as_json)
            return
        lock = DataFolderLock(settings.data.dir, f"rig {command}")
        with lock, open_rig(settings, with_camera=False) as rig:
            action(rig)
            print_status(rig.status(), as_json)
    except RigError as exc:
        raise fail(exc) from None


def _through_server(
    settings: Settings,
    owner: Owner,
    command: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> Any:
    """Ask the server that owns the rig to do it (operator key from auth.operator_keys[0])."""
    import httpx

    from rig.owner import refuse

    keys = settings.auth.operator_keys
    if not keys:
        raise refuse(
            owner,
            f"`partrig rig {command}`",
            "add an operator key to auth.operator_keys (`partrig auth new-key --role operator`) "
            "so the command can go through the server's API, or use its web page",
        )
    if owner.url is None:
        raise refuse(owner, f"`partrig rig {command}`", "stop it first: it serves no API here")
    try:
        reply = httpx.request(
            method, owner.url + path, json=body, headers={"X-Api-Key": keys[0]}, timeout=30.0
        )
    except httpx.HTTPError as exc:
        raise RigError(f"{owner.describe()} did not answer {path}: {exc}") from None
    try:
        answer = reply.json()
    except ValueError:
        answer = {"detail": reply.text[:200]}
    if reply.status_code >= 400:
        detail = answer.get("detail", answer) if isinstance(answer, dict) else answer
        raise RigError(
            f"{owner.describe()} refused {method} {path} ({reply.status_code}): {detail}"
        )
    console.print(f"done by {owner.describe()}", highlight=False)
    return answer


@rig_app.command("status")
def rig_status(
    config: ConfigOption = None, sim: SimOption = False, as_json: JsonOption = False
) -> None:
    """Open the rig; print link, firmware, angle, lights and fault (--json: as JSON)."""
    _with_rig(config, sim, lambda rig: None, command="status",
              remote=("GET", "/api/rig/status", None), as_json=as_json)  # fmt: skip


def _sim_firmware(name: str) -> Literal["partrig", "marlin"]:
    """``--firmware`` as the simulator's dialect, or ConfigError naming the choices."""
    if name == "partrig":
        return "partrig"
    if name == "marlin":
        return "marlin"
    raise ConfigError(f"--firmware must be partrig or marlin (got {name!r})")


def _rotate_mode(mode: str | None) -> Mode | None:
    """``--mode`` as the turntable's mode (None: the configured one), or GcodeError."""
    if mode is None:
        return None
    if mode == "absolute":
        return "absolute"
    if mode == "shortest":
        return "shortest"
    raise GcodeError(f"rotate mode must be 'absolute' or 'shortest' (got {mode!r})")


@rig_app.command("rotate")
def rig_rotate(
    degrees: float,
    mode: Annotated[str | None, typer.Option(help="absolute or shortest")] = None,
    config: ConfigOption = None,
    sim: SimOption = False,
    as_json: JsonOption = False,
) -> None:
    """Turn the table to DEGREES and verify it got there."""

    def act(rig: Rig) -> None:
        rig.turntable.rotate_to(degrees, _rotate_mode(mode))
        console.print(f"at {rig.turntable.wait():.3f}°")

    # NOTE: the server has no absolute move (only a jog from where it is), so this refuses.
    _with_rig(config, sim, act, command="rotate", as_json=as_json)


@rig_app.command("zero")
def rig_zero(
    config: ConfigOption = None, sim: SimOption = False, as_json: JsonOption = False
) -> None:
    """Confirm the table is at its zero mark (G92 X0)."""
    _with_rig(config, sim, lambda rig: rig.turntable.set_zero(), command="zero",
              remote=("POST", "/api/rig/zero", None), as_json=as_json)  # fmt: skip


@rig_app.command("home")
def rig_home(
    config: ConfigOption = None, sim: SimOption = False, as_json: JsonOption = False
) -> None:
    """Home on the X-min endstop (turntable.endstop = "x_min")."""
    _with_rig(config, sim, lambda rig: rig.turntable.home(), command="home", as_json=as_json)


@rig_app.command("lights")
def rig_lights(
    level: float, config: ConfigOption = None, sim: SimOption = False, as_json: JsonOption = False
) -> None:
    """Set the light to LEVEL (0..1)."""
    _with_rig(config, sim, lambda rig: rig.lights.set(level), command="lights",
              remote=("POST", "/api/rig/lights", {"level": level}), as_json=as_json)  # fmt: skip
