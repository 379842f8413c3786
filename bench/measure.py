"""Length measured from the sheet's marker, on simulated shots of look-alike M4 screws.

What it simulates (``rig/sim/optics.py``, the metric simulated camera at the default still size
4056 x 3040): a pinhole lens looking down from 300 mm, three lenses (radial distortion k1 =
-0.06, 0 and +0.04, each calibrated once from ten simulated photographs of the printed ChArUco
board with ``capture/vision/lens.py``), and for every lens every background sheet, each a run of its
own: the sheet laid down anew (up to 10 mm off each way, 5 degrees turned), the camera at a new
height (300 mm +- 5 %) with up to 1 degree of mounting tilt, sensor noise of 2 levels.  Each run
shoots its empty reference, then M4 pan head screws of 8, 10, 12 and 16 mm (one label, ``screw-m4``)
lying on their side at random turntable angles and instances, and two standing on their head.

What it measures, from image content and the stored lens calibration only (the truth comes
from the simulator's catalogue, joined by instance, never passed to the measuring code):

* ``length_err_mm_p95``: |measured - true| overall length (head plus shaft, the minimum-area
  rectangle's length) over every shot whose pose shows the length (the side pose), on every
  background; a shot whose marker is missing counts as infinite error (``null`` in JSON when
  that reaches the 95th percentile), and ``marker_missing_rate`` is reported;
* ``shaft_err_mm_p95``: the same for the shaft (the length screws are sold by);
* ``length_sort_accuracy``: the measured shaft length binned to the nearest nominal length
  (8, 10, 12, 16 mm) within +-1 mm, else review (counted wrong), over the side-lying screws.
  This is the measuring step alone, not the full sorter with its feeder and valves.
  ``length_sort_accuracy_all_poses`` adds the standing screws: a camera looking down cannot see
  their length, so they go to review and count as wrong.

The last line printed is one JSON object.  ``--quick`` runs one lens and three sheets.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from capture.vision import lens as lens_mod
from capture.vision.masks import mask_and_box
from capture.vision.measure import measure_shot, nominal_bin
from rig.sheets import SHEETS
from rig.sim.backdrop import FLAT_SHADE, SensorNoise
from rig.sim.catalogue import M4_LENGTHS, instance_scale, part_model, true_size_mm
from rig.sim.optics import MetricView, Optics, render_printed, render_sheet_view, rotation_xyz
from rig.sim.render import render_part

WIDTH, HEIGHT = 4056, 3040
LENSES = ((-0.06, 0.01), (0.0, 0.0), (0.04, -0.005))
SIDE_PER_RUN, UPRIGHT_PER_RUN = 8, 2
SORT_TOLERANCE_MM = 1.0


def board_views(optics: Optics, rng: np.random.Generator, n: int = 10) -> list[np.ndarray]:
    """Photographs of the printed board held at varied tilts over the turntable."""
    px_per_mm = 4.0
    board = cv2.cvtColor(lens_mod.render_board(px_per_mm), cv2.COLOR_GRAY2RGB)
    bw, bh = board.shape[1] / px_per_mm, board.shape[0] / px_per_mm
    views = []
    for _ in range(n):
        rot = rotation_xyz(*rng.uniform(-30, 30, 2), rng.uniform(-20, 20))
        centre = np.array([rng.uniform(-40, 40), rng.uniform(-30, 30), rng.uniform(20, 80)])
        origin = centre - rot @ np.array([bw / 2, -bh / 2, 0.0])
        views.append(render_printed(optics, board, px_per_mm, rot, origin))
    return views


def run_optics(k1: float, k2: float, rng: np.random.Generator) -> Optics:
    return Optics(
        WIDTH,
        HEIGHT,
        height_mm=300.0 * rng.uniform(0.95, 1.05),
        k1=k1,
        k2=k2,
        tilt_deg=(float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1))),
        sheet_offset_mm=(float(rng.uniform(-10, 10)), float(rng.uniform(-10, 10))),
        sheet_yaw_deg=float(rng.uniform(-5, 5)),
    )


def shoot(optics: Optics, empty: np.ndarray, label: str, instance: str, pose: str, angle: float,
          noise: SensorNoise, rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    drawn = render_part(part_model(label, instance, pose), angle, MetricView(optics), empty)
    image = empty.copy()
    if drawn is not None:
        image[drawn.roi.slices()] = drawn.pixels
    return noise.apply(image, noise.offset(rng), (optics.width, optics.height))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one lens, three sheets")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verbose", action="store_true", help="one line per shot on stderr")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    noise = SensorNoise(2.0, seed=args.seed)
    lenses = LENSES[:1] if args.quick else LENSES
    sheets = sorted(SHEETS)[:3] if args.quick else sorted(SHEETS)
    started = time.perf_counter()
    length_err: list[float] = []
    shaft_err: list[float] = []
    missing = side_shots = sorted_ok = upright = 0
    heights: list[float] = []
    rms: list[float] = []
    for k1, k2 in lenses:
        cal = lens_mod.calibrate(board_views(Optics(WIDTH, HEIGHT, k1=k1, k2=k2), rng))
        rms.append(round(cal.rms_px, 3))
        for sheet in sheets:
            optics = run_optics(k1, k2, rng)
            heights.append(optics.height_mm)
            lit = cv2.convertScaleAbs(render_sheet_view(optics, sheet), alpha=FLAT_SHADE)
            reference = noise.apply(lit, noise.offset(rng), (WIDTH, HEIGHT))
            jobs = [("side", M4_LENGTHS[i % len(M4_LENGTHS)]) for i in range(SIDE_PER_RUN)]
            jobs += [("upright", int(rng.choice(M4_LENGTHS))) for _ in range(UPRIGHT_PER_RUN)]
            for pose, nominal in jobs:
                label = f"screw-m4-{nominal}"
                instance = f"k{k1}-s{sheet}-{rng.integers(1 << 30)}"
                frame = shoot(optics, lit, label, instance, pose, float(rng.uniform(0, 360)),
                              noise, rng)  # fmt: skip
                mask, _ = mask_and_box(frame, reference)
                m, why = measure_shot(frame, reference, mask, cal)
                if pose == "upright":
                    upright += 1
                    continue
                side_shots += 1
                if why == "marker_missing":
                    if args.verbose:
                        print(f"k1={k1} sheet={sheet} {label}: marker missing", file=sys.stderr)
                    missing += 1
                    length_err.append(float("inf"))
                    shaft_err.append(float("inf"))
                    continue
                true_len = true_size_mm(label, instance)[2]
                true_shaft = nominal * instance_scale(label, instance)
                got = None if m is None else m.shaft_length_mm
                length_err.append(abs(m.length_mm - true_len) if m else float("inf"))
                shaft_err.append(abs(got - true_shaft) if got is not None else float("inf"))
                bin_ = nominal_bin(got, M4_LENGTHS, SORT_TOLERANCE_MM)
                sorted_ok += int(bin_ == nominal)
                if args.verbose:
                    print(f"k1={k1} sheet={sheet} {label} {instance} length {m and m.length_mm:.3f}"
                          f" (true {true_len:.3f}) shaft {got} (true {true_shaft:.3f}) -> {bin_}",
                          file=sys.stderr)  # fmt: skip

    def p95(xs: list[float]) -> float | None:
        v = float(np.percentile(np.asarray(xs), 95, method="higher"))
        return None if not np.isfinite(v) else round(v, 4)

    finite = [e for e in length_err if np.isfinite(e)]
    result = {
        "bench": "measure",
        "frame_px": [WIDTH, HEIGHT],
        "lenses_k1": [k for k, _ in lenses],
        "lens_rms_px": rms,
        "sheets": sheets,
        "camera_height_mm": [round(min(heights), 1), round(max(heights), 1)],
        "side_shots": side_shots,
        "length_err_mm_p95": p95(length_err),
        "length_err_mm_max": round(max(finite), 4) if finite else None,
        "length_err_mm_mean": round(float(np.mean(finite)), 4) if finite else None,
        "shaft_err_mm_p95": p95(shaft_err),
        "marker_missing_rate": round(missing / max(1, side_shots), 4),
        "length_sort_screws": side_shots,
        "length_sort_accuracy": round(sorted_ok / max(1, side_shots), 4),
        "length_sort_accuracy_all_poses": round(sorted_ok / max(1, side_shots + upright), 4),
        "standing_screws_to_review": upright,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
