"""The request gate (web/middleware.py) in-process: per-route limits, hosts, cache policy.

The same behaviour is attacked over a real server in tests/attack/; these pin the details.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from web_helpers import OP, TRAIN, VIEW, make_settings

from web.app import create_app
from web.middleware import Guard, private


@pytest.fixture
def small_client(tmp_path, fake_rig, store):
    settings = make_settings(
        tmp_path / "data", web={"max_body_kb": 1, "allowed_hosts": ["rig.example.org"]}
    )
    settings.models.max_upload_mb = 1
    with TestClient(create_app(settings, rig=fake_rig, store=store)) as c:
        yield c


def test_each_route_has_its_own_body_limit(small_client):
    pad = "x" * 2000
    r = small_client.post("/api/rig/lights", json={"level": 0.5, "pad": pad}, headers=OP)
    assert r.status_code == 413 and "1 KiB" in r.json()["detail"]
    assert "web.max_body_kb" in r.json()["detail"]
    # a plan route allows a real plan (its own 576 KiB), above web.max_body_kb
    r = small_client.post("/api/plans/preview", json={"plan_toml": "#" + pad}, headers=VIEW)
    assert r.status_code == 422  # reached the plan parser: not a 413
    big = {"files": ("model.tflite", b"\0" * (2 * 2**20), "application/octet-stream")}
    r = small_client.post("/api/models", files=big, headers=TRAIN)
    assert r.status_code == 413 and "models.max_upload_mb" in r.json()["detail"]


def test_a_streamed_body_is_cut_off_at_the_limit(small_client):
    chunks = (b'{"level": 0.5, "pad": "' + b"x" * 600, b"x" * 600 + b'"}')
    r = small_client.post(
        "/api/rig/lights",
        content=iter(chunks),
        headers={**OP, "Content-Type": "application/json"},
    )
    assert r.status_code == 413


def test_a_body_without_credentials_is_refused_before_it_is_read(small_client):
    r = small_client.post("/api/runs", content=b"x" * 5000)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "X-Api-Key"
    r = small_client.post("/api/runs", content=b"{}", headers={"X-Api-Key": "wrong"})
    assert r.status_code == 401 and "unknown API key" in r.json()["detail"]


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("testserver", True),
        ("rig.example.org", True),
        ("RIG.example.org:8443", True),
        ("192.168.1.20:8000", True),
        ("[fe80::1]:80", True),
        ("localhost", True),
        ("evil.example", False),
        ("rig.example.org.evil.example", False),
    ],
)
def test_only_known_host_names_are_answered(small_client, host, ok):
    r = small_client.get("/api/health", headers={"Host": host})
    assert (r.status_code == 200) is ok, r.text


def test_credentialed_answers_are_private_whatever_the_route_chose():
    assert private(None) == "private, no-store"
    assert private("public, max-age=31536000, immutable") == "private, max-age=31536000, immutable"
    assert private("no-cache") == "private, no-cache"
    assert private("private, max-age=60") == "private, max-age=60"


def test_the_gate_knows_the_machine_s_own_names(settings):
    import socket

    guard = Guard(lambda *a: None, settings)
    name = socket.gethostname().lower()
    assert guard.host_allowed(name, {"server": None})
    assert guard.host_allowed(f"{name}.local:8000", {"server": None})
    assert not guard.host_allowed("attacker.example", {"server": ("127.0.0.1", 8000)})
    assert guard.host_allowed("partrig-box", {"server": ("partrig-box", 80)})
