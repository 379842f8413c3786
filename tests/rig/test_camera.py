"""The real camera drivers, proven against stand-ins for picamera2 and a V4L2 capture.

picamera2 and a camera device are not present here: that they fail with a clear CameraError is
itself a test.  The stand-ins record the calls, so the lock sequence, the BGR to RGB conversion
and the frontend-timeout recovery are checked against what the driver really does.
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar

import cv2
import numpy as np
import pytest

from rig.camera import Exposure, open_camera
from rig.camera_opencv import OpenCVCamera
from rig.camera_picamera2 import Picamera2Camera
from rig.config import CameraConfig
from rig.errors import CameraError, ConfigError

SMALL = CameraConfig(driver="picamera2", still_size=(64, 48), preview_size=(32, 24))


# --- picamera2 -------------------------------------------------------------------------------


class FakeRequest:
    def __init__(self, cam: FakePicamera2) -> None:
        self.cam = cam
        self.released = False

    def make_array(self, name: str) -> np.ndarray:
        assert name == "main"
        return self.cam.bgr.copy()

    def get_metadata(self) -> dict[str, Any]:
        return dict(self.cam.metadata)

    def release(self) -> None:
        self.released = True


class FakePicamera2:
    """Enough of Picamera2 for the driver: a B,G,R-ordered main stream and metadata."""

    instances: ClassVar[list[FakePicamera2]] = []

    def __init__(self, timeouts: int = 0) -> None:
        self.timeouts = timeouts
        self.controls: list[dict[str, Any]] = []
        self.config: dict[str, Any] = {}
        self.started = self.closed = False
        self.bgr = np.zeros((48, 64, 3), np.uint8)
        self.bgr[..., 0] = 200  # blue channel first in memory
        self.metadata = {"ExposureTime": 8000, "AnalogueGain": 1.5, "ColourGains": (2.0, 1.6)}
        self.meter_steps = iter([(20000, 2.0), (12000, 1.6), (8000, 1.5), (8000, 1.5)])
        FakePicamera2.instances.append(self)

    def create_still_configuration(self, main, lores, buffer_count=1):
        return {"main": main, "lores": lores, "buffer_count": buffer_count}

    def configure(self, config) -> None:
        self.config = config

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True

    def set_controls(self, controls) -> None:
        self.controls.append(dict(controls))

    def capture_request(self, wait=None) -> FakeRequest:
        if self.timeouts > 0:
            self.timeouts -= 1
            raise TimeoutError("Camera frontend has timed out!")
        return FakeRequest(self)

    def capture_metadata(self, wait=None) -> dict[str, Any]:
        exposure, gain = next(self.meter_steps, (8000, 1.5))
        return {"ExposureTime": exposure, "AnalogueGain": gain, "ColourGains": (2.0, 1.6)}

    def capture_array(self, name: str, wait=None) -> np.ndarray:
        assert name == "lores"
        w, h = self.config["lores"]["size"]
        yuv = np.full((h * 3 // 2, w), 128, np.uint8)
        return yuv


def picamera(timeouts_per_session: list[int]) -> Picamera2Camera:
    FakePicamera2.instances = []
    sessions = iter(timeouts_per_session)
    return Picamera2Camera(SMALL, factory=lambda: FakePicamera2(next(sessions, 0)))


def test_picamera2_missing_gives_a_clear_camera_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(CameraError, match="apt install python3-picamera2"):
        open_camera(CameraConfig(driver="picamera2"))


def test_picamera2_configures_full_stills_plus_a_yuv_lores_stream():
    with picamera([0]) as cam:
        config = FakePicamera2.instances[0].config
        assert config["main"] == {"size": (64, 48), "format": "RGB888"}
        assert config["lores"] == {"size": (32, 24), "format": "YUV420"}
        preview = cam.preview()
        assert preview.shape == (24, 32, 3) and preview.dtype == np.uint8


def test_picamera2_frames_are_converted_from_bgr_memory_order_to_rgb():
    with picamera([0]) as cam:
        frame = cam.capture()
    assert frame.image.shape == (48, 64, 3)
    assert (frame.image[..., 2] == 200).all() and (frame.image[..., 0] == 0).all()
    assert (frame.exposure_us, frame.analogue_gain, frame.colour_gains) == (8000, 1.5, (2.0, 1.6))


def test_picamera2_meters_until_settled_then_locks_ae_and_awb_off_at_those_values():
    with picamera([0]) as cam:
        exposure = cam.meter_and_lock()
        fake = FakePicamera2.instances[0]
        assert exposure == Exposure(8000, 1.5, (2.0, 1.6))
        assert fake.controls[0] == {"AeEnable": True, "AwbEnable": True}
        assert fake.controls[-1] == {
            "AeEnable": False,
            "AwbEnable": False,
            "ExposureTime": 8000,
            "AnalogueGain": 1.5,
            "ColourGains": (2.0, 1.6),
        }
        cam.unlock()
        assert cam.locked is None and fake.controls[-1]["AeEnable"] is True


def test_picamera2_recovers_from_one_frontend_timeout_by_reopening_with_the_lock_kept():
    with picamera([0, 0]) as cam:
        cam.meter_and_lock()
        FakePicamera2.instances[0].timeouts = 1
        frame = cam.capture()
        assert frame.image.shape == (48, 64, 3)
        assert cam.recoveries == 1
        first, second = FakePicamera2.instances[:2]
        assert first.closed and second.started
        assert second.controls[0]["AeEnable"] is False  # the lock survives the reopen


def test_picamera2_gives_up_with_camera_error_when_the_retry_also_times_out():
    with picamera([1, 1]) as cam, pytest.raises(CameraError, match="even after reopening"):
        cam.capture()


def test_picamera2_closed_camera_refuses_and_close_is_idempotent():
    cam = picamera([0])
    cam.open()
    cam.close()
    cam.close()
    with pytest.raises(CameraError, match="closed"):
        cam.capture()


# --- OpenCV / V4L2 ----------------------------------------------------------------------------


class FakeCapture:
    def __init__(self, opened: bool = True) -> None:
        self.opened = opened
        self.props: dict[int, float] = {
            cv2.CAP_PROP_EXPOSURE: 156.0,
            cv2.CAP_PROP_GAIN: 0.0,
            cv2.CAP_PROP_WB_TEMPERATURE: 4600.0,
        }
        self.sets: list[tuple[int, float]] = []
        self.grabs = 0
        self.released = False

    def isOpened(self) -> bool:
        return self.opened

    def set(self, prop: int, value: float) -> bool:
        self.sets.append((prop, value))
        self.props[prop] = value
        return True

    def get(self, prop: int) -> float:
        return self.props.get(prop, 0.0)

    def grab(self) -> bool:
        self.grabs += 1
        return True

    def read(self):
        w = int(self.props.get(cv2.CAP_PROP_FRAME_WIDTH, 64))
        h = int(self.props.get(cv2.CAP_PROP_FRAME_HEIGHT, 48))
        bgr = np.zeros((h, w, 3), np.uint8)
        bgr[..., 0] = 90
        return True, bgr

    def release(self) -> None:
        self.released = True


def test_opencv_without_a_device_gives_a_clear_camera_error():
    fake = FakeCapture(opened=False)
    cam = OpenCVCamera(CameraConfig(driver="opencv", device=5), factory=lambda d: fake)
    with pytest.raises(CameraError, match="no V4L2 camera at /dev/video5"):
        cam.open()
    assert fake.released


def test_opencv_real_backend_reports_a_missing_device_as_camera_error():
    with pytest.raises(CameraError, match="v4l2-ctl"):
        open_camera(CameraConfig(driver="opencv", device=63))


def test_opencv_frames_are_rgb_at_the_requested_size():
    fake = FakeCapture()
    config = CameraConfig(driver="opencv", still_size=(64, 48), preview_size=(32, 24))
    with OpenCVCamera(config, factory=lambda d: fake) as cam:
        frame = cam.capture()
        assert frame.image.shape == (48, 64, 3) and (frame.image[..., 2] == 90).all()
        assert fake.grabs >= 3  # stale buffered frames dropped before the still
        assert cam.preview().shape == (24, 32, 3)


def test_opencv_lock_switches_v4l2_to_manual_exposure_at_the_metered_value():
    fake = FakeCapture()
    with OpenCVCamera(CameraConfig(driver="opencv"), factory=lambda d: fake) as cam:
        exposure = cam.meter_and_lock()
        assert exposure.exposure_us == 15600
        assert (cv2.CAP_PROP_AUTO_EXPOSURE, 1) in fake.sets
        assert (cv2.CAP_PROP_EXPOSURE, 156.0) in fake.sets
        assert (cv2.CAP_PROP_AUTO_WB, 0) in fake.sets
        assert cam.capture().exposure_us == 15600
        cam.unlock()
        assert fake.sets[-2:] == [(cv2.CAP_PROP_AUTO_EXPOSURE, 3), (cv2.CAP_PROP_AUTO_WB, 1)]
    assert fake.released


def test_open_camera_rejects_a_sim_camera_without_a_world():
    with pytest.raises(ConfigError):
        open_camera(CameraConfig(driver="sim"))
