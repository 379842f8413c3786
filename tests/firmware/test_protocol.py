"""The firmware's line protocol, checked byte for byte against Marlin's replies."""

from __future__ import annotations

import time
from decimal import ROUND_HALF_UP, Decimal

import pytest

pytestmark = pytest.mark.firmware

SPU = "8.888889"


def steps_for(x: str, spu: str = SPU) -> int:
    """round(X * steps_per_unit) in exact decimal arithmetic (what the firmware must do)."""
    return int((Decimal(x) * Decimal(spu)).to_integral_value(rounding=ROUND_HALF_UP))


def test_boot_prints_start_then_a_banner(sim, raw):
    sim.reset()
    lines = [raw.port.readline().decode().strip() for _ in range(2)]
    assert lines[0] == "start"
    assert lines[1].startswith("echo:partrig")


def test_handshake_answers_advanced_ok_with_line_number_and_free_slots(raw):
    assert raw.handshake() == ["ok N0 P7 B3"]
    assert raw.send("G90") == ["ok N1 P7 B3"]


def test_m115_reports_name_and_the_capabilities_the_host_needs(raw):
    lines = raw.send("M115")
    assert lines[0].startswith("FIRMWARE_NAME:partrig ")
    for cap in ("ADVANCED_OK", "EMERGENCY_PARSER", "X_MIN_ENDSTOP"):
        assert f"Cap:{cap}:1" in lines


def test_bad_checksum_gets_marlins_error_resend_and_ok(raw):
    raw.send("G90")  # N1
    raw.write_line("N2 G90*0")
    assert raw.until_ok() == [
        "Error:checksum mismatch, Last Line: 1",
        "Resend: 2",
        "ok P7 B4",
    ]
    assert raw.send("G90") == ["ok N2 P7 B3"]  # the same number again is accepted


def test_wrong_line_number_and_missing_checksum_are_refused(raw):
    raw.write_line(raw.framed(5, "G90"))
    assert raw.until_ok()[:2] == [
        "Error:Line Number is not Last Line Number+1, Last Line: 0",
        "Resend: 1",
    ]
    raw.write_line("N1 G90")
    assert raw.until_ok()[:2] == ["Error:No Checksum with line number, Last Line: 0", "Resend: 1"]


def test_the_receive_buffer_is_flushed_after_a_bad_line(raw):
    # two lines in one write: the first is corrupt, so the second must be discarded too
    raw.write_line("N1 G90*1\n" + raw.framed(2, "M114"))
    assert raw.until_ok()[1] == "Resend: 1"
    raw.port.timeout = 0.5
    assert raw.port.readline() == b""  # nothing ran: no position report, no second ok


def test_a_repeated_line_number_is_dropped_silently(raw):
    raw.send("G90")  # N1
    raw.write_line(raw.framed(1, "G91"))  # a duplicate, e.g. after a lost ok
    raw.port.timeout = 0.5
    assert raw.port.readline() == b""
    raw.port.timeout = 10
    raw.n = 1
    assert raw.send("M114")[0].startswith("X:0.00")


def test_unknown_commands_are_echoed_then_acknowledged(raw):
    assert raw.send("M9999") == ['echo:Unknown command: "M9999"', "ok N1 P7 B3"]
    assert raw.send("FOO") == ['echo:Unknown command: "FOO"', "ok N2 P7 B3"]


def test_m105_answers_a_zero_temperature_so_host_probes_work(raw):
    assert raw.send("M105") == ["ok T:0.00 /0.00"]


def test_m114_reports_commanded_position_and_count_in_steps(sim, raw):
    raw.send(f"M92 X{SPU}")
    raw.send("G1 X90 F21600")
    raw.send("M400")
    assert raw.send("M114")[0] == "X:90.00 Y:0.00 Z:0.00 E:0.00 Count X:800 Y:0 Z:0"
    assert sim.steps() == 800


def test_targets_are_exact_steps_far_from_zero_with_no_drift(sim, raw):
    raw.send(f"M92 X{SPU}")
    raw.send("M203 X2000")
    raw.send("M201 X100000")
    raw.send("G92 X99990")
    raw.send("G1 X100000.0625 F120000")
    raw.send("M400")
    expected = steps_for("100000.0625") - steps_for("99990")
    assert sim.steps() == expected
    # 240 relative moves of 0.375 units: a float accumulator would drift off the step
    raw.send("G92 X0")
    raw.send("G91")
    start = sim.steps()
    for _ in range(240):
        raw.send("G1 X0.375")
    raw.send("M400")
    assert sim.steps() - start == steps_for("90")
    report = raw.send("M114")[0]
    assert report.startswith("X:90.00 ") and f"Count X:{steps_for('90')} " in report


def test_m119_reports_the_x_min_endstop(sim, raw):
    assert raw.send("M119")[:2] == ["Reporting endstop status", "x_min: open"]
    sim.endstop(True)
    assert raw.send("M119")[1] == "x_min: TRIGGERED"


def test_m42_and_m106_drive_the_mosfet_outputs_with_pwm(sim, raw):
    raw.send("M42 P9 S128")
    assert sim.light(9) == 128
    raw.send("M42 P8 S255")
    raw.send("M42 P10 S3")
    assert (sim.light(8), sim.light(10)) == (255, 3)
    raw.send("M107")
    assert sim.light(9) == 0
    raw.send("M106")
    assert sim.light(9) == 255
    assert raw.send("M42 P13 S10")[0].startswith("echo:M42 P must be 8, 9 or 10")


def test_m17_and_m18_switch_the_driver_enable_pin(sim, raw):
    assert not sim.motor_enabled()
    raw.send("M17")
    assert sim.motor_enabled()
    raw.send("M18")
    assert not sim.motor_enabled()


def test_blocking_commands_send_busy_keepalives(raw):
    raw.send("M113 S1")
    lines = raw.send("G4 P2300")
    assert lines.count("echo:busy: processing") == 2
    assert lines[-1] == "ok N2 P7 B3"


def test_m112_halts_at_once_even_behind_a_blocking_move(sim, raw):
    raw.send("M203 X90")
    raw.send("G1 X3600")
    raw.n += 1
    raw.write_line(raw.framed(raw.n, "M400"))  # the queue is now blocked on M400
    time.sleep(0.3)
    raw.write_line("M112")
    line = raw.port.readline().decode().strip()
    while line == "echo:busy: processing":  # a keepalive may already be on the wire
        line = raw.port.readline().decode().strip()
    assert line == "Error:Printer halted. kill() called!"
    stopped = sim.steps()
    assert 0 < stopped < steps_for("3600")
    assert not sim.motor_enabled()
    raw.write_line(raw.framed(raw.n + 1, "M114"))
    raw.port.timeout = 0.5
    assert raw.port.readline() == b""  # dead until reset
    assert sim.steps() == stopped
    sim.reset()
    raw.port.timeout = 10
    assert raw.port.readline().decode().strip() == "start"


def test_m410_stops_at_once_and_keeps_the_position(sim, raw):
    raw.send("M203 X90")
    raw.send("G1 X3600")
    time.sleep(0.3)
    raw.write_line("M410")
    assert raw.until_ok()[-1].startswith("ok")
    report = raw.send("M114")[0]
    count = int(report.split("Count X:")[1].split()[0])
    assert 0 < count < steps_for("3600")
    assert count == sim.steps()
    assert sim.motor_enabled()  # quick stop keeps the motor holding
