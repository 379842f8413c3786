"""SimAxis: the simulated X stepper and its planner, timed by the trapezoid model.

Why separate from the protocol server: the firmware's line protocol and the physics of the
motor are two jobs.  This module answers "where is the motor *now*" for the firmware's
``M114 Count`` and for the simulated camera (through ``actual_angle_deg``), while
:mod:`rig.sim.marlin` only decides *when* to queue a move or wait for it.

Two step counters are kept, like on a real board:

* ``steps_done`` - the signed number of pulses the driver has really made since power-up
  (the simavr harness counts the same thing on the X step pin).  G92, M92 and resets do not
  touch it: they change what the firmware *believes*, not where the motor is.
* the firmware's ``count`` - ``steps_done + offset``.  G92 and a reset move the offset.

Moves run back to back (each one rest-to-rest, no look-ahead blending); a move queued while
another runs starts when that one ends.  All times are :class:`~rig.sim.clock.SimClock`
seconds, so a virtual clock makes moves instant but still ordered.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from rig.motion import Move
from rig.sim.clock import SimClock

PLANNER_SLOTS = 16  # Marlin's BLOCK_BUFFER_SIZE on AVR; our firmware uses the same


@dataclass(frozen=True)
class _Segment:
    t_start: float
    start_steps: int  # physical steps_done at the start
    delta: int  # signed steps
    move: Move  # in steps, steps/s, steps/s^2

    @property
    def t_end(self) -> float:
        return self.t_start + self.move.duration

    def steps_at(self, t: float) -> int:
        if t >= self.t_end:
            return self.start_steps + self.delta
        # NOTE: a pulse happens when the position crosses a step boundary, so truncate
        # toward zero; the end of the move is exact.
        return self.start_steps + math.trunc(self.move.position_at(t - self.t_start))


class SimAxis:
    """The X axis in steps: a planner queue of trapezoid moves plus the two counters."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self._lock = threading.RLock()
        self._base = 0  # physical steps after every finished segment
        self._segments: list[_Segment] = []
        self._offset = 0  # firmware count = physical + offset
        self.enabled = False

    # --- reading -----------------------------------------------------------------------------

    def _fold(self, t: float) -> None:
        while self._segments and self._segments[0].t_end <= t:
            seg = self._segments.pop(0)
            self._base = seg.start_steps + seg.delta

    def steps_done(self) -> int:
        """Physical pulses made so far (signed)."""
        with self._lock:
            t = self.clock.now()
            self._fold(t)
            if self._segments and self._segments[0].t_start <= t:
                return self._segments[0].steps_at(t)
            return self._base

    def count(self) -> int:
        """The firmware's step position right now (``M114 Count``)."""
        with self._lock:
            return self.steps_done() + self._offset

    def planned_end(self) -> int:
        """The firmware's step position once every queued move is done."""
        with self._lock:
            self._fold(self.clock.now())
            end = (
                self._segments[-1].start_steps + self._segments[-1].delta
                if self._segments
                else self._base
            )
            return end + self._offset

    def busy_until(self) -> float:
        """Clock time when the last queued move ends (0.0, long past, when idle)."""
        with self._lock:
            return self._segments[-1].t_end if self._segments else 0.0

    def moving(self) -> bool:
        with self._lock:
            self._fold(self.clock.now())
            return bool(self._segments)

    def free_slots(self) -> int:
        with self._lock:
            self._fold(self.clock.now())
            return PLANNER_SLOTS - len(self._segments)

    def first_slot_free_at(self) -> float:
        """When the oldest queued move ends, freeing one planner slot."""
        with self._lock:
            return self._segments[0].t_end if self._segments else 0.0

    # --- acting ------------------------------------------------------------------------------

    def queue_move(
        self,
        target_count: int,
        speed_steps: float,
        accel_steps: float,
        *,
        start_delay: float = 0.0,
    ) -> None:
        """Plan a move to firmware position ``target_count`` (steps).

        ``start_delay``: seconds an idle planner waits before it starts the move (Marlin
        holds the first block of a burst back); a move queued behind another never waits.
        """
        with self._lock:
            now = self.clock.now()
            self._fold(now)
            if self._segments:
                last = self._segments[-1]
                t0, start = last.t_end, last.start_steps + last.delta
            else:
                t0, start = now + max(0.0, start_delay), self._base
            delta = target_count - self._offset - start
            if delta == 0:
                return
            self.enabled = True
            move = Move(float(delta), speed_steps, accel_steps)
            self._segments.append(_Segment(t0, start, delta, move))

    def stop(self) -> int:
        """Stop dead where the motor is now (quick stop, kill, reset); returns the count."""
        with self._lock:
            here = self.steps_done()
            self._segments.clear()
            self._base = here
            return here + self._offset

    def set_count(self, count: int) -> None:
        """Make the firmware believe it is at ``count`` now (G92, reset).  Stops first."""
        with self._lock:
            here = self.steps_done()
            self._segments.clear()
            self._base = here
            self._offset = count - here
