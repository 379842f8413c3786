"""The operator's routes behind the new pages: the G-code terminal and port, the settings in
force (secrets masked), a snapshot as one tar, and the machine's health."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from snapshot_fixture import sample_files, write_snapshot
from web_helpers import OP, OPERATOR_KEY, TRAIN, VIEW, make_settings

from web.app import create_app
from web.routers.health import cpu_temperature_c, memory, parse_throttled
from web.routers.settings import MASK
from web.routers.terminal import command_word

PLAN = (
    'name = "t"\nbackgrounds = [1]\nangles_per_rev = 4\nsettle_s = 0\n'
    'parts = [{ label = "brick-2x4-red", instance = "brick-2x4-red-t" }]\n'
)


@pytest.fixture
def sim(tmp_path: Path) -> Any:
    """A client of an app on the real simulated rig (the terminal talks to its board)."""
    with TestClient(create_app(make_settings(tmp_path / "data"))) as c:
        yield c


def send(client: TestClient, line: str, headers: dict[str, str] = OP) -> Any:
    return client.post("/api/terminal/send", json={"line": line}, headers=headers)


def test_a_terminal_line_gets_its_reply_and_is_audited(sim: TestClient) -> None:
    r = send(sim, "M114")
    assert r.status_code == 200, r.text
    assert any("Count" in line for line in r.json()["reply"]) and not r.json()["position_untrusted"]
    log = sim.get("/api/terminal/log", headers=OP).json()["lines"]
    kinds = [(line["kind"], line["text"]) for line in log]
    assert ("sent", "M114") in kinds and ("reply", "ok") in kinds
    store = sim.app.state.store
    audit = [i for i in store.list_incidents(limit=10) if i["kind"] == "gcode_terminal"]
    assert len(audit) == 1 and audit[0]["message"].startswith("M114 →") is False
    assert "M114" in audit[0]["message"] and audit[0]["acknowledged_at"] is not None
    assert store.list_incidents(unacknowledged=True) == [], "an audit record is not an alarm"


def test_the_terminal_is_operator_only(sim: TestClient) -> None:
    assert send(sim, "M114", VIEW).status_code == 403
    assert send(sim, "M114", TRAIN).status_code == 403
    assert sim.get("/api/terminal/log", headers=VIEW).status_code == 403


@pytest.mark.parametrize("line", ["G92 X5", "M92 X80", "M206 X1", "M500", "M502", "G1 X10"])
def test_lines_that_change_the_axis_make_the_position_untrusted(sim: TestClient, line: str) -> None:
    r = send(sim, line)
    # NOTE: our firmware has no M206 or EEPROM; a refused line still gives the position up,
    # since nobody can tell what a half-understood line did to the board.
    assert (r.status_code == 200 and r.json()["position_untrusted"]) or r.status_code == 422, r.text
    status = sim.get("/api/rig/status", headers=OP).json()
    assert "terminal" in status["fault"] and line in status["fault"]
    jog = sim.post("/api/rig/jog", json={"degrees": 10}, headers=OP)
    assert jog.status_code == 409 and "position" in jog.json()["detail"]
    cleared = sim.post("/api/rig/clear-fault", json={"zero_confirmed": True}, headers=OP)
    assert cleared.status_code == 200 and cleared.json()["fault"] is None
    assert sim.post("/api/rig/jog", json={"degrees": 10}, headers=OP).status_code == 200


@pytest.mark.parametrize(
    ("line", "why"), [("M112", "EMERGENCY STOP"), ("M110 N5", "numbers"), ("M114 ; x", "';'")]
)
def test_some_lines_are_refused_with_what_to_do(sim: TestClient, line: str, why: str) -> None:
    r = send(sim, line)
    assert r.status_code == 422 and why in r.json()["detail"]
    assert not [i for i in sim.app.state.store.list_incidents() if i["kind"] == "gcode_terminal"]


def test_the_terminal_is_refused_while_a_run_or_the_sorter_is_active(sim: TestClient) -> None:
    run = sim.post("/api/runs", json={"plan_toml": PLAN}, headers=OP).json()
    assert sim.post(f"/api/runs/{run['id']}/start", headers=OP).status_code == 200
    r = send(sim, "M114")
    assert r.status_code == 409 and f"run {run['id']}" in r.json()["detail"]
    assert sim.post("/api/rig/port/reconnect", headers=OP).status_code == 409
    assert sim.post(f"/api/runs/{run['id']}/abort", headers=OP).status_code == 200
    sim.app.state.runs.get(run["id"])._thread.join(10)
    started = sim.post("/api/sorter/start", json={"collect_for_review": True}, headers=OP)
    assert started.status_code == 200, started.text
    try:
        r = send(sim, "M114")
        assert r.status_code == 409 and "sorter" in r.json()["detail"]
    finally:
        sim.post("/api/sorter/stop", headers=OP)
    assert send(sim, "M114").status_code == 200


def test_reconnect_reopens_the_port_and_gives_the_position_up(sim: TestClient) -> None:
    r = sim.post("/api/rig/port/reconnect", headers=OP)
    assert r.status_code == 200 and r.json()["link"] == "ready", r.text
    assert "reopened" in sim.get("/api/rig/status", headers=OP).json()["fault"]
    assert send(sim, "M114").status_code == 200
    assert (
        sim.post("/api/rig/clear-fault", json={"zero_confirmed": True}, headers=OP).status_code
        == 200
    )


def test_command_words_are_normalised() -> None:
    assert command_word("g1 x10") == "G1" and command_word("M092") == "M92"
    assert command_word("T0") is None


def test_the_settings_in_force_hide_every_secret(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    with TestClient(create_app(settings)) as c:
        assert c.get("/api/settings", headers=VIEW).status_code == 403
        r = c.get("/api/settings", headers=OP)
    assert r.status_code == 200
    auth = r.json()["settings"]["auth"]
    assert auth["operator_password_hash"] == MASK and auth["session_secret"] == MASK
    assert auth["operator_keys"] == [MASK] and auth["rate_limit_per_min"] >= 1
    for secret in (
        OPERATOR_KEY,
        settings.auth.operator_password_hash,
        settings.auth.session_secret,
    ):
        assert secret not in r.text
    assert r.json()["settings"]["camera"]["driver"] == "sim"


def test_a_snapshot_downloads_as_one_tar_with_every_file(
    client: TestClient, settings: Any, store: Any
) -> None:
    manifest = write_snapshot(settings.data.dir, "snap-0001", sample_files(shards=2), store=store)
    r = client.get("/api/snapshots/snap-0001/archive.tar", headers=TRAIN)
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-tar"
    assert int(r.headers["content-length"]) == len(r.content)
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        names = tar.getnames()
        assert names[0] == "snap-0001/manifest.json"
        for f in manifest["files"]:
            data = tar.extractfile(f"snap-0001/{f['path']}").read()
            assert hashlib.sha256(data).hexdigest() == f["sha256"]
    assert client.get("/api/snapshots/snap-0001/archive.tar", headers=VIEW).status_code == 403
    assert client.get("/api/snapshots/snap-0002/archive.tar", headers=TRAIN).status_code == 404


def test_machine_health_reads_what_the_machine_offers(client: TestClient, tmp_path: Path) -> None:
    r = client.get("/api/health/machine", headers=VIEW).json()
    assert r["disk"]["free_bytes"] > 0 and r["disk"]["total_bytes"] >= r["disk"]["free_bytes"]
    zone = tmp_path / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "temp").write_text("61234\n")
    assert cpu_temperature_c(tmp_path / "thermal") == 61.2
    assert cpu_temperature_c(tmp_path / "none") is None
    info = tmp_path / "meminfo"
    info.write_text("MemTotal:  1000 kB\nMemFree: 10 kB\nMemAvailable:  400 kB\n")
    assert memory(info) == {"total_bytes": 1024000, "available_bytes": 409600}
    assert parse_throttled("throttled=0x50005") == {
        "raw": "0x50005",
        "now": ["under-voltage", "throttled"],
        "since_boot": ["under-voltage", "throttled"],
    }
    assert parse_throttled("error") is None


def test_the_overview_names_the_live_run_and_its_prompt(sim: TestClient) -> None:
    run = sim.post("/api/runs", json={"plan_toml": PLAN}, headers=OP).json()
    sim.post(f"/api/runs/{run['id']}/start", headers=OP)
    try:
        import time

        deadline = time.monotonic() + 20
        while (o := sim.get("/api/overview", headers=VIEW).json())["run"][
            "state"
        ] != "awaiting_operator":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert o["run"]["id"] == run["id"] and "background" in o["run"]["prompt"].lower()
        assert o["sorter"]["state"] == "stopped" and o["fault"] is None and o["health"]["disk"]
    finally:
        sim.post(f"/api/runs/{run['id']}/abort", headers=OP)


def test_camera_settings_change_only_while_nothing_holds_the_camera(sim: TestClient) -> None:
    camera = sim.app.state.rig.camera
    before = camera.preview().mean()
    manual = {"auto": False, "exposure_us": 2500, "gain": 1, "wb_red": 2, "wb_blue": 2}
    r = sim.put("/api/camera/settings", json=manual, headers=OP)
    assert r.status_code == 200 and r.json()["auto"] is False and r.json()["exposure_us"] == 2500
    assert camera.preview().mean() < 0.6 * before, "the simulated camera honours the exposure"
    assert sim.put("/api/camera/settings", json=manual, headers=VIEW).status_code == 403
    run = sim.post("/api/runs", json={"plan_toml": PLAN}, headers=OP).json()
    sim.post(f"/api/runs/{run['id']}/start", headers=OP)
    try:
        refused = sim.put("/api/camera/settings", json={"auto": True}, headers=OP)
        assert refused.status_code == 409 and "camera" in refused.json()["detail"]
    finally:
        sim.post(f"/api/runs/{run['id']}/abort", headers=OP)
        sim.app.state.runs.get(run["id"])._thread.join(10)
    # NOTE: what a run's engine does at its start: unlock, then meter and lock
    camera.unlock()
    assert camera.meter_and_lock().exposure_us == 2500, "a run records the manual exposure"
    assert sim.put("/api/camera/settings", json={"auto": True}, headers=OP).json()["auto"]
    assert camera.manual is None
