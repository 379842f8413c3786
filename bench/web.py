"""Benchmark: the web app while a run captures on the simulated rig in real time.

Prints one JSON object as its last line:
``{"bench": "web", "preview_fps", "event_latency_ms_p99", "capture_efficiency_while_viewed"}``

- ``preview_fps``: frames per second the slower of two MJPEG preview clients received;
- ``event_latency_ms_p99``: from an event's publication (its ``t``) to its arrival at one SSE
  client, 99th percentile;
- ``capture_efficiency_while_viewed``: capture time of the same plan unwatched divided by
  its capture time while watched (1.0 = watching costs nothing; the goal is >= 0.97).

Capture time is from the first ``shot`` event to the last ``stored`` event, so the (instant)
prompt answers do not count.  Goals: preview >= 10 fps, p99 <= 100 ms, cost < 3 %.
"""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rig.config import apply_sim, parse_settings
from web.app import create_app

KEY = "bench-operator-key-0123456789"
PLAN = """
name = "web bench"
backgrounds = [1]
angles_per_rev = 36
settle_s = 0.2
parts = [{ label = "brick-2x4-red", instance = "brick-2x4-red-bench" }]
"""


def start_server(data: Path) -> tuple[str, object]:
    import uvicorn

    settings = apply_sim(
        parse_settings(
            {
                "camera": {"driver": "sim", "still_size": [1280, 960], "preview_size": [640, 480]},
                "simulator": {"time_scale": 1.0},
                "data": {"dir": str(data)},
                "web": {"preview_fps": 12},
                "auth": {"operator_keys": [KEY], "session_secret": "b" * 32},
            }
        )
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def capture_once(base: str, latencies: list[float] | None) -> float:
    """Run the plan to completion, answering prompts; returns its capture seconds."""
    api = httpx.Client(base_url=base, headers={"X-Api-Key": KEY}, timeout=30)
    run_id = api.post("/api/runs", json={"plan_toml": PLAN}).json()["id"]
    times: dict[str, list[float]] = {"shot": [], "stored": []}
    done = threading.Event()

    def follow() -> None:
        with httpx.stream(
            "GET", f"{base}/api/runs/{run_id}/events", headers={"X-Api-Key": KEY}, timeout=None
        ) as r:
            kind = None
            for line in r.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind not in (None, "snapshot"):
                    now = time.time()
                    event = json.loads(line[6:])
                    if latencies is not None:
                        latencies.append((now - event["t"]) * 1000)
                    if kind in times:
                        times[kind].append(event["t"])
                    if kind == "state" and event["data"]["state"] in (
                        "completed",
                        "aborted",
                        "failed",
                    ):
                        break
        done.set()

    threading.Thread(target=follow, daemon=True).start()
    time.sleep(0.3)
    api.post(f"/api/runs/{run_id}/start").raise_for_status()
    while not done.wait(0.05):
        run = api.get(f"/api/runs/{run_id}").json()
        if run["state"] == "awaiting_operator":
            api.post(f"/api/runs/{run_id}/answer")
    state = api.get(f"/api/runs/{run_id}").json()["state"]
    if state != "completed":
        raise SystemExit(f"the benchmark run ended {state}")
    return max(times["stored"]) - min(times["shot"])


def watch_preview(base: str, stop: threading.Event, counts: list[int], i: int) -> None:
    token = httpx.get(f"{base}/api/rig/preview-token", headers={"X-Api-Key": KEY}).json()["token"]
    with httpx.stream("GET", f"{base}/api/rig/preview.mjpg?token={token}", timeout=None) as r:
        for chunk in r.iter_bytes():
            counts[i] += chunk.count(b"--partrigframe")
            if stop.is_set():
                break


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="partrig-bench-web-") as tmp:
        base, server = start_server(Path(tmp) / "data")
        try:
            unwatched = capture_once(base, None)
            stop, counts = threading.Event(), [0, 0]
            viewers = [
                threading.Thread(target=watch_preview, args=(base, stop, counts, i), daemon=True)
                for i in range(2)
            ]
            for v in viewers:
                v.start()
            time.sleep(1.0)
            counts[:] = [0, 0]
            t0 = time.monotonic()
            latencies: list[float] = []
            watched = capture_once(base, latencies)
            fps = min(counts) / (time.monotonic() - t0)
            stop.set()
        finally:
            server.should_exit = True
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else None
    result = {
        "bench": "web",
        "preview_fps": round(fps, 2),
        "event_latency_ms_p99": None if p99 is None else round(p99, 2),
        "capture_efficiency_while_viewed": round(unwatched / watched, 4),
        "capture_s_unwatched": round(unwatched, 3),
        "capture_s_watched": round(watched, 3),
        "events": len(latencies),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
