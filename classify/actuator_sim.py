"""SimActuator: the simulated air jet, which records where every part went.

Why it removes the part itself: on the real rig the jet blows the part off the platform; in
simulation the sorting platform is a :class:`~rig.sim.world.SimWorld`, and the firing is what
empties it.  The simulator knows the truth (the part's catalogue label), so tests can check
that every part reached the bin its true label maps to.

Fault knobs for tests: :meth:`SimActuator.fail_next` makes firings raise ActuatorError (the
valve's supply failed), :meth:`SimActuator.jam_next` makes a firing leave the part where it is
(a stuck part).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from classify.actuator_types import check_bin
from rig.errors import ActuatorError

if TYPE_CHECKING:
    from rig.sim.clock import SimClock
    from rig.sim.world import SimWorld

SIM_BINS = 16


@runtime_checkable
class BinnedPlatform(Protocol):
    """A simulated platform that wants to know which bin a part was pushed into (the simulated
    feeder's: a part pushed into ``sorter.recirculate_bin`` goes back to its hopper)."""

    def push_into(self, bin: int) -> None: ...


class SimActuator:
    """Records ``firings`` as ``(t, bin, truth_label_or_None)``; thread-safe."""

    def __init__(self, world: SimWorld | None = None, *, clock: SimClock | None = None) -> None:
        self.world = world
        self._now = clock.now if clock is not None else time.monotonic
        self._lock = threading.Lock()
        self.firings: list[tuple[float, int, str | None]] = []
        self._fail: list[str] = []
        self._jams = 0
        self._closed = False

    def fire(self, bin: int) -> None:
        with self._lock:
            if self._closed:
                raise ActuatorError("the simulated actuator is closed; open a new one")
            if self._fail:
                raise ActuatorError(self._fail.pop(0))
            b = check_bin(bin, SIM_BINS)
            part = self.world.part if self.world is not None else None
            self.firings.append((self._now(), b, None if part is None else part.label))
            if self._jams:
                self._jams -= 1
                return
            if isinstance(self.world, BinnedPlatform):
                self.world.push_into(b)
            elif self.world is not None:
                self.world.remove_part()

    def fail_next(self, n: int = 1, message: str | None = None) -> None:
        """Make the next ``n`` firings raise ActuatorError (nothing is pushed)."""
        text = message or "simulated actuator failure: no air pressure; check the compressor"
        with self._lock:
            self._fail.extend([text] * int(n))

    def jam_next(self, n: int = 1) -> None:
        """Make the next ``n`` firings leave the part on the platform (it is stuck)."""
        with self._lock:
            self._jams += int(n)

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> SimActuator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
