"""Length measured from the sheet's marker, on simulated shots of look-alike M4 screws.

What it simulates (``rig/sim/optics.py``, the metric simulated camera at the default still size
4056 x 3040): a pinhole lens looking down from 300 mm, three lenses (radial distortion k1 =
-0.06, 0 and +0.04, each calibrated once from ten simulated photographs of the printed ChArUco
board with ``capture/vision/lens.py``), and for every lens every background sheet, each a run of its
own: the sheet laid down anew (up to 10 mm off each way, 5 degrees turned), the camera at a new
height (300 mm +- 5 %) with up to 1 degree of mounting tilt, sensor noise of 2 levels.  Each run
shoots its empty reference, then M4 pan head screws of 8, 10, 12 and 16 mm (one label, ``screw-m4``)
lying on their side at random turntable angles and instances, and as many standing on their
head (at least 200 of each pose over the full run).

What it measures, from image content and the stored lens calibration only (the truth comes
from the simulator's catalogue, joined by instance, never passed to the measuring code):

* ``length_err_mm_p95``: |measured - true| overall length (head plus shaft, the minimum-area
  rectangle's length) over every shot whose pose shows the length (the side pose), on every
  background; a shot whose marker is missing counts as infinite error (``null`` in JSON when
  that reaches the 95th percentile), and ``marker_missing_rate`` is reported;
* ``shaft_err_mm_p95``: the same for the shaft (the length screws are sold by);
* ``length_sort_accuracy``: the sorter's own rule path sorting every screw, in every pose,
  into the bin of its nominal length, counted per physical screw by its FINAL bin; review
  counts as wrong, and so does a screw still circulating when the bench ends.  Each shot goes
  through what the sorter does with a part when a rule measures (``classify.sorter_measure``:
  the still against the empty platform's still, the mask, the sheet's marker and lens
  calibration) and
  its decision (``classify.decide.choose_bin``, step 4 ``sorter.rules``) under :data:`RULES`:
  ``category screw`` and shaft length 7-9, 9-11, 11-13, 15-17 mm -> bins 1-4 (half-open).  The
  label head answers ``screw-m4`` (category ``screw``) with certainty, so the figure is the
  measuring and the rules, not the classifier.  ``length_sort_accuracy_side`` and
  ``_standing`` split it by the screw's pose when first dropped: a camera looking down cannot
  see the length of a screw standing on its head, so the sorter sends it round again
  (``sorter.recirculate_bin``, :mod:`classify.recirculate`) and the simulated feeder drops the
  same screw again in a new pose drawn as the feeder draws it (half the time standing); after
  ``sorter.max_recirculations`` in a row (:data:`MAX_RECIRCULATIONS` here) the next goes to
  review.  The chute leads straight back (the feeder's default), so a screw's passes follow one
  another, as the limit assumes.  ``recirculated_rate`` (screws sent round at least once),
  ``mean_passes`` and ``max_passes`` come from the passes per screw, and
  ``length_sort_accuracy_by_limit`` what each smaller limit would have given (it only cuts the
  passes short).

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
from classify.decide import choose_bin
from classify.recirculate import RECIRCULATE, Recirculation
from classify.runtime import HeadPrediction, Prediction
from classify.sorter_measure import PlatformMeasurer
from rig.camera import Frame
from rig.config import parse_settings
from rig.sheets import SHEETS
from rig.sim.backdrop import FLAT_SHADE, SensorNoise
from rig.sim.catalogue import M4_LENGTHS, instance_scale, part_model, part_spec, true_size_mm
from rig.sim.optics import MetricView, Optics, render_printed, render_sheet_view, rotation_xyz
from rig.sim.render import render_part

WIDTH, HEIGHT = 4056, 3040
LENSES = ((-0.06, 0.01), (0.0, 0.0), (0.04, -0.005))
SIDE_PER_RUN, UPRIGHT_PER_RUN = 8, 8
#: The sorter configuration the screws are sorted under: bin by nominal shaft length +- 1 mm.
RULES = [
    {"name": f"M4x{n}", "bin": i + 1,
     "when": {"category": "screw", "shaft_length_mm": [n - 1.0, n + 1.0]}}
    for i, n in enumerate(M4_LENGTHS)
]  # fmt: skip
#: Recirculations in a row before review: the simulator's screws stand on their head half the
#: time (a real screw dropped on a flat platform far less often), so 8 leaves 1 in 2**9 to review.
MAX_RECIRCULATIONS = 8
#: Passes after which the bench stops a screw that is still circulating (counted wrong).
MAX_PASSES = 20
SETTINGS = parse_settings({
    "actuator": {"driver": "sim", "review_bin": 0},
    "sorter": {"rules": RULES, "recirculate_bin": 9, "max_recirculations": MAX_RECIRCULATIONS},
})  # fmt: skip
#: What the label head says of every screw (sure of it: the bench measures sizes, not labels).
SCREW = Prediction("screw-m4", 0, 1.0, [("screw-m4", 1.0)], 1.0,
                   heads={"category": HeadPrediction("category", "screw", 1.0)})  # fmt: skip


class Still:
    """A camera whose still is the given frame (the simulated shot)."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image

    def capture(self) -> Frame:
        return Frame(self.image, 0.0, 0, 1.0, (1.0, 1.0))


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
    missing = 0
    shots = {"side": 0, "upright": 0}
    right = {"side": 0, "upright": 0}
    review = {"side": 0, "upright": 0}
    heights: list[float] = []
    rms: list[float] = []
    side_shots = 0
    circulating = {"side": 0, "upright": 0}
    passes: list[int] = []
    correct_at: list[int | None] = []

    def errors(label, instance, nominal, size, choice, verbose) -> None:
        """The length and shaft errors of one shot of a screw lying down."""
        if size.status == "marker_missing":
            if verbose:
                print(f"{label} {instance}: marker missing", file=sys.stderr)
            length_err.append(float("inf"))
            shaft_err.append(float("inf"))
            return
        true_len = true_size_mm(label, instance)[2]
        true_shaft = nominal * instance_scale(label, instance)
        got, length = size.sizes.get("shaft_length_mm"), size.sizes.get("length_mm")
        length_err.append(abs(length - true_len) if length is not None else float("inf"))
        shaft_err.append(abs(got - true_shaft) if got is not None else float("inf"))
        if verbose:
            print(
                f"{label} {instance} length {length} (true {true_len:.3f}) shaft {got} (true "
                f"{true_shaft:.3f}) -> bin {choice.bin} ({choice.rule} {choice.fired})",
                file=sys.stderr,
            )

    for k1, k2 in lenses:
        cal = lens_mod.calibrate(board_views(Optics(WIDTH, HEIGHT, k1=k1, k2=k2), rng))
        rms.append(round(cal.rms_px, 3))
        for sheet in sheets:
            optics = run_optics(k1, k2, rng)
            heights.append(optics.height_mm)
            lit = cv2.convertScaleAbs(render_sheet_view(optics, sheet), alpha=FLAT_SHADE)
            reference = noise.apply(lit, noise.offset(rng), (WIDTH, HEIGHT))
            platform = PlatformMeasurer(cal)
            platform.take_reference(Still(reference))
            jobs = [("side", M4_LENGTHS[i % len(M4_LENGTHS)]) for i in range(SIDE_PER_RUN)]
            jobs += [("upright", int(rng.choice(M4_LENGTHS))) for _ in range(UPRIGHT_PER_RUN)]
            loop = Recirculation(SETTINGS.sorter)
            for first_pose, nominal in jobs:
                label = f"screw-m4-{nominal}"
                instance = f"k{k1}-s{sheet}-{rng.integers(1 << 30)}"
                poses = part_spec(label).poses
                pose, n_passes, choice = first_pose, 0, None
                while n_passes < MAX_PASSES:
                    n_passes += 1
                    frame = shoot(optics, lit, label, instance, pose, float(rng.uniform(0, 360)),
                                  noise, rng)  # fmt: skip
                    size = platform.measure(Still(frame))
                    choice = choose_bin(SCREW, SETTINGS, size.sizes, loop.offer(size.status))
                    loop.record(choice.rule)
                    if pose == "side":
                        if size.status == "marker_missing":
                            missing += 1
                        side_shots += 1
                        errors(label, instance, nominal, size, choice, args.verbose)
                    if choice.rule != RECIRCULATE:
                        break
                    # NOTE: the feeder drops the same screw again, its pose drawn as it draws
                    # every pose (classify.feeder_sim): uniformly from the poses it can take.
                    pose = poses[int(rng.integers(len(poses)))]
                done = choice is not None and choice.rule != RECIRCULATE
                ok = done and choice is not None and choice.bin == M4_LENGTHS.index(nominal) + 1
                shots[first_pose] += 1
                right[first_pose] += int(ok)
                review[first_pose] += int(done and choice is not None and choice.review)
                circulating[first_pose] += int(not done)
                passes.append(n_passes)
                correct_at.append(n_passes if ok else None)

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
        "length_sort_screws": shots,
        "length_sort_accuracy": round(sum(right.values()) / max(1, sum(shots.values())), 4),
        "length_sort_accuracy_side": round(right["side"] / max(1, shots["side"]), 4),
        "length_sort_accuracy_standing": round(right["upright"] / max(1, shots["upright"]), 4),
        "length_sort_to_review": review,
        "length_sort_wrong_bin": {
            k: shots[k] - right[k] - review[k] - circulating[k] for k in shots
        },
        "length_sort_still_circulating": circulating,
        "recirculate_bin": SETTINGS.sorter.recirculate_bin,
        "max_recirculations": MAX_RECIRCULATIONS,
        "recirculated_rate": round(sum(p > 1 for p in passes) / max(1, len(passes)), 4),
        "mean_passes": round(float(np.mean(passes)), 3) if passes else None,
        "max_passes": max(passes) if passes else None,
        "passes_histogram": {str(k): passes.count(k) for k in sorted(set(passes))},
        "length_sort_accuracy_by_limit": {
            str(k): round(
                sum(c is not None and c <= k + 1 for c in correct_at) / max(1, len(correct_at)), 4
            )
            for k in (0, 1, 2, 3, 5, MAX_RECIRCULATIONS)
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
