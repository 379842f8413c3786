"""Opening the RAMPS board's serial port without resetting the Mega, and resetting it on purpose.

Why this is its own module: an Arduino Mega resets when DTR is asserted (the auto-reset
capacitor), and most ways of opening a port assert it.  A reset in the middle of a run loses
the turntable's position, so the link opens the port through :func:`open_serial`, which sets
DTR/RTS *before* ``open()`` (pyserial then applies them as the port opens) and clears HUPCL so
closing the port does not drop DTR either.  All of this is best effort: on Linux the kernel
raises DTR while opening before pyserial can lower it, and on a pty every modem-line ioctl
fails with ENOTTY.  ``docs/protocol.md`` describes the hardware fix (a capacitor on RESET).

The port is also opened exclusively (pyserial's ``exclusive=True``, an ``flock`` on the
device): two processes never drive one board.  A second open fails with :class:`PortBusy`,
naming the processes that hold the device where ``/proc`` shows them.

pyserial is imported inside the functions so ``rig`` imports on machines without it.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from typing import Protocol, runtime_checkable

from rig.errors import LinkError, RigBusy

log = logging.getLogger("rig.link")

# NOTE: short, so the reader thread wakes often enough to check deadlines without polling.
READ_TIMEOUT_S = 0.02
WRITE_TIMEOUT_S = 2.0


class SerialLike(Protocol):
    """The part of ``serial.Serial`` the link uses (lets tests hand in a fake)."""

    @property
    def in_waiting(self) -> int: ...

    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes) -> int | None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


def open_serial(
    path: str,
    baud: int,
    *,
    without_reset: bool = True,
    read_timeout_s: float = READ_TIMEOUT_S,
    write_timeout_s: float = WRITE_TIMEOUT_S,
) -> SerialLike:
    """Open ``path`` (a device or a pyserial URL) in raw mode; raise LinkError with the fix."""
    try:
        import serial
    except ImportError as exc:  # pragma: no cover - pyserial is a core dependency
        raise LinkError("pyserial is not installed; run `pip install pyserial`") from exc

    try:
        # NOTE: exclusive=True makes pyserial flock() the device as it opens it, so a second
        # process (another partrig, a terminal program using pyserial) cannot open the board
        # beside us and interleave G-code (contracts.md, "Safety").  URL handlers ignore it.
        port = serial.serial_for_url(
            path,
            do_not_open=True,
            baudrate=baud,
            timeout=read_timeout_s,
            write_timeout=write_timeout_s,
            exclusive=True,
        )
    except (ValueError, serial.SerialException) as exc:
        raise LinkError(f"serial.port {path!r} is not a usable port: {exc}") from exc
    if without_reset:
        # NOTE: set before open(): pyserial applies the stored states right after opening,
        # which is the earliest moment user space can touch the lines.
        try:
            port.dtr = False
            port.rts = False
        except (OSError, ValueError, serial.SerialException) as exc:
            log.debug("cannot preset DTR/RTS on %s: %s", path, exc)
    try:
        port.open()
    except (OSError, serial.SerialException) as exc:
        if "exclusively lock" in str(exc):
            holders = port_holders(path)
            who = "; ".join(holders) if holders else "another process (not visible to this user)"
            raise PortBusy(
                f"serial port {path} is already open by {who}. One process owns the rig: use "
                "the running `partrig serve` (its web page or API), or stop that process"
            ) from exc
        raise LinkError(
            f"cannot open serial port {path}: {exc}. Check that the board is plugged in, that "
            f"serial.port names it, and that no other program (another partrig?) holds it"
        ) from exc
    if without_reset:
        _clear_hupcl(port)
    return port


class PortBusy(LinkError, RigBusy):
    """Another process holds the serial port open exclusively."""


def port_holders(path: str) -> list[str]:
    """``pid N (command line)`` for every process with ``path`` open (Linux /proc).

    Best effort: processes of other users are invisible without root, and a pyserial URL has
    no device to look for.
    """
    try:
        target = os.path.realpath(path)
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []
    out: list[str] = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if not any(os.path.realpath(f"/proc/{pid}/fd/{fd}") == target for fd in fds):
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = " ".join(fh.read(300).replace(b"\0", b" ").decode(errors="replace").split())
        except OSError:
            continue
        me = " (this process)" if int(pid) == os.getpid() else ""
        out.append(f"pid {pid}{me} ({cmd or '?'})")
    return out


def _clear_hupcl(port: object) -> None:
    """Stop the kernel dropping DTR on close (which would reset the board on the next open)."""
    fd = getattr(port, "fd", None)
    if not isinstance(fd, int):
        return
    try:
        import termios

        attrs = termios.tcgetattr(fd)
        attrs[2] &= ~termios.HUPCL
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
    except (ImportError, OSError) as exc:
        log.debug("cannot clear HUPCL: %s", exc)
    except Exception as exc:  # termios.error is not an OSError
        log.debug("cannot clear HUPCL: %s", exc)


@runtime_checkable
class DtrPort(Protocol):
    """A port whose DTR line can be driven (pyserial's ``Serial``; not every test double)."""

    dtr: bool


def pulse_dtr(port: object, seconds: float = 0.1) -> None:
    """Reset the board by pulsing DTR, as the Arduino IDE does; LinkError if the port can't."""
    if not isinstance(port, DtrPort):
        raise LinkError(
            "the serial port is closed or has no DTR line, so the board was not reset: press "
            "its reset button or power-cycle it, then clear the fault again"
        )
    try:
        port.dtr = False
        time.sleep(seconds)
        port.dtr = True
        time.sleep(seconds)
        port.dtr = False
    except (OSError, AttributeError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOTTY, errno.EINVAL):
            raise LinkError(
                "this port cannot pulse DTR (not a USB serial adapter), so the board was not "
                "reset: press its reset button or power-cycle it, then clear the fault again"
            ) from exc
        raise LinkError(f"could not reset the board through DTR: {exc}") from exc
