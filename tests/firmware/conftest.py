"""Fixtures for the firmware-in-the-loop tests: build once, one simavr harness per test.

The harness runs the real firmware ELF on a simulated ATmega2560 and exposes its UART on a
pty at a per-test path, so tests can run in parallel and never touch /tmp/simavr-uart0.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "partrig_simavr_client", ROOT / "firmware" / "harness" / "client.py"
)
assert _spec is not None and _spec.loader is not None
client = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = client
_spec.loader.exec_module(client)

SimavrHarness = client.SimavrHarness


@pytest.fixture(scope="session")
def firmware_build() -> tuple[Path, Path]:
    """Build the firmware and the harness (make is a no-op when they are up to date)."""
    missing = [tool for tool in ("make", "avr-gcc", "cc") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"AVR toolchain missing: {', '.join(missing)}")
    return client.build()


@pytest.fixture
def sim(firmware_build: tuple[Path, Path], tmp_path: Path) -> Iterator[SimavrHarness]:
    """A freshly booted simulated board with its port at ``sim.link_path``."""
    elf, harness = firmware_build
    board = SimavrHarness(tmp_path / "ttyRAMPS", elf=elf, harness=harness)
    # NOTE: let the firmware boot before anyone opens the port, so its `start` never races a
    # host's handshake (tests that want a reset mid-handshake ask for one).
    deadline = time.monotonic() + 10
    while board.sim_time() < 0.05 and time.monotonic() < deadline:
        time.sleep(0.005)
    try:
        yield board
    finally:
        board.close()


class RawPort:
    """A bare pyserial line client for protocol-level tests (no partrig host code)."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        import serial

        self.port = serial.Serial(str(path), 250000, timeout=timeout)
        self.n = 0

    @staticmethod
    def checksum(text: str) -> int:
        cs = 0
        for b in text.encode():
            cs ^= b
        return cs

    def framed(self, n: int, cmd: str) -> str:
        body = f"N{n} {cmd}"
        return f"{body}*{self.checksum(body)}"

    def write_line(self, line: str) -> None:
        self.port.write(line.encode() + b"\n")

    def until_ok(self) -> list[str]:
        """Lines up to and including the next ``ok...`` line."""
        lines: list[str] = []
        while True:
            raw = self.port.readline()
            if not raw:
                raise AssertionError(f"no ok from the firmware; got {lines!r}")
            text = raw.decode(errors="replace").strip()
            if text:
                lines.append(text)
            if text.startswith("ok"):
                return lines

    def handshake(self) -> list[str]:
        self.port.reset_input_buffer()
        self.write_line(self.framed(0, "M110 N0"))
        self.n = 0
        return self.until_ok()

    def send(self, cmd: str) -> list[str]:
        self.n += 1
        self.write_line(self.framed(self.n, cmd))
        return self.until_ok()

    def close(self) -> None:
        self.port.close()


@pytest.fixture
def raw(sim: SimavrHarness) -> Iterator[RawPort]:
    """A handshaken raw serial connection to the simulated board."""
    port = RawPort(sim.link_path)
    # NOTE: the board booted before we opened the port; its banner went nowhere, as it would
    # on a real USB serial port nobody had open.
    port.handshake()
    try:
        yield port
    finally:
        port.close()
