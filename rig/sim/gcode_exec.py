"""What the simulated firmware does with each accepted command, in either dialect.

Why separate from :mod:`rig.sim.marlin`: that module is the wire (pty, line numbers, faults,
keepalives); this one is the machine (axis, light pins, settings).  The two dialects differ only
here: ``M115``'s name and capabilities, the boot banner, ``M42``'s protected pins, ``M105`` and
``G28`` without an endstop.  Marlin's build options (:mod:`rig.sim.marlin_build`) change what
``G92``, short moves, ``M42``, ``M106`` and the boot position do, as measured on real Marlin.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Literal, Protocol

from rig.sim.axis import SimAxis
from rig.sim.clock import SimClock
from rig.sim.marlin_build import FAN_UPDATE_S, PROFILES, MarlinBuild, m115_lines, m503_lines

Dialect = Literal["partrig", "marlin"]


class Wire(Protocol):
    """What the executor uses of the board's wire (:class:`rig.sim.marlin.SimFirmware`).

    Why a protocol: the wire owns the executor, so naming the wire's class here would make the
    two modules import each other.
    """

    axis: SimAxis
    clock: SimClock
    keepalive_s: float
    last_n: int

    def write_line(self, text: str, *, corruptible: bool = True) -> None: ...

    def wait_until(self, target: Callable[[], float], gen: int) -> None: ...

    def kill(self) -> None: ...


FIRMWARE_VERSION = "0.1.0"
DEFAULT_STEPS_PER_UNIT = 200 * 16 / 360.0  # the brief's Marlin setting: X "millimetres" = degrees
DEFAULT_MAX_FEED = 360.0  # units/s
DEFAULT_MAX_ACCEL = 720.0  # units/s^2
MARLIN_DEFAULT_ACCEL = 3000.0  # M204 S, capped by M201 per axis
HOMING_FEED = 90.0  # units/s toward the X-min switch
ENDSTOP_HALF_WIDTH_DEG = 0.25
# RAMPS 1.4 pins Marlin guards in M42 without I1: the three MOSFETs and the X driver/endstops.
MARLIN_PROTECTED_PINS = frozenset({8, 9, 10, 54, 55, 38, 3, 2})
FAN_PIN = 9
# Y and Z stay configured in the shipped Marlin build with nothing wired to them (config.ini).
Y_STEPS_PER_UNIT = 80.0
Z_STEPS_PER_UNIT = 400.0
MARLIN_ONLY = frozenset({"M503"})

_PARAM = re.compile(r"([A-Z])\s*([-+]?(?:\d+\.?\d*|\.\d+)?)")


def parse_words(command: str) -> tuple[str, dict[str, float | None]]:
    """``"G1 X90 F600"`` -> ``("G1", {"X": 90.0, "F": 600.0})``; a bare letter maps to None."""
    text = command.split(";", 1)[0].strip().upper()
    words = _PARAM.findall(text)
    if not words:
        return "", {}
    (letter, number), rest = words[0], words[1:]
    code = letter + (str(int(float(number))) if number else "")
    params: dict[str, float | None] = {}
    for k, v in rest:
        params[k] = float(v) if v not in ("", "+", "-", ".") else None
    return code, params


class CommandExecutor:
    """The machine behind the wire: executes one command, replies its non-``ok`` lines."""

    def __init__(
        self,
        fw: Wire,
        dialect: Dialect,
        *,
        steps_per_degree: float | None,
        light_pin: str,
        endstop: bool,
        build: MarlinBuild | None = None,
    ) -> None:
        self.fw = fw
        self.dialect = dialect
        self.build = build or PROFILES[dialect]
        self._physical_spd = steps_per_degree
        self.light_pin = int(light_pin.lstrip("Dd"))
        self.endstop = endstop
        self.power_on()

    def power_on(self) -> None:
        """Settings as after a reset: nothing is stored in EEPROM."""
        self.steps_per_unit = DEFAULT_STEPS_PER_UNIT
        self.max_feed = DEFAULT_MAX_FEED
        self.max_accel = DEFAULT_MAX_ACCEL
        self.print_accel = MARLIN_DEFAULT_ACCEL
        self.feed = DEFAULT_MAX_FEED
        self.relative = False
        # NOTE: Marlin starts at its home position (X_HOME_POS: MANUAL_X_HOME_POS, else
        # X_MIN_POS with X_HOME_DIR -1), and its step count follows from it.
        self.position = self.build.home_pos  # commanded native X in units
        self.shift = 0.0  # G92's workspace offset: M114's X is position + shift
        self.y = 0.0  # commanded Y (Marlin dialect; nothing is wired to Y)
        self.y_count = 0
        self.pins: dict[int, int] = {}
        self._fan: tuple[int, float] | None = None  # (duty, clock time it reaches the pin)
        self.fw.keepalive_s = 2.0
        self.fw.axis.set_count(round(self.position * self.steps_per_unit))

    @property
    def physical_steps_per_degree(self) -> float:
        """The mechanics: what the rig really is (else assume the host's M92 is right)."""
        return self._physical_spd or self.steps_per_unit

    def light_level(self) -> float:
        self._apply_fan()
        return self.pins.get(self.light_pin, 0) / 255.0

    def _apply_fan(self) -> None:
        if self._fan is not None and self.fw.clock.now() >= self._fan[1]:
            self.pins[FAN_PIN] = self._fan[0]
            self._fan = None

    def _set_fan(self, duty: int) -> None:
        """Our firmware writes the pin at once; Marlin at its next 10 Hz fan update."""
        if self.dialect != "marlin":
            self.pins[FAN_PIN] = duty
            return
        self._apply_fan()
        now = self.fw.clock.now()
        self._fan = (duty, (math.floor(now / FAN_UPDATE_S) + 1) * FAN_UPDATE_S)

    def banner(self) -> list[str]:
        if self.dialect == "marlin":
            return [
                "echo:Marlin bugfix-2.1.x",
                "echo: Last Updated: 2024-06-01 | Author: (partrig turntable)",
                "echo: Compiled: Jun  1 2024",
                "echo: Free Memory: 3215  PlannerBufferBytes: 1232",
            ]
        return [f"echo:partrig turntable firmware {FIRMWARE_VERSION} (simulated)"]

    def m115(self) -> list[str]:
        if self.dialect == "marlin":
            return m115_lines(self.build, "partrig turntable")
        return [
            f"FIRMWARE_NAME:partrig {FIRMWARE_VERSION} PROTOCOL_VERSION:1.0 "
            "MACHINE_TYPE:RAMPS 1.4 turntable AXES:1",
            "Cap:ADVANCED_OK:1",
            "Cap:EMERGENCY_PARSER:1",
            "Cap:QUICKSTOP:1",
            f"Cap:ENDSTOP_X_MIN:{int(self.endstop)}",
            "Cap:LIGHT_PINS:D8,D9,D10",
        ]

    # --- helpers -----------------------------------------------------------------------------

    def _say(self, line: str) -> None:
        self.fw.write_line(line)

    def _sync(self, gen: int) -> None:
        """Wait for the planner to empty (``planner.synchronize()``)."""
        self.fw.wait_until(self.fw.axis.busy_until, gen)

    def _accel(self) -> float:
        if self.dialect == "marlin":
            return min(self.max_accel, self.print_accel)
        return self.max_accel

    def _queue_to(self, target_units: float, speed: float, gen: int) -> None:
        axis = self.fw.axis
        if axis.free_slots() <= 0:
            self.fw.wait_until(axis.first_slot_free_at, gen)
        spu = self.steps_per_unit
        # NOTE: the target is rounded to whole steps from the absolute position, as Marlin's
        # planner does, so fractions never accumulate over many moves.
        target = round(target_units * spu)
        self.position = target_units
        if 0 < abs(target - axis.planned_end()) < self.build.min_steps_per_segment:
            # NOTE: Marlin drops a block under MIN_STEPS_PER_SEGMENT steps and keeps its
            # planner position: X has moved, Count has not.
            return
        delay = self.build.move_overhead_ms / 1000.0
        axis.queue_move(target, speed * spu, self._accel() * spu, start_delay=delay)

    def _queue_y(self, target: float) -> None:
        """Y exists on Marlin with nothing wired to it: only the counters change."""
        steps = round(target * Y_STEPS_PER_UNIT)
        self.y = target
        if abs(steps - self.y_count) >= self.build.min_steps_per_segment:
            self.y_count = steps

    def quick_stop(self) -> None:
        """M410: stop the motor now; the position is kept (read back from the steps)."""
        count = self.fw.axis.stop()
        self.position = count / self.steps_per_unit
        self.y = self.y_count / Y_STEPS_PER_UNIT

    def endstop_triggered(self) -> bool:
        rev = 360.0 * self.physical_steps_per_degree
        angle = (self.fw.axis.steps_done() % rev) / self.physical_steps_per_degree
        return min(angle, 360.0 - angle) <= ENDSTOP_HALF_WIDTH_DEG

    # --- the commands ------------------------------------------------------------------------

    def execute(self, command: str, gen: int) -> bool:
        """Run one command.  Returns True when it sent its own ``ok`` (M105 on Marlin)."""
        code, p = parse_words(command)
        handler = getattr(self, "_" + code.lower(), None) if code else None
        if self.dialect == "marlin" and code == "M42" and not self.build.direct_pin_control:
            handler = None  # NOTE: M42 is compiled in only with DIRECT_PIN_CONTROL
        if self.dialect != "marlin" and code in MARLIN_ONLY:
            handler = None
        if handler is None:
            self._say(f'echo:Unknown command: "{command}"')
            return False
        return bool(handler(p, gen))

    def _g0(self, p: dict[str, float | None], gen: int) -> None:
        self._g1(p, gen)

    def _g1(self, p: dict[str, float | None], gen: int) -> None:
        f = p.get("F")
        if f is not None and f > 0:
            self.feed = f / 60.0
        y = p.get("Y")
        if self.dialect == "marlin" and y is not None and math.isfinite(y):
            self._queue_y(self.y + y if self.relative else y)
        x = p.get("X")
        if x is None or not math.isfinite(x):
            return
        logical = self.position + self.shift
        target = logical + x if self.relative else x
        self._queue_to(target - self.shift, min(self.feed, self.max_feed), gen)

    def _g4(self, p: dict[str, float | None], gen: int) -> None:
        self._sync(gen)
        seconds = (p.get("P") or 0.0) / 1000.0 + (p.get("S") or 0.0)
        end = self.fw.clock.now() + seconds
        self.fw.wait_until(lambda: end, gen)

    def _g28(self, p: dict[str, float | None], gen: int) -> None:
        if not self.endstop:
            if self.dialect == "marlin":
                self._say("Error:Homing Failed")
                self.fw.kill()
                return
            self._say("Error:Homing failed: no X-min endstop fitted; set zero with G92 X0")
            return
        self._sync(gen)
        spd = self.physical_steps_per_degree
        rev = 360.0 * spd
        here = self.fw.axis.steps_done()
        back = here - math.floor(here / rev) * rev  # steps to the switch, going negative
        target = self.fw.axis.count() - round(back)
        self.fw.axis.queue_move(target, HOMING_FEED * spd, self._accel() * spd)
        self._sync(gen)
        self.fw.axis.set_count(round(self.build.home_pos * self.steps_per_unit))
        self.position = self.build.home_pos
        self.shift = 0.0

    def _g90(self, p: dict[str, float | None], gen: int) -> None:
        self.relative = False

    def _g91(self, p: dict[str, float | None], gen: int) -> None:
        self.relative = True

    def _g92(self, p: dict[str, float | None], gen: int) -> None:
        x = p.get("X")
        if x is None:
            return
        self._sync(gen)
        if self.dialect == "marlin" and not self.build.no_workspace_offsets:
            # NOTE: with workspace offsets G92 only shifts the coordinate space: M114 shows
            # the new X, the step count (and the planner) keep the old position.
            self.shift = x - self.position
            return
        self.fw.axis.set_count(round(x * self.steps_per_unit))
        self.position = x

    def _m17(self, p: dict[str, float | None], gen: int) -> None:
        self.fw.axis.enabled = True

    def _m18(self, p: dict[str, float | None], gen: int) -> None:
        self._sync(gen)
        self.fw.axis.enabled = False

    _m84 = _m18

    def _m42(self, p: dict[str, float | None], gen: int) -> None:
        pin, value = p.get("P"), p.get("S")
        if pin is None or value is None:
            return
        pin_no = int(pin)
        if self.dialect == "marlin" and pin_no in MARLIN_PROTECTED_PINS and not p.get("I"):
            self._say("Error:Protected Pin")
            return
        self.pins[pin_no] = max(0, min(255, int(value)))

    def _m92(self, p: dict[str, float | None], gen: int) -> None:
        x = p.get("X")
        if x is None or x <= 0:
            self._say(f"echo: M92 X{self.steps_per_unit:.4f}")
            return
        self._sync(gen)
        self.steps_per_unit = x
        self.fw.axis.set_count(round(self.position * x))

    def _m105(self, p: dict[str, float | None], gen: int) -> bool:
        if self.dialect != "marlin":
            return False
        # NOTE: Marlin with no temperature sensor answers "ok T:0" itself, with no N/P/B.
        self._say("ok T:0")
        return True

    def _m106(self, p: dict[str, float | None], gen: int) -> None:
        s = p.get("S")
        self._set_fan(255 if s is None else max(0, min(255, int(s))))

    def _m107(self, p: dict[str, float | None], gen: int) -> None:
        self._set_fan(0)

    def _m108(self, p: dict[str, float | None], gen: int) -> None:
        return None

    def _m110(self, p: dict[str, float | None], gen: int) -> None:
        n = p.get("N")
        if n is not None:
            self.fw.last_n = int(n)

    def _m112(self, p: dict[str, float | None], gen: int) -> None:
        self.fw.kill()

    def _m113(self, p: dict[str, float | None], gen: int) -> None:
        s = p.get("S")
        if s is None:
            self._say(f"echo:M113 S{self.fw.keepalive_s:g}")
        else:
            self.fw.keepalive_s = max(0.0, min(60.0, s))

    def _m114(self, p: dict[str, float | None], gen: int) -> None:
        x = self.position + self.shift + 0.0  # NOTE: + 0.0 turns -0.0 into 0.0
        if self.dialect == "marlin":
            # NOTE: Marlin 2.1 reports the planner's position as Count (where the queued moves
            # will end, report_current_position_projected), not the live step count; and with
            # EXTRUDERS 0 no E.
            count = self.fw.axis.planned_end()
            self._say(f"X:{x:.2f} Y:{self.y:.2f} Z:0.00 Count X:{count} Y:{self.y_count} Z:0")
            return
        count = self.fw.axis.count()
        self._say(f"X:{x:.2f} Y:0.00 Z:0.00 E:0.00 Count X:{count} Y:0 Z:0")

    def _m115(self, p: dict[str, float | None], gen: int) -> None:
        for line in self.m115():
            self._say(line)

    def _m119(self, p: dict[str, float | None], gen: int) -> None:
        state = "TRIGGERED" if self.endstop and self.endstop_triggered() else "open"
        self._say("Reporting endstop status")
        self._say(f"x_min: {state}")

    def _m201(self, p: dict[str, float | None], gen: int) -> None:
        x = p.get("X")
        if x is not None and x > 0:
            self.max_accel = x

    def _m203(self, p: dict[str, float | None], gen: int) -> None:
        x = p.get("X")
        if x is not None and x > 0:
            self.max_feed = x

    def _m204(self, p: dict[str, float | None], gen: int) -> None:
        for key in ("S", "P"):
            v = p.get(key)
            if v is not None and v > 0:
                self.print_accel = v

    def _m503(self, p: dict[str, float | None], gen: int) -> None:
        spu = (self.steps_per_unit, Y_STEPS_PER_UNIT, Z_STEPS_PER_UNIT)
        for line in m503_lines(self.build, spu, self.max_feed, self.max_accel):
            self._say(line)

    def _m400(self, p: dict[str, float | None], gen: int) -> None:
        self._sync(gen)

    def _m410(self, p: dict[str, float | None], gen: int) -> None:
        self.quick_stop()

    def _m999(self, p: dict[str, float | None], gen: int) -> None:
        return None
