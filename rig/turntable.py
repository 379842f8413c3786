"""Turntable: degrees in, verified whole steps out, on our firmware or stock Marlin.

Why the host owns the arithmetic: the firmware (AVR, 32-bit floats) is told its steps per
degree with ``M92`` and then only ever sees axis values that map to an exact whole step.  The
host keeps the position as a Python ``int`` of steps in its own frame (``_host``), so rounding
never accumulates: every target is rounded once, from the absolute angle, never from the
previous target.  The firmware's axis value is ``_host - _offset``; when it grows past a few
turns the host re-zeroes it with ``G92 X0`` (moving ``_offset``), so the firmware's floats stay
small and exact.

Direction modes for :meth:`rotate_to`:

* ``"shortest"`` - the shortest signed path (at most 180 degrees either way; exactly 180
  goes negative).
* ``"absolute"`` - always turn in the positive direction, from 0 up to (not including) 360
  degrees.  Why: approaching every angle from the same side takes the gear backlash out of the
  picture, so the same angle is the same physical position every turn.

Verification: :meth:`wait` sends ``M400`` then ``M114`` and compares ``Count`` with the
target step.  Replies carry no checksum, so a disagreement is queried once more before a
:class:`MotionError`.  A board reset while moving (or before the position was ever verified)
loses the position: :class:`PositionLost` is raised and latched until :meth:`home` or
:meth:`set_zero`.  A reset while idle at a verified position is harmless (the motor did not
move), so the position is restored with ``G92``.

After the serial port came back (the link's ``reconnects`` count moved, or a command failed
with :class:`PortLost`) the board may have restarted while nobody listened, so no ``start``
line told us.  Neither dialect's ``M115`` reports an uptime or a boot id; what a restart
always does is set the step count to 0.  So, before anything else, the table waits for the
board (``M400``) and reads ``Count``:

* a move was in flight: ``Count`` equal to the target means it ran; equal to the position
  before the move means it never started, and only then is it sent again; anything else
  (0 after a restart, a point half way) raises :class:`PositionLost` and latches, with no
  further motion.  A position of 0 proves nothing (a restarted board reads 0 too), so a
  move from or to firmware step 0 cut off by a lost port loses the position;
* idle: ``Count`` equal to the last position means the board kept it; 0 means it restarted
  (settings and position are restored as after an idle reset, or the position is lost if it
  was never verified); anything else loses the position.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Literal

from rig.config import TurntableConfig
from rig.errors import FirmwareReset, GcodeError, MotionError, PortLost, PositionLost
from rig.link_types import Link, LinkEvent
from rig.motion import MoveOverhead, duration

log = logging.getLogger("rig.turntable")

Mode = Literal["absolute", "shortest"]
_COUNT = re.compile(r"Count\s+X:\s*(-?\d+)")
REZERO_TURNS = 4  # re-zero the firmware's axis beyond this many turns from 0
HOME_TIMEOUT_S = 120.0
#: A wait that sees the port come back this many times in a row gives the position up.
MAX_PORT_RETURNS = 3


class Turntable:
    """The rotary axis.  Thread-safe; one instance per link."""

    def __init__(
        self, link: Link, config: TurntableConfig, *, clock: Callable[[], float] | None = None
    ) -> None:
        """``clock`` times moves for :attr:`overhead` (the simulated rig passes its own)."""
        self.link = link
        self.config = config
        self.steps_per_degree = config.steps_per_degree
        # NOTE: the firmware multiplies by the M92 value *as sent*; converting with that same
        # rounded number makes round(X * spu) land exactly on the intended step.
        self._m92 = f"{self.steps_per_degree:.6f}"
        self._spu_sent = float(self._m92)
        self._lock = threading.RLock()
        self._host = 0  # target position in steps, host frame (unbounded int)
        self._nominal = 0.0  # the exact commanded angle (unrounded), host frame, degrees
        self._offset = 0  # firmware count = _host - _offset
        self._moving = False
        self._moved = False  # a move was ever sent: before that there is no position to lose
        self._verified = False
        self._restore_pending = False
        # NOTE: set when the port came back (or a command died with it): the board must prove
        # it kept its count before anything moves (see the module doc).
        self._check_pending = False
        self._before: int | None = None  # firmware count where the unverified moves began
        self._seen_resets = link.resets
        self._seen_reconnects = link.reconnects
        self._pending_s = 0.0  # predicted seconds of the moves not yet waited for
        self._now = clock or time.monotonic
        self._chain_start = 0.0  # when the first move not yet waited for was sent
        self._chain_moves = 0
        #: Measured time per move beyond the trapezoid (the firmware's own overhead).
        self.overhead = MoveOverhead()
        self.fault: str | None = None
        link.add_listener(self._on_link_event)

    # --- conversions (pure arithmetic) -------------------------------------------------------

    @property
    def steps_per_rev(self) -> float:
        return 360.0 * self.steps_per_degree

    @property
    def angle(self) -> float:
        """The commanded angle, 0 <= angle < 360 (as asked, before rounding to a step)."""
        return self._nominal % 360.0

    def target_steps(self, deg: float, mode: Mode | None = None) -> int:
        """Host-frame step target for ``rotate_to(deg, mode)`` from the current target."""
        return round(self._target_deg(deg, mode) * self.steps_per_degree)

    def _target_deg(self, deg: float, mode: Mode | None) -> float:
        if not math.isfinite(deg):
            raise GcodeError(f"turntable angle must be a finite number of degrees (got {deg!r})")
        mode = mode or self.config.mode
        if mode not in ("absolute", "shortest"):
            raise GcodeError(f"rotate mode must be 'absolute' or 'shortest' (got {mode!r})")
        here = self._nominal
        goal = deg % 360.0
        delta = (goal - here) % 360.0
        if mode == "shortest" and delta >= 180.0:
            delta -= 360.0
        # NOTE: round the *absolute* angle (whole turns + goal), never here + delta, so
        # fractions of a step cannot accumulate over thousands of moves.
        turns = round((here + delta - goal) / 360.0)
        return turns * 360.0 + goal

    def _axis_value(self, fw_steps: int) -> str:
        for digits in (6, 8, 10):
            text = f"{fw_steps / self._spu_sent:.{digits}f}"
            if round(float(text) * self._spu_sent) == fw_steps:
                return text
        return repr(fw_steps / self._spu_sent)

    def move_time(self, delta_deg: float) -> float:
        """Seconds a rest-to-rest move of ``delta_deg`` takes (trapezoid model)."""
        return duration(abs(delta_deg), self.config.max_speed_deg_s, self.config.accel_deg_s2)

    # --- link plumbing -----------------------------------------------------------------------

    def _dialect(self) -> str:
        info = self.link.firmware
        return info.dialect if info is not None else "partrig"

    def _send(self, command: str, timeout: float | None = None) -> list[str]:
        try:
            return list(self.link.send(command, timeout=timeout))
        except FirmwareReset as exc:
            if self._moving or (self._moved and not self._verified):
                self._lose(f"the board reset during '{command}' ({exc})")
                raise PositionLost(self.fault or str(exc)) from exc
            raise

    def _ask(self, command: str, timeout: float | None = None) -> list[str]:
        """Send a command that is safe to repeat (M400, M114), once more if the port was lost."""
        try:
            return self._send(command, timeout)
        except PortLost as exc:
            log.warning("%s interrupted by a lost port (%s); asking again", command, exc)
            self._check_pending = True
            return self._send(command, timeout)

    def _lose(self, why: str) -> None:
        self.fault = f"turntable position lost: {why}; home the turntable or confirm zero"
        self._verified = False
        self._moving = False
        self._restore_pending = False
        self._check_pending = False

    def mark_untrusted(self, why: str) -> None:
        """Give the position up: something outside this class changed the board's idea of it
        (a G-code terminal sent G92/M92/M206/M500/M502, a move, or reopened the port).

        The turntable then refuses to move until it is homed or zero is confirmed, exactly as
        after a reset during a move.
        """
        with self._lock:
            self._lose(why)

    def _check_fault(self) -> None:
        if self.fault is not None:
            raise PositionLost(self.fault)

    def _on_link_event(self, event: LinkEvent) -> None:
        kind = event.kind
        if kind == "reset":
            with self._lock:
                self._note_resets()
        elif kind == "halted":
            with self._lock:
                if self._moved:
                    self._lose("the firmware halted")

    def _note_resets(self) -> None:
        """Act on board resets the link counted since we last looked (idempotent).

        NOTE: called from the link's event thread *and* before every operation, because the
        event is delivered asynchronously: a command issued right after a reset must not run
        on a board that has forgotten its settings and position.
        """
        resets = self.link.resets
        if resets == self._seen_resets:
            return
        self._seen_resets = resets
        if self._moving or (self._moved and not self._verified):
            self._lose("the board reset while the turntable was moving")
        elif self.fault is None:
            self._restore_pending = True  # idle at a verified position: the motor did not move

    def _restore(self) -> None:
        """After an idle reset: settings back, then tell the board where it still is."""
        self._restore_pending = False
        self.setup()
        self._send(f"G92 X{self._axis_value(self._host - self._offset)}")

    def _note_reconnects(self) -> None:
        """Notice a port that came back since we last looked (the link counts, synchronously).

        NOTE: the link bumps its count before the re-handshake, so any command that completes
        after a reconnect sees it here; the ``reconnected`` event would arrive too late.
        """
        reconnects = self.link.reconnects
        if reconnects != self._seen_reconnects:
            self._seen_reconnects = reconnects
            self._check_pending = True

    def _prepare(self) -> None:
        self._note_resets()
        self._check_fault()
        self._note_reconnects()
        if self._check_pending:
            self._check_board()
        if self._restore_pending:
            self._restore()

    # --- after the port came back ------------------------------------------------------------

    def _near(self, count: int | None, fw_steps: int) -> bool:
        if count is None:
            return False
        tol = max(self.config.position_tolerance_deg * self.steps_per_degree, 0.5)
        return abs(count - fw_steps) <= tol

    def _proves(self, count: int | None, fw_steps: int | None) -> bool:
        """``count`` shows the board at ``fw_steps``, which a freshly restarted board (count 0)
        could not also show."""
        return fw_steps is not None and self._near(count, fw_steps) and not self._near(0, fw_steps)

    def _check_board(self) -> None:
        """The port came back: prove the board kept its count before anything moves."""
        self._check_pending = False
        if not self._moved:
            self._restore_pending = True  # nothing to lose; a restarted board forgot its settings
            return
        self._ask("M400", timeout=self._long_timeout())
        count = self._query_count()
        for attempt in range(2):
            if attempt:
                count = self._query_count()  # replies carry no checksum: ask once more
            if self._moving and self._proves(count, self._host - self._offset):
                return  # the moves ran; wait() verifies them as usual
            if self._moving and self._proves(count, self._before):
                log.warning("the move was lost with the serial port; sending it again")
                self._resend_move()
                return
            if not self._moving and self._near(count, self._host - self._offset):
                if not self._proves(count, self._host - self._offset):
                    self._restore_pending = True  # at 0 either way: settings again, harmless
                return
            if not self._moving and self._near(count, 0):
                if self._verified:
                    log.warning("the board restarted while the port was gone; restoring it")
                    self._restore_pending = True  # idle at a verified position: it stayed
                    return
                break
        target = self._host - self._offset
        if self._moving:
            before = "unknown" if self._before is None else str(self._before)
            why = (
                f"after the serial port came back the board counts step {count}, neither the "
                f"position before the move (step {before}) nor its target (step {target}); it "
                "probably restarted while unplugged"
            )
        else:
            why = (
                f"after the serial port came back the board counts step {count} instead of "
                f"step {target}; it probably restarted while unplugged"
            )
        self._lose(why)
        raise PositionLost(self.fault or why)

    def _resend_move(self) -> None:
        """Send the last absolute target again (the board proved it never ran the move)."""
        feed = self.config.max_speed_deg_s * 60.0
        try:
            self._send(f"G1 X{self._axis_value(self._host - self._offset)} F{feed:.2f}")
        except PortLost as exc:
            log.warning("the resent move was interrupted by a lost port too (%s)", exc)
            self._check_pending = True

    # --- the API -----------------------------------------------------------------------------

    def setup(self) -> None:
        """Send units, speed, acceleration and absolute mode (again after any reset)."""
        c = self.config
        with self._lock:
            self._note_resets()
            self._send(f"M92 X{self._m92}")
            self._send(f"M203 X{c.max_speed_deg_s:.4f}")
            self._send(f"M201 X{c.accel_deg_s2:.4f}")
            if self._dialect() == "marlin":
                self._send(f"M204 S{c.accel_deg_s2:.4f}")  # Marlin uses min(M204, M201)
            self._send("G90")
            if c.hold_when_idle:
                self._send("M17")

    def rotate_to(self, deg: float, mode: Mode | None = None) -> None:
        """Start a move to ``deg`` (mod 360); returns once queued.  :meth:`wait` verifies."""
        with self._lock:
            self._prepare()
            self._go(self._target_deg(deg, mode))

    def rotate_by(self, deg: float) -> None:
        """Start a relative move of ``deg`` (either sign, several turns allowed)."""
        if not math.isfinite(deg):
            raise GcodeError(f"turntable move must be a finite number of degrees (got {deg!r})")
        with self._lock:
            self._prepare()
            # NOTE: relative to the exact commanded angle, not the rounded step, so 360
            # moves of 1 degree end exactly one turn later whatever the steps per degree.
            self._go(self._nominal + deg)

    def _go(self, nominal_deg: float) -> None:
        # NOTE: moves queue back to back in the firmware, so the wait covers them all.
        self._pending_s += self.move_time(nominal_deg - self._nominal)
        if not self._moving:
            self._chain_start, self._chain_moves = self._now(), 0
        self._nominal = nominal_deg
        host_target = round(nominal_deg * self.steps_per_degree)
        if host_target != self._host:
            self._chain_moves += 1  # NOTE: a move to where it is queues nothing, costs nothing
        if not self._moving:
            # NOTE: where this chain of moves starts, in the firmware's count; only a count
            # equal to it (and not 0) proves that a move cut off by a lost port never ran.
            self._before = (self._host - self._offset) if self._verified else None
        self._host = host_target
        self._moving = self._moved = True
        feed = self.config.max_speed_deg_s * 60.0
        try:
            self._send(f"G1 X{self._axis_value(host_target - self._offset)} F{feed:.2f}")
        except PortLost as exc:
            # NOTE: the port vanished with the move in flight; it may or may not have run.
            # The next operation checks the count before anything else (_check_board).
            log.warning("turntable move interrupted by a lost port (%s); verifying on wait", exc)
            self._check_pending = True

    def _count(self, report: list[str]) -> int | None:
        for line in report:
            m = _COUNT.search(line)
            if m:
                return int(m.group(1))
        return None

    def _query_count(self) -> int | None:
        return self._count(self._ask("M114"))

    def _within(self, count: int | None) -> bool:
        return self._near(count, self._host - self._offset)

    def wait(self) -> float:
        """Wait for the move to end, verify it, return the measured angle (0..360)."""
        with self._lock:
            started = self._now()
            for _ in range(MAX_PORT_RETURNS):
                self._prepare()  # after a reconnect: proves the count, resends or raises
                self._ask("M400", timeout=self._long_timeout())
                done = self._now()
                count = self._query_count()
                self._note_reconnects()
                if not self._check_pending:
                    break
            else:
                self._lose(f"the serial port dropped {MAX_PORT_RETURNS} times during one wait")
                raise PositionLost(self.fault or "serial port kept dropping")
            if not self._within(count):
                count = self._query_count()  # replies carry no checksum: ask once more
            if not self._within(count):
                self._moving = False
                self._verified = False
                want = self._host / self.steps_per_degree % 360
                raise MotionError(
                    f"turntable is not where it was sent: commanded {want:.3f} deg "
                    f"(step {self._host - self._offset}), firmware reports step {count}; "
                    "check the motor, driver and belt, then home or confirm zero"
                )
            self._moving = False
            self._verified = True
            self._observe_overhead(started, done)
            self._pending_s = 0.0
            assert count is not None
            measured = (count + self._offset) / self.steps_per_degree % 360.0
            self._maybe_rezero()
            return measured

    def _observe_overhead(self, started: float, done: float) -> None:
        # NOTE: a wait that began after the moves should have ended measures the caller's
        # delay, not the firmware's: only waits that caught the moves running count.
        predicted = self._pending_s
        if self._chain_moves and started <= self._chain_start + predicted:
            self.overhead.observe(predicted, done - self._chain_start, self._chain_moves)

    @property
    def move_overhead_s(self) -> float:
        """Seconds each move has taken beyond the trapezoid prediction (running estimate)."""
        return self.overhead.per_move_s

    def _long_timeout(self) -> float:
        """How long M400 may stay silent: the predicted moves plus a command timeout.

        NOTE: the link's default for M400 is serial.long_command_timeout_s (minutes), meant
        for unknown waits.  Here the wait is predictable, so a lost ``ok`` (which no busy
        keepalive follows once the move is over) is noticed and probed within seconds.
        """
        base = self.link.config.command_timeout_s
        return 1.5 * self._pending_s + base

    def _maybe_rezero(self) -> None:
        if abs(self._host - self._offset) > REZERO_TURNS * self.steps_per_rev:
            self._send("G92 X0")
            self._offset = self._host

    def position(self) -> float:
        """Where the firmware's step counter says the table is now (0..360), even mid-move."""
        with self._lock:
            self._prepare()
            count = self._query_count()
            if count is None:
                count = self._query_count()
            if count is None:
                raise MotionError("the firmware's M114 report had no Count; check the link")
            return (count + self._offset) / self.steps_per_degree % 360.0

    def set_zero(self) -> None:
        """Declare the current position 0 degrees (``G92 X0``); clears a lost position."""
        with self._lock:
            self._note_resets()
            self._note_reconnects()
            if self._restore_pending or self._check_pending or self.fault is not None:
                self.setup()  # NOTE: a board that restarted unseen has forgotten its M92
                self._restore_pending = self._check_pending = False
            self._send("G92 X0")
            self._host = self._offset = 0
            self._nominal = 0.0
            self._moving = False
            self._verified = True
            self.fault = None

    def hold(self, on: bool) -> None:
        """Energise (M17) or release (M18) the motor.  Released, the table can be turned by hand."""
        with self._lock:
            self._send("M17" if on else "M18")
            if not on:
                self._verified = False  # a free table may be nudged: the position is a guess

    def home(self) -> None:
        """Home on the X-min endstop (``G28 X``); sets 0 degrees and clears a lost position."""
        if self.config.endstop != "x_min":
            raise MotionError(
                "this turntable has no endstop (turntable.endstop = 'none'): turn it to the "
                "zero mark by hand and confirm zero instead"
            )
        with self._lock:
            self.setup()
            self._note_reconnects()
            self._restore_pending = self._check_pending = False
            self.fault = None
            self._send("G28 X", timeout=HOME_TIMEOUT_S)
            self._host = self._offset = 0
            self._nominal = 0.0
            self._moving = False
            self._verified = True
