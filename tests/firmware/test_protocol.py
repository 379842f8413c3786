"""The firmware's line protocol, checked byte for byte against Marlin's replies.

Runs against partrig's firmware or the ELF in PARTRIG_FIRMWARE_ELF (stock Marlin); where the
two differ legitimately the expected line comes from the ``facts`` fixture, and tests of
replies only partrig's firmware gives are marked ``partrig_firmware``.
"""

from __future__ import annotations

import time
from decimal import ROUND_HALF_UP, Decimal

import pytest

pytestmark = pytest.mark.firmware

SPU = "8.888889"


def steps_for(x: str, spu: str = SPU) -> int:
    """round(X * steps_per_unit) in exact decimal arithmetic (what the firmware must do)."""
    return int((Decimal(x) * Decimal(spu)).to_integral_value(rounding=ROUND_HALF_UP))


def test_boot_prints_start_then_a_banner(sim, raw, facts):
    sim.reset()
    lines = [raw.port.readline().decode().strip() for _ in range(2)]
    assert lines[0] == "start"
    assert lines[1].startswith(facts.banner)


def test_handshake_answers_advanced_ok_with_line_number_and_free_slots(raw, facts):
    assert raw.handshake() == [facts.ok(0)]
    assert raw.send("G90") == [facts.ok(1)]


def test_m115_reports_name_and_the_capabilities_the_host_needs(raw, facts):
    lines = raw.send("M115")
    assert lines[0].startswith(f"FIRMWARE_NAME:{facts.name} ")
    for cap in facts.capabilities:
        assert f"Cap:{cap}:1" in lines


def test_bad_checksum_gets_marlins_error_resend_and_ok(raw, facts):
    raw.send("G90")  # N1
    raw.write_line("N2 G90*0")
    assert raw.until_ok() == [
        "Error:checksum mismatch, Last Line: 1",
        "Resend: 2",
        facts.resend_ok,
    ]
    assert raw.send("G90") == [facts.ok(2)]  # the same number again is accepted


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


def test_unknown_commands_are_echoed_then_acknowledged(raw, facts):
    assert raw.send("M9999") == ['echo:Unknown command: "M9999"', facts.ok(1)]
    assert raw.send("FOO") == ['echo:Unknown command: "FOO"', facts.ok(2)]


def test_m105_answers_a_zero_temperature_so_host_probes_work(raw, facts):
    assert raw.send("M105") == [facts.m105]


def test_m114_reports_commanded_position_and_count_in_steps(sim, raw, facts):
    raw.send(f"M92 X{SPU}")
    raw.send("G1 X90 F21600")
    raw.send("M400")
    assert raw.send("M114")[0] == facts.m114("90.00", 800)
    assert sim.steps() == 800


def test_g92_sets_the_machine_position_so_count_follows(sim, raw, facts):
    # NOTE: on Marlin this needs NO_WORKSPACE_OFFSETS; without it G92 X0 only shifts the
    # reported X and Count keeps the old zero (-888889 after G92 X0 at X100000).
    raw.send(f"M92 X{SPU}")
    raw.send("G92 X100000")
    raw.send("G92 X0")
    raw.send("G1 X45 F21600")
    raw.send("M400")
    assert raw.send("M114")[0] == facts.m114("45.00", 400)
    assert sim.steps() == 400


def test_moves_of_one_to_five_steps_are_all_made(sim, raw):
    # NOTE: on Marlin this needs MIN_STEPS_PER_SEGMENT 1 (stock 6 drops them silently)
    raw.send(f"M92 X{SPU}")
    raw.send("G91")
    for n in (1, 2, 3, 4, 5):
        start = sim.steps()
        raw.send(f"G1 X{n / float(SPU):.6f} F21600")
        raw.send("M400")
        assert sim.steps() - start == n


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


def wait_for_light(sim, pin: int, level: int, timeout_s: float = 2.0) -> int:
    """The output's level once it reads ``level``, or its last reading after ``timeout_s``.

    WHY wait: Marlin applies fan changes at 10 Hz, up to 100 ms after the ``ok``."""
    deadline = time.monotonic() + timeout_s
    while (got := sim.light(pin)) != level and time.monotonic() < deadline:
        time.sleep(0.01)
    return got


def test_m42_and_m106_drive_the_mosfet_outputs_with_pwm(sim, raw, facts):
    raw.send("M42 P8 S128")
    assert sim.duty(8) == pytest.approx(128 / 255, abs=1 / 1000)  # 8- or 16-bit timer
    raw.send("M42 P8 S255")
    raw.send("M42 P10 S3")
    assert (sim.light(8), sim.light(10)) == (255, 3)
    raw.send("M106 S76")
    assert wait_for_light(sim, 9, facts.fan_scale(76)) == facts.fan_scale(76)
    raw.send("M107")
    assert wait_for_light(sim, 9, 0) == 0
    raw.send("M106")
    assert wait_for_light(sim, 9, 255) == 255


@pytest.mark.partrig_firmware
def test_m42_drives_d9_too_and_refuses_other_pins(sim, raw):
    # NOTE: Marlin refuses M42 on D9 (its fan pin) without I1: "Error:Protected Pin"
    raw.send("M42 P9 S128")
    assert sim.light(9) == 128
    assert raw.send("M42 P13 S10")[0].startswith("echo:M42 P must be 8, 9 or 10")


def test_m17_and_m18_switch_the_driver_enable_pin(sim, raw):
    assert not sim.motor_enabled()
    raw.send("M17")
    assert sim.motor_enabled()
    raw.send("M18")
    assert not sim.motor_enabled()


def test_blocking_commands_send_busy_keepalives(raw, facts):
    raw.send("M113 S1")
    lines = raw.send("G4 P2300")
    assert lines.count("echo:busy: processing") == 2
    assert lines[-1] == facts.ok(2)


def test_m112_halts_at_once_even_behind_a_blocking_move(sim, raw, facts):
    raw.send("M203 X90")
    raw.send("G1 X3600")
    raw.n += 1
    raw.write_line(raw.framed(raw.n, "M400"))  # the queue is now blocked on M400
    time.sleep(0.3)
    raw.write_line("M112")
    line = raw.port.readline().decode().strip()
    # a keepalive may already be on the wire; Marlin says why before it halts
    while line in ("echo:busy: processing", "echo:M112 Shutdown"):
        line = raw.port.readline().decode().strip()
    assert line == "Error:Printer halted. kill() called!"
    halted_at = sim.sim_time()
    deadline = time.monotonic() + 10
    while sim.motor_enabled() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not sim.motor_enabled()
    # partrig's firmware stops the pulses and the driver before it reports; Marlin reports,
    # keeps stepping for 600 ms (its minkill() delay) and switches the driver off ~850 ms on
    assert sim.sim_time() - halted_at <= facts.halt_grace_s + 0.05
    stopped = sim.steps()
    assert 0 < stopped < steps_for("3600")
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
