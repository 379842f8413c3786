"""Presence, box and stillness against the empty reference, on simulated platform frames."""

from __future__ import annotations

import numpy as np
import pytest

from classify.feeder_sim import SimFeeder
from classify.presence import PresenceDetector, median_frame
from rig.config import Settings, apply_sim
from rig.sim.catalogue import CATALOGUE
from rig.sim.clock import SimClock

SIZE = (640, 480)


def _iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


@pytest.fixture
def feeder() -> SimFeeder:
    settings = apply_sim(Settings())
    return SimFeeder(settings, SimClock(0), seed=3, preview_size=SIZE, max_parts=0)


def _detector(feeder: SimFeeder) -> PresenceDetector:
    reference = median_frame([feeder.camera.preview() for _ in range(5)])
    return PresenceDetector(reference, Settings().sorter.presence_threshold)


def test_empty_noisy_frames_are_not_a_part(feeder: SimFeeder) -> None:
    detector = _detector(feeder)
    for _ in range(10):
        seen = detector.look(feeder.camera.preview())
        assert not seen.present and seen.bbox is None


@pytest.mark.parametrize("label", list(CATALOGUE))
def test_every_part_in_every_pose_is_found_with_a_tight_box(feeder: SimFeeder, label: str) -> None:
    detector = _detector(feeder)
    for pose in CATALOGUE[label].poses:
        feeder.world.load_part(label, f"p-{pose}", pose)
        frame = feeder.camera.capture()  # a still at preview size carries the true box
        seen = detector.look(frame.image)
        assert seen.present, (label, pose, seen.changed)
        assert _iou(seen.bbox, frame.meta["truth_box"]) > 0.85, (label, pose)


def test_a_settling_part_moves_and_then_is_still() -> None:
    settings = apply_sim(Settings())
    clock = SimClock(0)
    feeder = SimFeeder(settings, clock, seed=5, gap_s=0.0, settle_s=0.3, preview_size=SIZE)
    feeder.max_parts = 0
    detector = _detector(feeder)
    feeder.max_parts = 1
    seen = [detector.look(feeder.camera.preview()) for _ in range(16)]
    assert all(s.present for s in seen)
    assert seen[0].motion == 1.0  # nothing to compare the first frame with
    moving = [s.still for s in seen[1:8]]
    assert not any(moving), [s.motion for s in seen]
    assert all(s.still for s in seen[-5:]), [s.motion for s in seen]
    detector.forget()
    assert detector.look(feeder.camera.preview()).motion == 1.0


def test_a_frame_of_another_size_is_refused(feeder: SimFeeder) -> None:
    detector = _detector(feeder)
    with pytest.raises(ValueError, match="take the reference again"):
        detector.look(np.zeros((240, 320, 3), np.uint8))


def test_the_reference_is_the_median_of_its_frames() -> None:
    frames = [np.full((4, 4, 3), v, np.uint8) for v in (10, 200, 12)]
    assert (median_frame(frames) == 12).all()


def test_a_sorter_started_long_after_the_feeder_gets_an_empty_reference():
    # the feeder waits gap_s after its stream (re)starts, so the first frames show no part
    clock = SimClock(0)
    feeder = SimFeeder(apply_sim(Settings()), clock, seed=2, gap_s=0.2, preview_size=SIZE)
    clock.sleep(30.0)  # the app has been up for a while before anyone starts the sorter
    feeder.camera.preview()
    assert feeder.world.part is None
    for _ in range(10):
        feeder.camera.preview()
    assert feeder.world.part is not None  # then it feeds


def test_slow_first_frames_on_a_loaded_machine_still_give_an_empty_reference():
    # the browser test's sorter once stalled: its first frames rendered slowly, gap_s of clock
    # time passed inside the 5 reference frames, a part dropped into the "empty" reference and
    # was never seen, and the feeder waited for an empty platform forever.  The feeder now
    # also holds a number of frames, whatever the clock says.
    from classify.feeder_sim import RESUME_HOLD_FRAMES
    from classify.sorter import REFERENCE_FRAMES

    clock = SimClock(0)
    feeder = SimFeeder(apply_sim(Settings()), clock, seed=2, gap_s=0.2, preview_size=SIZE)
    for _ in range(REFERENCE_FRAMES):
        feeder.camera.preview()
        clock.sleep(0.3)  # a cold cache and a busy CPU: each frame takes longer than gap_s
        assert feeder.world.part is None
    for _ in range(RESUME_HOLD_FRAMES - REFERENCE_FRAMES + 1):
        feeder.camera.preview()
    assert feeder.world.part is not None  # and then it feeds
