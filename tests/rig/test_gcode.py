"""Framing, checksums, command building and reply parsing (pure functions)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rig import gcode
from rig.errors import GcodeError

# printable ASCII commands without the characters the framing reserves
commands = (
    st.text(
        alphabet=st.characters(min_codepoint=32, max_codepoint=126, blacklist_characters="*;"),
        min_size=1,
        max_size=60,
    )
    .map(str.strip)
    .filter(bool)
)
line_numbers = st.integers(min_value=0, max_value=99999)


@given(line_numbers, commands)
def test_frame_then_unframe_gives_back_number_and_command(n, cmd):
    assert gcode.unframe(gcode.frame(n, cmd)) == (n, cmd)


@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=80))
def test_checksum_is_the_xor_of_all_bytes(text):
    expected = 0
    for ch in text:
        expected ^= ord(ch)
    assert gcode.checksum(text) == expected


@given(line_numbers, commands, st.data())
def test_any_single_byte_corruption_is_detected_or_changes_the_line_number(n, cmd, data):
    line = gcode.frame(n, cmd)
    i = data.draw(st.integers(0, len(line) - 1), label="index")
    new = data.draw(st.integers(32, 126).filter(lambda c: c != ord(line[i])), label="byte")
    bad = line[:i] + chr(new) + line[i + 1 :]
    try:
        got = gcode.unframe(bad)
    except GcodeError:
        return
    assert got != (n, cmd)
    assert got[0] != n or got[1] != cmd


def test_handshake_line_is_the_well_known_one():
    assert gcode.frame(0, "M110 N0") == "N0 M110 N0*125"


def test_command_formats_floats_with_five_decimals_and_ints_plainly():
    assert gcode.command("G1", X=90.0, F=21600) == "G1 X90.00000 F21600"
    assert gcode.command("G28", X=None) == "G28 X"
    assert gcode.command("M42", P=9, S=255) == "M42 P9 S255"


@pytest.mark.parametrize(
    "code,args",
    [
        ("G1", {"X": math.nan}),
        ("G1", {"X": math.inf}),
        ("G1", {"x1": 3}),
        ("G1", {"XY": 3}),
        ("G1", {"x": 3}),
        ("M117", {"S": "a;b"}),
        ("M117", {"S": "a*b"}),
        ("M117", {"S": "a\nM112"}),
        ("G1 X1", {}),
        ("Q5", {}),
        ("G1", {"X": False}),
    ],
)
def test_command_refuses_injection_and_bad_values(code, args):
    with pytest.raises(GcodeError):
        gcode.command(code, **args)


@pytest.mark.parametrize("raw", ["G1 X1\nM112", "G1 X1*12", "G1 X1 ; comment", "", "M118 é"])
def test_validate_refuses_raw_lines_that_could_smuggle_commands(raw):
    with pytest.raises(GcodeError):
        gcode.validate(raw)


def test_validate_refuses_lines_the_firmware_would_truncate():
    with pytest.raises(GcodeError, match="at most"):
        gcode.validate("M118 " + "A" * 100)


def test_parse_ok_forms():
    assert gcode.parse_reply("ok").kind == "ok"
    r = gcode.parse_reply("ok N12 P15 B3")
    assert (r.kind, r.n, r.planner_free, r.buffer_free) == ("ok", 12, 15, 3)
    assert gcode.parse_reply("ok T:20.0 /0.0").n is None


def test_parse_resend_in_both_spellings():
    assert gcode.parse_reply("Resend: 7").n == 7
    assert gcode.parse_reply("rs 7").n == 7
    assert gcode.parse_reply("rs N7").n == 7
    assert gcode.parse_reply("Resend: x").kind == "other"


def test_parse_errors_are_classified_fatal_or_line_errors():
    cs = gcode.parse_reply("Error:checksum mismatch, Last Line: 4")
    assert (cs.kind, cs.line_error, cs.fatal, cs.n) == ("error", True, False, 4)
    ln = gcode.parse_reply("Error:Line Number is not Last Line Number+1, Last Line: 9")
    assert ln.line_error and ln.n == 9
    for text in ("Error:Printer halted. kill() called!", "Error:Printer stopped due to errors."):
        r = gcode.parse_reply(text)
        assert r.fatal and not r.line_error
    other = gcode.parse_reply("Error:MINTEMP triggered")
    assert not other.fatal and not other.line_error


def test_parse_busy_start_echo_and_unknown_command():
    assert gcode.parse_reply("echo:busy: processing").kind == "busy"
    assert gcode.parse_reply("busy: processing").kind == "busy"
    assert gcode.parse_reply("start").kind == "start"
    unknown = gcode.parse_reply('echo:Unknown command: "M999x"')
    assert unknown.kind == "echo" and unknown.unknown_command


def test_parse_position_with_count():
    r = gcode.parse_reply("X:90.00 Y:0.00 Z:0.00 E:0.00 Count X:800 Y:0 Z:0")
    assert r.kind == "position"
    assert r.position["X"] == 90.0
    assert r.count == {"X": 800, "Y": 0, "Z": 0}


@given(st.text(max_size=120))
def test_parse_reply_never_raises_on_garbage(text):
    r = gcode.parse_reply(text)
    assert r.kind in ("ok", "resend", "busy", "start", "error", "echo", "position", "other")


@given(st.integers(0, 10**6), st.integers(0, 64), st.integers(0, 16))
def test_parse_advanced_ok_round_trips_its_numbers(n, p, b):
    r = gcode.parse_reply(f"ok N{n} P{p} B{b}")
    assert (r.n, r.planner_free, r.buffer_free) == (n, p, b)


def test_parse_m115_marlin_and_partrig_dialects():
    marlin = gcode.parse_m115(
        [
            "FIRMWARE_NAME:Marlin bugfix-2.1.x (Aug  1 2023 12:00:00) "
            "SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin PROTOCOL_VERSION:1.0 "
            "MACHINE_TYPE:3D Printer EXTRUDER_COUNT:0",
            "Cap:SERIAL_XON_XOFF:0",
            "Cap:ADVANCED_OK:1",
        ]
    )
    assert marlin.name == "Marlin" and marlin.dialect == "marlin"
    assert marlin.version.startswith("bugfix-2.1.x")
    assert marlin.advanced_ok and marlin.fields["MACHINE_TYPE"] == "3D Printer"
    ours = gcode.parse_m115(["FIRMWARE_NAME:partrig 0.1 PROTOCOL_VERSION:1.0", "Cap:ADVANCED_OK:0"])
    assert ours.dialect == "partrig" and not ours.advanced_ok


def test_parse_m115_without_a_name_is_an_error():
    with pytest.raises(GcodeError):
        gcode.parse_m115(["Cap:ADVANCED_OK:1"])


def test_long_commands_are_recognised():
    assert gcode.is_long("M400") and gcode.is_long("g4 P100") and not gcode.is_long("G1 X1")
