"""The protocol state :class:`rig.link.GcodeLink` and its two mixins share, declared once.

Why a base class of declarations: the link is one object split over three modules (the sending
loop in :mod:`rig.link`, the handshake in :mod:`rig.link_handshake`, recovery in
:mod:`rig.link_recovery`).  Each mixin reads and writes the same fields and calls a few of the
others' methods; declaring them here lets the type checker verify every one of those uses
instead of trusting that the names line up.  :class:`rig.link.GcodeLink` sets every field in
its ``__init__``; the methods below are implemented by the link or the other mixin (the MRO
finds theirs first), so the bodies here never run.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable

from rig.config import SerialConfig
from rig.errors import LinkError
from rig.gcode import FirmwareInfo
from rig.link_types import LinkEvent, PendingCommand, ResendRequest
from rig.serial_port import SerialLike


class LinkState:
    """Fields and cross-module methods of the link (guarded by ``_cond`` unless noted)."""

    config: SerialConfig
    path: str
    reset_hook: Callable[[], None] | None
    firmware: FirmwareInfo | None
    resets: int
    #: Times the port came back after it was lost.  NOTE: counted before the re-handshake, so
    #: a caller whose command completes afterwards always sees it (the turntable then checks
    #: whether the board restarted unseen: a restart while unplugged sends no ``start``).
    reconnects: int = 0
    _cond: threading.Condition
    _write_lock: threading.Lock
    _port: SerialLike | None
    _phase: str
    _fault: str | None
    _fault_type: type[LinkError]
    _listeners: list[Callable[[LinkEvent], None]]
    _events: queue.Queue[LinkEvent | None]
    _stop: threading.Event
    _reader: threading.Thread | None
    _dispatcher: threading.Thread | None
    _write_failed: BaseException | None
    _queue: deque[PendingCommand]
    _internal_q: deque[PendingCommand]
    _in_flight: deque[PendingCommand]
    _history: dict[int, bytes]
    _next_n: int
    _window: int
    _slots: int
    _ok_has_n: bool
    _b_seen: bool
    _resends: deque[ResendRequest]
    _resend_counts: dict[int, int]
    _ignore_line: int | None
    _ignore_left: int
    _error_line: int | None
    _activity: float
    _busy_seen: bool
    _silences: int
    _hs_gen: int
    #: The line number of this handshake attempt's M110; -1: none yet.
    _hs_base: int
    _hs_done_gen: int
    _hs_deadline: float
    _hs_events: list[LinkEvent]
    _hs_failure: str

    # --- implemented by rig.link.GcodeLink -------------------------------------------------

    def _submit_internal(
        self, cmd: str, on_done: Callable[[PendingCommand], None], *, sync: bool = False
    ) -> None:
        raise NotImplementedError

    def _pump(self) -> None:
        raise NotImplementedError

    def _write_line(self, p: PendingCommand, line: bytes) -> None:
        raise NotImplementedError

    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def _complete(self, p: PendingCommand) -> None:
        raise NotImplementedError

    def _emit(self, event: LinkEvent) -> None:
        raise NotImplementedError

    # --- implemented by rig.link_handshake.LinkHandshake -----------------------------------

    def _start_handshake(self, event: LinkEvent | None) -> None:
        raise NotImplementedError

    # --- implemented by rig.link_recovery.LinkRecovery -------------------------------------

    def _ok_wait(self) -> float:
        raise NotImplementedError

    def _fail_in_flight(self, error: BaseException) -> bool:
        raise NotImplementedError

    def _latch(self, reason: str, kind: type[LinkError]) -> None:
        raise NotImplementedError
