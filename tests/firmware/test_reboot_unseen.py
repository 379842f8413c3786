"""The real firmware in simavr restarted while its port was unplugged, so no ``start`` reached
the host: the turntable must notice from the step count and never move on a guess."""

from __future__ import annotations

import time

import pytest

from rig.config import SerialConfig, TurntableConfig
from rig.errors import PositionLost
from rig.link import GcodeLink
from rig.turntable import Turntable

pytestmark = pytest.mark.firmware

SLOW = TurntableConfig(max_speed_deg_s=45.0, accel_deg_s2=720.0, endstop="x_min")
SERIAL = SerialConfig(
    command_timeout_s=0.5,
    busy_timeout_s=2.5,
    long_command_timeout_s=1.5,
    handshake_timeout_s=10.0,
    reconnect_interval_s=0.1,
    reconnect_attempts=100,
)


def _wait_reconnected(link: GcodeLink, before: int) -> None:
    end = time.monotonic() + 15
    while (link.reconnects == before or link.state != "ready") and time.monotonic() < end:
        time.sleep(0.02)
    assert link.reconnects > before and link.state == "ready"


def test_a_restart_while_unplugged_mid_move_loses_the_position_without_moving(sim):
    link = GcodeLink(SERIAL, port=str(sim.link_path), reset_hook=sim.reset)
    link.open()
    try:
        table = Turntable(link, SLOW)
        table.setup()
        table.rotate_to(20)
        table.wait()
        resets, reconnects = link.resets, link.reconnects
        table.rotate_by(300)  # about 7 s of simulated time
        time.sleep(0.3)  # mid-move
        sim.unplug(600)
        sim.reset()  # the board restarts; its `start` goes to a port nobody holds
        _wait_reconnected(link, reconnects)
        assert link.resets == resets, "the host never saw a `start`"
        stopped_at = sim.steps()
        with pytest.raises(PositionLost, match="restarted while unplugged"):
            table.wait()
        with pytest.raises(PositionLost):
            table.rotate_to(10)  # latched: no guessing
        time.sleep(0.2)
        assert sim.steps() == stopped_at, "the table moved after the restart"
        assert 20 * table.steps_per_degree < stopped_at < 320 * table.steps_per_degree
    finally:
        link.close()


def test_a_restart_while_unplugged_and_idle_restores_settings_before_the_next_move(sim):
    link = GcodeLink(SERIAL, port=str(sim.link_path), reset_hook=sim.reset)
    link.open()
    try:
        cfg = SLOW.model_copy(update={"gear_ratio": 2.0, "max_speed_deg_s": 720.0})
        table = Turntable(link, cfg)
        table.setup()
        table.rotate_to(120)
        table.wait()
        reconnects = link.reconnects
        sim.unplug(400)
        sim.reset()
        _wait_reconnected(link, reconnects)
        table.rotate_to(200)
        assert table.wait() == pytest.approx(200, abs=0.5 / table.steps_per_degree)
        # NOTE: the pins count what the motor really did: M92 came back before the move.
        assert sim.steps() == round(200 * table.steps_per_degree)
    finally:
        link.close()
