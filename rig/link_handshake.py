"""The link's handshake: ``M110 N<base>`` then ``M115``, retried until it succeeds or times out.

Why a small state machine driven by command callbacks: a handshake can be started by the
reader thread (a ``start`` from a reset, a resync) where blocking is impossible, so each step
submits the next one from the previous one's completion.  A generation number makes the
callbacks of an abandoned handshake harmless.

Why a fresh line-number base per attempt: the board may still hold lines the link gave up on
(it stalled, or its input survived a reset) and answer them after the new attempt began.
With every attempt numbered from its own base, such replies name lines that are not in
flight and are ignored, and old lines the board reads after the new ``M110`` are refused.  A
firmware without ADVANCED_OK numbers no ``ok``, so there the handshake first proves which
``M110`` the firmware ran: a deliberately misnumbered sync probe must be refused with
``Last Line: <base>``, and everything before that refusal is stale.
"""

from __future__ import annotations

import logging
import time

from rig import gcode
from rig.errors import FirmwareHalted, GcodeError, LinkError
from rig.gcode import FirmwareInfo, Reply
from rig.link_state import LinkState
from rig.link_types import (
    HS_BASE_MAX,
    HS_BASE_STEP,
    SYNC_PROBE_COMMAND,
    LinkEvent,
    PendingCommand,
    ResendRequest,
)

log = logging.getLogger("rig.link")


class LinkHandshake(LinkState):
    """Mixin of :class:`rig.link.GcodeLink`; it uses the link's protocol state directly."""

    # --- handshake (a small state machine driven by command callbacks) ---------------------------

    def _start_handshake(self, event: LinkEvent | None) -> None:
        self._hs_gen += 1
        self._hs_failure = ""
        gen = self._hs_gen
        self._phase = "handshaking"
        self._hs_deadline = time.monotonic() + self.config.handshake_timeout_s
        if event is not None:
            self._hs_events.append(event)
        self._hs_send_m110(gen)

    def _hs_send_m110(self, gen: int) -> None:
        self._fail_in_flight(LinkError("the link is re-synchronising with the firmware"))
        self._internal_q.clear()
        self._history.clear()
        self._resend_counts.clear()
        self._hs_base = self._hs_next_base()
        self._next_n = self._hs_base
        self._window, self._ok_has_n, self._b_seen = 1, False, False
        self._submit_internal(f"M110 N{self._hs_base}", lambda p: self._hs_after(gen, p, "M110"))

    def _hs_next_base(self) -> int:
        """0 for the first attempt after open (the usual ``N0 M110 N0``), then a multiple of
        HS_BASE_STEP above every line number used so far."""
        if self._hs_base < 0:
            return 0
        used = max(self._next_n, self._hs_base + 1)
        base = (used // HS_BASE_STEP + 1) * HS_BASE_STEP
        return base if base <= HS_BASE_MAX else HS_BASE_STEP

    def _hs_after(self, gen: int, p: PendingCommand, step: str) -> None:
        if gen != self._hs_gen or self._phase == "closed":
            return
        if p.error is not None:
            self._hs_retry(gen, p.error)
        elif step == "M110" and not self._ok_has_n:
            # NOTE: a plain ok says nothing about which M110 it answers; prove it first.
            self._submit_internal(
                SYNC_PROBE_COMMAND, lambda q: self._hs_after(gen, q, "sync"), sync=True
            )
        elif step in ("M110", "sync"):
            self._submit_internal("M115", lambda q: self._hs_after(gen, q, "M115"))
        else:
            try:
                info = gcode.parse_m115(p.lines)
            except GcodeError as exc:
                self._hs_retry(gen, exc)
                return
            self._hs_finish(gen, info)

    def _hs_sync_refusal(self, reply: Reply) -> bool:
        """A line error arrived: True if it is the refusal of the sync probe in flight.

        The probe is line base+2, so a firmware that ran this attempt's ``M110 N<base>``
        refuses it naming ``Last Line: <base>``; the Resend and ok that follow the refusal are
        swallowed.  A refusal naming another line is a stale one from before the M110.
        """
        head = self._in_flight[0] if self._in_flight else None
        if head is None or not head.sync:
            return False
        if reply.n != self._hs_base:
            log.info("stale line error before the handshake's sync: %s", reply.text)
            return False
        self._error_line = self._hs_base + 1
        deadline = time.monotonic() + self._ok_wait()
        self._resends.append(ResendRequest(self._hs_base + 1, True, deadline))
        self._complete(head)
        return True

    def _hs_retry(self, gen: int, error: BaseException) -> None:
        if isinstance(error, FirmwareHalted) or self._phase == "closed":
            self._hs_give_up(str(error))
            return
        if time.monotonic() >= self._hs_deadline:
            self._hs_give_up(
                f"no handshake with the firmware on {self.path} within "
                f"{self.config.handshake_timeout_s} s ({error}); check serial.port, serial.baud "
                f"and that the board is powered and flashed"
            )
            return
        log.info("handshake attempt failed (%s); retrying", error)
        self._hs_send_m110(gen)

    def _hs_give_up(self, reason: str) -> None:
        self._phase = "disconnected"
        self._hs_failure = reason
        if self._fault is None:
            self._latch(reason, LinkError)
        self._flush_hs_events()
        self._cond.notify_all()

    def _hs_finish(self, gen: int, info: FirmwareInfo) -> None:
        self.firmware = info
        # NOTE: stock Marlin has no Cap line for ADVANCED_OK; the form of its oks during the
        # handshake (``ok N0 P15 B3``) says it as clearly.
        advanced = info.advanced_ok or (self._ok_has_n and self._b_seen)
        self._window = self.config.max_in_flight if advanced else 1
        self._slots = self.config.max_in_flight
        self._hs_done_gen = gen
        self._phase = "ready"
        log.info(
            "firmware %s %s (%s dialect), %d command(s) in flight",
            info.name,
            info.version,
            info.dialect,
            self._window,
        )
        self._flush_hs_events()
        self._pump()
        self._cond.notify_all()

    def _flush_hs_events(self) -> None:
        events, self._hs_events = self._hs_events, []
        for e in events:
            self._emit(e)

    def _wait_synced(self, gen: int, timeout: float) -> FirmwareInfo:
        with self._cond:
            ok = self._cond.wait_for(
                lambda: (
                    (self._hs_done_gen >= gen and self._phase == "ready")
                    or self._phase in ("disconnected", "closed")
                ),
                timeout,
            )
            if self._phase == "ready" and self.firmware is not None and ok:
                return self.firmware
            raise LinkError(
                self._hs_failure
                or f"no handshake with the firmware on {self.path} in {timeout:.1f} s; check "
                f"serial.port, serial.baud and the board's power"
            )
