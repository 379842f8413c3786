"""Turntable: whole-step arithmetic, direction modes, verification and position recovery."""

from __future__ import annotations

import random
import time

import pytest

from rig.config import TurntableConfig
from rig.errors import GcodeError, MotionError, PortLost, PositionLost
from rig.turntable import Turntable


class RecordingLink:
    """Answers every command with nothing and records it: for the pure arithmetic tests."""

    resets = 0
    firmware = None

    def __init__(self) -> None:
        self.sent: list[str] = []

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
    """A board that obeys G1/M114, and a port that vanishes on the first G1 sent.

    ``ran`` says whether that first G1 reached the board before the port went.
    """

    def __init__(self, tt_config: TurntableConfig, ran: bool) -> None:
        super().__init__()
        self.ran, self.lost, self.steps = ran, False, 0
        self.spu = tt_config.steps_per_degree

    def send(self, cmd: str, timeout: float | None = None) -> list[str]:
        self.sent.append(cmd)
        if cmd.startswith("G1"):
            target = round(float(cmd.split()[1][1:]) * self.spu)
            if not self.lost:
                self.lost = True
                if self.ran:
                    self.steps = target
                raise PortLost(f"serial link lost while {cmd!r} was in flight")
            self.steps = target
        if cmd == "M114":
            return [f"X:{self.steps / self.spu:.2f} Y:0.00 Z:0.00 E:0.00 Count X:{self.steps}"]
        return []


@pytest.mark.parametrize("ran", [False, True])
def test_a_move_cut_off_by_a_lost_port_is_done_exactly_once(ran):
    cfg = TurntableConfig()
    link = PortLosingLink(cfg, ran)
    tt = Turntable(link, cfg)
    tt.rotate_to(90.0)  # the port vanishes with this G1 in flight: no error escapes
    assert tt.wait() == pytest.approx(90.0)
    g1s = [c for c in link.sent if c.startswith("G1")]
    assert len(g1s) == (1 if ran else 2), "resent only when the board did not run it"
    assert link.steps == round(90 * cfg.steps_per_degree)
