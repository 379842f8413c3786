"""Fixtures for the rig tests: a simulated board on a pty and a raw pyserial client for it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

# NOTE: importlib import mode does not put test folders on sys.path; the link tests share
# peer.py and link_helpers.py, so this folder is added once here.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peer import Peer

from rig.config import SimConfig
from rig.sim.clock import SimClock
from rig.sim.marlin import SimFirmware


def checksum(text: str) -> int:
    cs = 0
    for b in text.encode("ascii"):
        cs ^= b
    return cs


def framed(n: int, command: str) -> bytes:
    body = f"N{n} {command}"
    return f"{body}*{checksum(body)}\n".encode("ascii")


class RawHost:
    """A bare pyserial client: write exact bytes, read exact lines (no partrig host code)."""

    def __init__(self, port: str) -> None:
        self.serial = serial.Serial(port, 250000, timeout=2.0)
        self.n = 0

    def line(self) -> str:
        return self.serial.readline().decode("ascii", "replace").strip()

    def until_ok(self) -> list[str]:
        """Lines up to and including the next ``ok`` (fails on a 2 s silence)."""
        out = []
        while True:
            text = self.line()
            assert text, f"no ok; got {out}"
            out.append(text)
            if text.startswith("ok"):
                return out

    def send(self, command: str) -> list[str]:
        self.n += 1
        self.serial.write(framed(self.n, command))
        return self.until_ok()

    def handshake(self) -> None:
        self.serial.write(framed(0, "M110 N0"))
        assert self.until_ok()[-1].startswith("ok")
        self.n = 0

    def close(self) -> None:
        self.serial.close()


def _make_fw(tmp_path, dialect: str = "partrig", **knobs) -> SimFirmware:
    cfg = SimConfig(firmware=dialect, time_scale=knobs.pop("time_scale", 0), **knobs)
    path = tmp_path / f"ramps-{dialect}-{len(list(tmp_path.iterdir()))}"
    return SimFirmware(
        cfg, SimClock(cfg.time_scale), dialect=dialect, link_path=path, endstop=True
    ).start()


@pytest.fixture
def make_fw(tmp_path):
    """``make_fw(dialect="partrig", **simulator_knobs)``: a started board, closed afterwards."""
    boards: list[SimFirmware] = []

    def make(dialect: str = "partrig", **knobs) -> SimFirmware:
        boards.append(_make_fw(tmp_path, dialect, **knobs))
        return boards[-1]

    yield make
    for b in boards:
        b.close()


@pytest.fixture
def raw_host():
    """``raw_host(port)``: a bare pyserial client, closed afterwards."""
    hosts: list[RawHost] = []

    def connect(port: str) -> RawHost:
        # NOTE: opening flushes pyserial's input, so a banner printed before is gone.
        hosts.append(RawHost(port))
        return hosts[-1]

    yield connect
    for h in hosts:
        h.close()


@pytest.fixture
def frame():
    return framed


@pytest.fixture
def fw(make_fw) -> SimFirmware:
    return make_fw()


@pytest.fixture
def host(fw) -> Iterator[RawHost]:
    assert fw.wait_ready()
    h = RawHost(fw.port)
    h.handshake()
    yield h
    h.close()


@pytest.fixture
def sim_rig():
    """``sim_rig(firmware="partrig", turntable={...}, simulator={...}, lights={...})``:
    a simulated rig (virtual clock, no camera) with the real link, closed afterwards."""
    from rig.config import apply_sim, parse_settings
    from rig.rig import open_rig

    rigs = []

    def make(firmware: str = "partrig", **sections):
        raw = {k: dict(v) for k, v in sections.items()}
        raw.setdefault("simulator", {}).setdefault("time_scale", 0)
        raw["simulator"]["firmware"] = firmware
        raw.setdefault("serial", {}).setdefault("reconnect_interval_s", 0.05)
        rigs.append(open_rig(apply_sim(parse_settings(raw)), with_camera=False))
        return rigs[-1]

    yield make
    for r in rigs:
        r.close()


@pytest.fixture(params=[True, False], ids=["advanced_ok", "plain_ok"])
def peer(request, tmp_path):
    """The scripted board, once with ADVANCED_OK and once with plain oks."""
    p = Peer(tmp_path, advanced_ok=request.param).start()
    yield p
    p.stop()
