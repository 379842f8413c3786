"""A simulated board in its own process, so a benchmark reads M112 off the wire, not from memory.

Why: ``partrig serve --sim`` normally runs :class:`~rig.sim.marlin.SimFirmware` as a thread of
the server, so a measurement taken there shares the server's interpreter, its GIL and its load.
The e-stop benchmark (contracts.md, ``estop_ms_p99``) must time the moment ``M112`` arrives on
the serial line, so the board runs here, in a process of its own::

    python -m rig.sim.board --config partrig.toml --link /tmp/rig/ramps

and the server is pointed at it with ``[simulator] board = "/tmp/rig/ramps"`` (still ``--sim``:
the camera and the world stay simulated in the server).  Beside the pty's symlink the board
listens on a Unix socket, ``<link>.ctl``, with one request per line and one JSON answer per
line: ``state`` (angle, light level, moving, halted, resets, and the ``time.monotonic()`` of
every ``M112`` read), ``reset`` (a DTR reset), ``quit``.  ``time.monotonic()`` is the system's
``CLOCK_MONOTONIC``, so those times compare directly with a client's on the same machine.

:class:`RemoteBoard` is the server's side: what ``open_rig`` uses in place of the in-process
simulator (the world reads the angle and the light from it; clearing a fault resets it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rig.errors import ConfigError, LinkError
from rig.sim.clock import SimClock
from rig.sim.marlin import SimFirmware

if TYPE_CHECKING:
    from rig.config import Settings

CONTROL_SUFFIX = ".ctl"


def control_path(link: str | Path) -> Path:
    """Where the board with serial link ``link`` listens for control requests."""
    return Path(str(link) + CONTROL_SUFFIX)


class TimedFirmware(SimFirmware):
    """The simulated firmware, noting when each ``M112`` came off the wire."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.m112_at: list[float] = []

    def _emergency(self, raw: str) -> None:
        t = time.monotonic()
        halted = self.halted
        super()._emergency(raw)
        if self.halted and not halted:
            self.m112_at.append(t)

    def state(self) -> dict[str, Any]:
        return {
            "angle_deg": self.actual_angle_deg(),
            "light": self.light_level(),
            "moving": bool(self.axis.moving()),
            "halted": self.halted,
            "resets": self.resets,
            "m112_at": list(self.m112_at),
            "pid": os.getpid(),
        }


class BoardProcess:
    """The board and its control socket; :meth:`serve_forever` until ``quit`` or a signal."""

    def __init__(self, settings: Settings, link: Path) -> None:
        sim = settings.simulator
        if sim.time_scale == 0:
            raise ConfigError(
                "simulator.time_scale = 0 (a virtual clock) cannot be shared with a board in "
                "another process; use a time scale above 0"
            )
        self.fw = TimedFirmware(
            sim,
            SimClock(sim.time_scale),
            dialect=sim.firmware,
            link_path=link,
            steps_per_degree=settings.turntable.steps_per_degree,
            light_pin=settings.lights.pin,
            endstop=settings.turntable.endstop == "x_min",
        )
        self.control = control_path(link)
        self._stop = threading.Event()
        self._server: socket.socket | None = None

    def serve_forever(self) -> None:
        self.fw.start()
        self.fw.wait_ready()
        with contextlib.suppress(FileNotFoundError):
            self.control.unlink()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.control))
        server.listen(16)
        server.settimeout(0.2)
        self._server = server
        print(f"partrig sim board: link {self.fw.port}, control {self.control}", flush=True)
        try:
            while not self._stop.is_set():
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                threading.Thread(target=self._client, args=(conn,), daemon=True).start()
        finally:
            server.close()
            with contextlib.suppress(FileNotFoundError):
                self.control.unlink()
            self.fw.close()

    def stop(self) -> None:
        self._stop.set()

    def _client(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb", buffering=0) as stream:
            for raw in stream:
                request = raw.decode("ascii", "replace").strip()
                if request == "state":
                    answer: dict[str, Any] = self.fw.state()
                elif request == "reset":
                    self.fw.reset()
                    answer = {"ok": True}
                elif request == "quit":
                    self.stop()
                    answer = {"ok": True}
                else:
                    answer = {"error": f"unknown request {request!r}: state, reset or quit"}
                stream.write(json.dumps(answer).encode() + b"\n")


class RemoteBoard:
    """The server's handle on a board running in another process (see the module docstring).

    It stands where the in-process :class:`~rig.sim.marlin.SimFirmware` would: ``port``,
    ``reset()``, ``actual_angle_deg()``, ``light_level()``, ``close()``.
    """

    def __init__(self, link: str | Path, timeout_s: float = 2.0) -> None:
        self.link = Path(link)
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._stream: socket.SocketIO | None = None

    @property
    def port(self) -> str:
        return str(self.link)

    def wait_ready(self, timeout: float = 10.0) -> RemoteBoard:
        """Wait until the board's process answers; LinkError naming the fix if it never does."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.request("state")
                return self
            except LinkError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def request(self, what: str) -> dict[str, Any]:
        with self._lock:
            for attempt in (1, 2):
                try:
                    stream = self._stream if self._stream is not None else self._connect()
                    stream.write(what.encode() + b"\n")
                    line = stream.readline()
                    if not line:
                        raise OSError("the board closed its control socket")
                    return dict(json.loads(line))
                except OSError as exc:
                    self._drop()
                    if attempt == 2:
                        raise LinkError(
                            f"the simulated board at {self.link} does not answer on "
                            f"{control_path(self.link)} ({exc}): start it with "
                            f"`python -m rig.sim.board --link {self.link}`"
                        ) from exc
        raise AssertionError("unreachable")

    def _connect(self) -> socket.SocketIO:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout_s)
        sock.connect(str(control_path(self.link)))
        stream = sock.makefile("rwb", buffering=0)
        self._sock, self._stream = sock, stream
        return stream

    def _drop(self) -> None:
        for thing in (self._stream, self._sock):
            if thing is not None:
                with contextlib.suppress(OSError):
                    thing.close()
        self._sock = self._stream = None

    def state(self) -> dict[str, Any]:
        return self.request("state")

    def reset(self) -> None:
        self.request("reset")

    def actual_angle_deg(self) -> float:
        return float(self.request("state")["angle_deg"])

    def light_level(self) -> float:
        return float(self.request("state")["light"])

    def close(self) -> None:
        """Drop the control connection; the board's process is not ours to stop."""
        with self._lock:
            self._drop()


def main(argv: list[str] | None = None) -> int:
    from rig.config import load_settings

    parser = argparse.ArgumentParser(
        prog="python -m rig.sim.board", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--link", required=True, type=Path, help="path of the pty's symlink")
    parser.add_argument("--config", type=Path, default=None, help="partrig.toml to follow")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config, sim=True)
        board = BoardProcess(settings, args.link)
    except ConfigError as exc:
        print(f"error: {exc}", flush=True)
        return 2
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: board.stop())
    board.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
