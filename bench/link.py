"""The G-code link's overhead, and the firmware's move timing, against the real firmware.

Both loops talk to the same firmware running in simavr in real-time mode (simulated time kept
equal to wall time, so the UART runs at a true 250000 baud): partrig's own firmware, or the
ELF named by ``PARTRIG_FIRMWARE_ELF`` (e.g. stock Marlin built with firmware/marlin/config.ini).

- ``host_cmds_per_s``: a fixed mix of non-motion commands (M114, M115, G92 X0, M42 P8 S128)
  sent one at a time through ``rig.link.GcodeLink.send`` (numbering, checksums, history, the
  reader thread, reply parsing);
- ``raw_cmds_per_s``: the same mix through a bare pyserial loop (write a numbered,
  checksummed line, readline until ``ok``);
- ``ratio`` = host / raw; the goal is >= 0.9.
- ``move_time_error_pct``: a 360 degree move at 360 deg/s and 720 deg/s^2, timed from sending
  G1 to M400's ``ok`` on the wall clock, against ``rig.motion.duration``'s trapezoid; the goal
  is <= 5 %.
- ``move_overhead_ms``: the median, over ``SHORT_MOVES`` 10 degree moves, of the time beyond
  that prediction (Marlin holds a lone first block up to 100 ms, BLOCK_DELAY_FOR_1ST_MOVE).

The last line printed is one JSON object.  Needs the AVR toolchain and libsimavr (the
harness is built with ``make -C firmware all harness`` if needed).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rig.config import SerialConfig  # noqa: E402
from rig.link import GcodeLink  # noqa: E402
from rig.motion import duration  # noqa: E402

# NOTE: D8, not D9: D9 is Marlin's fan pin, which its M42 refuses ("Error:Protected Pin");
# D8 is a light output on both firmwares (Marlin with config.ini has no heated bed there).
MIX = ("M114", "M115", "G92 X0", "M42 P8 S128")
ROUNDS = 60  # 240 commands per measurement
REPEATS = 3
SPU = "8.888889"
SPEED, ACCEL, TURN = 360.0, 720.0, 360.0
SHORT, SHORT_MOVES = 10.0, 15


def load_client():
    spec = importlib.util.spec_from_file_location(
        "partrig_simavr_client", ROOT / "firmware" / "harness" / "client.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def checksum(text: str) -> int:
    cs = 0
    for b in text.encode():
        cs ^= b
    return cs


def raw_rate(path: Path) -> float:
    """Commands per second through a bare pyserial write + readline loop."""
    import serial

    port = serial.Serial(str(path), 250000, timeout=5)
    try:
        port.write(b"N0 M110 N0*125\n")
        while not port.readline().startswith(b"ok"):
            pass
        n = 0
        start = time.perf_counter()
        for _ in range(ROUNDS):
            for cmd in MIX:
                n += 1
                body = f"N{n} {cmd}"
                port.write(f"{body}*{checksum(body)}\n".encode())
                while True:
                    line = port.readline()
                    if not line:
                        raise RuntimeError(f"no ok for {cmd!r} from the simulated firmware")
                    if line.startswith(b"ok"):
                        break
        return n / (time.perf_counter() - start)
    finally:
        port.close()


def host_rate(link: GcodeLink) -> float:
    """Commands per second through GcodeLink.send, one command at a time."""
    n = 0
    start = time.perf_counter()
    for _ in range(ROUNDS):
        for cmd in MIX:
            link.send(cmd)
            n += 1
    return n / (time.perf_counter() - start)


def timed_move(link: GcodeLink, target: float) -> float:
    """Seconds from sending G1 to M400's ok."""
    start = time.perf_counter()
    link.send(f"G1 X{target:.5f} F{SPEED * 60:.2f}")
    link.send("M400")
    return time.perf_counter() - start


def move_error_pct(link: GcodeLink) -> tuple[float, float, float, float]:
    """The 360 degree move (measured, predicted, error %) and the median per-move overhead."""
    setup = (f"M92 X{SPU}", f"M203 X{SPEED}", f"M201 X{ACCEL}", f"M204 S{ACCEL}", "G90", "G92 X0")
    for cmd in setup:
        link.send(cmd)
    predicted = duration(TURN, SPEED, ACCEL)
    measured = timed_move(link, TURN)
    short = duration(SHORT, SPEED, ACCEL)
    extra = sorted(timed_move(link, TURN + SHORT * (i + 1)) - short for i in range(SHORT_MOVES))
    overhead = extra[len(extra) // 2]
    return measured, predicted, abs(measured - predicted) / predicted * 100.0, overhead


def main() -> None:
    client = load_client()
    elf, harness = client.build()
    dialect = client.firmware_dialect(elf)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ttyRAMPS"
        with client.SimavrHarness(path, realtime=True, elf=elf, harness=harness) as sim:
            raw_rates, host_rates = [], []
            for _ in range(REPEATS):
                raw_rates.append(raw_rate(path))
                link = GcodeLink(SerialConfig(port=str(path)), reset_hook=sim.reset)
                link.open()
                try:
                    host_rates.append(host_rate(link))
                finally:
                    link.close()
            link = GcodeLink(SerialConfig(port=str(path)), reset_hook=sim.reset)
            link.open()
            try:
                measured, predicted, error, overhead = move_error_pct(link)
            finally:
                link.close()
            steps = sim.steps()
    host, raw = max(host_rates), max(raw_rates)
    print(f"raw loop:  {[round(r, 1) for r in raw_rates]} cmds/s")
    print(f"GcodeLink: {[round(r, 1) for r in host_rates]} cmds/s")
    print(f"firmware: {elf} ({dialect})")
    print(f"360 deg move: {measured:.4f} s measured, {predicted:.4f} s predicted, {steps} steps")
    print(f"{SHORT:g} deg moves: median {overhead * 1000:.1f} ms beyond the prediction")
    print(
        json.dumps(
            {
                "bench": "link",
                "peer": f"{dialect}-simavr",
                "elf": elf.name,
                "host_cmds_per_s": round(host, 1),
                "raw_cmds_per_s": round(raw, 1),
                "ratio": round(host / raw, 3),
                "move_time_error_pct": round(error, 2),
                "move_measured_s": round(measured, 4),
                "move_predicted_s": round(predicted, 4),
                "move_overhead_ms": round(overhead * 1000, 1),
                "short_move_predicted_s": round(duration(SHORT, SPEED, ACCEL), 4),
                "mix": list(MIX),
                "commands_per_run": ROUNDS * len(MIX),
            }
        )
    )


if __name__ == "__main__":
    main()
