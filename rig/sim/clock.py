"""SimClock: the one notion of time inside the simulated rig.

Why: tests must be fast and deterministic, benchmarks must run in real time, and demos may want
something in between.  Everything simulated (move timing, busy keepalives, exposure) asks this
clock for ``now()`` and ``sleep()``, so one knob (``simulator.time_scale``) switches all of it:

* ``time_scale == 1``: simulated seconds are wall seconds.
* ``time_scale > 1``: simulated time runs that many times faster than the wall.
* ``time_scale == 0``: a virtual clock.  ``sleep(s)`` returns at once and moves simulated
  time forward by ``s``, so a 2 s move "takes" no wall time but still has a start and an end
  that ``now()`` can see.

Thread safety: several threads (the pty server, the camera, the test) call it at once.  The
virtual clock is a counter under a lock that only moves forward: ``sleep(s)`` adds ``s``
atomically and ``sleep_until(t)`` raises it to ``t`` if it is behind, never lowers it.
"""

from __future__ import annotations

import math
import threading
import time


class SimClock:
    """Real, scaled or virtual time for the simulators."""

    def __init__(self, time_scale: float = 1.0) -> None:
        if not (math.isfinite(time_scale) and time_scale >= 0):
            raise ValueError(
                f"simulator.time_scale must be 0 (virtual) or a positive number (got {time_scale})"
            )
        self.time_scale = float(time_scale)
        self._lock = threading.Lock()
        self._virtual = 0.0
        self._wall0 = time.monotonic()

    @property
    def virtual(self) -> bool:
        """True when sleeps are instant and time only moves when someone sleeps or advances."""
        return self.time_scale == 0.0

    def now(self) -> float:
        """Simulated seconds since the clock was made."""
        if self.virtual:
            with self._lock:
                return self._virtual
        return (time.monotonic() - self._wall0) * self.time_scale

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of simulated time pass."""
        if seconds <= 0 or not math.isfinite(seconds):
            return
        if self.virtual:
            with self._lock:
                self._virtual += seconds
            return
        time.sleep(seconds / self.time_scale)

    def sleep_until(self, t: float) -> None:
        """Sleep until simulated time ``t`` (returns at once if it has passed)."""
        if self.virtual:
            with self._lock:
                if t > self._virtual:
                    self._virtual = t
            return
        left = t - self.now()
        if left > 0:
            time.sleep(left / self.time_scale)

    def advance(self, seconds: float) -> None:
        """Move a virtual clock forward (tests); on a real clock this is a plain sleep."""
        self.sleep(seconds)

    def wall_seconds(self, sim_seconds: float) -> float:
        """How many wall seconds ``sim_seconds`` of simulated time takes (0 when virtual)."""
        return 0.0 if self.virtual else sim_seconds / self.time_scale
