"""The G-code link: a thread-safe, self-healing sender for Marlin-dialect firmware.

Why it looks like this: the web app, the run engine and the sorter share one board, so every
public method is thread-safe.  One reader thread owns the port's input; senders write under a
write lock and wait on a per-command event, so a command costs one write, one read and one
thread wake-up (no sleeps, no polling).  All protocol state (line numbers, the history kept
for resends, the commands in flight) lives behind one condition variable; the reader thread
also checks the deadlines, because it wakes every ``READ_TIMEOUT_S`` anyway.

What it survives (see docs/protocol.md): corrupted lines (Resend/rs from a history, repeated
requests from lines already in flight ignored, a cap per line), a missing ``ok`` after a
Resend, lost ``ok`` s (a recognisable probe, never a re-send, so nothing runs twice), busy
keepalives, a board reset at any time (``start``), fatal errors (latched), a vanished port
(reconnect and re-handshake), and an emergency stop that bypasses everything queued.

Listeners are called on a separate event thread, so they may call :meth:`GcodeLink.send`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable

from rig import gcode
from rig.config import SerialConfig
from rig.errors import FirmwareHalted, GcodeError, LinkError
from rig.gcode import FirmwareInfo, Reply
from rig.link_handshake import LinkHandshake
from rig.link_recovery import LinkRecovery
from rig.link_types import (
    HANDSHAKE_ATTEMPT_S,
    HISTORY_LINES,
    PROBE_COMMAND,
    RX_BUFFER_BYTES,
    LinkEvent,
    PendingCommand,
    ResendRequest,
)
from rig.serial_port import SerialLike, open_serial, pulse_dtr

log = logging.getLogger("rig.link")

#: What the e-stop writes: quick stop, then kill (see :meth:`GcodeLink.write_emergency`).
EMERGENCY_BYTES = b"\nM410\nM112\n"

__all__ = ["PROBE_COMMAND", "GcodeLink", "LinkEvent", "PendingCommand"]


class GcodeLink(LinkRecovery, LinkHandshake):
    """Numbered, checksummed G-code over one serial port, shared by many threads.

    >>> with GcodeLink(settings.serial) as link:          # doctest: +SKIP
    ...     link.send("M114")
    ['X:0.00 Y:0.00 Z:0.00 E:0.00 Count X:0 Y:0 Z:0']
    """

    def __init__(
        self,
        serial_config: SerialConfig,
        port: str | None = None,
        *,
        reset_hook: Callable[[], None] | None = None,
    ) -> None:
        self.config = serial_config
        self.path = port or serial_config.port
        self.reset_hook = reset_hook
        self.firmware: FirmwareInfo | None = None
        self.resets = 0
        self._cond = threading.Condition(threading.RLock())
        self._write_lock = threading.Lock()
        self._port: SerialLike | None = None
        self._phase = "closed"
        self._fault: str | None = None
        self._fault_type: type[LinkError] = FirmwareHalted
        self._listeners: list[Callable[[LinkEvent], None]] = []
        self._events: queue.Queue[LinkEvent | None] = queue.Queue()
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self._dispatcher: threading.Thread | None = None
        self._write_failed: BaseException | None = None
        # protocol state, guarded by self._cond
        self._queue: deque[PendingCommand] = deque()
        self._internal_q: deque[PendingCommand] = deque()
        self._in_flight: deque[PendingCommand] = deque()
        self._history: dict[int, bytes] = {}
        self._next_n = 1
        self._window = 1
        self._slots = serial_config.max_in_flight
        self._ok_has_n = False
        self._b_seen = False
        self._resends: deque[ResendRequest] = deque()
        self._resend_counts: dict[int, int] = {}
        self._ignore_line: int | None = None
        self._ignore_left = 0
        self._error_line: int | None = None
        self._activity = 0.0
        self._busy_seen = False
        self._silences = 0
        self._hs_gen = 0
        self._hs_base = -1  # the line number of this handshake attempt's M110; -1: none yet
        self._hs_done_gen = -1
        self._hs_deadline = 0.0
        self._hs_events: list[LinkEvent] = []
        self._hs_failure = ""

    # --- public API ------------------------------------------------------------------------

    @property
    def fault(self) -> str | None:
        return self._fault

    @property
    def state(self) -> str:
        """``closed``, ``handshaking``, ``ready``, ``reconnecting``, ``disconnected`` or
        ``halted`` (a fault is latched)."""
        with self._cond:
            if self._fault is not None and self._phase != "closed":
                return "halted"
            return self._phase

    def add_listener(self, fn: Callable[[LinkEvent], None]) -> None:
        """Call ``fn(event)`` on the link's event thread for every :class:`LinkEvent`."""
        with self._cond:
            self._listeners.append(fn)

    def open(self) -> FirmwareInfo:
        """Open the port (DTR best effort) and handshake (``M110 N0``, ``M115``; later
        handshakes number from a fresh base, see :mod:`rig.link_handshake`).

        Returns what M115 reported.  A board that resets on open is handled: bytes sent while
        it boots are lost, its ``start`` restarts the handshake.
        """
        with self._cond:
            if self._phase != "closed":
                if self.firmware is None:
                    raise LinkError("the link is already opening")
                return self.firmware
            self._port = open_serial(
                self.path, self.config.baud, without_reset=self.config.open_without_reset
            )
            self._stop.clear()
            self._write_failed = None
            self._phase = "handshaking"
            self._hs_base = -1
            self._reader = threading.Thread(target=self._read_loop, name="rig.link-reader")
            self._dispatcher = threading.Thread(target=self._dispatch, name="rig.link-events")
            self._reader.daemon = self._dispatcher.daemon = True
            self._reader.start()
            self._dispatcher.start()
            self._start_handshake(None)
        try:
            return self._wait_synced(self._hs_gen, self.config.handshake_timeout_s + 1.0)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the threads, fail everything pending, close the port.  Idempotent."""
        with self._cond:
            if self._phase == "closed":
                return
            self._phase = "closed"
            self._stop.set()
            self._fail_all(LinkError("the serial link was closed"), queued=True)
            self._cond.notify_all()
        self._events.put(None)
        for t in (self._reader, self._dispatcher):
            if t is not None and t is not threading.current_thread():
                t.join(timeout=2.0)
        with self._write_lock:
            port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(OSError):
                port.close()

    def __enter__(self) -> GcodeLink:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, cmd: str, timeout: float | None = None) -> PendingCommand:
        """Queue ``cmd`` and return at once; several may be in flight with ADVANCED_OK.

        ``timeout`` replaces the silence allowed before the link provokes the firmware
        (default: serial.command_timeout_s, or long_command_timeout_s for M400/G4/G28...).
        """
        text = gcode.validate(cmd)
        pending = PendingCommand(text, timeout=timeout)
        with self._cond:
            self._check_usable()
            self._queue.append(pending)
            self._pump()
        return pending

    def send(self, cmd: str, timeout: float | None = None) -> list[str]:
        """Send ``cmd`` and block until its ``ok``; return the other lines printed for it.

        Raises GcodeError (refused, or the firmware does not know it), FirmwareHalted,
        FirmwareReset, LinkTimeout or LinkError.
        """
        return self.submit(cmd, timeout).result()

    def emergency_stop(self) -> None:
        """Write ``M112`` straight to the port, ahead of anything queued, and latch a fault."""
        self.write_emergency()
        self.latch_emergency()

    def latch_emergency(self) -> None:
        """Latch the e-stop's fault (after :meth:`write_emergency`): everything queued fails."""
        with self._cond:
            self._latch("emergency stop", FirmwareHalted)

    def write_emergency(self) -> bool:
        """Put ``M112`` on the wire now, out of band; True once written.  Never blocks.

        Why no lock: the e-stop must not wait for a thread that holds the write lock across a
        slow write, nor for the condition lock.  The leading newline ends any line another
        thread was half-way through writing, so the firmware's emergency parser sees ``M112``
        at the start of a line (the broken line is refused and never runs: the board halts).
        Safe to call from the event loop; the fault is latched when the firmware reports the
        halt, or by :meth:`emergency_stop`.

        Why ``M410`` first, in the same write: measured on Marlin 2.1 in simavr, ``M112`` alone
        prints ``kill() called!`` and the stepper keeps running for ~600 ms (about 250° at
        360°/s) before the driver is disabled, while ``M410`` stops the steps at once (+0.3°).
        Both firmwares' emergency parsers act on either line the moment it arrives.
        """
        written = write_out_of_band(self._port, EMERGENCY_BYTES)
        if written:
            log.warning("emergency stop: M112 sent")
        else:
            log.error("emergency stop: M112 could not be written to %s", self.path)
        return written

    def quick_stop(self) -> PendingCommand | None:
        """``M410`` (stop the motor now, position kept), written ahead of the queue.

        Why not :meth:`submit`: a caller waiting on ``M400`` fills the window, and a queued
        ``M410`` would only go out once the move it should stop has ended.  The line is
        numbered and counted in flight behind what is already there, so its ``ok`` is matched
        and the protocol state stays right.  Returns None when nothing could be written (a
        latched fault: the board is halted or gone; or the link is not ready).
        """
        with self._cond:
            if self._phase != "ready" or self._fault is not None or self._port is None:
                log.warning("M410 not sent: the link is %s", self.state)
                return None
            p = PendingCommand("M410")
            line = gcode.frame(self._next_n, p.command).encode("ascii") + b"\n"
            self._write_line(p, line)
        return p

    def clear_fault(self) -> FirmwareInfo:
        """Reset the board (reset hook or DTR), re-handshake, clear the latched fault."""
        with self._cond:
            if self._phase == "closed":
                raise LinkError("the link is not open; open it before clearing a fault")
            resets_before = self.resets
            gen_before = self._hs_gen
        if self.reset_hook is not None:
            self.reset_hook()
        else:
            with self._write_lock:
                pulse_dtr(self._port)
        deadline = time.monotonic() + self.config.handshake_timeout_s
        with self._cond:
            self._cond.wait_for(
                lambda: self.resets > resets_before, self.config.handshake_timeout_s
            )
            if self._hs_gen == gen_before:
                log.warning("no 'start' after the reset; handshaking anyway")
                self._fail_all(LinkError("the board was reset"), queued=False)
                self._start_handshake(None)
            gen = self._hs_gen
        info = self._wait_synced(gen, max(0.5, deadline - time.monotonic()) + 1.0)
        with self._cond:
            reason, self._fault = self._fault, None
            self._write_failed = None
            self._emit(LinkEvent("fault_cleared", detail=reason or ""))
            self._pump()
        log.info("fault cleared (%s)", reason)
        return info

    # --- sending -------------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._phase == "closed":
            raise LinkError("the serial link is not open; call open() first")
        if self._fault is not None:
            raise self._fault_type(f"rig fault latched: {self._fault}. Clear the fault first.")

    def _submit_internal(
        self, cmd: str, on_done: Callable[[PendingCommand], None], *, sync: bool = False
    ) -> None:
        p = PendingCommand(
            cmd, timeout=HANDSHAKE_ATTEMPT_S, internal=True, sync=sync, on_done=on_done
        )
        self._internal_q.append(p)
        self._pump()

    def _room(self, line_bytes: int) -> bool:
        if not self._in_flight:
            return True
        if len(self._in_flight) >= min(self._window, self._slots):
            return False
        used = sum(len(self._history.get(p.n or -1, b"")) for p in self._in_flight)
        return used + line_bytes <= RX_BUFFER_BYTES

    def _pump(self) -> None:
        """Write queued commands while the window has room (caller holds the lock)."""
        if self._port is None or self._resends or self._write_failed is not None:
            return
        while True:
            if self._internal_q:
                q = self._internal_q
            elif self._queue and self._phase == "ready" and self._fault is None:
                q = self._queue
            else:
                return
            p = q[0]
            # NOTE: the sync probe is misnumbered on purpose and takes no number of its own.
            n = self._hs_base + 2 if p.sync else self._next_n
            line = gcode.frame(n, p.command).encode("ascii") + b"\n"
            if not self._room(len(line)):
                return
            q.popleft()
            self._write_line(p, line)

    def _write_line(self, p: PendingCommand, line: bytes) -> None:
        if not p.sync:
            p.n = self._next_n
            self._next_n += 1
            self._history[p.n] = line
            self._history.pop(p.n - HISTORY_LINES, None)
        if not self._in_flight:
            self._activity = time.monotonic()
            self._busy_seen = False
        self._in_flight.append(p)
        self._write(line)

    def _write(self, data: bytes) -> None:
        port = self._port
        if port is None:
            return
        try:
            with self._write_lock:
                port.write(data)
        except OSError as exc:
            # NOTE: the reader thread notices the flag within READ_TIMEOUT_S and reconnects;
            # reconnecting here would block a caller's thread for seconds.
            log.warning("write to %s failed: %s", self.path, exc)
            self._write_failed = exc

    # --- reading -----------------------------------------------------------------------------

    def _read_loop(self) -> None:
        buf = bytearray()
        while not self._stop.is_set():
            port = self._port
            try:
                if self._write_failed is not None:
                    raise self._write_failed
                if port is None:
                    raise LinkError("the serial port is gone")
                data = port.read(1)
                if data:
                    waiting = port.in_waiting
                    if waiting:
                        data += port.read(waiting)
            except (OSError, TypeError, AttributeError) as exc:
                # NOTE: TypeError/AttributeError: pyserial's read on a port closed under it.
                if self._stop.is_set():
                    break
                buf.clear()
                self._reconnect(exc)
                continue
            if data:
                buf += data
                while (i := buf.find(b"\n")) >= 0:
                    raw = bytes(buf[:i])
                    del buf[: i + 1]
                    text = raw.decode("ascii", "replace").strip()
                    if text:
                        with self._cond:
                            self._on_line(text)
            with self._cond:
                self._check_deadlines(time.monotonic())

    def _on_line(self, text: str) -> None:
        log.debug("<< %s", text)
        reply = gcode.parse_reply(text)
        error_line, self._error_line = self._error_line, None
        if self._phase == "closed":
            return
        if reply.kind == "ok":
            self._on_ok(reply)
        elif reply.kind == "resend":
            if reply.n is not None and error_line == reply.n:
                return  # the Resend that follows its Error line: one request, not two
            self._request_resend(reply.n or 0, text)
        elif reply.kind == "busy":
            self._activity = time.monotonic()
            self._busy_seen = True
        elif reply.kind == "start":
            self._on_start()
        elif reply.kind == "error" and reply.fatal:
            self._on_halt(text)
        elif reply.kind == "error" and reply.line_error:
            if reply.n is not None and not self._hs_sync_refusal(reply):
                self._request_resend(reply.n + 1, text)
                self._error_line = reply.n + 1
        else:
            self._on_output(reply)

    def _on_output(self, reply: Reply) -> None:
        self._activity = time.monotonic()
        if "FIRMWARE_NAME:" in reply.text:
            self._on_firmware_name()
        head = self._in_flight[0] if self._in_flight else None
        if head is None or head.sync:
            # NOTE: before the sync probe is refused, every line is from before the M110.
            log.debug("unsolicited line: %s", reply.text)
            return
        if reply.unknown_command and f'"{head.command}"' not in reply.text:
            # NOTE: the firmware names the line it refused; a garbled line whose N was hit
            # runs as an unknown "command" and is then requested again, so it is not the head's.
            log.warning("firmware refused a garbled line: %s", reply.text)
            return
        head.lines.append(reply.text)
        if reply.unknown_command:
            head.error = GcodeError(
                f"the firmware does not know {head.command!r} ({reply.text}); check the "
                f"firmware's supported commands in docs/protocol.md"
            )
        elif reply.kind == "error":
            log.warning("firmware error during %r: %s", head.command, reply.text)

    def _on_firmware_name(self) -> None:
        """An M115 report started: if it is our probe's, every command ahead lost its ok."""
        for i, p in enumerate(self._in_flight):
            if p.code == "M115" and not p.firmware_name_seen:
                p.firmware_name_seen = True
                if p.probe:
                    for q in list(self._in_flight)[:i]:
                        log.info("ok for %r was lost; the probe shows it ran", q.command)
                        self._complete(q)
                return

    def _on_ok(self, reply: Reply) -> None:
        if reply.buffer_free is not None:
            self._b_seen = True
            self._slots = max(1, min(self.config.max_in_flight, reply.buffer_free + 1))
        if reply.n is not None:
            self._ok_has_n = True
            # NOTE: replies carry no checksum: an N that names no line in flight is garbage
            # (or stale) and must not acknowledge anything.
            known = any(p.n == reply.n for p in self._in_flight)
            in_range = [p for p in self._in_flight if p.n is not None and p.n <= reply.n]
            if known:
                for p in in_range:
                    self._complete(p)
                return
            if self._resends:
                self._resend_answered()
            else:
                log.debug("stale %s ignored", reply.text)
            return
        if self._resends:
            self._resend_answered()
        elif self._ok_has_n and self._window > 1:
            log.warning("plain 'ok' from a firmware that numbers its oks; ignored")
        elif self._in_flight:
            head = self._in_flight[0]
            if head.sync:
                log.info("'ok' ahead of the sync probe's refusal is stale; ignored")
                return
            handshake_m115 = head.internal and head.code == "M115" and not head.probe
            if handshake_m115 and not head.firmware_name_seen:
                # NOTE: M115 prints its report before its ok, so an ok ahead of the report
                # is a stray one from before the handshake; taking it would shift every
                # later reply by one.
                log.info("stray 'ok' before the M115 report ignored")
                return
            self._complete(head)
        else:
            log.debug("ok with nothing in flight ignored")

    def _complete(self, p: PendingCommand) -> None:
        self._in_flight.remove(p)
        self._activity = time.monotonic()
        self._busy_seen = False
        self._silences = 0
        if p.n is not None:
            self._resend_counts.pop(p.n, None)
            if self._ignore_line is not None and p.n >= self._ignore_line:
                self._ignore_line, self._ignore_left = None, 0
        p._finish()
        self._pump()
        self._cond.notify_all()

    # --- events ------------------------------------------------------------------------------

    def _emit(self, event: LinkEvent) -> None:
        self._events.put(event)

    def _dispatch(self) -> None:
        while True:
            event = self._events.get()
            if event is None:
                return
            with self._cond:
                listeners = list(self._listeners)
            for fn in listeners:
                try:
                    fn(event)
                except Exception:
                    log.exception("link listener %r failed on %s", fn, event.kind)


#: How long an out-of-band write may wait for room in a full output buffer before giving up.
OUT_OF_BAND_DEADLINE_S = 0.05


def write_out_of_band(port: SerialLike | None, data: bytes) -> bool:
    """Write ``data`` to ``port`` without its locks; True when all of it was written.

    pyserial opens the device non-blocking, so ``os.write`` on its descriptor returns at once;
    only a full output buffer (a board that stopped reading) makes this wait, and then for at
    most :data:`OUT_OF_BAND_DEADLINE_S`.  Ports without a descriptor (test doubles, URL
    handlers) get a plain ``write``.
    """
    if port is None:
        return False
    fd = getattr(port, "fd", None)
    if not isinstance(fd, int) or fd < 0:
        try:
            port.write(data)
        except (OSError, ValueError) as exc:
            log.error("out-of-band write failed: %s", exc)
            return False
        return True
    view = memoryview(data)
    deadline = time.monotonic() + OUT_OF_BAND_DEADLINE_S
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0005)
        except OSError as exc:
            log.error("out-of-band write failed: %s", exc)
            return False
    return True
