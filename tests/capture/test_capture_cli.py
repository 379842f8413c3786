"""``partrig capture``: argument checks, the server client, and local runs on the simulated rig."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from capture.runs.cli import app
from capture.runs.remote import RemoteCapture, server_is_up
from capture.runs.state import RunState
from rig.config import parse_settings
from rig.errors import ConfigError

runner = CliRunner()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_plan_and_resume_are_exclusive_and_one_is_required():
    result = runner.invoke(app, [])
    assert result.exit_code == 2 and "either a plan file or --resume" in result.output
    result = runner.invoke(app, ["plan.toml", "--resume", "3"])
    assert result.exit_code == 2 and "not both" in result.output


def test_a_missing_plan_file_is_a_clear_error(tmp_path):
    result = runner.invoke(app, [str(tmp_path / "nope.toml"), "--local"])
    assert result.exit_code == 2 and "cannot read the plan" in result.output


def test_no_server_is_detected_when_nothing_listens():
    settings = parse_settings({"web": {"port": _free_port()}})
    assert server_is_up(settings) is False


def test_the_server_client_creates_starts_and_follows_a_run_with_the_operator_key(monkeypatch):
    calls: list[tuple[str, str, str | None]] = []
    states = iter(["running", "awaiting_operator", "running", "completed"])

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append((request.method, request.url.path, request.headers.get("x-api-key")))
        if request.method == "POST" and request.url.path == "/api/runs":
            assert json.loads(request.content)["plan_toml"] == "name = 'x'"
            return httpx.Response(201, json={"id": 7})
        if request.method == "GET":
            state = next(states)
            return httpx.Response(
                200, json={"state": state, "prompt": "Install sheet 1", "shots_total": 4}
            )
        return httpx.Response(200, json={})

    monkeypatch.setattr("builtins.input", lambda prompt="": "")
    settings = parse_settings({"auth": {"operator_keys": ["k-123"]}})
    client = RemoteCapture(
        settings, Console(quiet=True), poll_s=0, transport=httpx.MockTransport(handler)
    )
    assert client.run("name = 'x'", None) is RunState.COMPLETED
    assert [(m, p) for m, p, _ in calls] == [
        ("POST", "/api/runs"),
        ("POST", "/api/runs/7/start"),
        ("GET", "/api/runs/7"),
        ("GET", "/api/runs/7"),
        ("POST", "/api/runs/7/answer"),
        ("GET", "/api/runs/7"),
        ("GET", "/api/runs/7"),
    ]
    assert {key for _, _, key in calls} == {"k-123"}


def test_the_server_client_needs_an_operator_key():
    with pytest.raises(ConfigError, match="operator_keys"):
        RemoteCapture(parse_settings({}), Console(quiet=True))


# --- local mode on the simulated rig (needs the rig, store and plan modules) -----------------


def _sim_env(tmp_path: Path, **camera) -> dict[str, str]:
    config = tmp_path / "partrig.toml"
    size = camera.get("still_size", [320, 240])
    config.write_text(
        f"""
sim = true
[camera]
driver = "{camera.get("driver", "sim")}"
still_size = {size}
[simulator]
time_scale = 0
[web]
port = {_free_port()}
"""
    )
    return {**os.environ, "PARTRIG_CONFIG": str(config)}


def test_a_bad_plan_names_the_field_and_creates_nothing(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text('name = "bad"\nangles_per_rev = 0\nbackgrounds = []\nparts = []\n')
    env = _sim_env(tmp_path)
    result = runner.invoke(
        app, [str(plan), "--sim", "--local", "--data", str(tmp_path / "d")], env=env
    )
    assert result.exit_code == 2
    assert "error:" in result.output and ("angles" in result.output or "parts" in result.output)


def test_an_unwritable_data_dir_is_a_clear_error(tmp_path):
    if os.geteuid() == 0:
        target = Path("/proc/partrig-data")  # NOTE: root ignores permissions; /proc refuses.
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "data"
    plan = _write_sim_plan(tmp_path)
    result = runner.invoke(
        app, [str(plan), "--sim", "--local", "--yes", "--data", str(target)], env=_sim_env(tmp_path)
    )
    assert result.exit_code == 2 and "error:" in result.output


def test_a_missing_camera_is_a_clear_error_and_the_run_is_not_started(tmp_path):
    plan = _write_sim_plan(tmp_path)
    env = _sim_env(tmp_path)
    config = Path(env["PARTRIG_CONFIG"])
    config.write_text(
        config.read_text().replace('driver = "sim"', 'driver = "opencv"\ndevice = 63')
    )
    data = tmp_path / "d"
    result = runner.invoke(app, [str(plan), "--local", "--yes", "--data", str(data)], env=env)
    assert result.exit_code == 2 and "camera" in result.output.lower()


def test_a_local_simulated_run_completes_and_resume_of_a_completed_run_is_refused(tmp_path):
    plan = _write_sim_plan(tmp_path)
    env = _sim_env(tmp_path)
    data = tmp_path / "d"
    result = runner.invoke(
        app, [str(plan), "--sim", "--local", "--yes", "--data", str(data)], env=env
    )
    assert result.exit_code == 0, result.output
    assert "completed" in result.output
    result = runner.invoke(app, ["--resume", "1", "--sim", "--local", "--data", str(data)], env=env)
    assert result.exit_code == 2 and "completed" in result.output


def _write_sim_plan(tmp_path: Path) -> Path:
    from rig.sheets import SHEETS

    from_catalogue = sim_labels(1)[0]
    path = tmp_path / "plan.toml"
    path.write_text(
        f"""
name = "cli"
backgrounds = [{sorted(SHEETS)[0]}]
angles_per_rev = 4
lights = [1.0]
settle_s = 0.0
parts = [{{ label = "{from_catalogue}", instance = "cli-1" }}]
"""
    )
    return path


def sim_labels(n: int) -> list[str]:
    """``n`` trainable part labels from the simulated catalogue, in catalogue order."""
    from rig.sim.catalogue import trainable_labels

    labels = trainable_labels()
    assert len(labels) >= n, f"the simulated catalogue has only {len(labels)} trainable parts"
    return labels[:n]
