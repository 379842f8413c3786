"""The link's small types and limits: commands in flight, events, resend requests, and the
:class:`Link` protocol.

Why a module of its own: :mod:`rig.link` (the sender), :mod:`rig.link_recovery` (resends,
silences, resets, reconnects) and :mod:`rig.link_handshake` all use them, and callers (the
turntable, the lights, the rig, the web app) need only :class:`Link`, :class:`LinkEvent` and
:class:`PendingCommand`, not the link's implementation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from rig import gcode
from rig.errors import LinkTimeout

if TYPE_CHECKING:
    from rig.config import SerialConfig

# NOTE: consecutive silences answered with a probe before the link gives up (OctoPrint uses
# a similar small number); each costs one command timeout.
PROVOKE_ATTEMPTS = 3
HISTORY_LINES = 256
# NOTE: Marlin's AVR receive buffer is 128 bytes; bytes in flight must never overflow it,
# whatever the ADVANCED_OK window says, or the overflow corrupts lines.
RX_BUFFER_BYTES = 127
PROBE_COMMAND = "M115"
HANDSHAKE_ATTEMPT_S = 2.0
# NOTE: every handshake attempt after the first numbers its lines from a fresh multiple of
# this, above every number used before, so no reply of an abandoned attempt can name a line
# of the new one; past the maximum the bases wrap (lines stay within Marlin's 96 bytes).
HS_BASE_STEP = 1000
HS_BASE_MAX = 9_000_000
# NOTE: the plain-ok sync probe: sent as line base+2, the firmware must refuse it naming
# ``Last Line: <base>``, the one reply of a plain-ok firmware that proves which M110 it ran.
SYNC_PROBE_COMMAND = "M114"


@dataclass(frozen=True)
class LinkEvent:
    """Something the link saw that the layers above must react to.

    ``kind``: ``reset`` (``start`` seen; ``during_command`` says whether a caller's command was
    in flight), ``reconnected`` (the port came back and was re-handshaken; commands in flight
    may or may not have run), ``halted`` (a fatal error or an emergency stop latched a fault),
    ``fault_cleared``.
    """

    kind: str
    during_command: bool = False
    detail: str = ""


class PendingCommand:
    """One command queued or in flight; :meth:`result` blocks until its ``ok``.

    ``internal``: the link's own (handshake, probes); ``probe``: a silence probe; ``sync``:
    the plain-ok handshake's sync probe, misnumbered on purpose and never executed.
    """

    def __init__(
        self,
        command: str,
        *,
        timeout: float | None = None,
        internal: bool = False,
        probe: bool = False,
        sync: bool = False,
        on_done: Callable[[PendingCommand], None] | None = None,
    ) -> None:
        self.command = command
        self.code = gcode.code_of(command)
        self.long = gcode.is_long(command)
        self.timeout = timeout
        self.internal = internal
        self.probe = probe
        self.sync = sync
        self.n: int | None = None
        self.lines: list[str] = []
        self.firmware_name_seen = False
        self.error: BaseException | None = None
        self._on_done = on_done
        self._done = threading.Event()

    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> list[str]:
        """The lines the firmware printed for this command (not ``ok``/busy); raises its error."""
        if not self._done.wait(timeout):
            raise LinkTimeout(
                f"no reply to {self.command!r} within {timeout} s; it is still queued or in flight"
            )
        if self.error is not None:
            raise self.error
        return list(self.lines)

    def _finish(self, error: BaseException | None = None) -> None:
        if self._done.is_set():
            return
        if error is not None:
            self.error = error
        self._done.set()
        if self._on_done is not None:
            self._on_done(self)

    def __repr__(self) -> str:
        return f"<PendingCommand N{self.n} {self.command!r} done={self.done()}>"


@dataclass
class ResendRequest:
    line: int
    ignored: bool
    deadline: float


class CommandLink(Protocol):
    """The part of the link a device driver needs: send a line, know the firmware.

    Why apart from :class:`Link`: the firmware checks (:mod:`rig.firmware_check`) only send
    queries, and their tests drive them with a recording double.
    """

    @property
    def firmware(self) -> gcode.FirmwareInfo | None:
        """What ``M115`` reported at the last handshake; None before the first."""
        ...

    def send(self, cmd: str, timeout: float | None = None) -> list[str]:
        """Send ``cmd`` and block until its ``ok``; the lines printed for it."""
        ...


class Link(CommandLink, Protocol):
    """What the turntable, the lights, the rig and the web app use of :class:`rig.link.GcodeLink`.

    The counters let a device notice what happened between two of its commands: ``resets``
    (``start`` seen) and ``reconnects`` (the port came back) only ever grow.
    """

    @property
    def path(self) -> str: ...

    @property
    def config(self) -> SerialConfig: ...

    @property
    def state(self) -> str:
        """``closed``, ``handshaking``, ``ready``, ``reconnecting``, ``disconnected`` or
        ``halted``."""
        ...

    @property
    def fault(self) -> str | None: ...

    @property
    def resets(self) -> int: ...

    @property
    def reconnects(self) -> int: ...

    def add_listener(self, fn: Callable[[LinkEvent], None]) -> None: ...

    def open(self) -> gcode.FirmwareInfo: ...

    def close(self) -> None: ...

    def quick_stop(self) -> PendingCommand | None: ...

    def write_emergency(self) -> bool: ...

    def latch_emergency(self) -> None: ...

    def clear_fault(self) -> gcode.FirmwareInfo: ...
