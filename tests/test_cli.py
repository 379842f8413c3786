"""The assembled ``partrig`` command: every layer's sub-commands reachable from one entry point."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from web.cli import app

runner = CliRunner()


def test_every_sub_command_is_registered():
    out = runner.invoke(app, ["--help"], terminal_width=200)
    assert out.exit_code == 0
    for name in ("config", "rig", "demo", "capture", "serve", "dataset", "backgrounds", "auth"):
        assert f" {name} " in out.output, name


def test_config_check_reports_a_bad_key_with_its_name(tmp_path):
    bad = tmp_path / "partrig.toml"
    bad.write_text("[turntable]\nmax_speed_deg_s = -5\n")
    out = runner.invoke(app, ["config", "check", "--config", str(bad)], terminal_width=200)
    assert out.exit_code != 0
    assert "turntable.max_speed_deg_s" in out.output


def test_rig_status_on_the_simulated_rig(tmp_path):
    out = runner.invoke(app, ["rig", "status", "--sim"], env={"PARTRIG_CONFIG": ""})
    assert out.exit_code == 0, out.output
    status = json.loads(out.output)
    assert status["simulated"] is True and status["link"] == "ready"
    assert status["firmware"]["dialect"] == "partrig"
