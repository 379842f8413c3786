"""The real host stack (rig.link.GcodeLink, rig.turntable.Turntable) against the real firmware
in simavr: faults on the wire, resets, an unplug, the emergency stop and homing.

The firmware is partrig's, or the ELF in PARTRIG_FIRMWARE_ELF (stock Marlin, see
docs/firmware.md for what passes there and how long it takes)."""

from __future__ import annotations

import random
import time

import pytest

from rig.config import SerialConfig, TurntableConfig
from rig.errors import FirmwareHalted, PositionLost
from rig.link import GcodeLink
from rig.turntable import Turntable

pytestmark = pytest.mark.firmware

# NOTE: fast motion (the step generator's ceiling is 20 000 steps/s = 2250 deg/s) and a short
# command timeout keep 1,000 moves with lost oks well inside the suite's time budget.
FAST = TurntableConfig(max_speed_deg_s=2000.0, accel_deg_s2=100000.0, endstop="x_min")
SERIAL = SerialConfig(
    command_timeout_s=0.5,
    busy_timeout_s=2.5,
    long_command_timeout_s=1.5,
    missing_ok_after_resend_s=0.2,
    handshake_timeout_s=10.0,
    reconnect_interval_s=0.1,
    reconnect_attempts=100,
)


def open_link(sim) -> GcodeLink:
    link = GcodeLink(SERIAL, port=str(sim.link_path), reset_hook=sim.reset)
    link.open()
    return link


def test_a_thousand_moves_survive_corruption_lost_oks_a_reset_and_an_unplug(sim):
    link = open_link(sim)
    try:
        table = Turntable(link, FAST)
        table.setup()
        sim.fault("corrupt_rx", 0.01)
        sim.fault("corrupt_tx", 0.01)
        sim.fault("lose_ok", 0.005)
        rng = random.Random(7)
        nominal = 0.0
        reset_at, unplug_at = 333, 666
        for i in range(1000):
            if i == reset_at:
                sim.reset()  # an idle reset: the table restores settings and position
                time.sleep(0.05)
            if i == unplug_at:
                sim.unplug(300)
            # NOTE: whole odd numbers of 1/8 degree: a move done twice or lost shows at once
            delta = rng.choice((-1, 1)) * rng.randrange(1, 720, 2) / 8
            nominal += delta
            table.rotate_by(delta)
            table.wait()
            expected = round(nominal * table.steps_per_degree)
            assert sim.steps() == expected, f"move {i}: pins {sim.steps()} != {expected}"
        stats = sim.stats()
        assert stats["corrupted_rx"] > 10 and stats["corrupted_tx"] > 10
        assert stats["lost_ok"] > 3 and stats["unplugs"] == 1
        assert link.resets >= 1
    finally:
        link.close()


def test_a_reset_during_a_move_loses_the_position_and_homing_recovers_it(sim):
    spt = round(360 * FAST.steps_per_degree)
    switch_at = 1000  # the switch sits 1000 steps (112.5 deg) from where the table started
    sim.endstop_at(switch_at, 20, spt)
    slow = FAST.model_copy(update={"max_speed_deg_s": 45.0, "accel_deg_s2": 720.0})
    link = open_link(sim)
    try:
        table = Turntable(link, slow)
        table.setup()
        table.rotate_by(350)  # about 8 s of simulated time
        time.sleep(0.2)  # mid-move
        sim.reset()
        with pytest.raises(PositionLost):
            table.wait()
        with pytest.raises(PositionLost):
            table.rotate_to(10)  # latched: no guessing
        assert 0 < sim.steps() < round(350 * FAST.steps_per_degree)
        assert link.send("M119")[1] == "x_min: open"
        table.home()
        # zero is where the switch trips when approached from above, at low speed
        assert sim.steps() % spt == switch_at + 19
        table.rotate_to(90)
        assert table.wait() == pytest.approx(90.0)
        assert sim.steps() % spt == switch_at + 19 + 800
    finally:
        link.close()


def test_emergency_stop_latches_firmware_halted_until_the_board_is_reset(sim):
    link = open_link(sim)
    try:
        table = Turntable(link, FAST.model_copy(update={"max_speed_deg_s": 90.0}))
        table.setup()
        table.rotate_by(720)
        time.sleep(0.2)
        link.emergency_stop()  # returns once M112 is written, ahead of anything queued
        deadline = time.monotonic() + 5
        while sim.motor_enabled() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not sim.motor_enabled()
        stopped = sim.steps()
        time.sleep(0.2)
        assert sim.steps() == stopped < round(720 * FAST.steps_per_degree)
        with pytest.raises(FirmwareHalted):
            link.send("M114")
        link.clear_fault()
        assert link.fault is None
        assert "Count X:0 " in link.send("M114")[0]
    finally:
        link.close()


def test_firmware_errors_reach_the_link_as_marlin_errors(sim, dialect, facts):
    link = open_link(sim)
    try:
        assert link.firmware is not None and link.firmware.dialect == dialect
        # NOTE: Marlin's M115 has no ADVANCED_OK line; the link sees it in the ok format
        assert link.firmware.advanced_ok == ("ADVANCED_OK" in facts.capabilities)
        lines = link.send("M114")
        assert lines == [facts.m114("0.00", 0)]
    finally:
        link.close()
