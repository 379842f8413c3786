"""The serial port from the page (web/routers/port.py): listed, disconnected, changed and
reconnected through the start-up checks, operator-only with CSRF, refused while the rig is busy,
and a failed connect leaves a closed link and a latched fault, never a half-open link."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from web_helpers import OP, TRAIN, VIEW, make_settings, sign_in

from web.app import create_app


@pytest.fixture
def sim(tmp_path: Path) -> Any:
    """An app on the real simulated rig, with a short handshake so a dead port fails fast."""
    settings = make_settings(tmp_path / "data", serial={"handshake_timeout_s": 1.0})
    with TestClient(create_app(settings)) as c:
        yield c


def sim_port(client: TestClient) -> str:
    return str(client.app.state.rig.firmware_sim.port)


def audit(client: TestClient) -> list[str]:
    rows = client.app.state.store.list_incidents(limit=50)
    return [r["message"] for r in rows if r["kind"] == "serial_port"]


def test_the_port_in_use_and_the_simulated_board_are_listed(sim: TestClient) -> None:
    r = sim.get("/api/rig/port", headers=OP)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["port"] == sim_port(sim) and body["link"] == "ready" and body["baud"] == 250000
    listed = {c["device"]: c for c in body["candidates"]}
    assert listed[sim_port(sim)]["in_use"] and "simulated" in listed[sim_port(sim)]["description"]
    assert body["persisted"] is False


def test_port_control_is_operator_only_and_a_session_needs_its_csrf_token(sim: TestClient) -> None:
    for headers in (VIEW, TRAIN):
        assert sim.get("/api/rig/port", headers=headers).status_code == 403
        r = sim.post("/api/rig/port/connect", json={"port": sim_port(sim)}, headers=headers)
        assert r.status_code == 403
        assert sim.post("/api/rig/port/disconnect", headers=headers).status_code == 403
    csrf = sign_in(sim)
    r = sim.post("/api/rig/port/disconnect", headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    assert sim.app.state.rig.link.state == "ready" and audit(sim) == []
    r = sim.post("/api/rig/port/disconnect", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["link"] == "closed", r.text
    assert any("disconnected" in m for m in audit(sim))


def test_changing_the_port_is_refused_while_the_sorter_runs(sim: TestClient) -> None:
    assert sim.post("/api/sorter/start", json={"collect_for_review": True}, headers=OP).is_success
    try:
        r = sim.post("/api/rig/port/connect", json={"port": sim_port(sim)}, headers=OP)
        assert r.status_code == 409 and "stop it before changing the serial port" in r.text
        r = sim.post("/api/rig/port/disconnect", headers=OP)
        assert r.status_code == 409 and "sorter is running" in r.text
    finally:
        sim.post("/api/sorter/stop", headers=OP)
    assert sim.app.state.rig.link.state == "ready" and audit(sim) == []


@pytest.mark.parametrize(
    ("port", "baud", "says"),
    [
        ("socket://127.0.0.1:9", None, "network URLs are refused"),
        ("/dev/partrig-no-such-board", None, "does not exist"),
        ("/etc/hostname", None, "not a serial device"),
        (None, 12345, "serial.baud 12345 is not supported"),
    ],
)
def test_a_name_that_is_no_port_is_refused_before_anything_closes(
    sim: TestClient, port: str | None, baud: int | None, says: str
) -> None:
    body = {"port": port or sim_port(sim), "baud": baud}
    r = sim.post("/api/rig/port/connect", json=body, headers=OP)
    assert r.status_code == 422 and says in r.json()["detail"], r.text
    assert sim.app.state.rig.link.state == "ready" and sim.app.state.rig.fault is None


def test_a_port_with_no_board_latches_a_fault_and_a_good_one_reconnects(sim: TestClient) -> None:
    master, slave = os.openpty()  # a real serial device with nothing answering on it
    try:
        dead = os.ttyname(slave)
        r = sim.post("/api/rig/port/connect", json={"port": dead}, headers=OP)
    finally:
        os.close(master)
        os.close(slave)
    assert r.status_code == 503, r.text
    detail = r.json()["detail"]
    assert f"connecting to serial port {dead} at 250000 baud failed" in detail
    assert "choose a working port and connect, then clear the fault" in detail
    rig, store = sim.app.state.rig, sim.app.state.store
    assert rig.link.state == "closed", "no half-open link"
    status = sim.get("/api/rig/status", headers=OP).json()
    assert dead in status["fault"] and status["port"] == dead
    assert dead in store.active_fault()["reason"]
    assert any(dead in i["message"] for i in store.list_incidents(unacknowledged=True))
    # moving and sorting are refused while it is latched
    assert sim.post("/api/rig/jog", json={"degrees": 5}, headers=OP).status_code == 409
    r = sim.post("/api/sorter/start", json={"collect_for_review": True}, headers=OP)
    assert r.status_code == 409
    # the simulated board's port passes the start-up checks again; the fault then clears
    r = sim.post("/api/rig/port/connect", json={"port": sim_port(sim)}, headers=OP)
    assert r.status_code == 200 and r.json()["link"] == "ready", r.text
    assert sim.post("/api/terminal/send", json={"line": "M114"}, headers=OP).status_code == 200
    r = sim.post("/api/rig/clear-fault", json={"zero_confirmed": True}, headers=OP)
    assert r.status_code == 200 and r.json()["fault"] is None, r.text
    assert sim.post("/api/rig/jog", json={"degrees": 5}, headers=OP).status_code == 200
    assert any(f"connected the serial port {sim_port(sim)}" in m for m in audit(sim))


def test_a_port_another_process_holds_is_refused_by_the_exclusive_open(sim: TestClient) -> None:
    import serial

    port = sim_port(sim)
    assert sim.post("/api/rig/port/disconnect", headers=OP).status_code == 200
    other = serial.Serial(port, exclusive=True)
    try:
        r = sim.post("/api/rig/port/connect", json={"port": port}, headers=OP)
    finally:
        other.close()
    assert r.status_code == 503 and "already open by" in r.json()["detail"], r.text
    assert f"pid {os.getpid()}" in r.json()["detail"]
    assert sim.app.state.rig.link.state == "closed"
    r = sim.post("/api/rig/port/connect", json={"port": port, "baud": 250000}, headers=OP)
    assert r.status_code == 200 and r.json()["link"] == "ready", r.text
