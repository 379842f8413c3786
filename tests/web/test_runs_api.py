"""The runs API: create, plan preview, history, each transition (409 when invalid), events."""

from __future__ import annotations

import json

from web_helpers import OP, VIEW

PLAN = """
name = "two bricks"
backgrounds = [1]
angles_per_rev = 4
parts = [{ label = "3001", instance = "3001-a" }, { label = "3003", instance = "3003-a" }]
"""


def create(client) -> dict:
    r = client.post("/api/runs", json={"plan_toml": PLAN}, headers=OP)
    assert r.status_code == 201, r.text
    return r.json()


def sse_events(text: str) -> list[dict]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != ":"
        )
        if "data" in fields:
            events.append(
                {
                    "event": fields.get("event"),
                    "id": fields.get("id"),
                    "data": json.loads(fields["data"]),
                }
            )
    return events


def test_a_plan_preview_expands_the_shots_and_estimates_the_duration(client):
    r = client.post("/api/plans/preview", json={"plan_toml": PLAN}, headers=VIEW)
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 8 and len(body["shots"]) == 8
    assert body["estimate_s"] > 0
    assert body["shots"][0]["label"] == "3001"


def test_an_invalid_plan_is_422_naming_the_field(client):
    r = client.post(
        "/api/runs", json={"plan_toml": PLAN.replace("angles_per_rev", "angle_per_rev")}, headers=OP
    )
    assert r.status_code == 422
    assert "angle_per_rev" in r.json()["detail"]
    assert (
        client.post("/api/runs", json={"plan_toml": "not = [toml"}, headers=OP).status_code == 422
    )


def test_a_created_run_is_pending_with_its_shot_count_and_listed_in_history(client):
    run = create(client)
    assert run["state"] == "pending" and run["shots_total"] == 8 and run["total"] == 8
    assert client.get(f"/api/runs/{run['id']}", headers=VIEW).json()["name"] == "two bricks"
    assert [r["id"] for r in client.get("/api/runs", headers=VIEW).json()] == [run["id"]]
    assert client.get(f"/api/runs/{run['id']}/shots", headers=VIEW).json()["items"] == []


def test_a_plan_file_can_be_uploaded(client):
    files = {"plan": ("plan.toml", PLAN.encode(), "application/toml")}
    r = client.post("/api/runs/upload", files=files, data={"name": "uploaded"}, headers=OP)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "uploaded"
    bad = {"plan": ("plan.toml", b"\xff\xfe", "application/toml")}
    assert client.post("/api/runs/upload", files=bad, headers=OP).status_code == 422


def test_invalid_transitions_of_a_pending_run_are_409(client):
    run_id = create(client)["id"]
    for verb in ("pause", "resume", "answer"):
        r = client.post(f"/api/runs/{run_id}/{verb}", headers=OP)
        assert r.status_code == 409, verb
        assert "pending" in r.json()["detail"]


def test_abort_ends_a_pending_run_and_then_nothing_else_is_allowed(client):
    run_id = create(client)["id"]
    r = client.post(f"/api/runs/{run_id}/abort", headers=OP)
    assert r.status_code == 200 and r.json()["state"] == "aborted"
    for verb in ("start", "pause", "resume", "abort", "answer"):
        assert client.post(f"/api/runs/{run_id}/{verb}", headers=OP).status_code == 409, verb


def test_starting_while_a_fault_is_latched_is_409(client):
    run_id = create(client)["id"]
    client.post("/api/rig/estop", headers=OP)
    r = client.post(f"/api/runs/{run_id}/start", headers=OP)
    assert r.status_code == 409
    assert "fault" in r.json()["detail"]
    assert client.get(f"/api/runs/{run_id}", headers=VIEW).json()["state"] == "pending"


def test_unknown_runs_are_404(client):
    assert client.get("/api/runs/999", headers=VIEW).status_code == 404
    assert client.post("/api/runs/999/start", headers=OP).status_code == 404
    assert client.get("/api/runs/999/events", headers=VIEW).status_code == 404


def test_viewers_cannot_create_or_control_runs(client):
    assert client.post("/api/runs", json={"plan_toml": PLAN}, headers=VIEW).status_code == 403
    run_id = create(client)["id"]
    assert client.post(f"/api/runs/{run_id}/abort", headers=VIEW).status_code == 403


def test_events_replay_what_a_reconnecting_page_missed_by_last_event_id(client):
    run_id = create(client)["id"]
    run = client.app.state.runs.known(run_id)
    for i in range(3):
        run.events.publish("info", {"text": f"message {i}"})
    client.post(f"/api/runs/{run_id}/abort", headers=OP)
    r = client.get(f"/api/runs/{run_id}/events", headers={**VIEW, "Last-Event-ID": "2"})
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[0]["event"] == "snapshot"
    assert [e["id"] for e in events[1:]] == ["3", "4"]
    assert events[1]["data"]["data"]["text"] == "message 2"
    assert events[2]["event"] == "state" and events[2]["data"]["data"]["state"] == "aborted"
    everything = sse_events(client.get(f"/api/runs/{run_id}/events?after=0", headers=VIEW).text)
    assert [e["id"] for e in everything[1:]] == ["1", "2", "3", "4"]


def test_restarting_the_server_marks_live_runs_interrupted_and_does_not_restart_them(
    settings, fake_rig, store
):
    from fastapi.testclient import TestClient

    from web.app import create_app

    run_id = store.create_run("left running", PLAN, "{}", 8)
    store.set_run_state(run_id, "running")
    with TestClient(create_app(settings, rig=fake_rig, store=store)) as c:
        run = c.get(f"/api/runs/{run_id}", headers=VIEW).json()
        assert run["state"] == "interrupted"
        assert c.app.state.runs.live_run() is None
