"""The sorting actuator: what pushes a classified part into its bin.

Why a Protocol: the sorter must not know whether an air valve, a servo gate or the simulator
moves the part, and tests must run without a Raspberry Pi.  Drivers live side by side:
:mod:`classify.actuator_gpio` (RPi.GPIO, valves or a servo) and :mod:`classify.actuator_sim`
(records every firing).  :func:`open_actuator` builds the one ``[actuator]`` names.

Example::

    with open_actuator(settings) as actuator:
        actuator.fire(settings.sorter.bins["brick-2x4-red"])
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from classify.actuator_types import Actuator, bin_count, check_bin, check_config
from rig.config import Settings
from rig.errors import ActuatorError

if TYPE_CHECKING:
    from rig.sim.world import SimWorld

# NOTE: the seam (protocol and bin checks) lives in classify.actuator_types, which the drivers
# import, so the drivers and this factory import one way; re-exported here for callers.
__all__ = ["Actuator", "ActuatorGate", "bin_count", "check_bin", "check_config", "open_actuator"]


def open_actuator(settings: Settings, world: SimWorld | None = None) -> Actuator:
    """Build the driver ``actuator.driver`` names (``--sim`` selects the simulator).

    ``world`` is the simulated sorting platform the simulator removes parts from.
    """
    config = settings.actuator
    check_config(config)
    if config.driver == "sim":
        from classify.actuator_sim import SimActuator

        return SimActuator(world, clock=getattr(world, "clock", None))
    from classify.actuator_gpio import GpioActuator

    return GpioActuator(config)


class ActuatorGate:
    """An actuator the e-stop can disable at once, from any thread, without waiting.

    Why a wrapper: the e-stop runs on the web server's event loop and must not wait for a
    valve pulse in progress; :meth:`inhibit` only sets a flag that every later :meth:`fire`
    checks under the gate's lock, and :meth:`wait_idle` (called from another thread) waits
    for the pulse in progress, after which nothing fires until :meth:`release`.  Other
    attributes (the simulator's ``firings``) are the wrapped actuator's.
    """

    def __init__(self, actuator: Actuator) -> None:
        self.actuator = actuator
        self._lock = threading.Lock()
        self.inhibited: str | None = None

    def fire(self, bin: int) -> None:
        with self._lock:
            if self.inhibited is not None:
                raise ActuatorError(
                    f"the actuator is disabled ({self.inhibited}); clear the fault first"
                )
            self.actuator.fire(bin)

    def inhibit(self, reason: str) -> None:
        """Refuse every later firing; never blocks."""
        self.inhibited = reason

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no firing is in progress, then drive every output to rest; True if so."""
        if not self._lock.acquire(timeout=timeout):
            return False
        try:
            rest = getattr(self.actuator, "rest", None)
            if rest is not None:
                rest()
            return True
        finally:
            self._lock.release()

    def release(self) -> None:
        """Allow firing again (the fault was cleared)."""
        self.inhibited = None

    def close(self) -> None:
        self.actuator.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.actuator, name)

    def __enter__(self) -> ActuatorGate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
