"""Lights: the LED ring on one RAMPS MOSFET output (D8, D9 or D10), dimmed by PWM.

Why the dialects differ: our firmware drives any of the three outputs with ``M42 P<n> S<v>``.
Stock Marlin protects those pins (they are its heaters and fan), so ``M42`` needs ``I1`` to
override the guard; and on D9, the fan output, Marlin re-writes the pin from its own fan speed
whenever the planner syncs fans, so an ``M42`` there would be undone by the next move.  On
Marlin, D9 is therefore driven with ``M106 S<v>`` / ``M107``, which Marlin itself keeps.

Why :meth:`Lights.set` may wait: Marlin writes the fan PWM from its planner ten times a second,
so an ``M106`` lands up to 100 ms after its ``ok`` (measured on Marlin 2.1).  A still taken
right after ``lights.on()`` could show the old level, so a change through ``M106``/``M107``
waits one update period plus a margin before returning.  Our firmware and ``M42`` write the
pin at once and do not wait.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from rig.config import LightsConfig
from rig.errors import GcodeError
from rig.link_types import Link, LinkEvent

MARLIN_FAN_UPDATE_S = 0.1  # Marlin's fan PWM update period
FAN_SETTLE_S = MARLIN_FAN_UPDATE_S + 0.05  # one update plus a margin for the serial round trip


class Lights:
    """Switch and dim the light.  ``level`` is what was last set, 0..1 (0 after a board reset)."""

    def __init__(
        self, link: Link, config: LightsConfig, *, sleep: Callable[[float], None] | None = None
    ) -> None:
        """``sleep`` waits for Marlin's fan update (the simulated rig passes its clock's)."""
        self.link = link
        self.config = config
        self._sleep = sleep or time.sleep
        self.pin = int(config.pin.lstrip("D"))
        self._level = 0.0
        self._lock = threading.Lock()
        link.add_listener(self._on_link_event)

    @property
    def level(self) -> float:
        return self._level

    def _dialect(self) -> str:
        info = self.link.firmware
        return info.dialect if info is not None else "partrig"

    def command_for(self, level: float) -> str:
        """The G-code that sets ``level`` on this firmware (public so the docs can show it)."""
        value = round(level * 255)
        if self._dialect() == "marlin":
            if self.pin == 9:
                return f"M106 S{value}" if value > 0 else "M107"
            return f"M42 I1 P{self.pin} S{value}"
        return f"M42 P{self.pin} S{value}"

    def set(self, level: float, *, settle: bool = True) -> None:
        """Set the brightness, 0 (off) to 1 (full).

        ``settle=False`` skips the wait for Marlin's fan update (see the module docstring).
        """
        if not isinstance(level, int | float) or not math.isfinite(level) or not 0 <= level <= 1:
            raise GcodeError(f"light level must be a number from 0 to 1 (got {level!r})")
        with self._lock:
            command = self.command_for(float(level))
            changed = round(level * 255) != round(self._level * 255)
            self.link.send(command)
            self._level = float(level)
            if settle and changed and command.startswith(("M106", "M107")):
                self.settle()

    def settle(self) -> None:
        """Wait until a change sent through Marlin's fan (``M106``/``M107``) is on the pin."""
        self._sleep(FAN_SETTLE_S)

    def on(self) -> None:
        """Full configured brightness (``lights.level``)."""
        self.set(self.config.level)

    def off(self) -> None:
        """Lights off at once.

        NOTE: no wait for Marlin's fan update: nothing takes a still in the dark, and a safe
        stop must not be held up by it.
        """
        self.set(0.0, settle=False)

    def outputs_dropped(self) -> None:
        """The board switched its outputs off by itself (an e-stop's kill): record level 0."""
        self._level = 0.0

    def _on_link_event(self, event: LinkEvent) -> None:
        # NOTE: a reset drives every output low, so the truthful level is 0 until set again.
        if event.kind == "reset":
            self._level = 0.0
