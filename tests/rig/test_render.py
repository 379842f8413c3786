"""SimCamera: what the simulated camera renders, its exposure model, truth and faults."""

from __future__ import annotations

import numpy as np
import pytest

from rig.camera import Camera, open_camera
from rig.config import CameraConfig, SimConfig
from rig.errors import CameraError, ConfigError
from rig.sheets import detect_marker
from rig.sim.camera import SimCamera, metered_exposure
from rig.sim.clock import SimClock
from rig.sim.world import SimWorld


class Stage:
    """Live angle and light the tests turn by hand."""

    def __init__(self) -> None:
        self.angle = 0.0
        self.light = 1.0


def make_camera(stage: Stage, *, size=(640, 480), noise=0.0, clock=None) -> SimCamera:
    world = SimWorld(lambda: stage.angle, lambda: stage.light)
    cam = SimCamera(
        world,
        CameraConfig(driver="sim", still_size=size, preview_size=(320, 240)),
        SimConfig(noise=noise),
        clock=clock or SimClock(0),
    )
    cam.open()
    return cam


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / max(1, np.logical_or(a, b).sum()))


def test_frames_and_previews_are_rgb_uint8_of_the_configured_sizes():
    cam = make_camera(Stage(), noise=2.0)
    cam.world.install_sheet(1)
    cam.world.load_part("brick-2x4-blue", "a")
    frame = cam.capture()
    assert frame.image.dtype == np.uint8 and frame.image.shape == (480, 640, 3)
    preview = cam.preview()
    assert preview.dtype == np.uint8 and preview.shape == (240, 320, 3)
    assert isinstance(cam, Camera)


@pytest.mark.parametrize("sheet", [1, 3, 7, 9])
def test_the_installed_sheets_marker_is_detectable_in_a_captured_frame(sheet):
    cam = make_camera(Stage(), noise=2.0)
    cam.world.install_sheet(sheet)
    cam.world.load_part("technic-1x4-orange", "t1")
    found = detect_marker(cam.capture().image)
    assert found is not None and found[0] == sheet


def test_an_empty_rig_renders_the_bare_table_without_error():
    cam = make_camera(Stage())
    frame = cam.capture()
    assert detect_marker(frame.image) is None
    assert frame.meta["truth_box"] is None and not cam.last_truth_mask.any()


def test_the_sheet_does_not_turn_so_the_empty_reference_is_valid_at_every_angle():
    stage = Stage()
    cam = make_camera(stage)
    cam.world.install_sheet(7)
    ref = cam.capture().image
    stage.angle = 137.0
    assert np.array_equal(cam.capture().image, ref)


def test_the_truth_mask_matches_where_the_image_differs_from_the_empty_reference():
    stage = Stage()
    cam = make_camera(stage)
    cam.world.install_sheet(3)  # the sheet close to the blue brick's colour
    reference = cam.capture().image.astype(int)
    cam.world.load_part("brick-2x4-blue", "b1", "side")
    for angle in (0, 45, 90, 200):
        stage.angle = angle
        frame = cam.capture()
        truth = cam.last_truth_mask
        changed = np.abs(frame.image.astype(int) - reference).max(axis=2) > 12
        assert truth.shape == frame.image.shape[:2] and truth.any()
        assert iou(changed, truth) >= 0.8, angle
        x, y, w, h = frame.meta["truth_box"]
        ys, xs = np.nonzero(truth)
        assert (x, y, w, h) == (
            xs.min(),
            ys.min(),
            xs.max() - xs.min() + 1,
            ys.max() - ys.min() + 1,
        )


def test_parts_look_different_at_different_angles_and_poses():
    stage = Stage()
    cam = make_camera(stage)
    cam.world.install_sheet(1)
    cam.world.load_part("technic-1x4-orange", "t1")
    views = []
    for angle in (0, 90):
        stage.angle = angle
        views.append((cam.capture().image, cam.last_truth_mask.copy()))
    cam.world.load_part("technic-1x4-orange", "t1", "side")
    stage.angle = 0
    views.append((cam.capture().image, cam.last_truth_mask.copy()))
    for i in range(3):
        for j in range(i + 1, 3):
            assert iou(views[i][1], views[j][1]) < 0.8, (i, j)
            diff = np.abs(views[i][0].astype(int) - views[j][0].astype(int)).max(axis=2)
            assert (diff > 30).sum() > 500


def test_same_colour_parts_differ_in_shape():
    cam = make_camera(Stage())
    cam.world.install_sheet(2)
    masks, means = [], []
    for label in ("brick-2x4-red", "brick-2x2-red"):
        cam.world.load_part(label, "same")
        frame = cam.capture()
        masks.append(cam.last_truth_mask.copy())
        means.append(frame.image[cam.last_truth_mask].mean(axis=0))
    assert masks[0].sum() > 1.4 * masks[1].sum()
    assert np.abs(means[0] - means[1]).max() < 25


def test_a_capture_takes_the_modelled_exposure_and_sees_the_angle_at_mid_exposure():
    clock = SimClock(0)
    world = SimWorld(lambda: 90.0 * clock.now(), lambda: 1.0)
    cam = SimCamera(world, CameraConfig(driver="sim", still_size=(320, 240)),
                    SimConfig(exposure_ms=100, noise=0), clock=clock)  # fmt: skip
    cam.open()
    world.load_part("brick-2x4-red", "m")
    t0 = clock.now()
    frame = cam.capture()
    assert clock.now() - t0 == pytest.approx(0.100)
    assert frame.t == pytest.approx(t0 + 0.050)
    assert frame.meta["angle_deg"] == pytest.approx(90.0 * (t0 + 0.050))
    assert frame.meta["travel_deg"] == pytest.approx(9.0)


def test_a_part_moving_during_the_exposure_is_smeared_sideways():
    clock = SimClock(0)
    speed = {"deg_s": 0.0}
    base = {"t": 0.0, "a": 30.0}
    world = SimWorld(lambda: base["a"] + speed["deg_s"] * (clock.now() - base["t"]), lambda: 1.0)
    cam = SimCamera(world, CameraConfig(driver="sim", still_size=(640, 480)),
                    SimConfig(noise=0), clock=clock)  # fmt: skip
    cam.open()
    world.install_sheet(2)
    reference = cam.capture().image.astype(int)
    world.load_part("brick-2x4-red", "m")

    def smear(frame) -> int:
        changed = np.abs(frame.image.astype(int) - reference).max(axis=2) > 12
        return int((changed & ~cam.last_truth_mask).sum())

    still = smear(cam.capture())
    speed["deg_s"], base["t"], base["a"] = 300.0, clock.now() + 0.05, 30.0
    frame = cam.capture()
    assert frame.meta["angle_deg"] == pytest.approx(30.0)
    assert frame.meta["travel_deg"] == pytest.approx(30.0)
    assert smear(frame) > still + 500


def test_metering_depends_on_light_and_locking_keeps_the_exposure_while_light_changes():
    assert metered_exposure(0.2).exposure_us > metered_exposure(1.0).exposure_us
    dark = metered_exposure(0.0)
    assert dark.exposure_us <= 33_333 and dark.analogue_gain > 1.0
    stage = Stage()
    cam = make_camera(stage)
    cam.world.install_sheet(1)
    locked = cam.meter_and_lock()
    assert cam.locked == locked
    bright = cam.capture()
    assert bright.exposure_us == locked.exposure_us
    stage.light = 0.3
    dim = cam.capture()
    assert dim.exposure_us == locked.exposure_us
    assert dim.image.mean() < 0.6 * bright.image.mean()
    cam.unlock()
    auto = cam.capture()
    assert auto.exposure_us > locked.exposure_us
    assert abs(auto.image.mean() - bright.image.mean()) < 2


def test_injected_failures_raise_camera_error_then_capturing_works_again():
    cam = make_camera(Stage())
    cam.fail_next(2)
    for _ in range(2):
        with pytest.raises(CameraError, match="timed out"):
            cam.capture()
    assert cam.capture().image.shape == (480, 640, 3)


def test_a_closed_camera_refuses_to_capture_and_close_is_idempotent():
    cam = make_camera(Stage())
    cam.close()
    cam.close()
    with pytest.raises(CameraError, match="closed"):
        cam.capture()
    with pytest.raises(CameraError, match="closed"):
        cam.preview()
    with cam:
        assert cam.capture().image.shape == (480, 640, 3)
    with pytest.raises(CameraError):
        cam.capture()


def test_noise_has_the_configured_strength():
    cam = make_camera(Stage(), noise=3.0)
    cam.world.install_sheet(2)
    a, b = cam.capture().image.astype(int), cam.capture().image.astype(int)
    area = (slice(200, 260), slice(200, 400))
    assert 3.0 * 0.8 < (a - b)[area].std() / np.sqrt(2) < 3.0 * 1.2


def test_open_camera_builds_an_open_sim_camera_and_needs_a_world_for_it():
    stage = Stage()
    world = SimWorld(lambda: stage.angle, lambda: stage.light)
    config = CameraConfig(driver="sim", still_size=(320, 240))
    with open_camera(config, sim_world=world, sim=SimConfig(), clock=SimClock(0)) as cam:
        assert cam.capture().image.shape == (240, 320, 3)
    with pytest.raises(ConfigError, match="--sim"):
        open_camera(config)


def test_a_camera_given_no_clock_uses_the_worlds_clock():
    clock = SimClock(0)
    world = SimWorld(lambda: 0.0, lambda: 1.0, clock=clock)
    cam = SimCamera(world, CameraConfig(driver="sim", still_size=(160, 120)), SimConfig())
    cam.open()
    cam.capture()
    assert clock.now() == pytest.approx(0.1)
