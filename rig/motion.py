"""The trapezoid motion model: how long a move takes and where the axis is during it.

Why one module: the simulated firmware times its moves with it, the turntable predicts move
times with it, the capture plan estimates runs with it and the benchmarks compare measured
moves against it.  If each had its own formula they would disagree by a few percent and the
"measured vs predicted" figures would mean nothing.

The profile is the textbook one that our firmware and Marlin (without junction deviation
across several moves) both follow for a single move from rest to rest: accelerate at
``accel`` up to ``vmax``, cruise, decelerate at ``accel``.  When the distance is too short to
reach ``vmax`` the cruise phase vanishes and the profile is a triangle whose peak speed is
``sqrt(distance * accel)``.

Units are whatever the caller uses consistently (degrees, deg/s, deg/s^2 for the turntable).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass


def _check(vmax: float, accel: float) -> None:
    if not (math.isfinite(vmax) and vmax > 0):
        raise ValueError(f"maximum speed must be a positive finite number (got {vmax!r})")
    if not (math.isfinite(accel) and accel > 0):
        raise ValueError(f"acceleration must be a positive finite number (got {accel!r})")


@dataclass(frozen=True)
class Move:
    """One rest-to-rest move of ``distance`` (signed) with its trapezoid profile.

    ``t_accel`` is the time spent accelerating (and, symmetrically, decelerating),
    ``t_cruise`` the time at ``peak_speed``.
    """

    distance: float
    vmax: float
    accel: float

    def __post_init__(self) -> None:
        _check(self.vmax, self.accel)
        if not math.isfinite(self.distance):
            raise ValueError(f"move distance must be finite (got {self.distance!r})")

    @property
    def length(self) -> float:
        return abs(self.distance)

    @property
    def peak_speed(self) -> float:
        # NOTE: sqrt(d*a) is the speed reached when accelerating over half the distance;
        # it caps the cruise speed for short moves (the triangle case).
        return min(self.vmax, math.sqrt(self.length * self.accel))

    @property
    def t_accel(self) -> float:
        return self.peak_speed / self.accel

    @property
    def t_cruise(self) -> float:
        v = self.peak_speed
        if v <= 0:
            return 0.0
        cruise_distance = self.length - v * v / self.accel
        return max(0.0, cruise_distance / v)

    @property
    def duration(self) -> float:
        return 2.0 * self.t_accel + self.t_cruise

    def position_at(self, t: float) -> float:
        """Signed displacement from the start ``t`` seconds into the move (clamped to ends)."""
        if self.length == 0.0 or t <= 0.0:
            return 0.0
        if t >= self.duration:
            return self.distance
        v, a, ta, tc = self.peak_speed, self.accel, self.t_accel, self.t_cruise
        if t < ta:
            s = 0.5 * a * t * t
        elif t < ta + tc:
            s = 0.5 * a * ta * ta + v * (t - ta)
        else:
            left = self.duration - t
            s = self.length - 0.5 * a * left * left
        s = min(max(s, 0.0), self.length)
        return math.copysign(s, self.distance)

    def speed_at(self, t: float) -> float:
        """Unsigned speed ``t`` seconds into the move."""
        if self.length == 0.0 or t <= 0.0 or t >= self.duration:
            return 0.0
        ta, tc = self.t_accel, self.t_cruise
        if t < ta:
            return self.accel * t
        if t < ta + tc:
            return self.peak_speed
        return self.accel * (self.duration - t)


def duration(distance: float, vmax: float, accel: float) -> float:
    """Seconds for a rest-to-rest move of ``distance`` (sign ignored)."""
    return Move(distance, vmax, accel).duration


def position_at(t: float, distance: float, vmax: float, accel: float) -> float:
    """Signed displacement ``t`` seconds into a move of ``distance``."""
    return Move(distance, vmax, accel).position_at(t)


class MoveOverhead:
    """A running estimate of the time each move takes beyond its trapezoid prediction.

    Why: the trapezoid is the motion itself, but a firmware adds its own time around it.
    Marlin 2.1 holds the first block of a burst back before starting it (measured: a constant
    50-60 ms a move, +23 % on a 10 degree move); our firmware adds almost nothing.  The
    turntable feeds every verified wait in, so a run's ETA can learn the firmware it has
    instead of assuming one.

    ``per_move_s`` is the median of the last ``window`` samples of
    ``(measured - predicted) / moves``, 0 until the first.  NOTE: a median, not a mean, because
    a busy host (or a simulator falling behind the wall clock) makes single waits far off in
    either direction, and one such wait must not move the estimate.
    """

    def __init__(self, window: int = 15) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1 (got {window!r})")
        self._recent: deque[float] = deque(maxlen=window)
        self.samples = 0

    @property
    def per_move_s(self) -> float:
        return statistics.median(self._recent) if self._recent else 0.0

    def observe(self, predicted_s: float, measured_s: float, moves: int = 1) -> None:
        """One measured wait: ``moves`` moves predicted to take ``predicted_s`` in total."""
        if moves <= 0 or not (math.isfinite(predicted_s) and math.isfinite(measured_s)):
            return
        self._recent.append((measured_s - predicted_s) / moves)
        self.samples += 1

    def predict(self, predicted_s: float, moves: int = 1) -> float:
        """Seconds ``moves`` moves predicted at ``predicted_s`` will really take."""
        return predicted_s + moves * self.per_move_s


def travel_deg(here: float, goal: float, mode: str) -> float:
    """Signed degrees the turntable moves from ``here`` to ``goal`` in ``mode``.

    The same rule as :meth:`rig.turntable.Turntable.rotate_to`: ``absolute`` always turns
    forward (``315 -> 0`` is +45), ``shortest`` takes the shorter way round.
    """
    delta = (goal % 360.0 - here % 360.0) % 360.0
    if mode == "shortest" and delta >= 180.0:
        delta -= 360.0
    return delta
