"""Which Marlin the simulator plays: a profile of build options, overridable one by one.

Why profiles: partrig must behave on the Marlin a user really builds.  ``marlin`` is Marlin
2.1 built with ``firmware/marlin/config.ini`` (every option partrig needs is on);
``marlin-stock`` is Marlin's own defaults, which is what a user gets when the option list does
not reach the headers (tracker issue 10, item 1).  ``[simulator.marlin]`` keys then turn single
options, so each of the handshake's refusals is tested against exactly one wrong option.

Each field is named after the Marlin option it models; the behaviours are the ones measured on
real Marlin (bugfix-2.1.x) in simavr, listed in docs/simulator.md.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rig.config import MarlinOptions

# NOTE: Marlin writes the fan PWM from the planner's fan sync, ten times a second, so an
# M106 lands up to 100 ms after its ok.
FAN_UPDATE_S = 0.1


@dataclass(frozen=True)
class MarlinBuild:
    """The options of one Marlin build, as far as partrig can tell them apart."""

    emergency_parser: bool = True
    advanced_ok: bool = True
    no_workspace_offsets: bool = True
    min_steps_per_segment: int = 1
    direct_pin_control: bool = True
    home_pos: float = 0.0
    # NOTE: measured 50-60 ms per move on Marlin 2.1: the planner holds the first block of a
    # burst back (BLOCK_DELAY_FOR_1ST_MOVE) hoping for more to plan with.
    move_overhead_ms: float = 55.0


#: Marlin built with firmware/marlin/config.ini: everything partrig needs is on.
SHIPPED = MarlinBuild()
#: Marlin's Configuration.h / Configuration_adv.h defaults.
STOCK = MarlinBuild(
    emergency_parser=False,
    advanced_ok=False,
    no_workspace_offsets=False,
    min_steps_per_segment=6,
    direct_pin_control=False,
    home_pos=0.0,
)
#: Our own firmware does none of Marlin's surprises.
PARTRIG = MarlinBuild(move_overhead_ms=0.0)

PROFILES = {"marlin": SHIPPED, "marlin-stock": STOCK, "partrig": PARTRIG}


def resolve(profile: str, overrides: MarlinOptions | None = None) -> MarlinBuild:
    """The build ``profile`` names, with every override that is set applied on top."""
    try:
        build = PROFILES[profile]
    except KeyError:
        raise ValueError(
            f"simulator.firmware must be one of {', '.join(PROFILES)} (got {profile!r})"
        ) from None
    if overrides is None:
        return build
    changes = {
        f.name: getattr(overrides, f.name)
        for f in fields(MarlinBuild)
        if getattr(overrides, f.name, None) is not None
    }
    return replace(build, **changes)


# The Cap: lines of Marlin 2.1's M115 (gcode/host/M115.cpp), in its order, with what the
# shipped build (upstream 3c929ab with config.ini, in simavr) reports; EMERGENCY_PARSER follows
# the build.  M503's lines below are that build's too.
_CAPS = (
    ("SERIAL_XON_XOFF", 0),
    ("BINARY_FILE_TRANSFER", 0),
    ("EEPROM", 0),
    ("VOLUMETRIC", 0),
    ("AUTOREPORT_POS", 0),
    ("AUTOREPORT_TEMP", 0),
    ("PROGRESS", 0),
    ("PRINT_JOB", 1),
    ("AUTOLEVEL", 0),
    ("RUNOUT", 0),
    ("Z_PROBE", 0),
    ("LEVELING_DATA", 0),
    ("BUILD_PERCENT", 0),
    ("SOFTWARE_POWER", 0),
    ("TOGGLE_LIGHTS", 0),
    ("CASE_LIGHT_BRIGHTNESS", 0),
    ("EMERGENCY_PARSER", -1),
    ("HOST_ACTION_COMMANDS", 0),
    ("PROMPT_SUPPORT", 0),
    ("SDCARD", 0),
    ("REPEAT", 0),
    ("SD_WRITE", 0),
    ("AUTOREPORT_SD_STATUS", 0),
    ("LONG_FILENAME", 0),
    ("LFN_WRITE", 0),
    ("CUSTOM_FIRMWARE_UPLOAD", 0),
    ("EXTENDED_M20", 0),
    ("THERMAL_PROTECTION", 1),
    ("MOTION_MODES", 0),
    ("ARCS", 1),
    ("BABYSTEPPING", 0),
    ("CHAMBER_TEMPERATURE", 0),
    ("COOLER_TEMPERATURE", 0),
    ("MEATPACK", 0),
    ("CONFIG_EXPORT", 0),
)


def m115_lines(build: MarlinBuild, machine: str) -> list[str]:
    """Marlin 2.1's M115 report: one long FIRMWARE_NAME line, then a Cap: line each."""
    head = (
        "FIRMWARE_NAME:Marlin bugfix-2.1.x (Dec  3 2026 07:00:00) "
        "SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin PROTOCOL_VERSION:1.0 "
        f"MACHINE_TYPE:{machine} EXTRUDER_COUNT:0 UUID:cede2a2f-41a2-4748-9b12-c55c62f367ff"
    )
    caps = [
        f"Cap:{name}:{int(build.emergency_parser) if value < 0 else value}" for name, value in _CAPS
    ]
    return [head, *caps]


def m503_lines(
    build: MarlinBuild, spu: tuple[float, float, float], feed: float, accel: float
) -> list[str]:
    """Marlin 2.1's M503 (settings report), as far as partrig reads it.

    The ``M206`` home-offset line exists only when workspace offsets are compiled in
    (``HAS_M206_COMMAND``), which is how the handshake tells ``NO_WORKSPACE_OFFSETS``.
    """
    x, y, z = spu
    lines = [
        "echo:; Linear Units:",
        "echo:  G21 ; (mm)",
        "echo:; Temperature Units:",
        "echo:  M149 C ; Units in Celsius",
        "echo:; Steps per unit:",
        f"echo:  M92 X{x:.2f} Y{y:.2f} Z{z:.2f}",
        "echo:; Max feedrates (units/s):",
        f"echo:  M203 X{feed:.2f} Y5.00 Z5.00",
        "echo:; Max Acceleration (units/s2):",
        f"echo:  M201 X{accel:.2f} Y100.00 Z100.00",
        "echo:; Acceleration (units/s2) (P<print-accel> R<retract-accel> T<travel-accel>):",
        f"echo:  M204 P{accel:.2f} R3000.00 T{accel:.2f}",
        "echo:; Advanced (B<min_segment_time_us> S<min_feedrate> T<min_travel_feedrate>"
        " J<junc_dev>):",
        "echo:  M205 B20000.00 S0.00 T0.00 J0.01",
    ]
    if not build.no_workspace_offsets:
        lines += ["echo:; Home offset:", "echo:  M206 X0.00 Y0.00 Z0.00"]
    return lines
