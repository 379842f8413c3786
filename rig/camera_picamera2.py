"""The Raspberry Pi camera through picamera2 (libcamera): the rig's real camera.

Why it is built this way:

* **One long-lived session.**  Opening libcamera costs a second or more and re-running the
  control algorithms from scratch; the rig keeps one session with a still configuration at full
  sensor resolution (``main``) plus a low-resolution ``lores`` stream for the live preview, so
  neither a still nor a preview frame needs a mode switch.
* **Locked exposure.**  ``meter_and_lock`` lets auto exposure (AE) and white balance (AWB)
  converge once, reads the values they settled on from the frame metadata, then turns both
  off and sets those values as fixed controls, so every shot of a run is taken alike and the
  empty reference frame stays valid.
* **Recovery.**  A "frontend timeout" (a loose ribbon cable, a glitching sensor) stalls a
  capture; the driver waits ``camera.frontend_timeout_s``, closes and reopens the session
  (restoring the locked controls) and retries once before raising CameraError.
* **Pixels.**  picamera2's ``RGB888`` is B, G, R in memory; frames are converted to RGB.  The
  ``lores`` stream must be YUV420 on a Pi 4 and is converted too.

picamera2 comes from apt on the Pi (``python3-picamera2``); it is imported inside the class so
the package imports anywhere.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from rig.camera_types import Exposure, Frame, check_frame
from rig.config import CameraConfig
from rig.errors import CameraError

#: Frames to wait at most for AE/AWB to settle, and the relative change that counts as settled.
METER_FRAMES, SETTLED = 30, 0.02


class Picamera2Camera:
    """A Raspberry Pi camera module through picamera2.

    ``factory`` builds the ``Picamera2`` object; by default it imports picamera2.  Tests pass a
    stand-in with the same methods.
    """

    def __init__(self, config: CameraConfig, factory: Callable[[], Any] | None = None) -> None:
        self.config = config
        self.still_size: tuple[int, int] = (int(config.still_size[0]), int(config.still_size[1]))
        self.preview_size: tuple[int, int] = (
            int(config.preview_size[0]),
            int(config.preview_size[1]),
        )
        self._factory = factory or self._import_picamera2
        self._cam: Any = None
        self._lock = threading.RLock()
        self._locked: Exposure | None = None
        self._manual: Exposure | None = None
        self.focus_dioptres: float | None = None
        self.recoveries = 0

    @staticmethod
    def _import_picamera2() -> Any:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise CameraError(
                "picamera2 is not installed; on the Pi run `sudo apt install python3-picamera2`"
                " and create the venv with --system-site-packages, or set camera.driver ="
                f" 'opencv' or use --sim ({exc})"
            ) from None
        try:
            return Picamera2()
        except (IndexError, RuntimeError) as exc:
            raise CameraError(
                "no Raspberry Pi camera found; check the ribbon cable and that `rpicam-hello"
                f" --list-cameras` lists it ({exc})"
            ) from None

    # --- session ------------------------------------------------------------------------------

    def open(self) -> None:
        with self._lock:
            if self._cam is None:
                self._cam = self._start_session()

    def _start_session(self) -> Any:
        cam = self._factory()
        try:
            config = cam.create_still_configuration(
                main={"size": self.still_size, "format": "RGB888"},
                lores={"size": self.preview_size, "format": "YUV420"},
                buffer_count=2,
            )
            cam.configure(config)
            cam.start()
            if self._locked is not None:
                cam.set_controls(_lock_controls(self._locked))
        except CameraError:
            _quietly_close(cam)
            raise
        except Exception as exc:
            _quietly_close(cam)
            raise CameraError(
                f"the camera could not be configured for {self.still_size[0]}x"
                f"{self.still_size[1]} stills: {exc}; check camera.still_size against the sensor"
            ) from exc
        return cam

    def close(self) -> None:
        """Stop and release the camera; idempotent."""
        with self._lock:
            cam, self._cam = self._cam, None
        if cam is not None:
            _quietly_close(cam)

    def __enter__(self) -> Picamera2Camera:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _session(self) -> Any:
        if self._cam is None:
            raise CameraError("the camera is closed; open it (or the rig) before capturing")
        return self._cam

    def _recover(self) -> None:
        """Close and reopen the session after a frontend timeout (locked controls restored)."""
        self.recoveries += 1
        cam, self._cam = self._cam, None
        if cam is not None:
            _quietly_close(cam)
        self._cam = self._start_session()

    def _with_retry(self, what: str, fn: Callable[[Any], Any]) -> Any:
        with self._lock:
            cam = self._session()
            try:
                return fn(cam)
            except (TimeoutError, RuntimeError) as first:
                try:
                    self._recover()
                    return fn(self._session())
                except (TimeoutError, RuntimeError, CameraError) as second:
                    raise CameraError(
                        f"the camera did not deliver a {what} within"
                        f" {self.config.frontend_timeout_s:g} s, even after reopening it"
                        f" ({first}; then {second}); check the ribbon cable and power supply"
                    ) from second

    # --- frames -------------------------------------------------------------------------------

    def capture(self) -> Frame:
        """A full-resolution still as RGB, with the exposure it was taken at."""
        timeout = self.config.frontend_timeout_s

        def grab(cam: Any) -> tuple[np.ndarray, dict[str, Any], float]:
            request = cam.capture_request(wait=timeout)
            try:
                bgr = request.make_array("main")
                meta = dict(request.get_metadata())
            finally:
                request.release()
            return bgr, meta, time.monotonic()

        bgr, meta, t = self._with_retry("still", grab)
        w, h = self.still_size
        image = check_frame(np.ascontiguousarray(bgr[:h, :w, 2::-1]), "still")
        exposure = _exposure_from(meta, self._locked)
        return Frame(
            image=image,
            t=t,
            exposure_us=exposure.exposure_us,
            analogue_gain=exposure.analogue_gain,
            colour_gains=exposure.colour_gains,
            lux=exposure.lux,
            meta={k: meta[k] for k in ("SensorTimestamp", "Lux", "ColourTemperature") if k in meta},
        )

    def preview(self) -> np.ndarray:
        """The latest lores frame as RGB (YUV420 converted)."""
        timeout = self.config.frontend_timeout_s
        yuv = self._with_retry(
            "preview frame", lambda cam: cam.capture_array("lores", wait=timeout)
        )
        return check_frame(_yuv420_to_rgb(yuv, self.preview_size), "preview")

    # --- exposure -----------------------------------------------------------------------------

    @property
    def locked(self) -> Exposure | None:
        return self._locked

    @property
    def manual(self) -> Exposure | None:
        """The operator's fixed exposure and white balance, or None for automatic."""
        return self._manual

    def set_manual(self, exposure: Exposure | None, focus_dioptres: float | None = None) -> None:
        """Fix exposure and white balance (None: automatic) and the lens position in dioptres
        (None: continuous autofocus, where the module has one).  Metering then returns the
        fixed values instead of converging."""
        with self._lock:
            self._manual = exposure
            self.focus_dioptres = focus_dioptres
            self._locked = exposure
            cam = self._session()
            cam.set_controls(
                _lock_controls(exposure) if exposure else {"AeEnable": True, "AwbEnable": True}
            )
            if "LensPosition" in getattr(cam, "camera_controls", {}):
                cam.set_controls(
                    {"AfMode": 2}
                    if focus_dioptres is None
                    else {"AfMode": 0, "LensPosition": float(focus_dioptres)}
                )

    def meter_and_lock(self) -> Exposure:
        """Let AE/AWB converge (up to ~30 frames), then fix the values they reached (or the
        operator's manual values, when set)."""
        if self._manual is not None:
            with self._lock:
                self._locked = self._manual
                self._session().set_controls(_lock_controls(self._manual))
            return self._manual
        timeout = self.config.frontend_timeout_s

        def meter(cam: Any) -> Exposure:
            cam.set_controls({"AeEnable": True, "AwbEnable": True})
            previous: Exposure | None = None
            for _ in range(METER_FRAMES):
                current = _exposure_from(cam.capture_metadata(wait=timeout), None)
                if previous is not None and _settled(previous, current):
                    return current
                previous = current
            assert previous is not None
            return previous

        exposure = self._with_retry("metering frame", meter)
        with self._lock:
            self._locked = exposure
            self._session().set_controls(_lock_controls(exposure))
        return exposure

    def unlock(self) -> None:
        with self._lock:
            self._locked = self._manual
            if self._cam is not None and self._manual is None:
                self._cam.set_controls({"AeEnable": True, "AwbEnable": True})


def _lock_controls(e: Exposure) -> dict[str, Any]:
    return {
        "AeEnable": False,
        "AwbEnable": False,
        "ExposureTime": int(e.exposure_us),
        "AnalogueGain": float(e.analogue_gain),
        "ColourGains": (float(e.colour_gains[0]), float(e.colour_gains[1])),
    }


def _exposure_from(meta: dict[str, Any], locked: Exposure | None) -> Exposure:
    """The exposure a frame was taken at, from its metadata (falling back to the locked one)."""
    fallback = locked or Exposure(0, 1.0, (1.0, 1.0))
    gains = meta.get("ColourGains") or fallback.colour_gains
    lux = meta.get("Lux")
    return Exposure(
        exposure_us=int(meta.get("ExposureTime", fallback.exposure_us)),
        analogue_gain=float(meta.get("AnalogueGain", fallback.analogue_gain)),
        colour_gains=(float(gains[0]), float(gains[1])),
        lux=None if lux is None else float(lux),
    )


def _settled(a: Exposure, b: Exposure) -> bool:
    def close(x: float, y: float) -> bool:
        return abs(x - y) <= SETTLED * max(abs(x), abs(y), 1e-9)

    return (
        close(a.exposure_us * a.analogue_gain, b.exposure_us * b.analogue_gain)
        and close(a.colour_gains[0], b.colour_gains[0])
        and close(a.colour_gains[1], b.colour_gains[1])
    )


def _yuv420_to_rgb(yuv: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """I420 (a (h*3/2) x w plane stack) to RGB; a padded stride keeps only the Y plane (grey)."""
    w, h = size
    if yuv.ndim == 3 and yuv.shape[2] >= 3:  # a Pi 5 may deliver lores as RGB888 (BGR order)
        return np.ascontiguousarray(yuv[:h, :w, 2::-1])
    if yuv.shape == (h * 3 // 2, w):
        return cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420)
    # NOTE: with a row stride wider than the width the chroma planes are interleaved with
    # padding; a grey preview is better than a garbled one.  Preview widths that are multiples
    # of 64 (640 is) never take this path.
    grey = np.ascontiguousarray(yuv[:h, :w])
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)


def _quietly_close(cam: Any) -> None:
    for method in ("stop", "close"):
        # NOTE: releasing a broken session must not mask the error that broke it.
        with contextlib.suppress(Exception):
            getattr(cam, method)()
