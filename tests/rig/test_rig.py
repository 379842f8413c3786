"""The Rig bundle: open, status, safe stop, emergency stop, clearing the fault, close."""

from __future__ import annotations

import pytest
from rich.console import Console

from rig.config import apply_sim, parse_settings
from rig.errors import FirmwareHalted, MotionError


def test_status_reports_link_firmware_angle_lights_and_no_fault(sim_rig):
    rig = sim_rig("marlin")
    rig.turntable.rotate_to(90)
    rig.turntable.wait()
    rig.lights.on()
    st = rig.status()
    assert st["simulated"] is True
    assert st["link"] == "ready"
    assert st["firmware"]["dialect"] == "marlin" and st["firmware"]["name"] == "Marlin"
    assert st["angle_deg"] == pytest.approx(90)
    assert st["lights"] == 1.0
    assert st["fault"] is None


def test_safe_stop_stops_the_motor_turns_the_lights_down_and_latches(sim_rig):
    rig = sim_rig()
    rig.lights.on()
    rig.turntable.rotate_to(170)
    rig.firmware_sim.clock.advance(0.3)  # part-way through the move
    rig.safe_stop("camera not responding")
    fw = rig.firmware_sim
    assert not fw.axis.moving()
    assert 0 < fw.actual_angle_deg() < 170
    assert fw.light_level() == 0
    assert rig.fault == "camera not responding"
    assert rig.status()["fault"] == "camera not responding"


def test_emergency_stop_halts_the_board_and_clearing_needs_zero_confirmed(sim_rig):
    rig = sim_rig()
    rig.turntable.rotate_to(180)
    rig.emergency_stop()
    assert rig.fault is not None
    with pytest.raises(FirmwareHalted):
        rig.link.send("M114")
    with pytest.raises(MotionError, match="confirm zero"):
        rig.clear_fault()
    assert rig.link.fault is None  # the board was reset and re-handshaken
    rig.clear_fault(zero_confirmed=True)
    assert rig.fault is None
    rig.turntable.rotate_to(45)
    assert rig.turntable.wait() == pytest.approx(45, abs=0.1)


def test_clearing_a_fault_homes_when_there_is_an_endstop(sim_rig):
    rig = sim_rig(turntable={"endstop": "x_min"})
    rig.turntable.rotate_to(200)
    rig.turntable.wait()
    rig.emergency_stop()
    rig.clear_fault()
    assert rig.fault is None
    assert rig.firmware_sim.actual_angle_deg() == pytest.approx(0, abs=0.01)


def test_close_is_idempotent_and_removes_the_simulated_port(sim_rig):
    rig = sim_rig()
    port = rig.firmware_sim.port
    rig.close()
    rig.close()
    import os

    assert not os.path.exists(port)


def test_the_demo_runs_a_verified_session_on_the_simulator():
    settings = apply_sim(parse_settings({"simulator": {"time_scale": 0}}))
    from rig.demo import DEMO_ANGLES, run_demo

    console = Console(record=True, width=120)
    records = run_demo(settings, console)
    assert len(records) == len(DEMO_ANGLES) + 1
    for r in records:
        assert r.measured == pytest.approx(r.commanded, abs=0.06)
        assert r.true_angle == pytest.approx(r.commanded, abs=0.06)
    text = console.export_text()
    assert "firmware partrig" in text and "lights off" in text


def test_open_rig_in_sim_mode_builds_the_world_and_a_camera_that_sees_it():
    from rig.rig import open_rig

    settings = apply_sim(
        parse_settings({"simulator": {"time_scale": 0}, "camera": {"still_size": [160, 120]}})
    )
    with open_rig(settings) as rig:
        assert rig.world is not None and rig.simulated
        rig.lights.on()
        rig.turntable.rotate_to(90)
        rig.turntable.wait()
        frame = rig.camera.capture()
        image = getattr(frame, "image", frame)
        assert image.shape == (120, 160, 3) and image.dtype.name == "uint8"
