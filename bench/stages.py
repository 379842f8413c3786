"""What each stage of a capture shot and of a sorter frame costs in CPU, on this machine.

Why: the rig runs on a Raspberry Pi, and the end-to-end benches (``bench/capture.py``,
``bench/sorter.py``) only say whether the pipeline keeps up *here*.  A per-stage table says
which stage would bind on a slower core and by how much; ``docs/benchmarks.md`` projects it to a
Pi 4 and a Pi 5 from published per-core ratios.

Every stage is the product's own function, called alone on realistic frames, in the order the
product calls them:

* ``capture_ms`` (one shot, a simulated 12 MP frame at the configured ``camera.still_size``
  with the metric optics, the benchmark's JPEG quality 90; the shot writer's work,
  :class:`capture.runs.pipeline.ShotWriter`): ``encode`` (:func:`encode_image`), ``mask``
  (:func:`capture.vision.masks.mask_and_box` against the segment's
  :class:`~capture.vision.masks.PreparedReference`, as the writer calls it), ``mask_png``
  (:func:`encode_mask`), ``thumbnail`` (:func:`make_thumbnail`), ``measure`` (a
  :class:`capture.vision.measure.ShotMeasurer` whose sheet pose is already known, as for every
  shot after a segment's first), ``write`` (the writer's store calls: the shot's three files
  and its row through the store's durable batched path, ``store.shot_batches()``'s ``add`` then
  ``flush``, as the writer does when no other frame waits, on a real store in a temporary
  folder) and ``colour`` (:func:`capture.vision.colour.colour_matrix_from_reference`, run once
  per background segment: its share per shot for a 36-shot turn).  ``segment_ms`` has the
  once-per-segment figures: ``colour_fit``, ``reference_png`` (the reference's PNG encode, on
  the engine's reference thread), ``reference_prepare`` (:func:`prepare_reference`),
  ``measure_pose``; ``mask_bare_ms`` is ``mask`` against the bare reference frame (what other
  callers pay, and what the writer paid before the reference was prepared once).
* ``sorter_ms`` (one classified 640 x 480 preview frame, ``sorter`` settings defaults):
  ``grab`` (the Pi camera driver's I420-to-RGB conversion and frame check; the wait for the
  sensor is not CPU), ``presence`` (:meth:`PresenceDetector.look` with a previous frame, so the
  stillness test runs too), ``crop`` (:func:`crop_square` of :func:`square_region`, shown apart
  but included in ``preprocess``), ``preprocess`` (:func:`classify.preprocess.prepare`: crop,
  resize, colour matrix), ``invoke`` (:meth:`Classifier.invoke_heads`), ``decide``
  (:meth:`Classifier.decide` and :func:`classify.decide.choose_bin`) and ``log`` (appending to
  the durable :class:`DecisionLog`, including its writer thread's JPEG and commit, one crop kept
  every ``sorter.sample_every`` decisions: total CPU of a block divided by its decisions).

Each stage reports ``cpu`` (``time.process_time``: every thread of this process, so OpenCV's
and TFLite's worker threads count; nothing else runs in the process while a stage is timed) and
``wall`` (``time.perf_counter``), the median over the shots or frames.  ``total`` sums the
stages of one shot or frame (``crop`` excluded, it is inside ``preprocess``).  The machine is
shared, so CPU time is the figure to project; ``load_avg`` is reported before and after.

Model: the sorter bench's int8 MobileNetV2 at 224 px (``bench/out/sorter-mnv2-224``, built by
``bench/sorter.py``), or ``--model DIR``; without one and without TensorFlow to build it,
``invoke`` and ``decide`` are ``null``.

Usage: ``python bench/stages.py [--shots 9] [--frames 60]``; ``--still WxH`` and ``--preview
WxH`` shrink the frames for a quick check.  The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2
import numpy as np

T = TypeVar("T")
#: Shots per background segment that share one colour fit (one turn, contracts' ``capture``).
SHOTS_PER_SEGMENT = 36
#: The capture benchmark's JPEG quality (contracts, "Benchmark definitions").
JPEG_QUALITY = 90
SORTER_MODEL = Path(__file__).resolve().parent / "out" / "sorter-mnv2-224"
#: A mild warm cast's correction, used when the sorter's reference shows no colour strip (the
#: simulated platform is a plain sheet): the colour step then costs what it costs on a rig.
FALLBACK_MATRIX = [[0.92, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.12, 0.0]]


class Stages:
    """CPU and wall seconds per named stage, one sample per shot or frame."""

    def __init__(self) -> None:
        self.cpu: dict[str, list[float]] = {}
        self.wall: dict[str, list[float]] = {}

    def run(self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``fn`` and record its cost under ``name``."""
        c0, w0 = time.process_time(), time.perf_counter()
        out = fn(*args, **kwargs)
        self.add(name, time.process_time() - c0, time.perf_counter() - w0)
        return out

    def add(self, name: str, cpu_s: float, wall_s: float) -> None:
        self.cpu.setdefault(name, []).append(cpu_s)
        self.wall.setdefault(name, []).append(wall_s)

    def table(self, exclude_from_total: tuple[str, ...] = ()) -> dict[str, dict[str, float]]:
        """``{stage: {"cpu": ms, "wall": ms}}`` of medians, plus ``total`` (sum of medians)."""
        out = {
            name: {
                "cpu": round(statistics.median(self.cpu[name]) * 1000, 3),
                "wall": round(statistics.median(self.wall[name]) * 1000, 3),
            }
            for name in self.cpu
        }
        counted = [v for k, v in out.items() if k not in exclude_from_total]
        out["total"] = {
            "cpu": round(sum(v["cpu"] for v in counted), 3),
            "wall": round(sum(v["wall"] for v in counted), 3),
        }
        return out


def size_arg(text: str) -> tuple[int, int]:
    """``"4056x3040"`` -> ``(4056, 3040)``."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"give a size as WIDTHxHEIGHT, not {text!r}") from None
    if not (64 <= w <= 10000 and 48 <= h <= 10000):
        raise argparse.ArgumentTypeError(f"{text} is outside 64x48 .. 10000x10000")
    return w, h


@contextmanager
def temporary_folder(prefix: str) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- capture -------------------------------------------------------------------------------------


def capture_frames(size: tuple[int, int], n: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """An empty reference and ``n`` shots of one part at different angles, as the rig sees them.

    The metric simulated camera (a lens above a printed A4 sheet) at ``size``, on a virtual
    clock so exposures take no wall time.
    """
    from rig.config import CameraConfig, SimConfig
    from rig.sheets import SHEETS
    from rig.sim.camera import SimCamera
    from rig.sim.catalogue import trainable_labels
    from rig.sim.clock import SimClock
    from rig.sim.world import SimWorld

    angle = [0.0]
    clock = SimClock(0)
    world = SimWorld(lambda: angle[0], lambda: 1.0, clock=clock)
    camera = SimCamera(
        world,
        CameraConfig(driver="sim", still_size=size),
        SimConfig(optics="metric", time_scale=0),
        clock=clock,
    )
    camera.open()
    try:
        world.install_sheet(sorted(SHEETS)[0])
        reference = camera.capture().image
        world.load_part(trainable_labels()[0], "bench-1")
        shots = []
        for i in range(n):
            angle[0] = i * 360.0 / max(1, n)
            shots.append(camera.capture().image)
    finally:
        camera.close()
    return reference, shots


def capture_stages(size: tuple[int, int], shots: int) -> dict[str, Any]:
    """Time the shot writer's stages on ``shots`` shots of ``size``."""
    from capture.runs.pipeline import encode_image, encode_mask, make_thumbnail
    from capture.store import DatasetStore
    from capture.vision.colour import colour_matrix_from_reference
    from capture.vision.masks import mask_and_box, prepare_reference
    from capture.vision.measure import ShotMeasurer
    from rig.config import Settings

    thumb_px = Settings().data.thumbnail_px
    t = time.perf_counter()
    reference, frames = capture_frames(size, min(shots, 6))
    render_s = time.perf_counter() - t

    segment = Stages()
    for _ in range(3):
        matrix = segment.run("colour_fit", colour_matrix_from_reference, reference)
        segment.run("reference_png", encode_image, reference, "png", 0)
        prepared = segment.run("reference_prepare", prepare_reference, reference)
    measurer = ShotMeasurer()
    mask0, _ = mask_and_box(frames[0], reference)
    segment.run("measure_pose", measurer, frames[0], reference, mask0)  # finds the sheet once

    bare = Stages()
    stages = Stages()
    with temporary_folder("partrig-bench-stages-") as data:
        store = DatasetStore.open(data)
        try:
            run_id = store.create_run("bench-stages", "", "{}", shots)
            stream = store.shot_batches()
            for i in range(shots):
                frame = frames[i % len(frames)]
                jpeg = stages.run("encode", encode_image, frame, "jpeg", JPEG_QUALITY)
                bare.run("mask", mask_and_box, frame, reference)
                mask, box = stages.run("mask", mask_and_box, frame, prepared)
                png = stages.run("mask_png", encode_mask, mask)
                thumb = stages.run("thumbnail", make_thumbnail, frame, thumb_px)
                stages.run("measure", measurer, frame, reference, mask)
                stages.run("write", write_shot, stream, run_id, i, (jpeg, png, thumb), frame, box)
        finally:
            store.close()
    fit = (
        statistics.median(segment.cpu["colour_fit"]),
        statistics.median(segment.wall["colour_fit"]),
    )
    stages.add("colour", fit[0] / SHOTS_PER_SEGMENT, fit[1] / SHOTS_PER_SEGMENT)
    return {
        "capture_ms": stages.table(),
        "segment_ms": segment.table(),
        "mask_bare_ms": bare.table()["mask"],
        "capture_frame": f"{size[0]}x{size[1]}",
        "capture_shots": shots,
        "colour_matrix_found": matrix is not None,
        "jpeg_quality": JPEG_QUALITY,
        "jpeg_kb": round(len(jpeg) / 1024, 1),
        "capture_render_s": round(render_s, 1),
    }


def write_shot(
    stream: Any,
    run_id: int,
    index: int,
    files: tuple[bytes, bytes, bytes],
    frame: np.ndarray,
    box: tuple[int, int, int, int] | None,
) -> int:
    """The shot writer's store calls for one shot when no other frame waits (ShotWriter._loop).

    Its three files and its row through ``stream`` (``store.shot_batches()``): ``add`` writes,
    syncs and renames the files; ``flush`` syncs their folders and commits the row.  A writer
    with another frame waiting skips the ``flush`` (the next ``add``'s sync covers the folders),
    so this is the dearer of its two paths.
    """
    from capture.runs.pipeline import shot_paths
    from capture.store.records import ShotRecord
    from capture.store.shot_batches import ShotFiles

    img_path, mask_path, thumb_path = shot_paths(run_id, index, "jpeg")
    h, w = frame.shape[:2]
    x, y, bw, bh = box if box is not None else (None, None, None, None)
    # NOTE: path, sha256 and size are filled in by the store once the image is durable.
    record = ShotRecord(
        label="bench-part",
        instance_id="bench-1",
        path=img_path,
        sha256="",
        size=0,
        run_id=run_id,
        shot_index=index,
        pose="upright",
        background_id=1,
        angle_cmd=0.0,
        width=w,
        height=h,
        format="jpeg",
        mask_path=mask_path,
        thumb_path=thumb_path,
        bbox_x=x,
        bbox_y=y,
        bbox_w=bw,
        bbox_h=bh,
        source="capture",
    )
    shot = ShotFiles(
        record, (img_path, files[0]), mask=(mask_path, files[1]), thumb=(thumb_path, files[2])
    )
    ids = list(stream.add([shot])) + list(stream.flush())
    if len(ids) != 1:
        raise RuntimeError(f"the store committed {len(ids)} rows for one shot; expected 1")
    return int(ids[0])


# --- sorter --------------------------------------------------------------------------------------


def sorter_frames(size: tuple[int, int], n: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """An empty platform frame and ``n`` frames each showing a different dropped part."""
    from classify.feeder_sim import SimFeeder
    from rig.config import Settings, apply_sim
    from rig.sim.clock import SimClock

    feeder = SimFeeder(
        apply_sim(Settings()), SimClock(0), seed=7, gap_s=0.0, settle_s=0.0, preview_size=size
    )
    feeder.max_parts = 0
    empty = feeder.camera.preview()
    feeder.max_parts = None
    frames = []
    for _ in range(n):
        frames.append(feeder.camera.preview())
        feeder.clear_platform()
    return empty, frames


def load_classifier(model: Path | None, threads: int) -> Any:
    """The sorter bench's model (built on first use when TensorFlow is there), or None."""
    from classify.runtime import Classifier

    if model is None:
        model = SORTER_MODEL
        if not (model / "model.tflite").exists():
            try:
                import tensorflow  # noqa: F401
            except ImportError:
                return None
            import importlib

            sorter_bench = importlib.import_module("bench.sorter")
            from classify.preprocess import prepare
            from rig.sim.catalogue import trainable_labels

            _, frames = sorter_frames((640, 480), 24)
            crops = [prepare(f, None, None, sorter_bench.SIZE) for f in frames]
            model = sorter_bench.cached_model(trainable_labels(), crops)
    return Classifier.from_dir(model, num_threads=threads)


def sorter_stages(size: tuple[int, int], frames_n: int, model: Path | None, no_model: bool):
    """Time one classified frame's stages on ``frames_n`` part frames of ``size``."""
    from capture.vision.colour import colour_matrix_from_reference
    from classify.decide import choose_bin
    from classify.preprocess import crop_square, prepare, square_region
    from classify.presence import PresenceDetector, median_frame
    from rig.camera_picamera2 import _yuv420_to_rgb
    from rig.camera_types import check_frame
    from rig.config import Settings

    settings = Settings()
    cfg = settings.sorter
    t = time.perf_counter()
    empty, frames = sorter_frames(size, min(frames_n, 40))
    render_s = time.perf_counter() - t
    classifier = None if no_model else load_classifier(model, cfg.num_threads)
    input_size = 224 if classifier is None else int(classifier.input_size)
    matrix = colour_matrix_from_reference(empty)
    matrix_found = matrix is not None
    matrix_list = FALLBACK_MATRIX if matrix is None else matrix.tolist()
    detector = PresenceDetector(median_frame([empty]), cfg.presence_threshold)

    def grab(i420: np.ndarray) -> np.ndarray:
        return check_frame(_yuv420_to_rgb(i420, size), "preview")

    stages = Stages()
    prepared_frames: list[tuple[np.ndarray, tuple[int, int, int, int]]] = []
    for i in range(frames_n):
        frame = frames[i % len(frames)]
        i420 = cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420)  # what the Pi's lores stream delivers
        stages.run("grab", grab, i420)
        detector.look(frame)  # the part's previous frame, so the stillness test runs below
        seen = stages.run("presence", detector.look, frame)
        if seen.bbox is None:
            raise RuntimeError("a part frame showed no part; the bench's frames are wrong")
        bbox = seen.bbox
        stages.run("crop", crop_square, frame, square_region(bbox, size[0], size[1]))
        crop = stages.run("preprocess", prepare, frame, bbox, matrix_list, input_size)
        prepared_frames.append((crop, bbox))
        if classifier is not None:
            probs, feats = stages.run("invoke", classifier.invoke_heads, crop)

            def decide(p: np.ndarray = probs, f: Any = feats) -> Any:
                prediction = classifier.decide(p[0], 3, None if f is None else f[0])
                return choose_bin(prediction, settings)

            stages.run("decide", decide)

    batched = decision_log_cost(frames, [b for _, b in prepared_frames], cfg.sample_every, stages)
    return {
        "sorter_ms": stages.table(exclude_from_total=("crop",)),
        "sorter_frame": f"{size[0]}x{size[1]}",
        "sorter_frames": frames_n,
        "model": None if classifier is None else str(getattr(classifier, "runtime", "")),
        "model_input_px": input_size,
        "threads": cfg.num_threads,
        "sorter_colour_matrix": "from reference" if matrix_found else "fixed (no strip)",
        "sample_every": cfg.sample_every,
        "log_batched_ms": batched,
        "sorter_render_s": round(render_s, 1),
    }


def decision_log_cost(
    frames: list[np.ndarray],
    boxes: list[tuple[int, int, int, int]],
    sample_every: int,
    stages: Stages,
) -> dict[str, float]:
    """Record ``log`` in ``stages``: one decision appended and durably committed, per frame.

    That is the loop's steady state: parts arrive slower than a commit takes, so the log's
    writer thread commits each decision alone (a crop JPEG every ``sample_every``).  The same
    decisions appended back to back and flushed once (the writer then batches them) give
    ``log_batched_ms``, the floor a backlog reaches.

    NOTE: the writer thread's CPU is real work a Pi's cores must do, so it is charged; nothing
    else runs in this process meanwhile.
    """
    from capture.store import DatasetStore
    from capture.store.records import utc_now
    from capture.store.sorting import DecisionRecord
    from classify.decision_log import DecisionLog
    from classify.preprocess import crop_square, square_region

    def decision(i: int) -> tuple[Any, np.ndarray | None]:
        frame, bbox = frames[i % len(frames)], boxes[i]
        crop = None
        if sample_every > 0 and (i + 1) % sample_every == 0:
            h, w = frame.shape[:2]
            crop = crop_square(frame, square_region(bbox, w, h)).copy()
        record = DecisionRecord(
            label="bench-part", confidence=0.9, bin=1, reason="confident",
            bbox=bbox, latency_ms=1.0, at=utc_now(),
        )  # fmt: skip
        return record, crop

    def commit_one(log: Any, i: int) -> None:
        log.append(*decision(i))
        if not log.flush(60):
            raise RuntimeError("the decision log did not commit within 60 s")

    with temporary_folder("partrig-bench-stages-log-") as data:
        store = DatasetStore.open(data)
        log = DecisionLog(store)
        try:
            for i in range(len(boxes)):
                stages.run("log", commit_one, log, i)
            c0, w0 = time.process_time(), time.perf_counter()
            for i in range(len(boxes)):
                log.append(*decision(i))
            if not log.flush(120):
                raise RuntimeError("the decision log did not commit within 120 s")
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            if log.error is not None:
                raise log.error
        finally:
            log.close()
            store.close()
    n = max(1, len(boxes))
    return {"cpu": round(cpu / n * 1000, 3), "wall": round(wall / n * 1000, 3)}


# --- main ----------------------------------------------------------------------------------------


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from rig.config import Settings

    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=9, help="capture shots timed (median)")
    parser.add_argument("--frames", type=int, default=60, help="sorter frames timed (median)")
    parser.add_argument("--still", type=size_arg, default=tuple(defaults.camera.still_size))
    parser.add_argument("--preview", type=size_arg, default=tuple(defaults.camera.preview_size))
    parser.add_argument("--model", type=Path, default=None, help="a model folder for invoke")
    parser.add_argument("--no-model", action="store_true", help="skip invoke and decide")
    args = parser.parse_args(argv)
    if not (1 <= args.shots <= 1000 and 1 <= args.frames <= 10000):
        parser.error("--shots must be 1..1000 and --frames 1..10000")
    if args.model is not None and not (args.model / "model.tflite").is_file():
        parser.error(f"{args.model} holds no model.tflite; give a model folder")

    load_before = os.getloadavg()
    result: dict[str, Any] = {"bench": "stages"}
    result.update(capture_stages(args.still, args.shots))
    result.update(sorter_stages(args.preview, args.frames, args.model, args.no_model))
    result.update(
        {
            "cpu": cpu_name(),
            "cpus": os.cpu_count(),
            "opencv_threads": cv2.getNumThreads(),
            "load_avg_before": [round(v, 2) for v in load_before],
            "load_avg_after": [round(v, 2) for v in os.getloadavg()],
            "time_source": "cpu = time.process_time (all threads), wall = time.perf_counter",
        }
    )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
