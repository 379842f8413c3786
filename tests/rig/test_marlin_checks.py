"""The handshake's firmware checks against the simulated Marlin, one wrong option at a time.

Each refusal runs against the ``marlin`` profile (Marlin built with config.ini) with exactly one
option turned to Marlin's default, and must name that option without moving the table.
"""

from __future__ import annotations

import pytest
from link_helpers import fast_config

from rig.config import LightsConfig, SimConfig, TurntableConfig
from rig.errors import FirmwareUnsupported, MotionError
from rig.firmware_check import check_firmware
from rig.link import GcodeLink
from rig.sim.clock import SimClock
from rig.sim.marlin import SimFirmware
from rig.turntable import Turntable


@pytest.fixture
def board(tmp_path):
    """``board(profile, pin="D9", **options)``: a simulated board and an open link to it."""
    opened = []

    def make(profile: str = "marlin", pin: str = "D9", **options):
        cfg = SimConfig(firmware=profile, time_scale=0, marlin=options)
        fw = SimFirmware(
            cfg,
            SimClock(0),
            dialect=profile,
            link_path=tmp_path / f"ramps{len(opened)}",
            light_pin=pin,
        ).start()
        opened.append(fw)
        assert fw.wait_ready()
        link = GcodeLink(fast_config(fw.port), reset_hook=fw.reset)
        link.open()
        opened.append(link)
        return fw, link

    yield make
    for thing in reversed(opened):
        thing.close()


def _check(link, pin: str = "D9"):
    return check_firmware(link, TurntableConfig(), LightsConfig(pin=pin))


@pytest.mark.parametrize(
    ("options", "pin", "option", "says"),
    [
        ({"no_workspace_offsets": False}, "D9", "NO_WORKSPACE_OFFSETS", "M206"),
        ({"min_steps_per_segment": 6}, "D9", "MIN_STEPS_PER_SEGMENT", "dropped"),
        ({"emergency_parser": False}, "D9", "EMERGENCY_PARSER", "e-stop"),
        ({"home_pos": -100000}, "D9", "MANUAL_X_HOME_POS", "X:-100000.00"),
        ({"direct_pin_control": False}, "D8", "DIRECT_PIN_CONTROL", "M42 is unknown"),
    ],
)
def test_each_missing_option_is_refused_by_name_and_nothing_moves(
    board, options, pin, option, says
):
    fw, link = board("marlin", pin, **options)
    with pytest.raises(FirmwareUnsupported) as err:
        _check(link, pin)
    assert err.value.options == (option,)
    assert option in str(err.value) and says in str(err.value)
    assert "nothing was moved" in str(err.value)
    assert fw.steps_done == 0  # the turntable (X) never moved


def test_stock_marlin_is_refused_naming_every_option_it_lacks(board):
    fw, link = board("marlin-stock", "D10")
    with pytest.raises(FirmwareUnsupported) as err:
        _check(link, "D10")
    assert set(err.value.options) == {
        "EMERGENCY_PARSER",
        "NO_WORKSPACE_OFFSETS",
        "DIRECT_PIN_CONTROL",
    }
    # NOTE: the min-steps probe moves (Y) only once everything else passed
    assert fw.exec.y_count == 0 and fw.steps_done == 0


def test_the_min_steps_probe_moves_y_one_step_and_back(board):
    fw, link = board("marlin")
    report = _check(link)
    assert report.ok and report.dialect == "marlin"
    assert fw.exec.y_count == 0 and fw.exec.y == 0 and fw.steps_done == 0
    assert not fw.exec.relative  # G90 again for the turntable


def test_our_firmware_passes_without_marlin_probes(board):
    _fw, link = board("partrig", "D10")
    report = _check(link, "D10")
    assert report.ok and report.dialect == "partrig"


def test_open_rig_refuses_a_stock_marlin(sim_rig):
    with pytest.raises(FirmwareUnsupported, match="NO_WORKSPACE_OFFSETS"):
        sim_rig("marlin", simulator={"marlin": {"no_workspace_offsets": False}})


def test_the_refused_option_really_breaks_verified_moves(board):
    # What the NO_WORKSPACE_OFFSETS check prevents, reproduced: after set_zero every wait fails.
    _fw, link = board("marlin", no_workspace_offsets=False)
    table = Turntable(link, TurntableConfig())
    table.setup()
    table.rotate_to(90)
    table.wait()
    table.set_zero()
    table.rotate_to(10)
    with pytest.raises(MotionError):
        table.wait()


def test_shipped_marlin_runs_a_full_capture_sequence(sim_rig):
    rig = sim_rig("marlin", lights={"pin": "D8"})
    fw, table = rig.firmware_sim, rig.turntable
    rig.lights.on()
    spd = table.steps_per_degree
    for turn in range(5):  # past the 4-turn re-zero
        for shot in range(12):
            table.rotate_to(shot * 30.0 + 30.0, "absolute")
            assert table.wait() == pytest.approx((shot + 1) * 30.0 % 360, abs=0.06)
        assert fw.steps_done == round((turn + 1) * 360 * spd)
    table.rotate_by(3 / spd)  # a 3-step move: stock Marlin would drop it
    table.wait()
    table.set_zero()
    table.rotate_to(45)
    assert table.wait() == pytest.approx(45, abs=0.06)
    assert fw.light_level() == 1.0


class _GarbleFirst:
    """A link whose first reply to ``command`` arrives corrupted (replies carry no checksum)."""

    def __init__(self, link, command: str, garble) -> None:
        self.link, self.command, self.garble, self.done = link, command, garble, False

    def __getattr__(self, name):
        return getattr(self.link, name)

    def send(self, cmd: str, timeout=None):
        lines = self.link.send(cmd, timeout)
        if cmd == self.command and not self.done:
            self.done = True
            return [self.garble(line) for line in lines]
        return lines


@pytest.mark.parametrize(
    ("command", "garble"),
    [
        ("M114", lambda line: line.replace("Count X:0", "Count X:-88888889")),
        ("M503", lambda line: line.replace("M205", "M206")),
        ("M114", lambda line: line.split(" Count")[0]),
    ],
)
def test_a_corrupted_report_is_asked_again_before_refusing(board, command, garble):
    _fw, link = board("marlin")
    flaky = _GarbleFirst(link, command, garble)
    assert _check(flaky).ok
    assert flaky.done


def test_marlin_overrides_are_checked_and_survive_config_show():
    import tomllib

    from rig.config import dump_settings, parse_settings
    from rig.errors import ConfigError

    settings = parse_settings({"simulator": {"marlin": {"min_steps_per_segment": 6}}})
    again = parse_settings(tomllib.loads(dump_settings(settings)))
    assert again.simulator.marlin.min_steps_per_segment == 6
    assert again.simulator.marlin.no_workspace_offsets is None  # still the profile's
    with pytest.raises(ConfigError, match=r"simulator\.marlin\.min_steps_per_segment"):
        parse_settings({"simulator": {"marlin": {"min_steps_per_segment": 0}}})


def test_any_board_left_many_turns_from_zero_is_refused(board):
    _fw, link = board("partrig")
    link.send("G92 X3600")  # another program left our firmware ten turns out
    with pytest.raises(FirmwareUnsupported, match="10 turns from 0") as err:
        _check(link)
    assert err.value.options == ("reset the board",)
    assert "Marlin" not in str(err.value).split("(docs/")[0]
