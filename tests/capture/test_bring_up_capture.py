"""``partrig capture`` on a real serial board with ``camera.driver = "sim"`` and no ``--sim``
(board bring-up before the camera arrives).  The pty simulator plays the real board."""

from __future__ import annotations

import os
import socket
import sqlite3

import pytest
from typer.testing import CliRunner

from capture.runs.cli import app
from rig.config import SimConfig
from rig.sheets import SHEETS
from rig.sim.catalogue import trainable_labels
from rig.sim.clock import SimClock
from rig.sim.marlin import SimFirmware


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_capture_runs_a_plan_on_a_real_board_with_the_simulated_camera(tmp_path):
    board = SimFirmware(
        SimConfig(firmware="marlin", time_scale=0),
        SimClock(0),
        dialect="marlin",
        link_path=tmp_path / "ttyACM0",
    ).start()
    try:
        assert board.wait_ready()
        config = tmp_path / "partrig.toml"
        config.write_text(
            f"""
[serial]
port = "{board.port}"
[camera]
driver = "sim"
still_size = [160, 120]
[simulator]
exposure_ms = 1
[web]
port = {_free_port()}
""",
            encoding="utf-8",
        )
        plan = tmp_path / "plan.toml"
        label = trainable_labels()[0]
        plan.write_text(
            f"""
name = "bring-up"
backgrounds = [{sorted(SHEETS)[0]}]
angles_per_rev = 4
lights = [1.0]
settle_s = 0.0
parts = [{{ label = "{label}", instance = "bring-up-1" }}]
""",
            encoding="utf-8",
        )
        env = {**os.environ, "PARTRIG_CONFIG": str(config)}
        args = [str(plan), "--local", "--yes", "--data", str(tmp_path / "d")]
        result = CliRunner().invoke(app, args, env=env)
        assert result.exit_code == 0, result.output
        assert "completed" in result.output
        # the "real" table turned to each angle in turn: 0, 90, 180, 270 degrees
        assert board.actual_angle_deg() == pytest.approx(270, abs=0.06)
        db = sqlite3.connect(tmp_path / "d" / "partrig.db")
        assert db.execute("SELECT COUNT(*) FROM shots").fetchone()[0] == 4
        db.close()
    finally:
        board.close()
