"""E-stop latency under load: the page's own ``POST /api/rig/estop`` to ``M112`` on the wire.

What is measured (contracts.md, ``estop_ms_p99``):

* ``partrig serve --sim`` runs as it would on the Pi (uvicorn, one worker), its serial port
  pointed at a simulated board **in a separate process** (``python -m rig.sim.board``), which
  notes the ``time.monotonic()`` at which it reads each ``M112`` off the pty.  Both clocks are
  the system's ``CLOCK_MONOTONIC``.
* Each e-stop is an operator session's request with its CSRF token, as the page sends it, on a
  fresh TCP connection.  Latency = board's M112 time minus the client's clock read just
  before ``connect``.  A failed or timed-out e-stop counts as infinite.
* Each starts from a cleared, moving rig (the board reports the motor moving): a capture run
  live and moving the table (stills of 1280 x 960, so each run winds down in about a second),
  and the sorter running ("collect for review": no model needed).
  NOTE: partrig refuses to start a capture run while the sorter runs and the reverse (they
  share the camera, contracts.md "one owner"), so samples alternate: even ones with a live
  run moving the table, odd ones with the sorter running while a jog moves the table.  Both
  kinds are reported separately too (``*_run`` / ``*_sorter``).
* ``estop_all_safe_ms``: until the answer arrives, which the server sends once the follow-up
  is done (sorter stopped, actuator at rest, run ended, lights off, fault latched); counted
  only when the answer says all of that and the board, asked afterwards, is halted with its
  light off; otherwise infinite.
* Load throughout, reopened whenever the server closes a connection: ``--signins`` parallel
  wrong-password sign-ins, ``--sse`` run-event streams, ``--preview`` MJPEG streams, and
  ``--halfopen`` idle half-open connections (a request line and one header, never finished;
  the server's request-receipt deadline closes them, and they are reopened at once).
  ``halfopen_held`` is the median number held open at the moments of the e-stops.

Usage: ``python bench/estop.py [--estops 200]``; the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from rig.sim.board import RemoteBoard

PASSWORD = "estop-bench-password"
OPERATOR_KEY = "op-" + secrets.token_hex(20)
VIEWER_KEY = "vw-" + secrets.token_hex(20)
PLAN = """name = "estop bench"
backgrounds = [1]
angles_per_rev = 72
lights = [1.0]
settle_s = 0.05
parts = [{ label = "brick-2x4-red", instance = "red-a" }]
"""
#: Stills of the bench's runs: smaller than the 12 MP default so a sample's run winds down (its
#: writer stores what was captured) in about a second on a 2-core machine, not ten.
STILL_SIZE = (1280, 960)
BOARD_CMD = (sys.executable, "-m", "rig.sim.board")
SERVE_CMD = (sys.executable, "-m", "web.cli", "serve", "--sim", "--host", "127.0.0.1")
M112_WAIT_S = 3.0
MAX_PRECONDITION_FAILURES = 20
#: Longer than the server's wait for the follow-up (web.emergency.FOLLOW_UP_WAIT_S, 20 s).
ESTOP_TIMEOUT_S = 30.0


def p99(values: list[float]) -> float:
    """The 99th percentile (nearest rank); infinity counts as the largest value."""
    if not values:
        return math.inf
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def raise_open_files() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Rig:
    """The board process and the server process, started and stopped together."""

    def __init__(self, tmp: Path, header_timeout_s: float) -> None:
        from web.security import hash_password

        self.tmp = tmp
        self.link = tmp / "ramps"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = tmp / "partrig.toml"
        self.config.write_text(
            f"""
[data]
dir = "{tmp / "data"}"

[simulator]
time_scale = 1.0
board = "{self.link}"

[camera]
still_size = [{STILL_SIZE[0]}, {STILL_SIZE[1]}]

[web]
header_timeout_s = {header_timeout_s}

[auth]
operator_password_hash = "{hash_password(PASSWORD)}"
operator_keys = ["{OPERATOR_KEY}"]
viewer_keys = ["{VIEWER_KEY}"]
""",
            encoding="utf-8",
        )
        self.procs: list[subprocess.Popen[bytes]] = []
        self.board: RemoteBoard | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        root = str(Path(__file__).resolve().parent.parent)
        board_log = (self.tmp / "board.log").open("wb")
        self.procs.append(
            subprocess.Popen(
                [*BOARD_CMD, "--link", str(self.link), "--config", str(self.config)],
                cwd=root,
                env=env,
                stdout=board_log,
                stderr=subprocess.STDOUT,
            )
        )
        self.board = RemoteBoard(self.link).wait_ready(30)
        server_log = (self.tmp / "server.log").open("wb")
        self.procs.append(
            subprocess.Popen(
                [*SERVE_CMD, "--config", str(self.config), "--port", str(self.port)],
                cwd=root,
                env=env,
                stdout=server_log,
                stderr=subprocess.STDOUT,
            )
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.procs[-1].poll() is not None:
                raise RuntimeError("partrig serve exited:\n" + self.log()[-3000:])
            try:
                r = httpx.get(self.url + "/api/rig/status", headers={"X-Api-Key": VIEWER_KEY})
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError("partrig serve did not answer:\n" + self.log()[-3000:])

    def log(self) -> str:
        path = self.tmp / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def server_pid(self) -> int:
        return self.procs[-1].pid

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


# --- load ---------------------------------------------------------------------------------------


class Load:
    """The background clients; each reopens its connection whenever it closes."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.halfopen_now = 0
        self.reopened = {"halfopen": 0, "sse": 0, "preview": 0, "signin": 0}
        self.run_id: int | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.stopping = False

    def start(self, signins: int, sse: int, preview: int, halfopen: int) -> None:
        spawn = self.tasks.append
        for i in range(halfopen):
            spawn(asyncio.create_task(self._halfopen(i)))
        for _ in range(signins):
            spawn(asyncio.create_task(self._signin()))
        for _ in range(sse):
            spawn(asyncio.create_task(self._stream("sse")))
        for _ in range(preview):
            spawn(asyncio.create_task(self._stream("preview")))

    async def stop(self) -> None:
        self.stopping = True
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _halfopen(self, i: int) -> None:
        await asyncio.sleep(i * 0.002)  # NOTE: spread the first connects over ~2 s
        while not self.stopping:
            writer = None
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                writer.write(f"GET /api/rig/status HTTP/1.1\r\nHost: {self.host}\r\n".encode())
                await writer.drain()
                self.halfopen_now += 1
                try:
                    while await reader.read(4096):
                        pass
                finally:
                    self.halfopen_now -= 1
            except OSError:
                await asyncio.sleep(0.05)
            finally:
                if writer is not None:
                    writer.close()
            self.reopened["halfopen"] += 1

    async def _signin(self) -> None:
        body = json.dumps({"password": "wrong-" + secrets.token_hex(4)}).encode()
        request = (
            f"POST /api/auth/login HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        while not self.stopping:
            writer = None
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                while not self.stopping:
                    writer.write(request)
                    await writer.drain()
                    if not await _read_response(reader):
                        break
            except (OSError, EOFError, ValueError, asyncio.LimitOverrunError):
                await asyncio.sleep(0.05)
            finally:
                if writer is not None:
                    writer.close()
            self.reopened["signin"] += 1

    async def _stream(self, kind: str) -> None:
        while not self.stopping:
            if kind == "sse":
                if self.run_id is None:
                    await asyncio.sleep(0.2)
                    continue
                path = f"/api/runs/{self.run_id}/events"
            else:
                path = "/api/rig/preview.mjpg"
            writer = None
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                head = f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nX-Api-Key: {VIEWER_KEY}\r\n"
                writer.write(head.encode() + b"\r\n")
                await writer.drain()
                while await reader.read(65536):
                    pass
            except OSError:
                pass
            finally:
                if writer is not None:
                    writer.close()
            self.reopened[kind] += 1
            await asyncio.sleep(0.1)


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    """One HTTP/1.1 response with a Content-Length body; b"" when the connection closed."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return head + body


class LoadProcess:
    """The :class:`Load` in a process of its own, so the e-stop client's event loop is idle.

    Why: the latency is measured from the e-stop client's clock; in one process with 1,300
    load connections the client's own loop would delay its connect and count that against
    the server.  The counts the report needs are shared through ``multiprocessing`` values.
    """

    def __init__(self, host: str, port: int, args: argparse.Namespace) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.halfopen = ctx.Value("i", 0)
        self.run = ctx.Value("i", 0)
        self.counts = ctx.Array("i", len(KINDS))
        self.stopping = ctx.Event()
        sizes = (args.signins, args.sse, args.preview, args.halfopen)
        self.proc = ctx.Process(
            target=load_main,
            args=(host, port, sizes, self.halfopen, self.run, self.counts, self.stopping),
            name="estop-load",
            daemon=True,
        )

    def start(self) -> None:
        self.proc.start()

    @property
    def halfopen_now(self) -> int:
        return int(self.halfopen.value)

    @property
    def reopened(self) -> dict[str, int]:
        return dict(zip(KINDS, list(self.counts), strict=True))

    def follow(self, run_id: int) -> None:
        self.run.value = run_id

    def stop(self) -> None:
        self.stopping.set()
        self.proc.join(20)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)


KINDS = ("halfopen", "sse", "preview", "signin")


def load_main(
    host: str, port: int, sizes: tuple[int, int, int, int], halfopen: Any, run: Any,
    counts: Any, stopping: Any,
) -> None:  # fmt: skip
    """The load process: run :class:`Load` until ``stopping``, publishing its counts."""
    raise_open_files()

    async def go() -> None:
        load = Load(host, port)
        signins, sse, preview, n_halfopen = sizes
        load.start(signins, sse, preview, n_halfopen)
        while not stopping.is_set():
            load.run_id = run.value or None
            halfopen.value = load.halfopen_now
            for i, kind in enumerate(KINDS):
                counts[i] = load.reopened[kind]
            await asyncio.sleep(0.05)
        await load.stop()

    asyncio.run(go())


# --- the e-stops ---------------------------------------------------------------------------------


async def press_estop(host: str, port: int, cookie: str, csrf: str) -> tuple[float, float, Any]:
    """The page's e-stop on a fresh connection: (t0 before connect, t answer, answer JSON)."""
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            (
                f"POST /api/rig/estop HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Cookie: partrig_session={cookie}\r\nX-CSRF-Token: {csrf}\r\n"
                "Content-Length: 0\r\nConnection: close\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        raw = await asyncio.wait_for(_read_response(reader), ESTOP_TIMEOUT_S)
        t1 = time.monotonic()
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    answer = json.loads(body) if body else None
    return t0, t1, (status, answer)


class Bench:
    def __init__(self, rig: Rig, load: LoadProcess) -> None:
        self.rig = rig
        self.load = load
        self.op = httpx.AsyncClient(
            base_url=rig.url, headers={"X-Api-Key": OPERATOR_KEY}, timeout=30
        )
        self.session = httpx.AsyncClient(base_url=rig.url, timeout=30)
        self.cookie = self.csrf = ""
        self.run_id: int | None = None
        self.jog: asyncio.Task[Any] | None = None

    async def sign_in(self) -> None:
        r = await self.session.post("/api/auth/login", json={"password": PASSWORD})
        r.raise_for_status()
        self.csrf = r.json()["csrf_token"]
        self.cookie = self.session.cookies["partrig_session"]

    async def board(self) -> dict[str, Any]:
        assert self.rig.board is not None
        return await asyncio.to_thread(self.rig.board.state)

    async def clear(self) -> None:
        status = (await self.op.get("/api/rig/status")).json()
        if status.get("fault"):
            r = await self.op.post("/api/rig/clear-fault", json={"zero_confirmed": True})
            r.raise_for_status()

    async def run_state(self) -> dict[str, Any]:
        return (await self.op.get(f"/api/runs/{self.run_id}")).json()

    async def ensure_run_moving(self, deadline: float) -> None:
        """A live run whose table is moving: create, start or resume it, answer its prompts."""
        if self.run_id is not None:
            state = (await self.run_state())["state"]
            if state in ("completed", "aborted", "failed"):
                self.run_id = None
        if self.run_id is None:
            r = await self.op.post("/api/runs", json={"plan_toml": PLAN})
            r.raise_for_status()
            self.run_id = r.json()["run_id"]
            self.load.follow(self.run_id)
            (await self.op.post(f"/api/runs/{self.run_id}/start")).raise_for_status()
        else:
            state = (await self.run_state())["state"]
            if state == "interrupted":
                (await self.op.post(f"/api/runs/{self.run_id}/resume")).raise_for_status()
        while time.monotonic() < deadline:
            run = await self.run_state()
            if run["state"] == "awaiting_operator":
                await self.op.post(f"/api/runs/{self.run_id}/answer")
            elif run["state"] in ("completed", "failed", "aborted"):
                self.run_id = None
                return await self.ensure_run_moving(deadline)
            elif run["state"] == "interrupted":
                await self.clear()
                await self.op.post(f"/api/runs/{self.run_id}/resume")
            elif run["state"] == "running" and (await self.board())["moving"]:
                return
            await asyncio.sleep(0.02)
        raise TimeoutError("the run did not get the table moving")

    async def ensure_sorter_moving(self, deadline: float) -> None:
        """The sorter running (collect for review) and the table moving under a jog."""
        while (await self.op.get("/api/rig/status")).json().get("live_run") is not None:
            if time.monotonic() > deadline:
                raise TimeoutError("the interrupted run's engine did not stop")
            await asyncio.sleep(0.05)  # NOTE: the last e-stop's run is still winding down
        r = await self.op.post("/api/sorter/start", json={"collect_for_review": True})
        r.raise_for_status()
        self.jog = asyncio.create_task(self.op.post("/api/rig/jog", json={"degrees": 350}))
        while time.monotonic() < deadline:
            if (await self.board())["moving"]:
                return
            await asyncio.sleep(0.005)
        raise TimeoutError("the jog did not get the table moving")

    async def sample(self, i: int) -> dict[str, Any]:
        kind = "run" if i % 2 == 0 else "sorter"
        t_prep = time.monotonic()
        await self.clear()
        t_cleared = time.monotonic()
        deadline = t_cleared + 60
        try:
            if kind == "run":
                await self.ensure_run_moving(deadline)
            else:
                await self.ensure_sorter_moving(deadline)
        except (TimeoutError, httpx.HTTPError) as exc:
            # NOTE: not an e-stop failure: the rig never reached the starting state.  Abort
            # the run (a new one starts next time) and go on.
            if self.run_id is not None:
                with contextlib.suppress(httpx.HTTPError):
                    await self.op.post(f"/api/runs/{self.run_id}/abort")
                self.run_id = None
            await self.op.post("/api/sorter/stop")
            return {"kind": kind, "precondition": f"{type(exc).__name__}: {exc}"}
        prep = {"clear_s": t_cleared - t_prep, "moving_s": time.monotonic() - t_cleared}
        held = self.load.halfopen_now
        error = None
        t0 = time.monotonic()
        try:
            t0, t1, (status, answer) = await press_estop(
                "127.0.0.1", self.rig.port, self.cookie, self.csrf
            )
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            # NOTE: no answer in time: all-safe is infinite, but the M112 may still have gone out.
            error = f"{type(exc).__name__}: {exc}"
            t1, status, answer = math.inf, 0, None
        m112 = None
        end = time.monotonic() + M112_WAIT_S
        while time.monotonic() < end:
            board = await self.board()
            m112 = next((t for t in board["m112_at"] if t >= t0), None)
            if m112 is not None:
                break
            await asyncio.sleep(0.01)
        board = await self.board()
        safe = (answer or {}).get("safe") or {}
        all_safe = (
            status == 200
            and safe.get("sorter") in ("stopped", "absent")
            and safe.get("actuator_safe") is True
            and safe.get("fault_latched") is True
            and safe.get("lights") == 0
            and board["halted"]
            and board["light"] == 0
            and "live_run" in safe
            and safe["live_run"] is None
        )
        if all_safe and kind == "run":
            run = await self.run_state()  # NOTE: asked after t1: it does not count in the time
            all_safe = (run["state"], run["reason"]) == ("interrupted", "emergency stop")
        if self.jog is not None:
            with contextlib.suppress(Exception):
                await self.jog
            self.jog = None
        return {
            "kind": kind,
            "error": error,
            "status": status,
            "m112_ms": (m112 - t0) * 1000.0 if m112 is not None else math.inf,
            "safe_ms": (t1 - t0) * 1000.0 if all_safe else math.inf,
            "halfopen": held,
            "prep": {k: round(v, 2) for k, v in prep.items()},
            "answer": None if all_safe else answer,
        }

    async def close(self) -> None:
        await self.op.aclose()
        await self.session.aclose()


def summary(
    samples: list[dict[str, Any]], load: LoadProcess, args: argparse.Namespace
) -> dict[str, Any]:
    skipped = [s for s in samples if "precondition" in s]
    samples = [s for s in samples if "precondition" not in s]
    m112 = [s["m112_ms"] for s in samples]
    safe = [s["safe_ms"] for s in samples]
    finite = [v for v in m112 if math.isfinite(v)]

    def of(kind: str, key: str) -> float:
        return round(p99([s[key] for s in samples if s["kind"] == kind]), 2)

    return {
        "bench": "estop",
        "estop_ms_p99": round(p99(m112), 2),
        "estop_ms_p50": round(statistics.median(finite), 2) if finite else math.inf,
        "estop_ms_max": round(max(m112), 2) if m112 else math.inf,
        "estop_samples": len(samples),
        "precondition_failures": len(skipped),
        "estop_failures": sum(1 for v in m112 if not math.isfinite(v)),
        "estop_all_safe_ms_p99": round(p99(safe), 2),
        "estop_all_safe_failures": sum(1 for v in safe if not math.isfinite(v)),
        "estop_ms_p99_run": of("run", "m112_ms"),
        "estop_ms_p99_sorter": of("sorter", "m112_ms"),
        "halfopen_held": int(statistics.median([s.get("halfopen", 0) for s in samples]))
        if samples
        else 0,
        "halfopen_held_min": min((s.get("halfopen", 0) for s in samples), default=0),
        "halfopen_reopened": load.reopened["halfopen"],
        "stream_reopened": load.reopened["sse"] + load.reopened["preview"],
        "load": {
            "signins": args.signins,
            "sse": args.sse,
            "preview": args.preview,
            "halfopen": args.halfopen,
            "header_timeout_s": args.header_timeout,
        },
    }


async def main_async(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    rig = Rig(tmp, args.header_timeout)
    rig.start()
    load = LoadProcess("127.0.0.1", rig.port, args)
    bench = Bench(rig, load)
    samples: list[dict[str, Any]] = []
    try:
        await bench.sign_in()
        await bench.clear()
        # NOTE: a first run, so the event streams have something to follow from the start.
        await bench.ensure_run_moving(time.monotonic() + 120)
        load.start()
        ready = time.monotonic() + 60
        while load.halfopen_now < 0.9 * args.halfopen and time.monotonic() < ready:
            await asyncio.sleep(0.2)  # NOTE: the load process needs a few seconds to connect
        await asyncio.sleep(args.warmup)
        i = 0
        while sum(1 for s in samples if "precondition" not in s) < args.estops:
            if sum(1 for s in samples if "precondition" in s) > MAX_PRECONDITION_FAILURES:
                print("error: the rig kept failing to reach the starting state", flush=True)
                break
            s = await bench.sample(i)
            i += 1
            samples.append(s)
            bad = "precondition" in s or not math.isfinite(s["m112_ms"] * s["safe_ms"])
            if args.verbose or bad:
                print(json.dumps(s, default=str), flush=True)
            if i % 25 == 0:  # NOTE: partial results survive a bench that is stopped early
                print(json.dumps({"partial": summary(samples, load, args)}), flush=True)
    finally:
        load.stop()
        await bench.close()
        alive = rig.procs[-1].poll() is None
        rig.stop()
        if not alive:
            print(rig.log()[-3000:], file=sys.stderr)
    out = summary(samples, load, args)
    out["server_survived"] = alive
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--estops", type=int, default=200)
    parser.add_argument("--signins", type=int, default=40)
    parser.add_argument("--sse", type=int, default=200)
    parser.add_argument("--preview", type=int, default=50)
    parser.add_argument("--halfopen", type=int, default=1000)
    parser.add_argument("--header-timeout", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before")
    parser.add_argument("--verbose", action="store_true", help="print every sample")
    args = parser.parse_args(argv)
    limit = raise_open_files()
    need = args.halfopen + args.sse + args.preview + args.signins + 64
    if limit < need:
        print(f"error: this process may open {limit} files, the load needs {need}", flush=True)
        return 2
    # NOTE: SIGTERM (timeout, kill) must still stop the board and the server this started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="partrig-estop-") as tmp:
        out = asyncio.run(main_async(args, Path(tmp)))
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
