"""Untrusted input against a real server: huge bodies, echoed secrets, NaN, a million-shot plan.

Each test reproduces a finding from the safety issue on ``partrig serve --sim`` over loopback and
checks the server's own memory (``VmRSS`` from ``/proc``), not a test client's.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from live_server import OPERATOR_KEY, OPERATOR_PASSWORD, VIEWER_KEY, LiveServer, start_server

MiB = 2**20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(tmp_path_factory.mktemp("input"))
    try:
        yield srv
    finally:
        srv.stop()


def raw_post(
    server: LiveServer, path: str, head: dict[str, str], body_bytes: int, chunk: int = MiB
) -> tuple[bytes, int, float]:
    """POST ``body_bytes`` of JSON-ish filler, reading the answer as soon as one comes.

    Returns (the answer's first bytes, how many body bytes the server let us send, seconds
    until the answer).  Stops sending once the server answers or closes.
    """
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    lines += [f"{k}: {v}" for k, v in head.items()]
    t0 = time.monotonic()
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        s.setblocking(False)
        sent, answer = 0, b""
        filler = b"[" + b"1," * (chunk // 2 - 1) + b"1"
        if head.get("Transfer-Encoding") == "chunked":
            filler = f"{len(filler):x}\r\n".encode() + filler + b"\r\n"
        while sent < body_bytes and not answer:
            try:
                answer = s.recv(4096)
                if answer:
                    break
            except BlockingIOError:
                pass
            try:
                sent += s.send(filler[: min(len(filler), body_bytes - sent)])
            except BlockingIOError:
                time.sleep(0.005)
            except (BrokenPipeError, ConnectionResetError):
                break
            if time.monotonic() - t0 > 30:
                break
        s.setblocking(True)
        s.settimeout(10)
        took = time.monotonic() - t0
        return read_rest(s, answer), sent, took


def read_rest(s: socket.socket, answer: bytes) -> bytes:
    """Read the rest of an answer whose first bytes are ``answer``: the head and its whole body.

    A 413's body can arrive in a later segment than its head, so one ``recv`` is not enough.
    """
    while True:
        head, sep, body = answer.partition(b"\r\n\r\n")
        if sep:
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if length is None or len(body) >= int(length.group(1)):
                return answer
        try:
            more = s.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return answer
        if not more:
            return answer
        answer += more


def test_a_300_mb_body_without_credentials_is_401_before_it_is_read(server):
    before = server.rss_mib()
    answer, sent, took = raw_post(
        server,
        "/api/runs",
        {"Content-Type": "application/json", "Content-Length": str(300 * MiB)},
        300 * MiB,
    )
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert took < 5, took
    assert sent < 64 * MiB, f"the server let {sent / MiB:.0f} MiB in before answering"
    assert server.rss_mib() - before < 40, (before, server.rss_mib())
    assert server.alive()


def test_a_streamed_body_without_a_length_is_401_too(server):
    before = server.rss_mib()
    answer, _, _ = raw_post(
        server,
        "/api/plans/preview",
        {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        50 * MiB,
    )
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert server.rss_mib() - before < 40
    # with credentials, the stream is counted and cut off at the route's limit
    answer, sent, _ = raw_post(
        server,
        "/api/rig/jog",
        {
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
            "X-Api-Key": OPERATOR_KEY,
        },
        50 * MiB,
    )
    assert answer.startswith(b"HTTP/1.1 413") and b"64 KiB" in answer, answer[:300]
    assert sent < 16 * MiB and server.rss_mib() - before < 40


def test_an_operator_s_oversized_body_is_413_at_once_and_a_streamed_one_is_cut_off(server):
    before = server.rss_mib()
    answer, sent, took = raw_post(
        server,
        "/api/runs",
        {
            "Content-Type": "application/json",
            "Content-Length": str(300 * MiB),
            "X-Api-Key": OPERATOR_KEY,
        },
        300 * MiB,
    )
    assert answer.startswith(b"HTTP/1.1 413") and b"the limit for a plan" in answer, answer
    assert took < 5 and sent < 64 * MiB
    with server.client() as c:
        r = c.post(
            "/api/rig/jog",
            content=(b'{"degrees": 1, "pad": "' + b"x" * (200 * 1024) + b'"}' for _ in [0]),
            headers={"Content-Type": "application/json"},
        )
    assert r.status_code == 413 and "64 KiB" in r.json()["detail"], r.text
    assert server.rss_mib() - before < 40


def test_a_422_never_echoes_the_input_and_the_password_never_reaches_the_log(server):
    secret = "hunter2-do-not-echo-" + "z" * 20
    with server.client(key=None) as c:
        r = c.post("/api/auth/login", json={"pasword": secret})
        assert r.status_code == 422
        assert secret not in r.text and "input" not in r.json()["detail"][0]
        assert r.json()["detail"][0]["loc"] == ["body", "password"]
        r = c.post("/api/auth/login", json={"password": secret * 30})  # too long
        assert r.status_code == 422 and secret not in r.text
        r = c.post("/api/auth/login", json={"password": secret})
        assert r.status_code == 401 and secret not in r.text
        assert c.post("/api/auth/login", json={"password": OPERATOR_PASSWORD}).status_code == 200
    assert secret not in server.log_text() and OPERATOR_PASSWORD not in server.log_text()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/rig/jog", b'{"degrees": NaN}'),
        ("/api/rig/jog", b'{"degrees": -Infinity}'),
        ("/api/rig/jog", b'{"degrees": 1e999}'),
        ("/api/rig/lights", b'{"level": Infinity}'),
        ("/api/rig/clear-fault", b'{"zero_confirmed": NaN}'),
        ("/api/plans/preview", b'{"plan_toml": "name = 1", "name": NaN}'),
    ],
)
def test_nan_and_infinity_are_a_clear_422_never_a_500(server, path, body):
    with server.client() as c:
        r = c.post(path, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert "NaN and Infinity are refused" in detail or "too large for a float" in detail
        # the same field with a wrong type still renders its 422 (no input echoed)
        r = c.post("/api/rig/jog", json={"degrees": "a lot"})
        assert r.status_code == 422 and "a lot" not in r.text
    assert server.alive()


def million_shot_plan() -> str:
    lights = ", ".join(f"{i / 300:.4f}" for i in range(300))
    return (
        'name = "3600 angles x 300 light levels"\nbackgrounds = [1]\nangles_per_rev = 3600\n'
        f'lights = [{lights}]\nparts = [{{ label = "3001", instance = "a" }}]\n'
    )


def test_a_3_kb_million_shot_plan_is_refused_before_expansion(server):
    plan = million_shot_plan()
    assert len(plan) < 3 * 1024
    before = server.rss_mib()
    with server.client(key=VIEWER_KEY) as c:
        t0 = time.monotonic()
        r = c.post("/api/plans/preview", json={"plan_toml": plan})
        took = time.monotonic() - t0
    assert r.status_code == 422, r.text
    assert "1,080,000 shots" in r.json()["detail"] and "20,000" in r.json()["detail"]
    assert took < 1.0, took
    with server.client() as c:
        r = c.post("/api/runs", json={"plan_toml": plan})
        assert r.status_code == 422 and "capture.max_shots" in r.json()["detail"]
        files = {"plan": ("big.toml", plan.encode(), "application/toml")}
        assert c.post("/api/runs/upload", files=files).status_code == 422
        assert c.get("/api/runs").json() == []
    assert server.rss_mib() - before < 20, (before, server.rss_mib())


def test_a_bad_content_length_is_a_400(server):
    answer, _, _ = raw_post(
        server, "/api/rig/jog", {"Content-Length": "12abc", "X-Api-Key": OPERATOR_KEY}, 0
    )
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert server.alive()
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert c.get("/api/health").status_code == 200
