"""A USB camera through OpenCV's V4L2 back end.

Why offered: not every rig has a Pi camera module; a UVC webcam works on any Linux machine.
What differs from picamera2: one stream only (the preview is the latest frame scaled down), and
exposure control is whatever the camera's UVC driver exposes.  V4L2 conventions that matter:

* ``CAP_PROP_AUTO_EXPOSURE`` is a menu: 3 = aperture priority (automatic), 1 = manual;
* ``CAP_PROP_EXPOSURE`` is ``exposure_time_absolute`` in units of 100 microseconds;
* a camera may ignore a property; the values actually in force are read back and recorded.

Frames arrive BGR and are converted to RGB.  Stale frames queued in the driver are flushed
before a still, so the still shows the turntable *now*, not a few frames ago.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from rig.camera_types import Exposure, Frame, check_frame
from rig.config import CameraConfig
from rig.errors import CameraError

V4L2_AUTO, V4L2_MANUAL = 3, 1
#: Frames to let auto exposure settle when metering, and stale frames to drop before a still.
SETTLE_FRAMES, FLUSH_FRAMES = 15, 3


class OpenCVCamera:
    """A V4L2 (USB/UVC) camera.  ``factory(device)`` builds the capture; tests pass a stand-in."""

    def __init__(self, config: CameraConfig, factory: Callable[[int], Any] | None = None) -> None:
        self.config = config
        self.device = int(config.device)
        self.still_size: tuple[int, int] = (int(config.still_size[0]), int(config.still_size[1]))
        self.preview_size: tuple[int, int] = (
            int(config.preview_size[0]),
            int(config.preview_size[1]),
        )
        self._factory = factory or self._v4l2_capture
        self._cap: Any = None
        self._lock = threading.RLock()
        self._locked: Exposure | None = None

    @staticmethod
    def _v4l2_capture(device: int) -> Any:
        return cv2.VideoCapture(device, cv2.CAP_V4L2)

    def open(self) -> None:
        with self._lock:
            if self._cap is not None:
                return
            cap = self._factory(self.device)
            if cap is None or not cap.isOpened():
                if cap is not None:
                    cap.release()
                raise CameraError(
                    f"no V4L2 camera at /dev/video{self.device}; plug the USB camera in, check"
                    " `v4l2-ctl --list-devices`, and set camera.device to its index"
                )
            w, h = self.still_size
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, w)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, h)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            got = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
            if got[0] > 0 and got[1] > 0:
                # NOTE: a UVC camera picks its nearest mode; record what it really delivers.
                self.still_size = got
            self._cap = cap

    def close(self) -> None:
        """Release the device; idempotent."""
        with self._lock:
            cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()

    def __enter__(self) -> OpenCVCamera:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _capture(self) -> Any:
        if self._cap is None:
            raise CameraError("the camera is closed; open it (or the rig) before capturing")
        return self._cap

    def _read(self, flush: int = 0) -> np.ndarray:
        cap = self._capture()
        for _ in range(flush):
            cap.grab()
        ok, bgr = cap.read()
        if not ok or bgr is None:
            raise CameraError(
                f"the camera at /dev/video{self.device} returned no frame; check the USB cable"
                " and that no other program is using the camera"
            )
        if bgr.ndim == 2:
            return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def capture(self) -> Frame:
        with self._lock:
            image = check_frame(self._read(FLUSH_FRAMES), "still")
            t = time.monotonic()
            exposure = self._locked or self._read_exposure()
        return Frame(
            image=image,
            t=t,
            exposure_us=exposure.exposure_us,
            analogue_gain=exposure.analogue_gain,
            colour_gains=exposure.colour_gains,
            lux=None,
            meta={"device": self.device},
        )

    def preview(self) -> np.ndarray:
        with self._lock:
            rgb = self._read()
        w, h = self.preview_size
        return check_frame(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA), "preview")

    # --- exposure -----------------------------------------------------------------------------

    @property
    def locked(self) -> Exposure | None:
        return self._locked

    def _read_exposure(self) -> Exposure:
        cap = self._capture()
        units = float(cap.get(cv2.CAP_PROP_EXPOSURE))
        gain = float(cap.get(cv2.CAP_PROP_GAIN))
        # NOTE: UVC gains are device units, not a multiplier; 0 or less means "not reported".
        return Exposure(
            exposure_us=max(0, round(units * 100)),
            analogue_gain=gain if gain > 0 else 1.0,
            colour_gains=(1.0, 1.0),
        )

    def meter_and_lock(self) -> Exposure:
        """Run auto exposure for a few frames, then switch to manual at the value it reached."""
        with self._lock:
            cap = self._capture()
            cap.set(cv2.CAP_PROP_AUTO_EXPOSURE, V4L2_AUTO)
            cap.set(cv2.CAP_PROP_AUTO_WB, 1)
            for _ in range(SETTLE_FRAMES):
                cap.grab()
            exposure = self._read_exposure()
            temperature = cap.get(cv2.CAP_PROP_WB_TEMPERATURE)
            cap.set(cv2.CAP_PROP_AUTO_EXPOSURE, V4L2_MANUAL)
            cap.set(cv2.CAP_PROP_EXPOSURE, exposure.exposure_us / 100.0)
            cap.set(cv2.CAP_PROP_AUTO_WB, 0)
            if temperature and temperature > 0:
                cap.set(cv2.CAP_PROP_WB_TEMPERATURE, temperature)
            self._locked = exposure
            return exposure

    def unlock(self) -> None:
        with self._lock:
            self._locked = None
            if self._cap is not None:
                self._cap.set(cv2.CAP_PROP_AUTO_EXPOSURE, V4L2_AUTO)
                self._cap.set(cv2.CAP_PROP_AUTO_WB, 1)
