"""The rig router: status, emergency stop latching, fault clearing, manual moves, preview."""

from __future__ import annotations

import asyncio
import time

from web_helpers import OP, VIEW

from web.preview import PreviewHub
from web.routers.rig import mjpeg_stream


def test_status_reports_link_firmware_angle_lights_camera_and_fault(client):
    s = client.get("/api/rig/status", headers=VIEW).json()
    assert s["link"] == "ready"
    assert s["firmware"]["name"] == "fake"
    assert s["fault"] is None and s["live_run"] is None
    assert {"angle_deg", "lights", "camera"} <= s.keys()


def test_jog_turns_the_table_and_reports_the_new_angle(client, fake_rig):
    r = client.post("/api/rig/jog", json={"degrees": 90}, headers=OP)
    assert r.status_code == 200
    assert r.json()["angle_deg"] == 90
    assert fake_rig.turntable.calls == [("rotate_by", 90)]


def test_jog_out_of_range_is_422(client, fake_rig):
    assert client.post("/api/rig/jog", json={"degrees": 720}, headers=OP).status_code == 422
    assert fake_rig.turntable.calls == []


def test_set_zero_and_lights(client, fake_rig):
    client.post("/api/rig/jog", json={"degrees": 30}, headers=OP)
    assert client.post("/api/rig/zero", headers=OP).json()["angle_deg"] == 0
    assert client.post("/api/rig/lights", json={"level": 0.4}, headers=OP).json()["lights"] == 0.4
    assert client.post("/api/rig/lights", json={"level": 1.5}, headers=OP).status_code == 422


def test_emergency_stop_latches_a_fault_in_the_rig_and_the_store(client, fake_rig, store):
    r = client.post("/api/rig/estop", headers=OP)
    assert r.status_code == 200
    assert fake_rig.estops == 1
    assert r.json()["fault"]
    assert store.active_fault() is not None
    assert client.get("/api/rig/status", headers=VIEW).json()["fault"]


def test_manual_moves_are_refused_with_409_while_a_fault_is_latched(client, fake_rig):
    client.post("/api/rig/estop", headers=OP)
    r = client.post("/api/rig/jog", json={"degrees": 10}, headers=OP)
    assert r.status_code == 409
    assert "Clear the fault" in r.json()["detail"]
    assert fake_rig.turntable.calls == []


def test_clearing_needs_the_zero_confirmed_without_an_endstop(client, fake_rig, store):
    client.post("/api/rig/estop", headers=OP)
    r = client.post("/api/rig/clear-fault", json={}, headers=OP)
    assert r.status_code == 409
    assert "confirm zero" in r.json()["detail"]
    r = client.post("/api/rig/clear-fault", json={"zero_confirmed": True}, headers=OP)
    assert r.status_code == 200
    assert r.json()["fault"] is None
    assert store.active_fault() is None
    assert client.post("/api/rig/jog", json={"degrees": 10}, headers=OP).status_code == 200


def test_the_preview_needs_a_token_or_credentials(client):
    assert client.get("/api/rig/preview.mjpg").status_code == 401
    assert client.get("/api/rig/preview.mjpg?token=forged").status_code == 401
    token = client.get("/api/rig/preview-token", headers=VIEW).json()
    assert token["expires_in_s"] <= 300
    assert token["url"].startswith("/api/rig/preview.mjpg?token=")


def test_the_preview_streams_jpeg_frames_from_one_shared_encoder(fake_rig):
    hub = PreviewHub(fake_rig.camera, fps=60)

    async def take(n: int) -> list[bytes]:
        return [part async for part in mjpeg_stream(hub, max_frames=n)]

    async def two_viewers() -> tuple[list[bytes], list[bytes]]:
        return await asyncio.gather(take(5), take(5))

    a, b = asyncio.run(two_viewers())
    assert all(p.startswith(b"--partrigframe\r\nContent-Type: image/jpeg") for p in a + b)
    assert all(b"\xff\xd8" in p for p in a)
    # NOTE: two viewers share frames: far fewer encodes than frames delivered.
    assert hub.encoded < len(a) + len(b) + 3
    deadline = time.monotonic() + 2
    while hub.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert hub.viewers == 0 and not hub.running


def test_no_camera_means_503_for_the_preview(settings, fake_rig, store):
    from fastapi.testclient import TestClient

    from web.app import create_app

    fake_rig.camera = None
    with TestClient(create_app(settings, rig=fake_rig, store=store)) as c:
        token = c.get("/api/rig/preview-token", headers=VIEW).json()["token"]
        assert c.get(f"/api/rig/preview.mjpg?token={token}").status_code == 503


def test_without_a_rig_the_rig_routes_say_why_with_503(settings, store, monkeypatch):
    from fastapi.testclient import TestClient

    import rig.rig
    from rig.errors import LinkError
    from web.app import create_app

    def refuse(settings):
        raise LinkError("cannot open /dev/partrig-ramps: no such device; plug the board in")

    monkeypatch.setattr(rig.rig, "open_rig", refuse)
    with TestClient(create_app(settings, store=store)) as c:
        r = c.get("/api/rig/status", headers=VIEW)
        assert r.status_code == 503
        assert c.app.state.rig_error.startswith("cannot open")
        assert c.get("/api/dataset/stats", headers=VIEW).status_code == 200
