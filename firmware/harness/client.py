"""Python side of the simavr harness: build it, start it on a pty path, drive its control channel.

Why it lives next to the C harness: the firmware tests (tests/firmware) and the link benchmark
(bench/link.py) both start the same harness; they load this file by path because firmware/
is not a Python package.  Standard library only.

Which firmware runs is one setting: the ELF in ``PARTRIG_FIRMWARE_ELF`` (for example a stock
Marlin build, see docs/firmware.md), or partrig's own firmware, built here, when it is unset.

>>> with SimavrHarness(tmp_path / "ttyRAMPS") as sim:      # doctest: +SKIP
...     sim.steps()
0
"""

from __future__ import annotations

import os
import select
import subprocess
import threading
import time
from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parent.parent
BUILD_DIR = FIRMWARE_DIR / "build"
ELF = BUILD_DIR / "partrig.elf"
HARNESS = BUILD_DIR / "simavr-pty"
ELF_SETTING = "PARTRIG_FIRMWARE_ELF"


class HarnessError(RuntimeError):
    """The harness could not be built, did not start, or refused a control command."""


def chosen_elf() -> Path | None:
    """The ELF named by ``PARTRIG_FIRMWARE_ELF``, or None for partrig's own firmware."""
    value = os.environ.get(ELF_SETTING, "").strip()
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_file():
        raise HarnessError(f"{ELF_SETTING}={value!r} is not a file: give the path of an ELF")
    with path.open("rb") as f:
        if f.read(4) != b"\x7fELF":
            raise HarnessError(f"{ELF_SETTING}={value!r} is not an ELF file (a .hex will not do)")
    return path


def firmware_dialect(elf: Path) -> str:
    """``"partrig"``, ``"marlin"`` or ``"unknown"``, from the M115 name compiled into ``elf``.

    WHY from the file: tests must know which replies to expect before any board boots.
    """
    data = elf.read_bytes()
    if b"FIRMWARE_NAME:partrig" in data:
        return "partrig"
    if b"FIRMWARE_NAME:Marlin" in data:
        return "marlin"
    return "unknown"


def build(quiet: bool = True) -> tuple[Path, Path]:
    """Build the harness, and partrig's firmware unless ``PARTRIG_FIRMWARE_ELF`` names another
    ELF (make is a no-op when up to date); return (elf, harness)."""
    other = chosen_elf()
    targets = ["harness"] if other is not None else ["all", "harness"]
    proc = subprocess.run(
        ["make", "-C", str(FIRMWARE_DIR), *targets],
        capture_output=quiet,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise HarnessError(
            "building the firmware or the simavr harness failed (need gcc-avr, avr-libc, "
            f"libsimavr-dev, libelf-dev, pkg-config):\n{proc.stdout}\n{proc.stderr}"
        )
    return (other or ELF), HARNESS


class SimavrHarness:
    """One simulated RAMPS board: the firmware in simavr, its UART on a pty at ``link_path``."""

    def __init__(
        self,
        link_path: Path | str,
        *,
        realtime: bool = False,
        seed: int = 1,
        elf: Path = ELF,
        harness: Path = HARNESS,
    ) -> None:
        self.link_path = Path(link_path)
        args = [str(harness), "--seed", str(seed)]
        if realtime:
            args.append("--realtime")
        args += [str(elf), str(self.link_path)]
        self._lock = threading.Lock()
        self._buf = b""
        self.events: list[str] = []
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        line = self._readline(timeout=10.0)
        if not line.startswith("ready"):
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() else ""
            self.close()
            raise HarnessError(f"simavr harness did not start: {line!r} {err}")

    # --- the control channel ----------------------------------------------------------------

    def _readline(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HarnessError("the simavr harness did not answer in time")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise HarnessError(f"the simavr harness exited (rc {self.proc.poll()})")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode(errors="replace").strip()

    def control(self, command: str, timeout: float = 10.0) -> str:
        """Send one control line; return the reply's value (after ``ok``); raise on ``err``."""
        with self._lock:
            if self.proc.poll() is not None:
                raise HarnessError(f"the simavr harness has exited (rc {self.proc.returncode})")
            self.proc.stdin.write(command.encode() + b"\n")
            self.proc.stdin.flush()
            while True:
                line = self._readline(timeout)
                if line.startswith("event "):
                    self.events.append(line)
                    continue
                break
        if line == "ok":
            return ""
        if line.startswith("ok "):
            return line[3:]
        raise HarnessError(f"harness refused {command!r}: {line}")

    def steps(self) -> int:
        """Signed X step pulses seen on the pins since the harness started."""
        return int(self.control("steps?"))

    def sim_time(self) -> float:
        return float(self.control("time?"))

    def motor_enabled(self) -> bool:
        return self.control("enabled?") == "1"

    def light(self, pin: int) -> int:
        """A MOSFET output's duty scaled to 0..255 (pin level when its PWM is off)."""
        return int(self.control(f"light? {pin}"))

    def duty(self, pin: int) -> float:
        """A MOSFET output's duty in [0, 1]: compare register over the timer's TOP."""
        return float(self.control(f"duty? {pin}"))

    def stats(self) -> dict[str, int]:
        return {k: int(v) for k, v in (kv.split("=") for kv in self.control("stats?").split())}

    def reset(self) -> None:
        """Reset the AVR (what a DTR pulse does); usable as GcodeLink's reset_hook."""
        self.control("reset")

    def endstop(self, triggered: bool) -> None:
        self.control(f"endstop {1 if triggered else 0}")

    def endstop_at(self, at_steps: int, width_steps: int, period_steps: int) -> None:
        """A switch on the turntable: triggered while (steps - at) mod period < width."""
        self.control(f"endstop_at {at_steps} {width_steps} {period_steps}")

    def fault(self, name: str, probability: float) -> None:
        self.control(f"fault {name} {probability}")

    def clear_faults(self) -> None:
        self.control("fault clear")

    def unplug(self, ms: int) -> None:
        self.control(f"unplug {ms}")

    def realtime(self, on: bool) -> None:
        self.control(f"realtime {1 if on else 0}")

    # --- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b"quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=3)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=3)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()

    def __enter__(self) -> SimavrHarness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
