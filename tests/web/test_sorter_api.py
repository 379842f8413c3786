"""The sorter inside the web app: start/stop, status, the decision log, faults and incidents.

The app runs the real Sorter over the simulated feeder (``--sim``) on a virtual clock, with the
simulated actuator; no model is active, so the sorter starts only in "collect for review" mode
(:data:`COLLECT`), and every part goes to the review bin and the queue.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient
from web_helpers import OP, VIEW, make_settings

from web.app import create_app

COLLECT = {"collect_for_review": True}


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
    assert client.post("/api/sorter/start", headers=VIEW, json=COLLECT).status_code == 403
    r = client.post("/api/sorter/start", headers=OP, json=COLLECT)
    assert r.status_code == 200 and r.json()["state"] == "running"
    assert r.json()["collect_for_review"] is True
    wait_for(client, lambda s: s["counts"]["decisions"] >= 3)
    stopped = client.post("/api/sorter/stop", headers=OP).json()
    assert stopped["state"] == "stopped"
    made = stopped["counts"]["decisions"]
    assert made >= 3
    decisions = client.get("/api/sorter/decisions?limit=1000", headers=VIEW).json()["items"]
    # NOTE: stop() flushes the log: every decision the loop made is durably in the store.
    assert len(decisions) == made == stopped["decisions"]["total"]
    assert {d["reason"] for d in decisions} == {"no_model"} and {d["bin"] for d in decisions} == {0}
    # NOTE: the truth is the simulated feeder's drop log, joined by each decision's drop id.
    feeder = client.app.state.sorter.camera.feeder
    assert all(feeder.drop(d["drop_id"]).label for d in decisions)
    assert client.get("/api/review", headers=VIEW).json()["counts"]["open"] == made


def test_a_camera_fault_latches_shows_an_incident_and_needs_an_acknowledgement(client):
    sorter = client.app.state.sorter
    client.post("/api/sorter/start", headers=OP, json=COLLECT)
    wait_for(client, lambda s: s["counts"]["frames"] >= 1)
    sorter.camera.fail_next(10)
    # NOTE: the fault latches in memory first, then its incident row commits (the id).
    status = wait_for(client, lambda s: s["state"] == "faulted" and s["incident"]["id"])
    assert status["state"] == "faulted" and status["incident"]["kind"] == "sorter_camera"
    again = client.post("/api/sorter/start", headers=OP, json=COLLECT)
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
    r = client.post("/api/sorter/start", headers=OP, json=COLLECT)
    assert r.status_code == 409 and "capture run 7" in r.json()["detail"]
    assert client.get("/api/sorter/status", headers=VIEW).json()["state"] == "stopped"


def test_serve_with_sorter_enabled_starts_it_on_boot_and_stops_it_on_shutdown(tmp_path):
    settings = make_settings(
        tmp_path / "data", sorter={"enabled": True, "collect_for_review": True}
    )
    with TestClient(create_app(settings)) as c:
        status = c.get("/api/sorter/status", headers=VIEW).json()
        assert status["state"] == "running" and status["collect_for_review"] is True
        sorter = c.app.state.sorter
    assert sorter.state == "stopped"


def test_without_a_model_start_is_refused_unless_collect_for_review_is_chosen(client):
    for body in (None, {"collect_for_review": False}):
        r = client.post("/api/sorter/start", headers=OP, json=body)
        assert r.status_code == 409 and "no model is active" in r.json()["detail"]
        assert "collect for review" in r.json()["detail"]
    assert client.get("/api/sorter/status", headers=VIEW).json()["state"] == "stopped"
    r = client.post("/api/sorter/start", headers=OP, json=COLLECT)
    assert r.status_code == 200 and r.json()["state"] == "running"


def test_enabled_on_boot_without_a_model_stays_stopped_and_says_why(tmp_path):
    settings = make_settings(tmp_path / "data", sorter={"enabled": True})
    with TestClient(create_app(settings)) as c:
        status = c.get("/api/sorter/status", headers=VIEW).json()
        assert status["state"] == "stopped"
        assert "did not start on boot" in status["error"] and "no model" in status["error"]


def test_the_sorter_does_not_start_while_the_rig_fault_is_latched(client):
    assert client.post("/api/rig/estop", headers=OP).status_code == 200
    r = client.post("/api/sorter/start", headers=OP, json=COLLECT)
    assert r.status_code == 409 and "fault" in r.json()["detail"]
    assert client.get("/api/sorter/status", headers=VIEW).json()["state"] == "stopped"


def test_a_capture_run_does_not_start_while_the_sorter_uses_the_camera(client):
    assert client.post("/api/sorter/start", headers=OP, json=COLLECT).status_code == 200
    plan = (
        'name = "p"\nbackgrounds = [1]\nangles_per_rev = 4\n'
        'parts = [{ label = "3001", instance = "3001-a" }]\n'
    )
    run = client.post("/api/runs", headers=OP, json={"plan_toml": plan})
    assert run.status_code == 201, run.text
    r = client.post(f"/api/runs/{run.json()['id']}/start", headers=OP)
    assert r.status_code == 409 and "sorter is running" in r.json()["detail"]
    assert client.get(f"/api/runs/{run.json()['id']}", headers=VIEW).json()["state"] == "pending"
    client.post("/api/sorter/stop", headers=OP)


def test_the_serve_command_has_a_sorter_switch():
    from typer.testing import CliRunner

    from web.cli import app

    out = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0 and "--sorter" in out.output


def test_a_run_start_and_a_sorter_start_at_once_never_both_win(client, monkeypatch):
    import threading

    runs = client.app.state.runs
    real_start = runs.start
    checking = threading.Event()

    def slow_start(run_id):  # type: ignore[no-untyped-def]
        # NOTE: widens the gap between "the sorter is stopped" and the run's engine thread.
        checking.set()
        time.sleep(0.5)
        return real_start(run_id)

    monkeypatch.setattr(runs, "start", slow_start)
    plan = (
        'name = "p"\nbackgrounds = [1]\nangles_per_rev = 4\n'
        'parts = [{ label = "3001", instance = "3001-a" }]\n'
    )
    run_id = client.post("/api/runs", headers=OP, json={"plan_toml": plan}).json()["id"]
    answers: dict[str, Any] = {}
    starter = threading.Thread(
        target=lambda: answers.setdefault(
            "run", client.post(f"/api/runs/{run_id}/start", headers=OP)
        )
    )
    starter.start()
    try:
        assert checking.wait(10)
        sorter = client.post("/api/sorter/start", headers=OP, json=COLLECT)
    finally:
        starter.join(30)
    assert answers["run"].status_code == 200, answers["run"].text
    assert sorter.status_code == 409 and f"capture run {run_id}" in sorter.json()["detail"]
    assert client.get("/api/sorter/status", headers=VIEW).json()["state"] == "stopped"
    client.post(f"/api/runs/{run_id}/abort", headers=OP)
