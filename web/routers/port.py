"""The serial port from the page: which port the board is on, which others exist, and
disconnect / change port and baud / reconnect.

Why the same checks as start-up: a board reached through another port is another board as far
as partrig knows.  So a new port is opened the way :func:`rig.rig.open_rig` opens one: through
:meth:`rig.link.GcodeLink.open` (an exclusive open, :class:`rig.serial_port.PortBusy` naming
the process that holds the device, then the M110/M115 handshake), then
:func:`rig.firmware_check.check_firmware` (emergency parser, units, light pin) and the
turntable's set-up.  Its position is given up either way: home or confirm zero afterwards.

Why refuse so much: changing ports stops the board talking to the host, so it is operator-only
(with CSRF for a signed-in page), refused (409) while a capture run or the sorter is active,
and audited.  A failed connect never leaves a half-open link: the port is closed again, the
rig's fault latches with the reason (in memory and in the store, so a restart still shows it),
and an incident is recorded.  Connecting to a working port, then Clear fault, recovers.

Only devices are accepted: a pyserial URL (``socket://``, ``rfc2217://``) would let the page
make the server open network connections, and a path that is no character device is no port.
The choice lasts until partrig restarts: the settings page is read-only (the configuration
file is the one place settings persist), so ``serial.port`` in ``partrig.toml`` keeps it.
"""

from __future__ import annotations

import logging
import os
import stat
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field, ValidationError

from rig.config import SerialConfig
from rig.errors import ConfigError, LinkError, RigError
from rig.firmware_check import check_firmware
from web.deps import OperatorAuth, RigDep, StoreDep
from web.routers.terminal import LOG, require_idle
from web.sorting import CAMERA_CLAIM

log = logging.getLogger("web.port")

router = APIRouter(prefix="/api/rig/port", tags=["rig"])

AUDIT_KIND = "serial_port"
FAULT_KIND = "serial_port_fault"
BAUDS = (9600, 57600, 115200, 230400, 250000, 500000, 1000000)


class ConnectBody(BaseModel):
    port: str = Field(min_length=1, max_length=255, description="a device path, e.g. /dev/ttyACM0")
    baud: int | None = Field(
        None, description=f"one of {', '.join(map(str, BAUDS))}; omitted: the present baud"
    )


def _link(rig: Any) -> Any:
    link = getattr(rig, "link", None)
    if link is None or getattr(rig, "turntable", None) is None:
        raise HTTPException(503, "this rig has no serial link to the board")
    return link


def candidates(rig: Any) -> list[dict[str, Any]]:
    """The ports an operator may choose: pyserial's list, the simulated board's pty when
    simulated, and the port in use (it may be a /dev/serial/by-id link the list spells
    differently)."""
    found: list[dict[str, Any]] = []
    sim = getattr(rig, "firmware_sim", None)
    if sim is not None:
        found.append({"device": str(sim.port), "description": "the simulated board (--sim)"})
    try:
        from serial.tools import list_ports

        for p in sorted(list_ports.comports(), key=lambda p: p.device):
            found.append({"device": p.device, "description": p.description or p.hwid or ""})
    except ImportError:  # pragma: no cover - pyserial is a core dependency
        pass
    link = getattr(rig, "link", None)
    current = getattr(link, "path", None)
    if current and all(c["device"] != current for c in found):
        found.insert(0, {"device": str(current), "description": "in use"})
    for c in found:
        c["in_use"] = c["device"] == current
    return found


def port_status(rig: Any) -> dict[str, Any]:
    link = _link(rig)
    info = getattr(link, "firmware", None)
    return {
        "port": link.path,
        "baud": link.config.baud,
        "link": str(link.state),
        "firmware": None if info is None else f"{info.name} {info.version}".strip(),
        "fault": rig.fault,
        "candidates": candidates(rig),
        "bauds": list(BAUDS),
        "persisted": False,
    }


def check_port_name(port: str, rig: Any) -> str:
    """``port`` if it may be opened: a listed candidate or a character device; else
    ConfigError saying what is accepted."""
    port = port.strip()
    if any(c["device"] == port for c in candidates(rig)):
        return port
    if "://" in port or not port.startswith("/"):
        raise ConfigError(
            f"serial port {port!r} is not a device path: choose one of the listed ports or give "
            "a path such as /dev/ttyACM0 (network URLs are refused from the page)"
        )
    try:
        mode = os.stat(port).st_mode
    except OSError as exc:
        raise ConfigError(
            f"serial port {port} does not exist ({exc.strerror}): is the board plugged in?"
        ) from exc
    if not stat.S_ISCHR(mode):
        raise ConfigError(f"{port} is not a serial device (not a character device)")
    return port


def _serial_config(link: Any, port: str, baud: int | None) -> SerialConfig:
    try:
        return SerialConfig.model_validate(
            {**link.config.model_dump(), "port": port, "baud": baud or link.config.baud}
        )
    except ValidationError as exc:
        raise ConfigError(
            f"serial.baud {baud} is not supported: choose one of {', '.join(map(str, BAUDS))}"
        ) from exc


def _audit(store: Any, who: str, text: str) -> None:
    incident = store.add_incident(AUDIT_KIND, f"{who}: {text}")
    store.acknowledge_incident(incident, who)


@router.get("")
def status(rig: RigDep, who: OperatorAuth) -> dict[str, Any]:
    """The port in use, its baud and link state, and the ports this machine offers."""
    return port_status(rig)


@router.post("/disconnect")
def disconnect(request: Request, rig: RigDep, store: StoreDep, who: OperatorAuth) -> Any:
    """Close the serial port (409 while a run or the sorter is active); the position is
    given up."""
    link = _link(rig)
    with CAMERA_CLAIM:
        require_idle(request, "disconnecting the board")
        link.close()
        rig.turntable.mark_untrusted(f"the serial port {link.path} was disconnected by {who.name}")
    LOG.add("link", f"disconnected from {link.path} by {who.name}")
    _audit(store, who.name, f"disconnected the serial port {link.path}")
    return port_status(rig)


@router.post("/connect")
def connect(
    request: Request, body: ConnectBody, rig: RigDep, store: StoreDep, who: OperatorAuth
) -> Any:
    """Open ``port`` at ``baud`` with the start-up checks (exclusive open, handshake, firmware
    check, turntable set-up), closing the present port first.  409 while a run or the sorter
    is active; on failure 503 (422 for a name that is no port) with the reason, the link
    closed and the fault latched."""
    link = _link(rig)
    port = check_port_name(body.port, rig)
    return _connect(request, rig, store, who.name, port, _serial_config(link, port, body.baud))


@router.post("/reconnect")
def reconnect(request: Request, rig: RigDep, store: StoreDep, who: OperatorAuth) -> Any:
    """Close and reopen the present port with the start-up checks (a board that resets on open
    forgets its position, so the position is given up); failures as for ``connect``."""
    link = _link(rig)
    return _connect(request, rig, store, who.name, link.path, link.config)


def _connect(
    request: Request, rig: Any, store: Any, who: str, port: str, config: SerialConfig
) -> dict[str, Any]:
    link = _link(rig)
    with CAMERA_CLAIM:
        require_idle(request, "changing the serial port")
        old = f"{link.path} at {link.config.baud} baud"
        change = "reopened" if str(link.path) == port else f"changed to {port}"
        LOG.add("sent", f"(connecting to {port} at {config.baud} baud; was {old})")
        link.close()
        link.path, link.config = port, config
        sim = getattr(rig, "firmware_sim", None)
        link.reset_hook = sim.reset if sim is not None and str(sim.port) == port else None
        try:
            _bring_up(rig, link)
        except (RigError, OSError) as exc:
            reason = _fail(rig, store, who, port, config.baud, exc)
            raise LinkError(reason) from exc
        finally:
            rig.turntable.mark_untrusted(f"the serial port was {change} by {who}")
    info = link.firmware
    LOG.add("link", f"connected to {port}: {info.name} {info.version}".strip())
    _audit(store, who, f"connected the serial port {port} at {config.baud} baud (was {old})")
    return port_status(rig)


def _bring_up(rig: Any, link: Any) -> None:
    """What open_rig does after opening the port, on the new one."""
    link.open()
    settings = rig.settings
    check_firmware(link, settings.turntable, settings.lights)
    rig.turntable.setup()
    rig.lights.off()


def _fail(rig: Any, store: Any, who: str, port: str, baud: int, exc: BaseException) -> str:
    """Close the link, latch the fault (rig and store), record the incident; the reason."""
    link = rig.link
    try:
        link.close()
    except Exception as close_exc:  # NOTE: closing a half-open port must not hide the reason
        log.warning("closing %s after a failed connect failed: %s", port, close_exc)
    reason = (
        f"connecting to serial port {port} at {baud} baud failed: {exc}. The link is closed: "
        "choose a working port and connect, then clear the fault"
    )
    rig.safe_stop(reason)
    store.latch_fault(reason)
    store.add_incident(FAULT_KIND, f"{who}: {reason}")
    LOG.add("error", reason)
    log.error(reason)
    return reason
