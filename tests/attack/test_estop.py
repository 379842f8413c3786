"""The e-stop wins, on a real ``partrig serve --sim``: it stops the sorter and its actuator, ends
a run (even one waiting for the operator) as interrupted, switches the lights off, and is not
delayed by a flood of sign-ins; a scaled-down ``bench/estop.py`` proves each M112 arrives.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_server import OPERATOR_KEY, LiveServer, start_server

ROOT = Path(__file__).resolve().parents[2]
PLAN = """name = "estop attack"
backgrounds = [1]
angles_per_rev = 36
lights = [1.0]
settle_s = 0.05
parts = [{ label = "brick-2x4-red", instance = "red-a" }]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # NOTE: small stills, so an interrupted run stores what it captured in a second, not ten.
    srv = start_server(
        tmp_path_factory.mktemp("estop"), extra_toml="[camera]\nstill_size = [1280, 960]\n"
    )
    try:
        yield srv
    finally:
        srv.stop()


def operator(server: LiveServer) -> httpx.Client:
    """An operator's API client that waits long enough for the e-stop's full answer."""
    return httpx.Client(base_url=server.url, headers={"X-Api-Key": OPERATOR_KEY}, timeout=60)


def wait_for(what: str, check: object, timeout_s: float = 60.0, every_s: float = 0.1) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()  # type: ignore[operator]
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def clear(c: httpx.Client) -> None:
    if c.get("/api/rig/status").json()["fault"]:
        r = c.post("/api/rig/clear-fault", json={"zero_confirmed": True})
        assert r.status_code == 200, r.text


def fired(c: httpx.Client) -> int:
    return sum(c.get("/api/sorter/status").json()["counts"]["by_bin"].values())


def test_estop_with_the_sorter_running_stops_it_and_the_actuator_stops_firing(server):
    c = operator(server)
    clear(c)
    r = c.post("/api/sorter/start", json={"collect_for_review": True})
    assert r.status_code == 200, r.text
    wait_for("the sorter to fire at a part", lambda: fired(c) >= 1)
    r = c.post("/api/rig/estop")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["m112_sent"] is True
    assert body["safe"]["sorter"] == "stopped" and body["safe"]["actuator_safe"] is True
    after = fired(c)
    time.sleep(3.0)  # NOTE: parts keep dropping every ~1 s; a running sorter would fire again
    status = c.get("/api/sorter/status").json()
    assert status["state"] == "stopped"
    assert fired(c) == after
    again = c.post("/api/sorter/start", json={"collect_for_review": True})
    assert again.status_code == 409  # the latched e-stop refuses a restart until cleared
    clear(c)
    assert c.post("/api/sorter/start", json={"collect_for_review": True}).status_code == 200
    wait_for("the sorter to fire again after the fault is cleared", lambda: fired(c) > after)
    assert c.post("/api/sorter/stop").status_code == 200


def test_estop_while_a_run_awaits_the_operator_interrupts_it_and_continue_is_refused(server):
    c = operator(server)
    clear(c)
    run = c.post("/api/runs", json={"plan_toml": PLAN}).json()["run_id"]
    assert c.post(f"/api/runs/{run}/start").status_code == 200
    wait_for(
        "the operator prompt",
        lambda: c.get(f"/api/runs/{run}").json()["state"] == "awaiting_operator",
    )
    r = c.post("/api/rig/estop")
    assert r.status_code == 200, r.text
    assert run in r.json()["safe"]["runs_interrupted"]
    view = c.get(f"/api/runs/{run}").json()
    assert (view["state"], view["reason"]) == ("interrupted", "emergency stop")
    assert c.post(f"/api/runs/{run}/resume").status_code == 409  # the fault is still latched
    clear(c)
    refused = c.post(f"/api/runs/{run}/answer")
    assert refused.status_code == 409, refused.text  # Continue on the old prompt
    assert c.get(f"/api/runs/{run}").json()["state"] == "interrupted"
    assert c.post(f"/api/runs/{run}/resume").status_code == 200  # only an explicit Resume
    wait_for(
        "the resumed run",
        lambda: c.get(f"/api/runs/{run}").json()["state"] in ("running", "awaiting_operator"),
    )
    assert c.post(f"/api/runs/{run}/abort").status_code == 200


def test_estop_mid_move_interrupts_the_run_without_a_traceback_and_lights_go_off(server):
    c = operator(server)
    clear(c)
    run = c.post("/api/runs", json={"plan_toml": PLAN}).json()["run_id"]
    assert c.post(f"/api/runs/{run}/start").status_code == 200

    def shooting() -> bool:
        view = c.get(f"/api/runs/{run}").json()
        if view["state"] == "awaiting_operator":
            c.post(f"/api/runs/{run}/answer")
        return view["state"] == "running" and view["done"] >= 2

    wait_for("the run to take shots", shooting, every_s=0.05)
    assert c.get("/api/rig/status").json()["lights"] == 1.0
    log_before = len(server.log_text())
    r = c.post("/api/rig/estop")
    assert r.status_code == 200, r.text
    assert r.json()["safe"]["lights"] == 0
    view = c.get(f"/api/runs/{run}").json()
    assert (view["state"], view["reason"]) == ("interrupted", "emergency stop")
    status = c.get("/api/rig/status").json()
    assert status["lights"] == 0 and status["fault"]
    log = server.log_text()[log_before:]
    assert "Traceback" not in log and "safe stop step failed" not in log
    clear(c)
    assert c.post(f"/api/runs/{run}/abort").status_code == 200


def test_estop_answers_at_once_during_a_flood_of_wrong_password_sign_ins(server):
    c = httpx.Client(base_url=server.url, timeout=60)
    csrf = server.sign_in(c)
    clear(operator(server))
    stop = time.monotonic() + 6.0

    def flood() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as w:
            while time.monotonic() < stop:
                w.post("/api/auth/login", json={"password": "not-the-password"})

    threads = [threading.Thread(target=flood) for _ in range(20)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    t0 = time.monotonic()
    r = c.post("/api/rig/estop", headers={"X-CSRF-Token": csrf})
    elapsed = time.monotonic() - t0
    for t in threads:
        t.join()
    assert r.status_code == 200, r.text
    assert r.json()["m112_sent"] is True
    # NOTE: generous for a loaded 2-core CI machine; the benchmark measures the real figure.
    assert elapsed < 2.0, f"the e-stop took {elapsed:.2f} s behind the sign-ins"
    clear(operator(server))


@pytest.mark.timeout(300)
def test_scaled_down_estop_bench_every_m112_arrives_and_everything_is_safe() -> None:
    load = ["--signins", "8", "--sse", "20", "--preview", "5", "--halfopen", "100"]
    quick = ["--header-timeout", "2", "--warmup", "1"]
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "estop.py"), "--estops", "10", *load, *quick],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["estop_samples"] == 10
    assert result["estop_failures"] == 0, out.stdout[-3000:]
    assert result["estop_all_safe_failures"] == 0, out.stdout[-3000:]
    assert result["halfopen_held_min"] >= 50  # reopened as the server's deadline closes them
    assert result["server_survived"] is True
