"""G-code framing, command building and reply parsing: pure functions, no I/O.

Why a separate module: the link (``rig/link.py``), the simulators and the tests all need the
same idea of what a line looks like on the wire, and pure functions are easy to prove with
property tests.  Nothing here touches a port or a clock.

Wire format (Marlin's): a numbered line is ``N<n> <command>*<cs>`` where ``cs`` is the XOR of
every byte before ``*``, in decimal.  Replies carry no checksum, so the parser is defensive:
a reply it cannot place becomes ``kind == "other"`` and never raises.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

from rig.errors import GcodeError

# NOTE: Marlin's MAX_CMD_SIZE is 96 bytes for the whole line including "N<n> " and "*<cs>";
# a longer line is truncated by the firmware and then fails its checksum forever.
MAX_LINE_BYTES = 95
MAX_COMMAND_CHARS = 80

# Commands that may legitimately run for a long time before their "ok" (they block the
# firmware's queue): the link gives them serial.long_command_timeout_s instead of the short one.
LONG_COMMANDS = frozenset(
    {"M400", "G4", "G28", "G29", "M109", "M190", "M191", "M303", "M226", "M0", "M1", "M600"}
)

_CODE_RE = re.compile(r"^[GMT]\d{1,4}(?:\.\d)?$")
_WORD_VALUE_RE = re.compile(r"^[A-Za-z0-9_.:+\-]*$")
_FRAME_RE = re.compile(r"^N(-?\d+) (.*)\*(\d+)$")
_NUMBER_RE = re.compile(r"-?\d+")
_LAST_LINE_RE = re.compile(r"Last Line:\s*(-?\d+)")
_RESEND_RE = re.compile(r"^(?:Resend:|rs)\s*N?(\d+)\s*$")
_AXIS_RE = re.compile(r"([A-Z]):\s*(-?\d+(?:\.\d+)?)")
_KV_RE = re.compile(r"(?:^|\s)([A-Z][A-Z0-9_]*):")

FATAL_MARKERS = ("kill() called", "Printer halted", "Printer stopped")
LINE_ERROR_MARKERS = (
    "checksum mismatch",
    "Line Number is not Last Line Number+1",
    "No Checksum with line number",
    "No Line Number with checksum",
    "Last Line:",
)

ReplyKind = Literal["ok", "resend", "busy", "start", "error", "echo", "position", "other"]


def checksum(text: str) -> int:
    """XOR of every byte of ``text`` (ASCII), as Marlin computes it over ``N<n> <command>``."""
    cs = 0
    for b in text.encode("ascii", "replace"):
        cs ^= b
    return cs


def validate(cmd: str) -> str:
    """Check a raw command line before it is framed; return it stripped.

    Refuses what could smuggle a second command or break the framing: line breaks, ``*``
    (checksum marker), ``;`` (comment), non-ASCII bytes and over-long lines.
    """
    if not isinstance(cmd, str):
        raise GcodeError(f"a G-code command must be text, got {type(cmd).__name__}")
    text = cmd.strip()
    if not text:
        raise GcodeError("empty G-code command")
    for bad, what in (("\n", "a line break"), ("\r", "a line break"), ("*", "'*'"), (";", "';'")):
        if bad in text:
            raise GcodeError(f"G-code command {cmd!r} contains {what}; send one command per call")
    if not text.isascii() or not text.isprintable():
        raise GcodeError(f"G-code command {cmd!r} contains non-printable or non-ASCII characters")
    if len(text) > MAX_COMMAND_CHARS:
        raise GcodeError(
            f"G-code command is {len(text)} characters; the firmware accepts at most "
            f"{MAX_COMMAND_CHARS}"
        )
    return text


def frame(n: int, command: str) -> str:
    """``N<n> <command>*<cs>`` (no line end).  ``command`` must already be valid."""
    body = f"N{n} {command}"
    line = f"{body}*{checksum(body)}"
    if len(line) > MAX_LINE_BYTES:
        raise GcodeError(f"framed line {line!r} exceeds the firmware's {MAX_LINE_BYTES} bytes")
    return line


def unframe(line: str) -> tuple[int, str]:
    """Split a framed line into ``(n, command)``; raise GcodeError if it is not intact."""
    m = _FRAME_RE.match(line.strip())
    if m is None:
        raise GcodeError(f"not a numbered line with a checksum: {line!r}")
    n_text, command, cs_text = m.groups()
    body = f"N{n_text} {command}"
    if checksum(body) != int(cs_text):
        raise GcodeError(f"checksum mismatch in {line!r}: expected {checksum(body)}")
    return int(n_text), command


def _format_value(letter: str, value: object) -> str:
    if value is None or value is True:
        return letter  # a bare flag, e.g. "G28 X"
    if isinstance(value, bool):
        raise GcodeError(f"argument {letter}=False is meaningless; leave the argument out")
    if isinstance(value, int):
        return f"{letter}{value}"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise GcodeError(f"argument {letter} must be a finite number, got {value!r}")
        if abs(value) >= 1e9:
            raise GcodeError(f"argument {letter}={value!r} is out of range for the firmware")
        # NOTE: always 5 decimals: 1/16 microstep of a degree needs 4, and a fixed format
        # makes the commands the link logs easy to compare.
        return f"{letter}{value:.5f}"
    if isinstance(value, str):
        if not _WORD_VALUE_RE.match(value):
            raise GcodeError(
                f"argument {letter}={value!r} may only hold letters, digits and . _ : + -"
            )
        return f"{letter}{value}"
    raise GcodeError(f"argument {letter} has unsupported type {type(value).__name__}")


def command(code: str, **args: object) -> str:
    """Build one G-code command, e.g. ``command("G1", X=90.0, F=21600)`` -> ``G1 X90.00000 F21600``.

    Arguments are single upper-case letters; values are finite numbers, ``None``/``True`` for
    a bare flag, or a plain word.  Anything that could inject a second command is refused.
    """
    if not isinstance(code, str) or not _CODE_RE.match(code):
        raise GcodeError(f"G-code {code!r} is not a command code like G1 or M114")
    words = [code]
    for letter, value in args.items():
        if len(letter) != 1 or not ("A" <= letter <= "Z"):
            raise GcodeError(
                f"unknown G-code argument letter {letter!r}; use a single upper-case letter"
            )
        words.append(_format_value(letter, value))
    return validate(" ".join(words))


def code_of(cmd: str) -> str:
    """The command code (``G1``, ``M400``) of a command line, upper-cased."""
    head = cmd.strip().split(maxsplit=1)
    return head[0].upper() if head else ""


def is_long(cmd: str) -> bool:
    """Whether ``cmd`` blocks the firmware for a long time before its ``ok``."""
    return code_of(cmd) in LONG_COMMANDS


@dataclass(frozen=True)
class Reply:
    """One classified line from the firmware.

    ``n`` is the line number an ``ok N<n>`` acknowledges, the line a resend asks for, or the
    ``Last Line`` an error names (then the firmware wants ``n + 1``).
    """

    kind: ReplyKind
    text: str
    n: int | None = None
    planner_free: int | None = None
    buffer_free: int | None = None
    fatal: bool = False
    line_error: bool = False
    unknown_command: bool = False
    position: dict[str, float] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)


def _int_after(token: str, prefix: str) -> int | None:
    if token.startswith(prefix) and len(token) > len(prefix):
        rest = token[len(prefix) :]
        if _NUMBER_RE.fullmatch(rest):
            return int(rest)
    return None


def _parse_ok(text: str) -> Reply:
    n = p = b = None
    for token in text.split()[1:]:
        if (v := _int_after(token, "N")) is not None:
            n = v
        elif (v := _int_after(token, "P")) is not None:
            p = v
        elif (v := _int_after(token, "B")) is not None:
            b = v
    return Reply("ok", text, n=n, planner_free=p, buffer_free=b)


def _parse_position(text: str) -> Reply | None:
    before, sep, after = text.partition("Count")
    pos = {k: float(v) for k, v in _AXIS_RE.findall(before)}
    if "X" not in pos:
        return None
    count = {k: int(float(v)) for k, v in _AXIS_RE.findall(after)} if sep else {}
    return Reply("position", text, position=pos, count=count)


def parse_reply(line: str) -> Reply:
    """Classify one line the firmware printed.  Never raises: garbage is ``kind == "other"``."""
    text = line.strip()
    if text == "ok" or text.startswith("ok "):
        return _parse_ok(text)
    if text.startswith(("Resend:", "rs ")):
        m = _RESEND_RE.match(text)
        return Reply("resend", text, n=int(m.group(1))) if m else Reply("other", text)
    if text == "start":
        return Reply("start", text)
    if text.startswith("Error:") or text.startswith("!!"):
        fatal = any(marker in text for marker in FATAL_MARKERS)
        line_error = not fatal and any(marker in text for marker in LINE_ERROR_MARKERS)
        n = None
        if line_error and (m := _LAST_LINE_RE.search(text)):
            n = int(m.group(1))
        return Reply("error", text, n=n, fatal=fatal, line_error=line_error)
    if text.startswith(("echo:busy:", "busy:")):
        return Reply("busy", text)
    if text.startswith("echo:"):
        return Reply("echo", text, unknown_command="Unknown command" in text)
    if text.startswith("X:") and (pos := _parse_position(text)) is not None:
        return pos
    return Reply("other", text)


@dataclass(frozen=True)
class FirmwareInfo:
    """What M115 reported: ``name`` (``partrig`` or ``Marlin``), ``version``, capabilities."""

    name: str
    version: str
    capabilities: dict[str, int] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def dialect(self) -> Literal["partrig", "marlin"]:
        return "partrig" if self.name.lower().startswith("partrig") else "marlin"

    @property
    def advanced_ok(self) -> bool:
        return self.capabilities.get("ADVANCED_OK", 0) == 1


def _split_fields(text: str) -> dict[str, str]:
    """``KEY:value KEY2:value two`` -> dict, where values may contain spaces."""
    marks = [(m.start(1), m.end(), m.group(1)) for m in _KV_RE.finditer(text)]
    out: dict[str, str] = {}
    for i, (_start, value_start, key) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else len(text)
        out[key] = text[value_start:end].strip()
    return out


def parse_m115(lines: list[str]) -> FirmwareInfo:
    """Parse M115's report (``FIRMWARE_NAME:... `` and ``Cap:NAME:0|1`` lines)."""
    fields: dict[str, str] = {}
    caps: dict[str, int] = {}
    for raw in lines:
        text = raw.strip()
        if text.startswith("echo:"):
            text = text[5:].strip()
        if text.startswith("Cap:"):
            name, _, value = text[4:].partition(":")
            if name and value.strip().lstrip("-").isdigit():
                caps[name.strip()] = int(value.strip())
        elif "FIRMWARE_NAME:" in text:
            fields.update(_split_fields(text[text.index("FIRMWARE_NAME:") :]))
    full = fields.get("FIRMWARE_NAME", "")
    if not full:
        raise GcodeError(f"M115 reply has no FIRMWARE_NAME: {lines!r}")
    name, _, version = full.partition(" ")
    return FirmwareInfo(name=name, version=version.strip(), capabilities=caps, fields=fields)
