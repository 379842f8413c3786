"""SimFirmware speaks the Marlin line protocol over a real pty, faults included.

These tests use a bare pyserial client, not partrig's link, so they pin down the wire format the
link is written against.
"""

from __future__ import annotations

import os
import time

import pytest
import serial
from conftest import framed as framed_line

from rig.motion import duration


def test_m114_reports_commanded_x_and_the_count_in_steps_after_m400(host, fw):
    host.send("M92 X10")
    host.send("G1 X90 F21600")
    host.send("M400")
    report = host.send("M114")
    assert report[0] == "X:90.00 Y:0.00 Z:0.00 E:0.00 Count X:900 Y:0 Z:0"
    assert fw.steps_done == 900
    assert fw.actual_angle_deg() == pytest.approx(90)


def test_mid_move_the_count_lags_the_commanded_position(host, fw):
    host.send("G1 X360 F21600")
    report = host.send("M114")[0]
    assert report.startswith("X:360.00") and report.endswith("Count X:0 Y:0 Z:0")
    fw.clock.advance(0.5)  # half a second into a 1.5 s move: 90 degrees done
    assert fw.actual_angle_deg() == pytest.approx(90, abs=0.2)


def test_oks_are_advanced_with_line_number_planner_and_buffer_slots(host):
    assert host.send("G90")[-1] == "ok N1 P16 B4"
    assert host.send("G1 X10")[-1] == "ok N2 P15 B4"


def test_a_bad_checksum_gets_error_resend_and_ok(host):
    host.serial.write(b"N1 M114*0\n")
    assert host.until_ok() == [
        "Error:checksum mismatch, Last Line: 0",
        "Resend: 1",
        "ok P16 B4",
    ]


def test_a_skipped_line_number_gets_a_resend_for_the_expected_one(host, frame):
    host.serial.write(frame(3, "M114"))
    assert host.until_ok()[:2] == [
        "Error:Line Number is not Last Line Number+1, Last Line: 0",
        "Resend: 1",
    ]


def test_a_numbered_line_without_checksum_is_refused(host):
    host.serial.write(b"N1 M114\n")
    assert host.until_ok()[0] == "Error:No Checksum with line number, Last Line: 0"


def test_our_dialect_refuses_a_checksum_without_a_line_number(host, fw, frame):
    # the leading "N" was corrupted on the wire: the command must not run unnumbered
    corrupted = frame(1, "G1 X90").replace(b"N", b"O", 1)
    host.serial.write(corrupted)
    assert host.until_ok()[:2] == [
        "Error:No Line Number with checksum, Last Line: 0",
        "Resend: 1",
    ]
    assert host.send("M114")[0].startswith("X:0.00")


def test_a_repeat_of_the_last_accepted_line_is_dropped_silently(host, frame):
    host.send("G90")
    host.serial.write(frame(1, "G90"))
    host.serial.timeout = 0.3
    assert host.line() == ""


def test_unknown_commands_are_echoed_then_acknowledged(host):
    assert host.send("M9876") == ['echo:Unknown command: "M9876"', "ok N1 P16 B4"]


def test_m400_sends_busy_keepalives_at_the_m113_interval(host):
    host.send("M113 S1")
    host.send("G1 X3600 F21600")  # 10.5 s
    lines = host.send("M400")
    assert lines.count("echo:busy: processing") == 10


def test_m112_halts_the_board_until_a_reset(host, fw, frame):
    host.send("G1 X3600 F21600")
    host.serial.write(b"M112\n")
    assert host.line() == "Error:Printer halted. kill() called!"
    host.serial.write(frame(2, "M114"))
    host.serial.timeout = 0.3
    assert host.line() == ""
    fw.reset()
    assert host.line() == "start"


def test_m410_stops_the_motor_and_keeps_the_position(host, fw):
    host.send("G1 X3600 F21600")
    fw.clock.advance(1.0)
    host.serial.write(b"M410\n")
    host.until_ok()
    lines = host.send("M114")
    count = int(lines[0].split("Count X:")[1].split()[0])
    assert count == fw.steps_done and 0 < count < 3600 * 8.8
    assert lines[0].startswith(f"X:{count / (200 * 16 / 360):.2f}")


def test_a_reset_prints_start_loses_position_and_restarts_the_line_counter(host, fw):
    host.send("G1 X90")
    host.send("M400")
    fw.reset()
    assert host.line() == "start"
    host.line()
    host.n = 0
    assert host.send("M114")[0].endswith("Count X:0 Y:0 Z:0")
    assert fw.actual_angle_deg() == pytest.approx(90, abs=0.01)  # the motor did not move


def test_bytes_sent_while_booting_are_lost(make_fw, raw_host, frame):
    fw = make_fw(time_scale=1)
    h = raw_host(fw.port)
    fw.reset()
    h.serial.write(frame(1, "M114"))  # during the 0.3 s boot
    assert h.line() == "start"
    h.line()
    h.serial.timeout = 0.3
    assert h.line() == ""


def test_marlin_identifies_itself_and_guards_protected_pins(make_fw, raw_host):
    fw = make_fw("marlin")
    assert fw.wait_ready()
    h = raw_host(fw.port)
    h.handshake()
    assert h.send("M115")[0].startswith("FIRMWARE_NAME:Marlin")
    assert h.send("M42 P9 S255")[0] == "Error:Protected Pin"
    assert fw.light_level() == 0
    h.send("M42 I1 P9 S255")
    assert fw.light_level() == 1
    h.send("M107")
    fw.clock.advance(0.1)  # Marlin writes the fan PWM at its next 10 Hz update
    assert fw.light_level() == 0
    h.send("M106 S128")
    fw.clock.advance(0.1)
    assert fw.light_level() == pytest.approx(128 / 255)


def test_our_dialect_homes_on_the_x_min_endstop(host, fw):
    host.send("G1 X100")
    host.send("M400")
    host.send("G92 X0")  # the firmware now believes 0; physically it is at 100 degrees
    assert host.send("M119")[1] == "x_min: open"
    host.send("G28 X")
    assert host.send("M119")[1] == "x_min: TRIGGERED"
    assert fw.actual_angle_deg() == pytest.approx(0, abs=0.01)
    assert host.send("M114")[0].endswith("Count X:0 Y:0 Z:0")


def test_unplug_makes_the_port_vanish_and_replug_brings_it_back_with_the_same_path(
    host, fw, raw_host
):
    fw.unplug()
    assert not os.path.exists(fw.port)
    with pytest.raises(serial.SerialException):
        host.serial.readline()
        host.serial.write(b"M114\n")
        host.serial.readline()
    fw.replug()
    h2 = raw_host(fw.port)
    h2.handshake()
    assert h2.send("M114")[0].startswith("X:0.00")


def test_faults_are_injected_from_a_seeded_rng_and_counted(make_fw, raw_host, frame):
    fw = make_fw(corrupt_to_firmware=0.3, drop_ok=0.3, seed=7)
    assert fw.wait_ready()
    h = raw_host(fw.port)
    h.serial.timeout = 0.05
    for n in range(1, 40):
        h.serial.write(frame(n, "G1 X1"))
        while h.line():
            pass
    assert fw.stats["corrupt_in"] > 0 and fw.stats["dropped_ok"] > 0


# --- Marlin's build options, as measured on Marlin 2.1 in simavr (tracker issue 10) ---------


def _marlin(make_fw, raw_host, profile: str = "marlin", **options):
    fw = make_fw(profile, marlin=options)
    assert fw.wait_ready()
    h = raw_host(fw.port)
    h.handshake()
    return fw, h


def _count_x(report: str) -> int:
    return int(report.split("Count X:")[1].split()[0])


def test_marlin_runs_a_checksum_without_a_line_number(make_fw, raw_host):
    _fw, h = _marlin(make_fw, raw_host)
    h.serial.write(b"M114*121\n")
    assert h.until_ok() == ["X:0.00 Y:0.00 Z:0.00 Count X:0 Y:0 Z:0", "ok P16 B4"]
    h.serial.write(b"M114*7\n")  # not even checked
    assert h.until_ok()[0].startswith("X:0.00")


def test_marlin_g92_with_workspace_offsets_only_shifts_the_reported_x(make_fw, raw_host):
    _fw, h = _marlin(make_fw, raw_host, no_workspace_offsets=False)
    h.send("G1 X90")
    h.send("M400")
    h.send("G92 X0")
    assert h.send("M114")[0] == "X:0.00 Y:0.00 Z:0.00 Count X:800 Y:0 Z:0"
    h.send("G1 X10")  # ten units further in the shifted space
    h.send("M400")
    assert _count_x(h.send("M114")[0]) == 889
    assert "echo:  M206 X0.00 Y0.00 Z0.00" in h.send("M503")


def test_marlin_built_with_config_ini_g92_moves_the_count_too(make_fw, raw_host):
    _fw, h = _marlin(make_fw, raw_host)
    h.send("G1 X90")
    h.send("M400")
    h.send("G92 X0")
    assert h.send("M114")[0] == "X:0.00 Y:0.00 Z:0.00 Count X:0 Y:0 Z:0"
    assert not any("M206" in line for line in h.send("M503"))


def test_marlin_drops_moves_under_min_steps_per_segment(make_fw, raw_host):
    fw, h = _marlin(make_fw, raw_host, "marlin-stock")
    h.send("G1 X0.5")  # 4 steps < 6
    h.send("M400")
    assert h.send("M114")[0] == "X:0.50 Y:0.00 Z:0.00 Count X:0 Y:0 Z:0"
    assert fw.steps_done == 0
    h.send("G1 X1")  # 9 steps from the planner's position: runs, and catches up
    h.send("M400")
    assert _count_x(h.send("M114")[0]) == 9


def test_marlin_boots_and_homes_at_its_home_position(make_fw, raw_host):
    fw, h = _marlin(make_fw, raw_host, home_pos=-100000)
    assert h.send("M114")[0].startswith("X:-100000.00 Y:0.00 Z:0.00 Count X:-888889")
    assert fw.steps_done == 0  # the motor has not moved: only the belief is far away
    fw.reset()
    assert h.line() == "start"
    h.serial.reset_input_buffer()
    h.handshake()
    assert h.send("M114")[0].startswith("X:-100000.00")


def test_marlin_without_direct_pin_control_does_not_know_m42(make_fw, raw_host):
    _fw, h = _marlin(make_fw, raw_host, direct_pin_control=False)
    assert h.send("M42 I1 P8 S255")[0] == 'echo:Unknown command: "M42 I1 P8 S255"'


def test_marlin_fan_pwm_lands_at_the_next_10_hz_update(make_fw, raw_host):
    fw, h = _marlin(make_fw, raw_host)
    fw.clock.advance(0.03)
    h.send("M106 S200")
    assert fw.light_level() == 0  # the ok came, the pin has not changed yet
    fw.clock.advance(0.069)
    assert fw.light_level() == 0
    fw.clock.advance(0.002)  # t = 0.101 > the update at 0.1 s
    assert fw.light_level() == pytest.approx(200 / 255)


def test_stock_marlin_reports_no_emergency_parser_and_plain_oks(make_fw, raw_host):
    _fw, h = _marlin(make_fw, raw_host, "marlin-stock")
    lines = h.send("M115")
    assert lines[0].startswith("FIRMWARE_NAME:Marlin bugfix-2.1.x")
    assert "Cap:EMERGENCY_PARSER:0" in lines and lines[-1] == "ok"
    assert len(lines) > 30  # the long report: one Cap: line per feature


def test_stock_marlin_acts_on_m112_only_when_its_loop_reads_it(make_fw, raw_host):
    fw = make_fw("marlin-stock", time_scale=1)
    assert fw.wait_ready()
    h = raw_host(fw.port)
    h.handshake()
    h.send("G1 X720 F21600")  # 2.5 s: a wide margin for a loaded machine
    h.n += 1
    h.serial.write(framed_line(h.n, "M400"))
    time.sleep(0.2)  # M400 is now blocking Marlin's main loop
    h.serial.write(b"M112\n")
    time.sleep(0.3)
    assert not fw.halted  # no emergency parser: M112 waits behind the blocking M400
    h.serial.timeout = 10
    assert set(h.until_ok()) == {"echo:busy: processing", "ok"}  # M400 ends first
    assert h.line() == "Error:Printer halted. kill() called!"
    assert fw.halted


def test_marlin_moves_start_after_the_first_block_delay(make_fw, raw_host):
    fw, h = _marlin(make_fw, raw_host, move_overhead_ms=55)
    t0 = fw.clock.now()
    h.send("G1 X10 F21600")
    h.send("M400")
    predicted = duration(10, 360, 720)
    assert fw.clock.now() - t0 == pytest.approx(predicted + 0.055, abs=1e-3)  # whole steps


def test_marlin_counts_the_planners_position_not_the_live_steps(make_fw, raw_host):
    # Marlin 2.1's M114 reports planner.position: mid-move Count is already the target.
    fw, h = _marlin(make_fw, raw_host)
    h.send("G1 X360 F21600")
    assert h.send("M114")[0] == "X:360.00 Y:0.00 Z:0.00 Count X:3200 Y:0 Z:0"
    assert fw.steps_done == 0
