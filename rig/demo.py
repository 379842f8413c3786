"""``partrig demo``: a short turntable session on the simulated rig, printed as it happens.

Why it exists: ``make demo`` must show the rig layer working end to end on a laptop with no
hardware and no AVR toolchain: the simulated board on a real pty, the real G-code link, the
real turntable and lights code, in real time.  Each step prints what was commanded and what the
firmware (and the simulated table itself) reported, so a wrong conversion or a lost step is
visible at a glance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from rig.config import Settings
from rig.errors import ConfigError, LinkError
from rig.turntable import Mode

DEMO_ANGLES = (45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0, 0.0)


@dataclass
class MoveRecord:
    what: str
    commanded: float
    measured: float
    true_angle: float
    predicted_s: float
    took_s: float


def _delta(mode: Mode, here: float, goal: float) -> float:
    d = (goal - here) % 360.0
    return d - 360.0 if mode == "shortest" and d >= 180.0 else d


def run_demo(settings: Settings, console: Console) -> list[MoveRecord]:
    """Run the session on ``settings`` (which must select the simulator); return the moves."""
    from rig.rig import open_rig

    records: list[MoveRecord] = []
    with open_rig(settings, with_camera=False) as rig:
        info, board = rig.link.firmware, rig.firmware_sim
        if info is None:
            raise LinkError("the link reported no firmware after its handshake")
        if board is None:
            raise ConfigError("partrig demo runs on the simulated rig: pass --sim")
        console.print(
            f"[green]handshake ok[/] on {rig.status()['port']}: firmware [bold]{info.name}"
            f"[/] {info.version} (dialect [bold]{info.dialect}[/])"
        )
        tt = rig.turntable
        console.print(
            f"turntable: {tt.steps_per_degree:.4f} steps/deg, "
            f"{settings.turntable.max_speed_deg_s:g} deg/s, "
            f"{settings.turntable.accel_deg_s2:g} deg/s², mode {settings.turntable.mode}"
        )
        rig.lights.on()
        console.print(f"lights on: level {rig.lights.level:.2f} on {settings.lights.pin}")

        def move(what: str, goal: float, mode: Mode | None = None) -> None:
            m = mode or settings.turntable.mode
            predicted = tt.move_time(_delta(m, tt.angle, goal))
            t0 = time.perf_counter()
            tt.rotate_to(goal, m)
            measured = tt.wait()
            took = time.perf_counter() - t0
            true = board.actual_angle_deg()
            records.append(MoveRecord(what, goal % 360, measured, true, predicted, took))

        for angle in DEMO_ANGLES:
            move("rotate_to", angle)
        move("shortest 350°", 350.0, "shortest")
        tt.set_zero()
        console.print("set zero: the table's current position is now 0°")
        rig.lights.off()
        console.print("lights off")
        console.print(_table(records))
        st = rig.status()
        console.print(f"status: link {st['link']}, resets {st['resets']}, fault {st['fault']}")
    return records


def _table(records: list[MoveRecord]) -> Table:
    t = Table(title="turntable moves (commanded vs measured)")
    for col in ("move", "commanded °", "firmware °", "true °", "predicted s", "took s"):
        t.add_column(col, justify="right")
    for r in records:
        t.add_row(
            r.what,
            f"{r.commanded:.3f}",
            f"{r.measured:.3f}",
            f"{r.true_angle:.3f}",
            f"{r.predicted_s:.3f}",
            f"{r.took_s:.3f}",
        )
    return t
