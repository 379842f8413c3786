"""The remaining time of a capture run, from measured motion and measured per-shot costs.

Why not ``elapsed / shots done * shots left``: that pace counts the minutes the run waited for
the operator and sat paused as if every later shot would wait as long, so a 24-shot run with
prompts and a pause was estimated at 1 min 46 s and took 38 s.  Operator time cannot be
predicted, so the estimate leaves it out and counts only what the rig itself will spend:

* each remaining move by the trapezoid model (:meth:`rig.turntable.Turntable.move_time`, the
  turntable's own direction rule), plus the firmware's measured per-move overhead
  (:attr:`~rig.turntable.Turntable.move_overhead_s`: stock Marlin adds ~55 ms a move, our
  firmware almost nothing; the estimator does not know which firmware it has);
* a per-shot cost measured on this run (settle, capture, handing the frame to the writer and
  any wait for it, lights): the median of the recent shots' active time minus their predicted
  move, so one slow shot does not move it;
* a per-segment cost measured on this run (sheet check, metering, the reference frame) for
  every later change of background.

"Active" time is wall time minus the time the run spent waiting for the operator or paused
(:class:`ActiveClock`), so the estimate stands still while a prompt waits and refines itself
with every shot.  A run that is not live shows no estimate (``CaptureRun`` clears it).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from rig.motion import travel_deg

#: Recent shots whose cost the median is taken over: enough to ignore a stall, few enough to
#: follow a change (say, a light level that takes longer to switch).
WINDOW = 9


class ActiveClock:
    """Seconds of a run's clock not spent waiting for the operator or paused.

    The engine thread marks waits with :meth:`waiting`; :meth:`now` and :meth:`idle_s` let it
    subtract them from a span it times.  Thread-safe: the writer thread reads the estimate.
    """

    def __init__(self, now: Callable[[], float] | None = None) -> None:
        self.now = now or time.monotonic
        self._lock = threading.Lock()
        self._idle = 0.0

    @property
    def idle_s(self) -> float:
        with self._lock:
            return self._idle

    def add_idle(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._idle += seconds

    def span(self) -> Callable[[], float]:
        """Start timing; the returned function gives the active seconds since then."""
        t0, idle0 = self.now(), self.idle_s
        return lambda: max(0.0, (self.now() - t0) - (self.idle_s - idle0))


class RunEta:
    """Remaining seconds of one session of a run (see the module docstring)."""

    def __init__(self, turntable: Any, settle_s: float = 0.0, window: int = WINDOW) -> None:
        self.turntable = turntable
        self.settle_s = max(0.0, float(settle_s))
        config = getattr(turntable, "config", None)
        self.mode = str(getattr(config, "mode", "absolute"))
        self._shot_costs: deque[float] = deque(maxlen=window)
        self._segment_costs: deque[float] = deque(maxlen=window)
        self._moves: list[float] = []  # predicted trapezoid seconds of each remaining shot's move
        self._moved: list[bool] = []
        self._segment_starts: list[bool] = []
        self._lock = threading.Lock()
        self.position = 0  # shots of the plan list shot so far this session

    def plan(self, shots: Sequence[Any], sheet: int | None = None) -> None:
        """The shots this session will take, in order, from where the turntable is now."""
        here = float(getattr(self.turntable, "angle", 0.0) or 0.0)
        moves, moved, starts = [], [], []
        for spec in shots:
            delta = travel_deg(here, float(spec.angle_deg), self.mode)
            moves.append(self._move_time(delta))
            moved.append(abs(delta) > 1e-9)
            here = float(spec.angle_deg)
            starts.append(spec.background != sheet)
            sheet = spec.background
        with self._lock:
            self._moves, self._moved, self._segment_starts = moves, moved, starts
            self.position = 0

    def _move_time(self, delta: float) -> float:
        move_time = getattr(self.turntable, "move_time", None)
        return float(move_time(delta)) if callable(move_time) else 0.0

    @property
    def overhead_s(self) -> float:
        """The firmware's measured seconds per move beyond the trapezoid (0 until measured)."""
        return float(getattr(self.turntable, "move_overhead_s", 0.0) or 0.0)

    def predicted_move_s(self, position: int) -> float:
        """The move before shot ``position``: trapezoid plus the firmware's overhead."""
        if not 0 <= position < len(self._moves):
            return 0.0
        return self._moves[position] + (self.overhead_s if self._moved[position] else 0.0)

    def observe_segment(self, active_s: float) -> None:
        """A background segment's active seconds (sheet check, metering, reference)."""
        with self._lock:
            self._segment_costs.append(max(0.0, active_s))

    def observe_shot(self, active_s: float) -> None:
        """Shot ``position`` is taken: ``active_s`` from its start to the frame handed over,
        without its segment's work and without operator waits."""
        with self._lock:
            rest = active_s - self.predicted_move_s(self.position)
            self._shot_costs.append(max(0.0, rest))
            self.position += 1

    def shot_cost_s(self) -> float:
        """Per-shot seconds besides the move: measured median, or the settle time at first."""
        with self._lock:
            return statistics.median(self._shot_costs) if self._shot_costs else self.settle_s

    def remaining_s(self) -> float:
        """Seconds of rig time left in this session (operator time not included)."""
        with self._lock:
            start = self.position
            moves = self._moves[start:]
            moved = self._moved[start:]
            segments = sum(self._segment_starts[start:])
            segment_s = statistics.median(self._segment_costs) if self._segment_costs else 0.0
        per_shot = self.shot_cost_s()
        overhead = self.overhead_s
        total = sum(moves) + overhead * sum(moved) + per_shot * len(moves) + segment_s * segments
        return max(0.0, total)
