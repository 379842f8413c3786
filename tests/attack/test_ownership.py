"""One owner of the hardware, enforced against a real ``partrig serve --sim`` on loopback.

Every test here is something that used to get through: a second process driving the rig beside
the server, a second server on the same data folder, a capture run and the sorter sharing the
camera, the sorter started over a latched fault or with no model.  CLI commands run as real
subprocesses with the server's own configuration file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_server import OPERATOR_KEY, VIEWER_KEY, LiveServer, free_port, start_server

ROOT = Path(__file__).resolve().parents[2]
PLAN = """
name = "owner"
backgrounds = [1]
angles_per_rev = 4
parts = [{ label = "3001", instance = "3001-a" }]
"""
COLLECT = {"collect_for_review": True}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the module (starting one costs seconds); tests leave it as they found it."""
    live = start_server(tmp_path_factory.mktemp("owner") / "srv")
    try:
        yield live
    finally:
        live.stop()


def partrig(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run the ``partrig`` command line in a fresh process, as an operator would."""
    env = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "web.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )


def names_the_server(text: str, server: LiveServer) -> bool:
    flat = " ".join(text.split())
    return f"partrig serve (pid {server.proc.pid}, {server.url})" in flat


def test_rig_commands_go_through_the_server_or_refuse_naming_it(server: LiveServer) -> None:
    lights = partrig("rig", "lights", "0.4", "--sim", "-c", str(server.config))
    assert lights.returncode == 0, lights.stderr
    assert names_the_server(lights.stdout, server)
    with server.client(VIEWER_KEY) as viewer:
        assert viewer.get("/api/rig/status").json()["lights"] == pytest.approx(0.4, abs=0.01)
    with server.client() as op:
        op.post("/api/rig/lights", json={"level": 0})
    for command in (["rotate", "90"], ["home"]):
        refused = partrig("rig", *command, "--sim", "-c", str(server.config))
        assert refused.returncode == 2
        assert names_the_server(refused.stderr, server), refused.stderr
        assert "web app" in refused.stderr
    assert server.alive()


def test_the_server_is_found_by_its_lock_not_by_the_configured_port(
    server: LiveServer, tmp_path: Path
) -> None:
    # NOTE: same data folder, but a configuration that names another port: probing only the
    # configured port would miss the server and open the (real) serial port beside it.
    other = tmp_path / "other.toml"
    text = server.config.read_text(encoding="utf-8")
    other.write_text(text + f"\n[web]\nport = {free_port()}\n", encoding="utf-8")
    status = partrig("rig", "status", "--sim", "-c", str(other))
    assert status.returncode == 0, status.stderr
    assert names_the_server(status.stdout, server)
    local = partrig("capture", "--local", "--sim", "-c", str(other), str(_plan(tmp_path)))
    assert local.returncode == 2 and names_the_server(local.stderr, server), local.stderr
    assert "drop --local" in local.stderr


def test_a_second_server_on_the_same_data_folder_refuses_to_start(server: LiveServer) -> None:
    second = partrig(
        "serve", "--sim", "--config", str(server.config), "--port", str(free_port()), timeout=60
    )
    assert second.returncode == 2
    assert names_the_server(second.stderr, server), second.stderr
    assert server.alive()


def test_a_snapshot_from_the_shell_is_written_by_the_server_that_owns_the_store(
    server: LiveServer,
) -> None:
    # NOTE: the store's one writer is the lock holder, so the command hands its options to the
    # server (POST /api/snapshots) instead of writing beside it; this store has no shots yet.
    snap = partrig("dataset", "snapshot", "-c", str(server.config))
    assert snap.returncode == 2 and names_the_server(snap.stderr, server), snap.stderr
    assert "no shots match this filter" in " ".join(snap.stderr.split())
    assert not list(server.data_dir.glob("snapshots/snap-*"))


def test_capture_and_the_sorter_never_share_the_camera(server: LiveServer) -> None:
    with server.client() as op:
        assert op.post("/api/sorter/start", json=COLLECT).status_code == 200
        try:
            run = op.post("/api/runs", json={"plan_toml": PLAN})
            assert run.status_code == 201, run.text
            started = op.post(f"/api/runs/{run.json()['id']}/start")
            assert started.status_code == 409 and "sorter is running" in started.json()["detail"]
            assert op.get(f"/api/runs/{run.json()['id']}").json()["state"] == "pending"
        finally:
            assert op.post("/api/sorter/stop").json()["state"] == "stopped"
        assert op.post(f"/api/runs/{run.json()['id']}/start").status_code == 200
        try:
            refused = op.post("/api/sorter/start", json=COLLECT)
            assert refused.status_code == 409 and "capture run" in refused.json()["detail"]
        finally:
            op.post(f"/api/runs/{run.json()['id']}/abort")


def test_the_sorter_needs_a_model_or_an_explicit_collect_for_review(server: LiveServer) -> None:
    with server.client() as op:
        refused = op.post("/api/sorter/start")
        assert refused.status_code == 409 and "no model is active" in refused.json()["detail"]
        assert op.get("/api/sorter/status").json()["state"] == "stopped"
        started = op.post("/api/sorter/start", json=COLLECT)
        assert started.status_code == 200, started.text
        assert started.json()["state"] == "running" and started.json()["collect_for_review"]
        assert op.post("/api/sorter/stop").json()["state"] == "stopped"


def test_partrig_sort_drives_the_servers_sorter_and_needs_the_explicit_choice(
    server: LiveServer,
) -> None:
    refused = partrig("sort", "--sim", "--parts", "1", "-c", str(server.config))
    assert refused.returncode == 2 and "no model is active" in refused.stderr, refused.stderr
    sorted_ = partrig(
        "sort", "--sim", "--parts", "2", "--collect-for-review", "-c", str(server.config)
    )
    assert sorted_.returncode == 0, sorted_.stderr
    assert "stopped the server's sorter" in sorted_.stdout
    with server.client(VIEWER_KEY) as viewer:
        status = viewer.get("/api/sorter/status").json()
    assert status["state"] == "stopped" and status["decisions"]["total"] >= 2


def test_the_sorter_refuses_to_start_over_a_latched_rig_fault(server: LiveServer) -> None:
    # NOTE: last in the module: the fault stays latched.
    with server.client(OPERATOR_KEY) as op:
        assert op.post("/api/rig/estop").status_code == 200
        refused = op.post("/api/sorter/start", json=COLLECT)
        assert refused.status_code == 409 and "fault" in refused.json()["detail"]
        assert op.get("/api/sorter/status").json()["state"] != "running"
    assert server.alive()


def _plan(folder: Path) -> Path:
    path = folder / "plan.toml"
    path.write_text(PLAN, encoding="utf-8")
    return path
