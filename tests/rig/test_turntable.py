"""Turntable: whole-step arithmetic, direction modes, verification and position recovery."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest

from rig.config import SerialConfig, TurntableConfig
from rig.errors import GcodeError, MotionError, PortLost, PositionLost
from rig.link_types import LinkEvent
from rig.turntable import Turntable


class RecordingLink:
    """Answers every command with nothing and records it: for the pure arithmetic tests."""

    resets = 0
    reconnects = 0
    firmware = None
    config = SerialConfig()

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.listeners: list[Callable[[LinkEvent], None]] = []

    def add_listener(self, fn: Callable[[LinkEvent], None]) -> None:
        self.listeners.append(fn)

    def send(self, cmd: str, timeout: float | None = None) -> list[str]:
        self.sent.append(cmd)
        return []


def _sent_x(tt: Turntable, link: RecordingLink) -> int:
    x = float(link.sent[-1].split()[1][1:])
    return round(x * float(tt._m92))


def test_targets_are_whole_steps_from_the_absolute_angle_so_10000_moves_do_not_drift():
    cfg = TurntableConfig(steps_per_rev=200, microsteps=16, gear_ratio=3.7, mode="absolute")
    link = RecordingLink()
    tt = Turntable(link, cfg)
    rng = random.Random(1)
    spd = cfg.steps_per_degree
    for _ in range(10_000):
        goal = rng.uniform(0, 360)
        tt.rotate_to(goal)
        fw_steps = _sent_x(tt, link)
        host = fw_steps + tt._offset
        turns = round((host / spd - goal) / 360)
        assert host == round((turns * 360 + goal) * spd)  # rounded once, from the angle
        tt._moving, tt._verified = False, True
    tt.rotate_to(90.0)
    assert tt.angle == pytest.approx(90.0, abs=0.5 / spd)


def test_shortest_mode_takes_the_short_way_and_absolute_mode_always_goes_forward():
    cfg = TurntableConfig(gear_ratio=2.5)
    spd = cfg.steps_per_degree
    tt = Turntable(RecordingLink(), cfg)
    tt._nominal = 350.0
    assert tt.target_steps(10, "shortest") == round(370 * spd)
    assert tt.target_steps(10, "absolute") == round(370 * spd)
    tt._nominal = 10.0
    assert tt.target_steps(350, "shortest") == round(-10 * spd)
    assert tt.target_steps(350, "absolute") == round(350 * spd)
    assert tt.target_steps(190, "shortest") == round(-170 * spd)  # exactly 180 goes negative
    assert tt.target_steps(10 + 720, "shortest") == round(10 * spd)  # angles are mod 360


def test_bad_angles_and_modes_are_refused_before_anything_is_sent():
    link = RecordingLink()
    tt = Turntable(link, TurntableConfig())
    with pytest.raises(GcodeError, match="finite"):
        tt.rotate_to(float("nan"))
    with pytest.raises(GcodeError, match="mode"):
        tt.rotate_to(10, "sideways")  # type: ignore[arg-type]
    assert link.sent == []


def test_move_time_uses_the_trapezoid_model():
    tt = Turntable(RecordingLink(), TurntableConfig(max_speed_deg_s=360, accel_deg_s2=720))
    assert tt.move_time(-360) == pytest.approx(1.5)


@pytest.mark.parametrize("firmware", ["partrig", "marlin"])
def test_moves_land_on_the_commanded_angle_on_both_dialects(sim_rig, firmware):
    rig = sim_rig(firmware, turntable={"gear_ratio": 3.7})
    assert rig.link.firmware.dialect == firmware
    tt, fw = rig.turntable, rig.firmware_sim
    for goal in (45.0, 359.5, 0.25, 180.0, 10.0):
        tt.rotate_to(goal)
        assert tt.wait() == pytest.approx(goal, abs=0.5 / tt.steps_per_degree)
        assert fw.actual_angle_deg() == pytest.approx(goal, abs=0.5 / tt.steps_per_degree)
    tt.rotate_by(-30)
    assert tt.wait() == pytest.approx(340.0, abs=0.01)


def test_the_firmware_axis_is_re_zeroed_after_a_few_turns_and_the_angle_stays_exact(sim_rig):
    rig = sim_rig(turntable={"gear_ratio": 1.3})
    tt, fw = rig.turntable, rig.firmware_sim
    for _ in range(6):
        tt.rotate_by(359.0)
        tt.wait()
    assert abs(fw.axis.count()) <= 4 * tt.steps_per_rev
    half_step = 0.5 / tt.steps_per_degree  # relative moves do not accumulate rounding
    assert tt.position() == pytest.approx((6 * 359.0) % 360, abs=half_step)
    assert fw.actual_angle_deg() == pytest.approx((6 * 359.0) % 360, abs=half_step)


def test_a_position_mismatch_is_queried_once_more_then_raises_motion_error(sim_rig):
    rig = sim_rig()
    tt, fw = rig.turntable, rig.firmware_sim
    sent = []
    real_send = rig.link.send
    rig.link.send = lambda cmd, timeout=None: (sent.append(cmd), real_send(cmd, timeout))[1]
    tt.rotate_to(90)
    fw.clock.advance(5)
    fw.axis.set_count(123)  # the motor skipped: the board's count disagrees
    with pytest.raises(MotionError, match="not where it was sent"):
        tt.wait()
    assert sent[-3:] == ["M400", "M114", "M114"]


def test_one_corrupted_m114_reply_is_absorbed_by_the_re_query(sim_rig):
    rig = sim_rig()
    tt = rig.turntable
    real_send = rig.link.send
    garbled = []

    def send(cmd, timeout=None):
        lines = real_send(cmd, timeout)
        if cmd == "M114" and not garbled:
            garbled.append(cmd)
            return [lines[0].replace("Count X:", "Count X:9")]
        return lines

    rig.link.send = send
    tt.rotate_to(90)
    assert tt.wait() == pytest.approx(90, abs=0.1)
    assert garbled


def _wait_reset_seen(rig, before: int) -> None:
    end = time.monotonic() + 5
    while (rig.link.resets == before or rig.link.state != "ready") and time.monotonic() < end:
        time.sleep(0.005)


def test_a_reset_during_a_move_raises_position_lost_and_latches_until_zero(sim_rig):
    rig = sim_rig()
    tt, fw = rig.turntable, rig.firmware_sim
    tt.rotate_to(180)
    before = rig.link.resets
    fw.reset()  # the move has not finished on the virtual clock
    _wait_reset_seen(rig, before)
    with pytest.raises(PositionLost, match="position lost"):
        tt.wait()
    with pytest.raises(PositionLost):
        tt.rotate_to(10)
    assert tt.fault is not None and rig.fault is not None
    tt.set_zero()  # the operator confirms zero
    tt.rotate_to(90)
    assert tt.wait() == pytest.approx(90, abs=0.1)


def test_a_reset_while_idle_at_a_verified_position_is_restored(sim_rig):
    rig = sim_rig(turntable={"gear_ratio": 2.0})
    tt, fw = rig.turntable, rig.firmware_sim
    tt.rotate_to(120)
    tt.wait()
    before = rig.link.resets
    fw.reset()
    _wait_reset_seen(rig, before)
    assert tt.position() == pytest.approx(120, abs=0.5 / tt.steps_per_degree)
    tt.rotate_to(200)
    assert tt.wait() == pytest.approx(200, abs=0.5 / tt.steps_per_degree)
    assert fw.actual_angle_deg() == pytest.approx(
        200, abs=0.5 / tt.steps_per_degree
    )  # M92 was re-sent too
    assert tt.fault is None


def test_homing_on_the_x_min_endstop_recovers_a_lost_position(sim_rig):
    rig = sim_rig(turntable={"endstop": "x_min"})
    tt, fw = rig.turntable, rig.firmware_sim
    tt.rotate_to(100)
    fw.reset()
    _wait_reset_seen(rig, 0)
    with pytest.raises(PositionLost):
        tt.wait()
    tt.home()
    assert fw.actual_angle_deg() == pytest.approx(0, abs=0.01)
    tt.rotate_to(30)
    assert tt.wait() == pytest.approx(30, abs=0.5 / tt.steps_per_degree)


def test_home_without_an_endstop_says_to_confirm_zero(sim_rig):
    rig = sim_rig()
    with pytest.raises(MotionError, match="confirm zero"):
        rig.turntable.home()


def test_after_an_unplug_mid_move_the_move_is_verified_once_reconnected(sim_rig):
    rig = sim_rig()
    tt, fw = rig.turntable, rig.firmware_sim
    tt.rotate_to(270)
    fw.unplug()
    time.sleep(0.1)
    fw.replug()
    end = time.monotonic() + 5
    while rig.link.state != "ready" and time.monotonic() < end:
        time.sleep(0.01)
    assert tt.wait() == pytest.approx(270, abs=0.01)


def test_hold_switches_the_motor_current(sim_rig):
    rig = sim_rig()
    rig.turntable.hold(False)
    assert not rig.firmware_sim.axis.enabled
    rig.turntable.hold(True)
    assert rig.firmware_sim.axis.enabled


def test_every_move_is_verified_under_corrupted_lines_and_lost_oks(sim_rig):
    rig = sim_rig(
        turntable={"gear_ratio": 3.7},
        simulator={
            "corrupt_to_firmware": 0.02,
            "corrupt_to_host": 0.02,
            "drop_ok": 0.01,
            "seed": 5,
        },
        serial={"command_timeout_s": 0.2},
    )
    tt, fw = rig.turntable, rig.firmware_sim
    rng = random.Random(0)
    for _ in range(60):
        goal = rng.uniform(0, 360)
        tt.rotate_to(goal)
        got = tt.wait()
        assert abs((got - goal + 180) % 360 - 180) <= 0.5 / tt.steps_per_degree
    assert fw.actual_angle_deg() == pytest.approx(tt.angle, abs=0.5 / tt.steps_per_degree)
    assert fw.stats["corrupt_in"] + fw.stats["corrupt_out"] + fw.stats["dropped_ok"] > 0


class PortLosingLink(RecordingLink):
    """A board that obeys G1/M114, and a port that vanishes on the ``lose_on``-th G1 sent.

    ``outcome`` says what the board did meanwhile: ``"ran"`` the move, ``"never_ran"`` (it
    never reached the board) or ``"rebooted"`` (restarted unseen: count 0, as after power-up).
    """

    def __init__(self, tt_config: TurntableConfig, outcome: str, lose_on: int = 2) -> None:
        super().__init__()
        self.outcome, self.lose_on, self.g1s, self.steps = outcome, lose_on, 0, 0
        self.spu = tt_config.steps_per_degree

    def send(self, cmd: str, timeout: float | None = None) -> list[str]:
        self.sent.append(cmd)
        if cmd.startswith("G1"):
            target = round(float(cmd.split()[1][1:]) * self.spu)
            self.g1s += 1
            if self.g1s == self.lose_on:
                if self.outcome == "ran":
                    self.steps = target
                elif self.outcome == "rebooted":
                    self.steps = 0
                raise PortLost(f"serial link lost while {cmd!r} was in flight")
            self.steps = target
        if cmd.startswith("G92"):
            self.steps = round(float(cmd.split()[1][1:]) * self.spu)
        if cmd == "M114":
            return [f"X:{self.steps / self.spu:.2f} Y:0.00 Z:0.00 E:0.00 Count X:{self.steps}"]
        return []


@pytest.mark.parametrize("outcome", ["ran", "never_ran"])
def test_a_move_cut_off_by_a_lost_port_is_done_exactly_once(outcome):
    cfg = TurntableConfig()
    link = PortLosingLink(cfg, outcome)
    tt = Turntable(link, cfg)
    tt.rotate_to(45.0)
    tt.wait()
    tt.rotate_to(90.0)  # the port vanishes with this G1 in flight: no error escapes
    assert tt.wait() == pytest.approx(90.0)
    g1s = [c for c in link.sent if c.startswith("G1")]
    assert len(g1s) == (2 if outcome == "ran" else 3), "resent only when the board did not run it"
    assert link.steps == round(90 * cfg.steps_per_degree)


def test_a_board_restarted_while_the_port_was_gone_loses_the_position_and_never_moves():
    cfg = TurntableConfig()
    link = PortLosingLink(cfg, "rebooted")
    tt = Turntable(link, cfg)
    tt.rotate_to(45.0)
    tt.wait()
    tt.rotate_to(90.0)
    with pytest.raises(PositionLost, match="neither the position before the move"):
        tt.wait()
    assert link.g1s == 2, "no move is sent to a board that restarted"
    with pytest.raises(PositionLost):
        tt.rotate_to(10.0)  # latched until zero is confirmed
    assert tt.fault is not None and link.g1s == 2


def test_a_move_from_firmware_step_0_cut_off_by_a_lost_port_is_not_guessed():
    # NOTE: a restarted board also reads 0, so a count of 0 cannot prove the move never ran.
    cfg = TurntableConfig()
    link = PortLosingLink(cfg, "never_ran", lose_on=1)
    tt = Turntable(link, cfg)
    tt.set_zero()
    tt.rotate_to(90.0)
    with pytest.raises(PositionLost, match="restarted while unplugged"):
        tt.wait()
    assert link.g1s == 1


class ReconnectingLink(PortLosingLink):
    """A link that reports a reconnect (``reconnects`` moves) after which the board may have
    restarted: no command fails, only the count tells."""

    reconnects = 0

    def come_back(self, *, rebooted: bool, steps: int | None = None) -> None:
        self.reconnects += 1
        if rebooted:
            self.steps = 0
        elif steps is not None:
            self.steps = steps


def test_an_idle_board_that_restarted_unseen_gets_its_settings_and_position_back():
    cfg = TurntableConfig(gear_ratio=2.0)
    link = ReconnectingLink(cfg, "ran", lose_on=0)
    tt = Turntable(link, cfg)
    tt.rotate_to(120.0)
    tt.wait()
    link.come_back(rebooted=True)
    link.sent.clear()
    tt.rotate_to(200.0)
    m92 = link.sent.index(f"M92 X{tt._m92}")
    g92 = next(i for i, c in enumerate(link.sent) if c.startswith("G92"))
    g1 = next(i for i, c in enumerate(link.sent) if c.startswith("G1"))
    assert link.sent[:2] == ["M400", "M114"] and m92 < g92 < g1
    assert tt.wait() == pytest.approx(200.0, abs=0.5 / tt.steps_per_degree)
    assert link.steps == round(200 * tt.steps_per_degree)


def test_an_idle_board_whose_count_changed_while_the_port_was_gone_loses_the_position():
    cfg = TurntableConfig()
    link = ReconnectingLink(cfg, "ran", lose_on=0)
    tt = Turntable(link, cfg)
    tt.rotate_to(120.0)
    tt.wait()
    link.come_back(rebooted=False, steps=123)
    with pytest.raises(PositionLost, match="counts step 123 instead of"):
        tt.rotate_to(200.0)
    assert not any(c.startswith("G1") and "200" in c for c in link.sent)


def test_an_idle_board_that_kept_its_count_is_trusted_after_a_reconnect():
    cfg = TurntableConfig()
    link = ReconnectingLink(cfg, "ran", lose_on=0)
    tt = Turntable(link, cfg)
    tt.rotate_to(120.0)
    tt.wait()
    link.come_back(rebooted=False)
    link.sent.clear()
    tt.rotate_to(200.0)
    assert link.sent[:2] == ["M400", "M114"]
    assert not any(c.startswith(("M92", "G92")) for c in link.sent)
    assert tt.wait() == pytest.approx(200.0, abs=0.5 / tt.steps_per_degree)


def _unplug_and_restart(rig, fw) -> int:
    """Pull the cable, restart the board while nobody listens (its ``start`` is lost), plug
    it back in and wait for the link to re-handshake; returns the pulses made so far."""
    before = rig.link.reconnects
    fw.unplug()
    fw.reset()
    assert fw.wait_ready()  # booted and printed `start` to an unplugged port
    steps = fw.steps_done
    fw.replug()
    end = time.monotonic() + 10
    while (rig.link.reconnects == before or rig.link.state != "ready") and time.monotonic() < end:
        time.sleep(0.01)
    assert rig.link.reconnects > before and rig.link.state == "ready"
    return steps


@pytest.mark.parametrize("firmware", ["partrig", "marlin"])
def test_a_board_restarted_unseen_mid_move_raises_position_lost_and_never_moves(sim_rig, firmware):
    rig = sim_rig(firmware)
    tt, fw = rig.turntable, rig.firmware_sim
    tt.rotate_to(30)
    tt.wait()
    resets = rig.link.resets
    tt.rotate_to(180)  # queued; on the virtual clock it has not started
    steps = _unplug_and_restart(rig, fw)
    assert rig.link.resets == resets, "the link never saw a `start`"
    with pytest.raises(PositionLost, match="neither the position before the move"):
        tt.wait()
    assert fw.steps_done == steps, "nothing moved after the restart"
    with pytest.raises(PositionLost):
        tt.rotate_to(10)
    assert rig.fault is not None and "position lost" in rig.fault
    tt.set_zero()  # the operator confirms zero where the table stands
    tt.rotate_to(90)
    assert tt.wait() == pytest.approx(90, abs=0.5 / tt.steps_per_degree)
    assert fw.steps_done - steps == round(90 * tt.steps_per_degree)


@pytest.mark.parametrize("firmware", ["partrig", "marlin"])
def test_a_board_restarted_unseen_while_idle_is_restored_and_the_next_move_lands(sim_rig, firmware):
    rig = sim_rig(firmware, turntable={"gear_ratio": 2.0})
    tt, fw = rig.turntable, rig.firmware_sim
    tt.rotate_to(120)
    tt.wait()
    _unplug_and_restart(rig, fw)
    tt.rotate_to(200)
    assert tt.wait() == pytest.approx(200, abs=0.5 / tt.steps_per_degree)
    # NOTE: the physical angle: the restarted board was told its steps per degree and where
    # it stands again before it moved.
    assert fw.actual_angle_deg() == pytest.approx(200, abs=0.5 / tt.steps_per_degree)
    assert tt.fault is None
