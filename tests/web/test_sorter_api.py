"""The sorter inside the web app: start/stop, status, the decision log, faults and incidents.

The app runs the real Sorter over the simulated feeder (``--sim``) on a virtual clock, with the
simulated actuator; with no model active every part goes to the review bin and the queue.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient
from web_helpers import OP, VIEW, make_settings

from web.app import create_app


def wait_for(client: TestClient, what, timeout: float = 60.0) -> dict[str, Any]:
    """Poll the status until ``what(status)`` holds (the sorter runs in its own thread)."""
    deadline = time.monotonic() + timeout
    while True:
        status = client.get("/api/sorter/status", headers=VIEW).json()
        if what(status) or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_start_sorts_parts_and_stop_leaves_every_decision_logged(client):
    status = client.get("/api/sorter/status", headers=VIEW).json()
    assert status["available"] and status["state"] == "stopped" and status["active_model"] is None
    assert client.post("/api/sorter/start", headers=VIEW).status_code == 403
    r = client.post("/api/sorter/start", headers=OP)
    assert r.status_code == 200 and r.json()["state"] == "running"
    wait_for(client, lambda s: s["counts"]["decisions"] >= 3)
    stopped = client.post("/api/sorter/stop", headers=OP).json()
    assert stopped["state"] == "stopped"
    made = stopped["counts"]["decisions"]
    assert made >= 3
    decisions = client.get("/api/sorter/decisions?limit=1000", headers=VIEW).json()["items"]
    # NOTE: stop() flushes the log: every decision the loop made is durably in the store.
    assert len(decisions) == made == stopped["decisions"]["total"]
    assert {d["reason"] for d in decisions} == {"no_model"} and {d["bin"] for d in decisions} == {0}
    assert all(d["truth"] for d in decisions)
    assert client.get("/api/review", headers=VIEW).json()["counts"]["open"] == made


def test_a_camera_fault_latches_shows_an_incident_and_needs_an_acknowledgement(client):
    sorter = client.app.state.sorter
    client.post("/api/sorter/start", headers=OP)
    wait_for(client, lambda s: s["counts"]["frames"] >= 1)
    sorter.camera.fail_next(10)
    # NOTE: the fault latches in memory first, then its incident row commits (the id).
    status = wait_for(client, lambda s: s["state"] == "faulted" and s["incident"]["id"])
    assert status["state"] == "faulted" and status["incident"]["kind"] == "sorter_camera"
    again = client.post("/api/sorter/start", headers=OP)
    assert again.status_code == 409 and "camera" in again.json()["detail"]
    open_incidents = client.get("/api/sorter/incidents?open=true", headers=VIEW).json()
    assert [i["kind"] for i in open_incidents] == ["sorter_camera"]
    assert client.post("/api/sorter/acknowledge", headers=VIEW).status_code == 403
    acked = client.post("/api/sorter/acknowledge", headers=OP).json()
    assert acked["incident"] is None and acked["state"] == "stopped"
    assert client.get("/api/sorter/incidents?open=true", headers=VIEW).json() == []
    history = client.get("/api/sorter/incidents", headers=VIEW).json()
    assert history[0]["acknowledged_by"].startswith("key:")


def test_the_sorter_does_not_start_while_a_capture_run_uses_the_camera(client, monkeypatch):
    class LiveRun:
        run_id = 7

    monkeypatch.setattr(client.app.state.runs, "live_run", lambda: LiveRun())
    r = client.post("/api/sorter/start", headers=OP)
    assert r.status_code == 409 and "capture run 7" in r.json()["detail"]
    assert client.get("/api/sorter/status", headers=VIEW).json()["state"] == "stopped"


def test_serve_with_sorter_enabled_starts_it_on_boot_and_stops_it_on_shutdown(tmp_path):
    settings = make_settings(tmp_path / "data", sorter={"enabled": True})
    with TestClient(create_app(settings)) as c:
        assert c.get("/api/sorter/status", headers=VIEW).json()["state"] == "running"
        sorter = c.app.state.sorter
    assert sorter.state == "stopped"


def test_the_serve_command_has_a_sorter_switch():
    from typer.testing import CliRunner

    from web.cli import app

    out = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0 and "--sorter" in out.output
