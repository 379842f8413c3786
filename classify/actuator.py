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
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from rig.config import ActuatorConfig, Settings
from rig.errors import ActuatorError, ConfigError

if TYPE_CHECKING:
    from rig.sim.world import SimWorld


@runtime_checkable
class Actuator(Protocol):
    """Moves the part on the sorting platform into bin ``bin``.

    ``fire`` blocks until the push (valve pulse, gate move) is done and raises
    :class:`~rig.errors.ActuatorError` when it failed; ``close`` leaves every output off and is
    idempotent; a closed actuator raises ActuatorError.
    """

    def fire(self, bin: int) -> None: ...

    def close(self) -> None: ...


def bin_count(config: ActuatorConfig) -> int:
    """How many bins the configured hardware can reach (0 for the simulator: any of 16)."""
    if config.driver == "sim":
        return 16
    return len(config.pins) if config.kind == "valve" else len(config.servo_angles)


def check_config(config: ActuatorConfig) -> None:
    """Refuse an ``[actuator]`` section the hardware cannot carry out, naming the key."""
    if config.driver == "sim":
        return
    if config.kind == "valve":
        if not config.pins:
            raise ConfigError(
                "actuator.pins is empty: list the BCM pin of each bin's valve, in bin order"
            )
        if any(not 0 <= p <= 27 for p in config.pins) or len(set(config.pins)) != len(config.pins):
            raise ConfigError(f"actuator.pins {config.pins} must be distinct BCM pins 0..27")
    elif not config.servo_angles:
        raise ConfigError(
            "actuator.servo_angles is empty: give the gate angle (degrees) of each bin in order"
        )
    elif any(not 0 <= a <= 180 for a in config.servo_angles):
        raise ConfigError(f"actuator.servo_angles {config.servo_angles} must be within 0..180")
    if config.review_bin >= bin_count(config):
        raise ConfigError(
            f"actuator.review_bin {config.review_bin} has no "
            f"{'valve' if config.kind == 'valve' else 'gate angle'}: the hardware has "
            f"{bin_count(config)} bins (0..{bin_count(config) - 1})"
        )


def check_bin(bin: int, count: int) -> int:
    """The bin as an int, or ActuatorError when the hardware has no such bin."""
    b = int(bin)
    if not 0 <= b < count:
        raise ActuatorError(
            f"bin {bin} does not exist: the actuator has bins 0..{count - 1}; check sorter.bins"
        )
    return b


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
