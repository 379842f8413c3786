"""How :class:`rig.link.GcodeLink` recovers: resends, silences, resets, halts, reconnects.

Why a mixin in its own module: these are the paths a healthy link never takes, and they are
the subtle ones (docs/protocol.md); keeping them apart from the sending loop keeps both
readable.  Every method here runs with the link's condition lock held (the reader thread or a
caller), except :meth:`LinkRecovery._reconnect`, which takes it itself.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque

from rig import gcode
from rig.errors import FirmwareHalted, FirmwareReset, LinkError, LinkTimeout, PortLost
from rig.link_state import LinkState
from rig.link_types import PROBE_COMMAND, PROVOKE_ATTEMPTS, LinkEvent, PendingCommand, ResendRequest
from rig.serial_port import open_serial

log = logging.getLogger("rig.link")


class LinkRecovery(LinkState):
    """Mixin of :class:`rig.link.GcodeLink`; it uses the link's protocol state directly."""

    # --- resends -----------------------------------------------------------------------------

    def _request_resend(self, line: int, text: str) -> None:
        now = time.monotonic()
        last_sent = self._next_n - 1
        if self._ignore_line == line and self._ignore_left > 0:
            self._ignore_left -= 1
            log.debug("repeated request for line %d from lines in flight ignored", line)
            self._resends.append(ResendRequest(line, True, now + self._ok_wait()))
            return
        if line > last_sent or (self._phase == "handshaking" and line not in self._history):
            log.debug("resend request for unsent line %d ignored (%s)", line, text)
            self._resends.append(ResendRequest(line, True, now + self._ok_wait()))
            return
        if line not in self._history:
            self._on_start(
                why=f"the firmware asked for line {line}, which was acknowledged long ago; "
                f"the board has probably reset"
            )
            return
        count = self._resend_counts.get(line, 0) + 1
        self._resend_counts[line] = count
        if count > self.config.resend_limit:
            self._resync(
                LinkError(
                    f"the firmware asked {count} times for line {line} "
                    f"({self._history[line].decode().strip()!r}); the serial link is too noisy "
                    f"or the baud rate is wrong: check the USB cable and serial.baud"
                )
            )
            # NOTE: this request's own ok is still coming; swallow it, or it would be taken
            # for the ok of the M110 just sent and every later reply would be off by one.
            self._resends.append(ResendRequest(line, True, now + self._ok_wait()))
            return
        log.info("firmware asks for line %d again (%s)", line, text)
        self._ignore_line, self._ignore_left = line, last_sent - line
        self._resends.append(ResendRequest(line, False, now + self._ok_wait()))

    def _ok_wait(self) -> float:
        return self.config.missing_ok_after_resend_s

    def _resend_answered(self) -> None:
        """The ok that belongs to a Resend arrived (or was supplied): re-send the lines."""
        req = self._resends.popleft()
        if not req.ignored:
            last_sent = self._next_n - 1
            data = b"".join(self._history[n] for n in range(req.line, last_sent + 1))
            self._activity = time.monotonic()
            self._write(data)
        self._pump()

    # --- silences, resets, halts, reconnects ----------------------------------------------------

    def _check_deadlines(self, now: float) -> None:
        while self._resends and now >= self._resends[0].deadline:
            log.info("no ok after Resend: %d; supplying it", self._resends[0].line)
            self._resend_answered()
        if not self._in_flight or self._resends:
            return
        head = self._in_flight[0]
        limit = self._timeout_for(head)
        if now - self._activity > limit:
            self._on_silence(head, limit)

    def _timeout_for(self, p: PendingCommand) -> float:
        cfg = self.config
        base = p.timeout or (cfg.long_command_timeout_s if p.long else cfg.command_timeout_s)
        if self._busy_seen:
            return (
                cfg.busy_timeout_s
                if p.long and p.timeout is None
                else max(base, cfg.busy_timeout_s)
            )
        return base

    def _on_silence(self, head: PendingCommand, limit: float) -> None:
        self._silences += 1
        self._ignore_line, self._ignore_left = None, 0
        self._activity = time.monotonic()
        if head.internal and not head.probe:
            # NOTE: a handshake step: fail it and let the handshake retry from M110.
            self._fail_in_flight(LinkTimeout(f"no reply to {head.command!r} in {limit} s"))
            return
        if self._silences > PROVOKE_ATTEMPTS:
            self._resync(
                LinkTimeout(
                    f"the firmware stopped answering: no reply to {head.command!r} after "
                    f"{PROVOKE_ATTEMPTS} prods {limit} s apart; check the cable and the "
                    f"board's power"
                )
            )
            return
        log.warning(
            "no reply to %r for %.1f s; probing with %s", head.command, limit, PROBE_COMMAND
        )
        probe = PendingCommand(PROBE_COMMAND, internal=True, probe=True)
        self._write_line(probe, gcode.frame(self._next_n, PROBE_COMMAND).encode() + b"\n")

    def _fail_in_flight(self, error: BaseException) -> bool:
        """Fail every command in flight; True if a caller's command was among them."""
        during = any(not p.internal for p in self._in_flight)
        failed, self._in_flight = list(self._in_flight), deque()
        self._resends.clear()
        self._ignore_line, self._ignore_left = None, 0
        for p in failed:
            p._finish(error)
        self._cond.notify_all()
        return during

    def _fail_all(self, error: BaseException, *, queued: bool) -> None:
        self._fail_in_flight(error)
        internal, self._internal_q = list(self._internal_q), deque()
        for p in internal:
            p._finish(error)
        if queued:
            waiting, self._queue = list(self._queue), deque()
            for p in waiting:
                p._finish(error)

    def _resync(self, error: LinkError) -> None:
        """Give up on what is in flight and re-handshake (numbering from a fresh base)."""
        log.error("%s", error)
        self._fail_in_flight(error)
        self._start_handshake(None)

    def _on_start(self, why: str = "") -> None:
        self.resets += 1
        if self._phase == "closed":
            return
        self._hs_gen += 1  # NOTE: bump first, so callbacks of the failed handshake go stale
        what = ", ".join(repr(p.command) for p in self._in_flight if not p.internal)
        msg = why or "the board reset ('start' seen)"
        if what:
            msg += f" while {what} was in flight; the turntable's position is unknown"
        log.warning("%s", msg)
        during = self._fail_in_flight(FirmwareReset(msg))
        self._start_handshake(LinkEvent("reset", during_command=during, detail=msg))

    def _on_halt(self, text: str) -> None:
        self._latch(f"firmware halted: {text}", FirmwareHalted)

    def _latch(self, reason: str, kind: type[LinkError]) -> None:
        first = self._fault is None
        if first:
            self._fault, self._fault_type = reason, kind
        log.error("fault latched: %s", reason)
        error = self._fault_type(f"rig fault latched: {self._fault}. Clear the fault first.")
        self._fail_all(error, queued=True)
        if first:
            self._emit(LinkEvent("halted", detail=reason))

    def _reconnect(self, exc: BaseException) -> None:
        msg_tail = "it may or may not have run; query the position before going on"
        with self._cond:
            if self._phase == "closed":
                return
            log.error("serial port %s lost: %s", self.path, exc)
            self._phase = "reconnecting"
            self._hs_gen += 1
            for p in list(self._in_flight):
                p._finish(
                    PortLost(f"serial link lost while {p.command!r} was in flight: {msg_tail}")
                )
            self._fail_in_flight(PortLost("serial link lost"))
            self._fail_all(LinkError("serial link lost"), queued=False)
            port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(OSError):
                port.close()
        for attempt in range(1, self.config.reconnect_attempts + 1):
            if self._stop.wait(self.config.reconnect_interval_s):
                return
            try:
                new = open_serial(
                    self.path, self.config.baud, without_reset=self.config.open_without_reset
                )
            except LinkError as err:
                log.info("reconnect attempt %d failed: %s", attempt, err)
                continue
            with self._cond:
                if self._phase == "closed":
                    new.close()
                    return
                self._port, self._write_failed = new, None
                self.reconnects += 1
                log.warning("serial port %s reopened; handshaking", self.path)
                self._start_handshake(LinkEvent("reconnected", detail=str(exc)))
            return
        with self._cond:
            self._phase = "disconnected"
            self._latch(
                f"serial port {self.path} vanished ({exc}) and did not come back after "
                f"{self.config.reconnect_attempts} attempts: check the USB cable, then clear "
                f"the fault",
                LinkError,
            )
        self._stop.wait(self.config.reconnect_interval_s)
