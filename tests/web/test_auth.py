"""Authentication and authorisation: keys per role, password sessions, CSRF, binding rules."""

from __future__ import annotations

import pytest
from web_helpers import OP, PASSWORD, TRAIN, VIEW, make_settings, sign_in

from rig.errors import ConfigError
from web.security import Signer, hash_password, role_for_key, verify_password
from web.serve import check_bind, demo_password


def test_health_needs_no_credentials(client):
    assert client.get("/api/health").json()["service"] == "partrig"


def test_reading_without_credentials_is_401_and_with_a_bad_key_is_401(client):
    assert client.get("/api/rig/status").status_code == 401
    r = client.get("/api/rig/status", headers={"X-Api-Key": "nope"})
    assert r.status_code == 401
    assert "unknown API key" in r.json()["detail"]


def test_every_mutating_route_rejects_missing_credentials(client):
    mutating = [
        (path, method.upper())
        for path, ops in client.app.openapi()["paths"].items()
        for method in ops
        if method in {"post", "put", "patch", "delete"}
        and path not in {"/api/auth/login", "/api/auth/logout"}
    ]
    assert len(mutating) >= 12
    for path, method in mutating:
        url = path.replace("{run_id}", "1").replace("{shot_id}", "1")
        r = client.request(method, url, json={})
        assert r.status_code == 401, (method, url, r.status_code)


def test_viewer_and_trainer_keys_cannot_control_the_rig(client, fake_rig):
    for headers in (VIEW, TRAIN):
        assert client.get("/api/rig/status", headers=headers).status_code == 200
        r = client.post("/api/rig/jog", json={"degrees": 10}, headers=headers)
        assert r.status_code == 403
        assert "operator" in r.json()["detail"]
    assert fake_rig.turntable.calls == []


def test_the_operator_signs_in_with_the_password_and_gets_a_session(client):
    csrf = sign_in(client)
    assert client.get("/api/auth/me").json() == {
        "role": "operator",
        "via": "session",
        "name": "operator",
    }
    r = client.post("/api/rig/lights", json={"level": 0.5}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200


def test_a_wrong_password_is_refused(client):
    r = client.post("/api/auth/login", json={"password": "wrong password"})
    assert r.status_code == 401
    assert client.get("/api/auth/me").status_code == 401


def test_a_session_without_the_csrf_token_cannot_mutate(client, fake_rig):
    sign_in(client)
    assert client.post("/api/rig/jog", json={"degrees": 5}).status_code == 403
    r = client.post("/api/rig/jog", json={"degrees": 5}, headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403
    assert "CSRF" in r.json()["detail"]
    assert fake_rig.turntable.calls == []


def test_logout_ends_the_session(client):
    sign_in(client)
    client.post("/api/auth/logout")
    assert client.get("/api/rig/status").status_code == 401


def test_a_forged_or_expired_session_cookie_is_ignored(client):
    client.cookies.set("partrig_session", Signer("x" * 32).sign("session", {"user": "x"}, 60))
    assert client.get("/api/auth/me").status_code == 401
    signer = client.app.state.signer
    client.cookies.set("partrig_session", signer.sign("session", {"user": "o", "csrf": "c"}, -1))
    assert client.get("/api/auth/me").status_code == 401


def test_a_preview_token_is_not_a_session():
    signer = Signer("k" * 32)
    token = signer.sign("preview", {"role": "viewer"}, 60)
    assert signer.unsign("preview", token) is not None
    assert signer.unsign("session", token) is None
    assert signer.unsign("preview", token[:-2] + "xx") is None


def test_repeated_failed_sign_ins_are_rate_limited(client):
    codes = [
        client.post("/api/auth/login", json={"password": "bad"}).status_code for _ in range(11)
    ]
    assert codes[:10] == [401] * 10
    assert codes[10] == 429
    # NOTE: the limit is per app (app.state.login_gate), so another test's app starts afresh;
    # and a refused attempt never reached argon2, so even the right password waits.
    r = client.post("/api/auth/login", json={"password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_a_successful_sign_in_does_not_count_against_the_limit(client):
    for _ in range(12):
        sign_in(client)
    assert client.post("/api/auth/login", json={"password": "bad"}).status_code == 401


def test_the_sign_in_gate_counts_per_address_and_globally_before_verifying():
    from web.routers.auth import LoginGate, LoginRefused

    now = [0.0]
    gate = LoginGate(per_client=3, global_limit=5, concurrency=1, clock=lambda: now[0])
    stamps = [gate.admit("10.0.0.1") for _ in range(3)]
    with pytest.raises(LoginRefused, match="this address"):
        gate.admit("10.0.0.1")
    gate.admit("10.0.0.2")
    gate.admit("10.0.0.3")
    with pytest.raises(LoginRefused, match="all addresses"):
        gate.admit("10.0.0.4")  # a fresh address gains nothing once the rig's limit is used
    gate.forgive("10.0.0.1", stamps[0])  # a success is taken back off both counts
    gate.admit("10.0.0.1")
    now[0] = 61.0
    assert gate.admit("10.0.0.4") == 61.0


def test_logout_revokes_the_session_on_the_server(client):
    csrf = sign_in(client)
    old_cookie = client.cookies.get("partrig_session")
    client.post("/api/auth/logout")
    client.cookies.set("partrig_session", old_cookie)
    r = client.post("/api/rig/lights", json={"level": 0.5}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 401
    assert client.app.state.sessions.get("anything") is None
    assert len(client.app.state.sessions) == 0


def test_keys_map_to_their_roles(settings):
    assert role_for_key(settings.auth, OP["X-Api-Key"]) == "operator"
    assert role_for_key(settings.auth, VIEW["X-Api-Key"]) == "viewer"
    assert role_for_key(settings.auth, TRAIN["X-Api-Key"]) == "trainer"
    assert role_for_key(settings.auth, "") is None


def test_password_hashes_verify_only_the_right_password():
    h = hash_password("a long password")
    assert verify_password(h, "a long password")
    assert not verify_password(h, "another one")
    assert not verify_password("not-a-hash", "a long password")


def test_binding_a_lan_address_without_credentials_is_refused_with_how_to_fix(tmp_path):
    bare = make_settings(tmp_path, auth={"operator_password_hash": "", "operator_keys": []})
    check_bind(bare, "127.0.0.1")
    with pytest.raises(ConfigError, match="partrig auth hash-password"):
        check_bind(bare, "0.0.0.0")
    check_bind(make_settings(tmp_path), "0.0.0.0")


def test_the_sim_demo_on_loopback_gets_a_one_time_password(tmp_path):
    bare = make_settings(tmp_path, auth={"operator_password_hash": "", "operator_keys": []})
    assert demo_password(bare, "0.0.0.0") is None
    password = demo_password(bare, "127.0.0.1")
    assert password and verify_password(bare.auth.operator_password_hash, password)
    assert demo_password(make_settings(tmp_path), "127.0.0.1") is None
    assert password != PASSWORD


def test_a_password_check_while_the_slots_are_busy_is_refused_at_once(monkeypatch):
    import asyncio
    import threading
    import time

    from web.routers import auth

    release = threading.Event()
    monkeypatch.setattr(auth, "verify_password", lambda h, p: release.wait(10))
    gate = auth.LoginGate(per_client=10, global_limit=10, concurrency=1)

    async def two_at_once() -> None:
        first = asyncio.ensure_future(gate.verify("hash", "pw"))
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        with pytest.raises(auth.LoginRefused, match="checking other sign-ins"):
            await gate.verify("hash", "pw")
        assert time.monotonic() - t0 < 1.0  # answered, not queued behind the first
        release.set()
        assert await first
        assert await gate.verify("hash", "pw")  # the slot is free again

    asyncio.run(two_at_once())


def test_sessions_expire_and_the_oldest_goes_when_full():
    from web.security import SessionStore

    now = [1000.0]
    store = SessionStore(ttl_s=60, max_sessions=2, clock=lambda: now[0])
    a, _ = store.create("operator")
    b, _ = store.create("operator")
    c, session = store.create("operator")
    assert store.get(a) is None and store.get(b) is not None
    assert store.get(c) == session and session.csrf
    now[0] += 61
    assert store.get(b) is None and store.get(c) is None


def test_validation_errors_never_carry_the_input_and_render_for_nan(client):
    r = client.post("/api/rig/jog", json={"degrees": "x" * 50}, headers=OP)
    assert r.status_code == 422
    assert r.json()["detail"] == [
        {"type": "float_parsing", "loc": ["body", "degrees"], "msg": r.json()["detail"][0]["msg"]}
    ]
    r = client.post(
        "/api/rig/jog",
        content=b'{"degrees": NaN}',
        headers={**OP, "Content-Type": "application/json"},
    )
    assert r.status_code == 422 and "NaN" in r.json()["detail"]
