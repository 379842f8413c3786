"""Lights: the LED ring on one RAMPS MOSFET output (D8, D9 or D10), dimmed by PWM.

Why the dialects differ: our firmware drives any of the three outputs with ``M42 P<n> S<v>``.
Stock Marlin protects those pins (they are its heaters and fan), so ``M42`` needs ``I1`` to
override the guard; and on D9, the fan output, Marlin re-writes the pin from its own fan speed
whenever the planner syncs fans, so an ``M42`` there would be undone by the next move.  On
Marlin, D9 is therefore driven with ``M106 S<v>`` / ``M107``, which Marlin itself keeps.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from rig.config import LightsConfig
from rig.errors import GcodeError


class Lights:
    """Switch and dim the light.  ``level`` is what was last set, 0..1 (0 after a board reset)."""

    def __init__(self, link: Any, config: LightsConfig) -> None:
        self.link = link
        self.config = config
        self.pin = int(config.pin.lstrip("D"))
        self._level = 0.0
        self._lock = threading.Lock()
        add = getattr(link, "add_listener", None)
        if add is not None:
            add(self._on_link_event)

    @property
    def level(self) -> float:
        return self._level

    def _dialect(self) -> str:
        info = getattr(self.link, "firmware", None)
        return getattr(info, "dialect", "partrig") or "partrig"

    def command_for(self, level: float) -> str:
        """The G-code that sets ``level`` on this firmware (public so the docs can show it)."""
        value = round(level * 255)
        if self._dialect() == "marlin":
            if self.pin == 9:
                return f"M106 S{value}" if value > 0 else "M107"
            return f"M42 I1 P{self.pin} S{value}"
        return f"M42 P{self.pin} S{value}"

    def set(self, level: float) -> None:
        """Set the brightness, 0 (off) to 1 (full)."""
        if not isinstance(level, int | float) or not math.isfinite(level) or not 0 <= level <= 1:
            raise GcodeError(f"light level must be a number from 0 to 1 (got {level!r})")
        with self._lock:
            self.link.send(self.command_for(float(level)))
            self._level = float(level)

    def on(self) -> None:
        """Full configured brightness (``lights.level``)."""
        self.set(self.config.level)

    def off(self) -> None:
        self.set(0.0)

    def outputs_dropped(self) -> None:
        """The board switched its outputs off by itself (an e-stop's kill): record level 0."""
        self._level = 0.0

    def _on_link_event(self, event: Any) -> None:
        # NOTE: a reset drives every output low, so the truthful level is 0 until set again.
        if _event_kind(event) == "reset":
            self._level = 0.0


def _event_kind(event: Any) -> str:
    """The kind of a link event, whatever the link names the field (``kind`` or a string)."""
    if isinstance(event, str):
        return event
    kind = getattr(event, "kind", None) or getattr(event, "name", None)
    return str(getattr(kind, "value", kind))
