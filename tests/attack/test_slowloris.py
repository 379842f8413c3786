"""Slow clients cannot hold the server: the request-receipt deadline closes them, the open-files
limit is raised, and the e-stop still gets through while they try (``partrig serve --sim``)."""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_server import LiveServer, start_server

DEADLINE_S = 2
LOW_SOFT_LIMIT = 512


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # NOTE: the server inherits a low soft open-files limit, as under systemd's default 1,024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, LOW_SOFT_LIMIT), hard))
    try:
        srv = start_server(
            tmp_path_factory.mktemp("slowloris"),
            extra_toml=f"[web]\nheader_timeout_s = {DEADLINE_S}\nkeep_alive_s = 2\n",
        )
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        yield srv
    finally:
        srv.stop()


def connect(server: LiveServer) -> socket.socket:
    s = socket.create_connection((server.host, server.port), timeout=30)
    s.settimeout(30)
    return s


def closed_by_server(s: socket.socket) -> bytes:
    """Everything the server sent until it closed the connection (raises on a 30 s wait)."""
    got = b""
    while chunk := s.recv(4096):
        got += chunk
    return got


def test_a_request_trickled_byte_by_byte_is_closed_at_the_deadline_with_408(server):
    s = connect(server)
    t0 = time.monotonic()
    s.sendall(b"GET /api/rig/status HTTP/1.1\r\n")
    try:
        for _ in range(20):  # NOTE: one header byte every 0.4 s: never finishes by itself
            s.sendall(b"X")
            time.sleep(0.4)
    except OSError:
        pass  # the server closed it
    got = closed_by_server(s)
    took = time.monotonic() - t0
    assert got.startswith(b"HTTP/1.1 408")
    assert DEADLINE_S - 0.5 < took < DEADLINE_S + 6, took


def test_a_connection_that_sends_nothing_is_closed_and_a_kept_alive_one_too(server):
    idle = connect(server)
    t0 = time.monotonic()
    closed_by_server(idle)
    assert time.monotonic() - t0 < DEADLINE_S + 6
    kept = connect(server)
    kept.sendall(
        f"GET /api/health HTTP/1.1\r\nHost: {server.host}\r\n\r\n".encode()
    )  # a complete request, then silence
    t0 = time.monotonic()
    got = closed_by_server(kept)
    assert got.startswith(b"HTTP/1.1 200")
    assert time.monotonic() - t0 < 2 + 6  # keep_alive_s


def test_many_slow_clients_are_closed_while_the_estop_still_succeeds(server):
    slow = []
    for _ in range(300):
        s = connect(server)
        s.sendall(f"POST /api/rig/estop HTTP/1.1\r\nHost: {server.host}\r\n".encode())
        slow.append(s)
    c = server.client()
    t0 = time.monotonic()
    r = c.post("/api/rig/estop")
    assert r.status_code == 200, r.text
    assert r.json()["m112_sent"] is True
    assert time.monotonic() - t0 < 5.0
    t0 = time.monotonic()
    for s in slow:
        closed_by_server(s)
        s.close()
    assert time.monotonic() - t0 < DEADLINE_S + 10
    # NOTE: a new connection: the e-stop's kept-alive one is closed after keep_alive_s (2 s),
    # and a POST sent into that close would race it.
    fresh = server.client()
    assert fresh.post("/api/rig/clear-fault", json={"zero_confirmed": True}).status_code == 200


def test_the_server_raises_its_open_files_limit_to_the_hard_limit(server):
    text = Path(f"/proc/{server.proc.pid}/limits").read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    assert soft == hard, line
    assert hard == "unlimited" or int(hard) > LOW_SOFT_LIMIT  # it really was raised
