"""A real ``partrig serve --sim`` under uvicorn on loopback, for tests that attack it.

Why a subprocess and not the in-process TestClient: the hardening under test lives in places the
TestClient never reaches (uvicorn's connection handling, the event loop, the thread pool, the
process's memory and file limits, signals), and a crash must be seen as a dead server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

OPERATOR_PASSWORD = "attack-test-password"
OPERATOR_KEY = "op-" + "a" * 40
TRAINER_KEY = "tr-" + "b" * 40
VIEWER_KEY = "vw-" + "c" * 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    """A running server: its URL, folders, log and process."""

    url: str
    host: str
    port: int
    data_dir: Path
    config: Path
    log: Path
    proc: subprocess.Popen[bytes]
    extra: dict[str, object] = field(default_factory=dict)

    def client(self, key: str | None = OPERATOR_KEY, **kw: object) -> httpx.Client:
        headers = {"X-Api-Key": key} if key else {}
        # NOTE: idle connections are dropped after 1 s, before any server's keep-alive (2 s in
        # the slowloris suite, 5 s by default) closes them: a request sent into that close races
        # it and fails with "server disconnected" on a loaded machine.
        kw.setdefault("limits", httpx.Limits(keepalive_expiry=1.0))
        return httpx.Client(base_url=self.url, headers=headers, timeout=10.0, **kw)  # type: ignore[arg-type]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_mib(self) -> float:
        """The server process's resident memory in MiB, from the kernel (not a client's)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS line")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def sign_in(self, client: httpx.Client) -> str:
        """Sign ``client`` in with the operator password; returns the CSRF token."""
        r = client.post("/api/auth/login", json={"password": OPERATOR_PASSWORD})
        r.raise_for_status()
        return str(r.json()["csrf_token"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def write_config(
    path: Path, data_dir: Path, extra_toml: str = "", simulator_toml: str = ""
) -> None:
    from web.security import hash_password

    path.write_text(
        f"""
[data]
dir = "{data_dir}"

[simulator]
time_scale = 1.0
{simulator_toml}

[auth]
operator_password_hash = "{hash_password(OPERATOR_PASSWORD)}"
operator_keys = ["{OPERATOR_KEY}"]
trainer_keys = ["{TRAINER_KEY}"]
viewer_keys = ["{VIEWER_KEY}"]
{extra_toml}
""",
        encoding="utf-8",
    )


def start_server(
    tmp: Path,
    *,
    extra_toml: str = "",
    simulator_toml: str = "",
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    ready_timeout_s: float = 60.0,
) -> LiveServer:
    """Start ``partrig serve --sim`` on a free loopback port and wait until it answers.

    ``extra_toml`` is appended after the ``[auth]`` keys (start it with a table header);
    ``simulator_toml`` holds keys for the ``[simulator]`` table.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    data_dir = tmp / "data"
    config = tmp / "partrig.toml"
    write_config(config, data_dir, extra_toml, simulator_toml)
    port = free_port()
    log = tmp / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "web.cli",
        "serve",
        "--sim",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *args,
    ]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
        )
    server = LiveServer(
        url=f"http://127.0.0.1:{port}",
        host="127.0.0.1",
        port=port,
        data_dir=data_dir,
        config=config,
        log=log,
        proc=proc,
    )
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"partrig serve exited {proc.returncode}:\n{server.log_text()}")
        try:
            r = httpx.get(
                server.url + "/api/rig/status", headers={"X-Api-Key": VIEWER_KEY}, timeout=2
            )
            if r.status_code == 200 and r.json().get("link") == "ready":
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"partrig serve did not answer in {ready_timeout_s} s:\n{server.log_text()}")
