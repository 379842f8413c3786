"""The HTML pages: sign-in redirect, every page renders with the CSRF token and the E-STOP."""

from __future__ import annotations

from web_helpers import PASSWORD, add_shots

from web.routers.pages import looks_public


def test_pages_redirect_to_sign_in_without_a_session(client):
    r = client.get("/runs", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/runs"


def test_the_sign_in_form_sets_the_session_and_returns_to_the_page(client):
    r = client.post(
        "/login", data={"password": PASSWORD, "next": "/dataset"}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/dataset"
    assert "partrig_session" in r.cookies
    bad = client.post(
        "/login", data={"password": "nope", "next": "//evil.example"}, follow_redirects=False
    )
    assert bad.headers["location"].startswith("/login?error=401")


def test_every_page_renders_with_the_emergency_stop_and_the_csrf_token(client, store):
    (sid, *_) = add_shots(store, ["3001"], [1], per=1)
    run_id = store.create_run("r", "name='r'", "{}", 1)
    client.post("/login", data={"password": PASSWORD, "next": "/"})
    for url in ("/", "/runs", f"/runs/{run_id}", "/dataset", f"/dataset/shots/{sid}"):
        r = client.get(url)
        assert r.status_code == 200, url
        assert 'id="estop"' in r.text and 'name="csrf-token" content="' in r.text
    assert "preview.mjpg?token=" in client.get("/").text


def test_the_public_address_banner_only_for_public_clients():
    assert not looks_public("127.0.0.1")
    assert not looks_public("192.168.1.20")
    assert not looks_public("fe80::1")
    assert not looks_public("testclient")
    assert looks_public("8.8.8.8")


def test_static_assets_are_served_locally(client):
    assert "partrig" in client.get("/static/app.js").text
    assert client.get("/static/app.css").status_code == 200
