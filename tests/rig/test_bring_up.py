"""Board bring-up: a real serial board with the simulated camera (``camera.driver = "sim"``
without ``--sim``).  The pty simulator plays the real board; partrig does not know it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from rig.cli import config_app
from rig.config import SimConfig, parse_settings
from rig.rig import open_rig
from rig.sim.clock import SimClock
from rig.sim.marlin import SimFirmware


@pytest.fixture(params=["partrig", "marlin"])
def board(request, tmp_path):
    fw = SimFirmware(
        SimConfig(firmware=request.param, time_scale=0),
        SimClock(0),
        dialect=request.param,
        link_path=tmp_path / "ttyACM0",
    ).start()
    assert fw.wait_ready()
    yield fw
    fw.close()


def _settings(port: str):
    return parse_settings(
        {
            "serial": {"port": port},
            "camera": {"driver": "sim", "still_size": [96, 72]},
            "simulator": {"exposure_ms": 1, "time_scale": 0},
        }
    )


def test_a_real_board_with_the_simulated_camera_opens_and_shoots(board):
    settings = _settings(board.port)
    assert not settings.sim
    with open_rig(settings) as rig:
        assert not rig.simulated and rig.camera is not None and rig.world is not None
        rig.turntable.set_zero()  # the operator's confirmation of zero
        rig.lights.on()
        rig.turntable.rotate_to(90)
        rig.turntable.wait()
        frame = rig.camera.capture()
        assert frame.image.shape == (72, 96, 3)
        assert frame.meta["angle_deg"] == pytest.approx(90, abs=0.06)
        assert frame.meta["light"] == 1.0


def test_the_simulated_world_turns_as_the_board_reports_not_as_commanded(board):
    with open_rig(_settings(board.port)) as rig:
        rig.turntable.set_zero()
        rig.turntable.rotate_to(180)  # queued; the board's virtual clock has not run it yet
        assert rig.turntable.angle == 180
        # NOTE: what M114's Count says: our firmware counts the steps made so far, Marlin 2.1
        # reports its planner's position, which is the target as soon as the move is queued.
        mid_move = 180 if board.dialect == "marlin" else 0
        assert rig.world.angle() == pytest.approx(mid_move, abs=0.06)
        rig.turntable.wait()
        assert rig.world.angle() == pytest.approx(180, abs=0.06)


def test_config_check_and_capture_agree_on_bring_up(board, tmp_path):
    config = tmp_path / "partrig.toml"
    config.write_text(
        f'[serial]\nport = "{board.port}"\n[camera]\ndriver = "sim"\n', encoding="utf-8"
    )
    result = CliRunner().invoke(config_app, ["check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "bring-up" in result.output
