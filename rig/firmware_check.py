"""Check the firmware the link found before anything moves: refuse a Marlin partrig cannot trust.

Why: a stock Marlin answers the handshake like a good one, then silently does something else.
Measured on Marlin 2.1 in simavr (tracker issue 10): with workspace offsets ``G92 X0`` only
shifts the reported X, so every verified move fails; a home position of -100000 makes the first
``G1 X90`` travel 278 turns; moves under ``MIN_STEPS_PER_SEGMENT`` steps are dropped; ``M42``
exists only with ``DIRECT_PIN_CONTROL``; without ``EMERGENCY_PARSER`` the e-stop waits behind a
move.  Each check below reads what the firmware reports and names the option to set.

What is safe to ask before the position is trusted, and why:

* ``M115``, ``M503`` and ``M114`` only report; they change nothing.
* The lights-off command (``M42 I1 P<pin> S0``) sets the state :func:`rig.rig.open_rig` sets
  anyway; on a Marlin without ``M42`` it is refused, which is the check.
* ``MIN_STEPS_PER_SEGMENT`` is reported nowhere, so it is probed with a move: one step on **Y**,
  there and back, relative.  The shipped build keeps Y configured with nothing wired to it
  (config.ini), so the turntable (X) never moves, and the probe runs last, only once every
  other check has passed.  A dropped one-step move shows as a ``Count Y`` that did not change.

Why here and not in the link's handshake: the checks need the turntable's and the lights'
configuration, and the probe waits for ``M400``, which the handshake's callbacks (run on the
reader thread) cannot.  They run once per :func:`~rig.rig.open_rig`; the port is held
exclusively, so the firmware cannot be reflashed underneath.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from rig.config import LightsConfig, TurntableConfig
from rig.errors import FirmwareUnsupported, GcodeError
from rig.gcode import FirmwareInfo, parse_m115, parse_reply
from rig.link_types import CommandLink

log = logging.getLogger("rig.firmware")

# NOTE: partrig re-zeroes the firmware's axis beyond 4 turns (rig.turntable.REZERO_TURNS), so
# a board partrig left behind is never further than this from 0.
FAR_TURNS = 6.0
_M92 = re.compile(r"\bM92\s+X(-?[\d.]+)(?:\s+Y(-?[\d.]+))?")
DOC = "docs/firmware.md#what-the-handshake-checks"


@dataclass
class FirmwareReport:
    """What the checks found: ``problems`` maps each Marlin option to set to why."""

    name: str
    dialect: str
    problems: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def refuse(self) -> None:
        """Raise :class:`FirmwareUnsupported` naming every option, if any check failed."""
        if self.ok:
            return
        lines = [f"  - {option}: {why}" for option, why in self.problems.items()]
        fix = (
            "Set these in Marlin's configuration (firmware/marlin/config.ini does) and flash it "
            "again"
            if self.dialect == "marlin"
            else "Fix this first"
        )
        raise FirmwareUnsupported(
            f"the firmware ({self.name}) lacks what partrig needs to move the turntable "
            f"safely, so nothing was moved. {fix} ({DOC}):\n" + "\n".join(lines),
            tuple(self.problems),
        )


def check_firmware(
    link: CommandLink, turntable: TurntableConfig, lights: LightsConfig
) -> FirmwareReport:
    """Run every check on an open link; raise :class:`FirmwareUnsupported` if one fails.

    Replies carry no checksum, so a firmware that fails is asked everything once more (M115
    included) and judged on the second answers: a corrupted line cannot refuse a good board.
    """
    info = link.firmware if link.firmware is not None else _fresh_info(link)
    report = _run_checks(link, info, turntable, lights)
    if not report.ok:
        log.info("firmware check failed (%s); asking once more", ", ".join(report.problems))
        report = _run_checks(link, _fresh_info(link), turntable, lights)
    for note in report.notes:
        log.info("firmware check: %s", note)
    report.refuse()
    log.info("firmware check passed: %s", report.name)
    return report


def _fresh_info(link: CommandLink) -> FirmwareInfo:
    try:
        return parse_m115(link.send("M115"))
    except GcodeError:
        if link.firmware is None:
            raise
        return link.firmware


def _run_checks(
    link: CommandLink, info: FirmwareInfo, turntable: TurntableConfig, lights: LightsConfig
) -> FirmwareReport:
    report = FirmwareReport(name=f"{info.name} {info.version}".strip(), dialect=info.dialect)
    if info.capabilities.get("EMERGENCY_PARSER", 0) != 1:
        report.problems["EMERGENCY_PARSER"] = (
            "M115 reports no emergency parser (Cap:EMERGENCY_PARSER:1 missing): an e-stop "
            "would wait behind the move it should stop"
        )
    position = _position(link)
    _check_home(report, position, turntable)
    if info.dialect == "marlin":
        spu = _check_settings(link, report, position)
        _check_light_pin(link, report, lights)
        if report.ok and spu is not None:
            _check_min_steps(link, report, position, spu[1])
    return report


# --- the checks --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Position:
    x: float
    count_x: int
    y: float | None
    count_y: int | None


def _position(link: CommandLink) -> _Position:
    for _attempt in range(2):  # NOTE: replies carry no checksum: ask once more
        for line in link.send("M114"):
            reply = parse_reply(line)
            if reply.kind == "position" and "X" in reply.count:
                return _Position(
                    reply.position["X"],
                    reply.count["X"],
                    reply.position.get("Y"),
                    reply.count.get("Y"),
                )
    raise FirmwareUnsupported(
        "the firmware's M114 report has no 'Count X:'; partrig verifies every move with it "
        "(check that the board runs partrig's firmware or Marlin 2.1)"
    )


def _check_home(report: FirmwareReport, pos: _Position, turntable: TurntableConfig) -> None:
    turns = abs(pos.count_x) / (360.0 * turntable.steps_per_degree)
    if turns <= FAR_TURNS:
        return
    where = (
        f"the board says it is at X:{pos.x:.2f} (Count X:{pos.count_x}, {turns:.0f} turns from "
        "0), so partrig's first move would travel that far"
    )
    if report.dialect == "marlin":
        report.problems["MANUAL_X_HOME_POS"] = (
            f"{where}. Marlin starts at its home position: set MANUAL_X_HOME_POS 0 "
            "(X_MIN_POS -100000 alone makes it -100000); if another program left it there, "
            "reset the board"
        )
    else:
        report.problems["reset the board"] = (
            f"{where}; another program left it there: reset the board (it starts at 0)"
        )


def _check_settings(
    link: CommandLink, report: FirmwareReport, pos: _Position
) -> tuple[float, float | None] | None:
    """M503: steps per unit, and the M206 line that exists only with workspace offsets."""
    try:
        lines = link.send("M503")
    except GcodeError:
        report.problems["DISABLE_M503"] = (
            "M503 is unknown: partrig reads the firmware's settings with it; remove DISABLE_M503"
        )
        return None
    text = "\n".join(lines)
    if re.search(r"\bM206\b", text):
        report.problems["NO_WORKSPACE_OFFSETS"] = (
            "M503 reports M206 home offsets, so workspace offsets are compiled in: G92 X0 "
            "would only shift the reported X while Count keeps the old position, and every "
            "verified move would fail"
        )
    m = _M92.search(text)
    if m is None:
        report.notes.append("M503 reported no M92 line; steps per unit unknown")
        return None
    spu_x = float(m.group(1))
    spu_y = float(m.group(2)) if m.group(2) else None
    # NOTE: without workspace offsets X * spu is the count; X and spu are printed with 2
    # decimals, so allow their rounding (and one step for the planner's own).
    tolerance = 0.005 * (spu_x + abs(pos.x)) + 1.0
    shifted = abs(pos.count_x - pos.x * spu_x) > tolerance
    if shifted and "NO_WORKSPACE_OFFSETS" not in report.problems:
        report.problems["NO_WORKSPACE_OFFSETS"] = (
            f"M114 reports X:{pos.x:.2f} but Count X:{pos.count_x} (at {spu_x:g} steps/unit): "
            "the reported position is shifted from the steps, as with workspace offsets"
        )
    return spu_x, spu_y


def _check_light_pin(link: CommandLink, report: FirmwareReport, lights: LightsConfig) -> None:
    if lights.pin == "D9":
        return  # NOTE: D9 is Marlin's fan: M106/M107, always compiled in
    pin = lights.pin.lstrip("D")
    try:
        link.send(f"M42 I1 P{pin} S0")
    except GcodeError:
        report.problems["DIRECT_PIN_CONTROL"] = (
            f"M42 is unknown, and the lights are on {lights.pin} (lights.pin): enable "
            "DIRECT_PIN_CONTROL, or move the lights to D9 (the fan output, M106)"
        )


def _check_min_steps(
    link: CommandLink, report: FirmwareReport, pos: _Position, spu_y: float | None
) -> None:
    """One step on Y, there and back: dropped means MIN_STEPS_PER_SEGMENT > 1."""
    if pos.count_y is None or spu_y is None or spu_y <= 0:
        report.notes.append("no Y axis to probe MIN_STEPS_PER_SEGMENT with; not checked")
        return
    step = _one_step(spu_y)
    try:
        link.send("G91")
        link.send(f"G1 Y{step}")
        link.send("M400")
        after = _position(link)
        link.send(f"G1 Y-{step}")
        link.send("M400")
    finally:
        link.send("G90")
    if after.count_y == pos.count_y:
        report.problems["MIN_STEPS_PER_SEGMENT"] = (
            "a one-step move was dropped (Count did not change): Marlin drops moves under "
            "MIN_STEPS_PER_SEGMENT steps, and partrig's small moves would fail; set it to 1"
        )


def _one_step(spu: float) -> str:
    for digits in (5, 7, 9):
        text = f"{1.0 / spu:.{digits}f}"
        if round(float(text) * spu) == 1:
            return text
    return repr(1.0 / spu)
