"""Fixtures for the firmware-in-the-loop tests: build once, one simavr harness per test.

The harness runs the real firmware ELF on a simulated ATmega2560 and exposes its UART on a
pty at a per-test path, so tests can run in parallel and never touch /tmp/simavr-uart0.

The ELF is partrig's firmware, or the one named by ``PARTRIG_FIRMWARE_ELF`` (e.g. stock Marlin
built with firmware/marlin/config.ini).  Tests that check a reply only partrig's firmware
gives are marked ``partrig_firmware`` and skipped for another ELF (see docs/firmware.md for
what passes against Marlin).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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

# Simulated seconds each firmware needs from reset to reading its serial port; Marlin's
# setup() (settings, planner, stepper and fan timers) takes longer than partrig's.
BOOT_S = {"partrig": 0.05}
BOOT_S_OTHER = 1.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``partrig_firmware`` tests when the ELF under test is not partrig's firmware."""
    try:
        other = client.chosen_elf()
    except client.HarnessError as exc:
        raise pytest.UsageError(str(exc)) from exc
    if other is None or client.firmware_dialect(other) == "partrig":
        return
    skip = pytest.mark.skip(reason=f"checks a reply only partrig's firmware gives ({other.name})")
    for item in items:
        if "partrig_firmware" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def firmware_build() -> tuple[Path, Path]:
    """Build the harness and the firmware under test (make is a no-op when up to date)."""
    missing = [tool for tool in ("make", "avr-gcc", "cc") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"AVR toolchain missing: {', '.join(missing)}")
    return client.build()


@pytest.fixture(scope="session")
def dialect(firmware_build: tuple[Path, Path]) -> str:
    """``partrig`` or ``marlin``: which firmware the ELF under test is."""
    return client.firmware_dialect(firmware_build[0])


@dataclass(frozen=True)
class FirmwareFacts:
    """Where two firmwares that both speak Marlin's protocol legitimately differ, byte for byte.

    WHY: the same tests run against partrig's firmware and against stock Marlin built with
    firmware/marlin/config.ini; everything not listed here must be identical.
    """

    name: str  # M115's FIRMWARE_NAME
    banner: str  # the line after `start`
    planner_free: int  # P in an idle ADVANCED_OK `ok N.. P.. B..`
    capabilities: tuple[str, ...]  # M115 `Cap:<name>:1` lines partrig relies on
    resend_ok: str  # the ok after `Resend:`
    m105: str  # the reply to M105 on a board without heaters
    e_axis: bool  # M114 reports E (Marlin with EXTRUDERS 0 does not)
    fan_scale: Callable[[int], int]  # M106 S<v> -> PWM level on D9
    halt_grace_s: float  # simulated seconds from M112's "kill() called!" to the driver off

    def ok(self, n: int) -> str:
        return f"ok N{n} P{self.planner_free} B3"

    def m114(self, x: str, count: int) -> str:
        e = " E:0.00" if self.e_axis else ""
        return f"X:{x} Y:0.00 Z:0.00{e} Count X:{count} Y:0 Z:0"


FACTS = {
    "partrig": FirmwareFacts(
        name="partrig",
        banner="echo:partrig",
        planner_free=7,
        capabilities=("ADVANCED_OK", "EMERGENCY_PARSER", "X_MIN_ENDSTOP"),
        resend_ok="ok P7 B4",
        m105="ok T:0.00 /0.00",
        e_axis=True,
        fan_scale=lambda v: v,
        halt_grace_s=0.0,
    ),
    # Marlin bugfix-2.1.x (3c929ab) with firmware/marlin/config.ini: 16 planner blocks, fan
    # levels mapped 1..255 -> FAN_MIN_PWM..FAN_MAX_PWM (0..255), so S76 gives 75.
    "marlin": FirmwareFacts(
        name="Marlin",
        banner="Marlin ",
        planner_free=15,
        capabilities=("EMERGENCY_PARSER",),
        resend_ok="ok",
        m105="ok T:0",
        e_axis=False,
        fan_scale=lambda v: (v - 1) * 255 // 254 if v else 0,
        halt_grace_s=1.0,
    ),
}


@pytest.fixture(scope="session")
def facts(dialect: str) -> FirmwareFacts:
    """The replies the firmware under test gives where partrig's and Marlin's differ."""
    if dialect not in FACTS:
        pytest.skip(f"no expected replies recorded for a {dialect!r} firmware ELF")
    return FACTS[dialect]


@pytest.fixture
def start_board(firmware_build: tuple[Path, Path]) -> Iterator[Callable[..., SimavrHarness]]:
    """Start the harness on any ELF (e.g. a test program); every board is closed afterwards."""
    boards: list[SimavrHarness] = []

    def start(elf: Path, link_path: Path) -> SimavrHarness:
        boards.append(SimavrHarness(link_path, elf=elf, harness=firmware_build[1]))
        return boards[-1]

    try:
        yield start
    finally:
        for board in boards:
            board.close()


@pytest.fixture
def sim(firmware_build: tuple[Path, Path], dialect: str, tmp_path: Path) -> Iterator[SimavrHarness]:
    """A freshly booted simulated board with its port at ``sim.link_path``."""
    elf, harness = firmware_build
    board = SimavrHarness(tmp_path / "ttyRAMPS", elf=elf, harness=harness)
    # NOTE: let the firmware boot before anyone opens the port, so its `start` never races a
    # host's handshake (tests that want a reset mid-handshake ask for one).
    boot_s = BOOT_S.get(dialect, BOOT_S_OTHER)
    deadline = time.monotonic() + 10 + 10 * boot_s
    while board.sim_time() < boot_s and time.monotonic() < deadline:
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
