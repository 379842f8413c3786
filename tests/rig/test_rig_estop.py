"""The stops reach the board ahead of everything: M410 past an M400 another thread waits on,
M112 past a writer stuck holding the write lock; and a safe stop after the e-stop is quiet."""

from __future__ import annotations

import threading
import time

import pytest
from link_helpers import Peer, fast_config

from rig.errors import FirmwareHalted, RigError
from rig.link import GcodeLink

pytestmark = pytest.mark.timeout(60)


def test_safe_stop_sends_m410_ahead_of_an_m400_another_thread_waits_on(sim_rig):
    rig = sim_rig(simulator={"time_scale": 1.0}, turntable={"max_speed_deg_s": 60})
    fw = rig.firmware_sim
    rig.lights.on()
    rig.turntable.rotate_to(180)  # ~3 s at 60 deg/s
    waited: list[BaseException | float] = []

    def wait() -> None:
        try:
            waited.append(rig.turntable.wait())
        except RigError as exc:
            waited.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.3)  # NOTE: the waiter's M400 is now in flight and fills the window
    assert fw.axis.moving()
    t0 = time.monotonic()
    rig.safe_stop("camera not responding")
    assert time.monotonic() - t0 < 1.5  # not after the 3 s move
    deadline = time.monotonic() + 1.0
    while fw.axis.moving() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not fw.axis.moving()
    angle = fw.actual_angle_deg()
    assert min(angle, 360 - angle) < 90  # stopped about where it was, far from 180
    assert fw.light_level() == 0 and rig.lights.level == 0
    assert rig.fault == "camera not responding"
    waiter.join(10)
    assert waited and not isinstance(waited[0], float)  # the move never reached 180 deg


def test_safe_stop_after_an_estop_is_quiet_and_records_the_lights_off(sim_rig, caplog):
    rig = sim_rig()
    rig.lights.on()
    assert rig.emergency_stop() is True
    rig.finish_emergency_stop()
    deadline = time.monotonic() + 2
    while not rig.firmware_sim.halted and time.monotonic() < deadline:
        time.sleep(0.005)
    assert rig.firmware_sim.light_level() == 0  # the board's kill switched its outputs off
    caplog.clear()
    rig.safe_stop("the run's move failed")
    assert rig.lights.level == 0
    assert "step failed" not in caplog.text and "Traceback" not in caplog.text
    with pytest.raises(FirmwareHalted):
        rig.link.send("M114")
    rig.clear_fault(zero_confirmed=True)
    assert rig.emergency_stopped is False and rig.fault is None


def test_emergency_write_does_not_wait_for_a_writer_holding_the_write_lock(tmp_path):
    peer = Peer(tmp_path).start()
    link = GcodeLink(fast_config(peer.path), reset_hook=peer.reset)
    link.open()
    try:
        stuck = threading.Event()
        release = threading.Event()

        def stuck_writer() -> None:
            with link._write_lock:  # NOTE: a writer blocked in a slow write, as on a full port
                stuck.set()
                release.wait(5)

        holder = threading.Thread(target=stuck_writer)
        holder.start()
        stuck.wait(2)
        t0 = time.monotonic()
        assert link.write_emergency() is True
        assert time.monotonic() - t0 < 0.1
        deadline = time.monotonic() + 2
        while peer.m112_at is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert peer.m112_at is not None and peer.m112_at - t0 < 1.0
        # M410 first: Marlin keeps stepping ~600 ms after M112 alone (measured in simavr)
        assert peer.stops_seen[:2] == ["M410", "M112"], peer.stops_seen
        release.set()
        holder.join(5)
    finally:
        link.close()
        peer.stop()
