"""Capture pipeline efficiency on the simulated rig in real time.

One turn of 36 shots (10 deg apart), settle 0.2 s, 360 deg/s and 720 deg/s^2, 12 MP frames
(SimCamera at 4056x3040, 100 ms modelled exposure) stored as JPEG quality 90.

``floor_s`` is what physics allows: the trapezoid move times (rig.motion) plus the settle time
plus the modelled exposure for every shot.  ``actual_s`` runs from the moment the run starts
its first shot (the operator's last Continue) until the last shot's row is committed, so it
includes the writer's final drain.  ``efficiency = floor_s / actual_s``; the goal is >= 0.95,
which needs the encode/write/mask work to hide entirely behind the moves.

The last line printed is one JSON object:
``{"bench": "capture", "shots", "frame_px", "floor_s", "actual_s", "efficiency", ...}``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from capture.runs.run import CaptureRun
from rig.config import apply_sim, parse_settings

SHOTS = 36
SETTLE_S = 0.2
SPEED, ACCEL = 360.0, 720.0
WIDTH, HEIGHT = 4056, 3040
EXPOSURE_MS = 100.0


def catalogue_labels(n: int) -> list[str]:
    """``n`` trainable part labels from the simulated catalogue, in catalogue order."""
    from rig.sim.catalogue import trainable_labels

    labels = trainable_labels()
    assert len(labels) >= n, f"the simulated catalogue has only {len(labels)} trainable parts"
    return labels[:n]


def first_sheet() -> int:
    from rig.sheets import SHEETS

    return sorted(SHEETS)[0]


def plan_toml(label: str, sheet: int) -> str:
    return f"""
name = "bench-capture"
backgrounds = [{sheet}]
angles_per_rev = {SHOTS}
lights = [1.0]
settle_s = {SETTLE_S}
parts = [{{ label = "{label}", instance = "bench-1" }}]
poses = [{{ name = "upright", prompt = "stand it upright" }}]

[image]
format = "jpeg"
quality = 90
"""


def floor_seconds(angles: list[float], start: float = 0.0) -> float:
    from rig.motion import duration

    total, here = 0.0, start
    for a in angles:
        delta = abs((a - here + 180.0) % 360.0 - 180.0)
        total += duration(delta, SPEED, ACCEL) + SETTLE_S + EXPOSURE_MS / 1000.0
        here = a
    return total


def main() -> None:
    from capture.store import DatasetStore
    from rig.rig import open_rig

    data = Path(tempfile.mkdtemp(prefix="partrig-bench-capture-"))
    settings = apply_sim(
        parse_settings(
            {
                "camera": {"driver": "sim", "still_size": [WIDTH, HEIGHT]},
                "simulator": {"time_scale": 1.0, "exposure_ms": EXPOSURE_MS},
                "turntable": {"max_speed_deg_s": SPEED, "accel_deg_s2": ACCEL},
                "data": {"dir": str(data), "jpeg_quality": 90},
            }
        )
    )
    marks: dict[str, Any] = {"start": None, "end": None, "angles": []}
    store = DatasetStore.open(data)
    with open_rig(settings) as rig:
        run = CaptureRun.create(store, rig, plan_toml(catalogue_labels(1)[0], first_sheet()))

        def on_event(event: Any) -> None:
            d = event.data
            if event.kind == "state" and d["state"] == "awaiting_operator":
                threading.Thread(target=run.answer_prompt).start()
            elif event.kind == "state" and d["state"] == "running":
                marks["start"] = time.perf_counter()  # the last one precedes the first shot
            elif event.kind == "shot":
                marks["angles"].append(d["angle"])
            elif event.kind == "stored":
                marks["end"] = time.perf_counter()

        run.subscribe(on_event)
        run.start()
        state = run.wait()
    store.close()
    if state.value != "completed":
        raise SystemExit(f"the bench run ended {state.value}: {run.reason}")
    floor = floor_seconds(marks["angles"])
    actual = marks["end"] - marks["start"]
    result = {
        "bench": "capture",
        "shots": len(marks["angles"]),
        "frame_px": WIDTH * HEIGHT,
        "floor_s": round(floor, 3),
        "actual_s": round(actual, 3),
        "efficiency": round(floor / actual, 4),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
