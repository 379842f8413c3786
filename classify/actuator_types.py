"""The actuator seam: the :class:`Actuator` protocol and the checks every driver shares.

Why a module apart from the factory (:mod:`classify.actuator`): the drivers
(:mod:`classify.actuator_gpio`, :mod:`classify.actuator_sim`) need the bin checks, and the
factory needs the drivers; with both in one module they imported each other in a circle.  Now
the drivers import this module, the factory imports the drivers, and nothing imports back.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from rig.config import ActuatorConfig
from rig.errors import ActuatorError, ConfigError


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
