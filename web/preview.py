"""The live preview: ONE encoder thread shared by every viewer, stopped when nobody watches.

Why one thread: a Pi has few cores and the capture run needs them; encoding the same frame once
per viewer would make watching cost capture throughput.  Viewers :meth:`PreviewHub.join` and
then poll :meth:`PreviewHub.latest` for a newer sequence number; the thread grabs
``camera.preview()`` (RGB, low resolution) at ``web.preview_fps``, encodes one JPEG and
publishes it.  When the last viewer leaves, the thread ends.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import cv2
import numpy as np

log = logging.getLogger("web.preview")

JPEG_QUALITY = 70


class PreviewHub:
    """The shared preview encoder; see the module docstring."""

    def __init__(self, camera: Any, fps: float, sleep: Any = time.sleep) -> None:
        self.camera = camera
        self.interval = 1.0 / fps
        self._sleep = sleep
        self._lock = threading.Lock()
        self._viewers = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._frame: bytes | None = None
        self._seq = 0
        #: Frames encoded since the hub was made (for tests and the benchmark).
        self.encoded = 0
        self.last_error: str | None = None

    @property
    def viewers(self) -> int:
        with self._lock:
            return self._viewers

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def join(self) -> None:
        """A viewer arrives; the first one starts the encoder thread."""
        with self._lock:
            self._viewers += 1
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._loop, name="preview-encoder", daemon=True
                )
                self._thread.start()

    def leave(self) -> None:
        """A viewer leaves; the last one stops the encoder thread."""
        with self._lock:
            self._viewers = max(0, self._viewers - 1)
            if self._viewers == 0:
                self._stop.set()

    def latest(self) -> tuple[int, bytes | None]:
        """The newest JPEG and its sequence number (0 and None before the first frame)."""
        with self._lock:
            return self._seq, self._frame

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(2.0)

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                rgb = self.camera.preview()
                # NOTE: a source that is not a camera (the sorter's feeder view) answers None
                # when it has no new frame: nothing is encoded or published then.
                jpeg = None if rgb is None else encode_preview(rgb)
            except Exception as exc:  # NOTE: a camera hiccup must not kill every viewer's stream
                self.last_error = str(exc)
                log.warning("preview frame failed: %s", exc)
                self._stop.wait(0.5)
                continue
            if jpeg is not None:
                with self._lock:
                    self._frame = jpeg
                    self._seq += 1
                    self.encoded += 1
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:
                next_at = time.monotonic()  # fell behind: do not burst to catch up
            else:
                self._stop.wait(delay)


def encode_preview(rgb: np.ndarray) -> bytes:
    """RGB uint8 H×W×3 -> JPEG bytes (OpenCV wants BGR)."""
    ok, buf = cv2.imencode(
        ".jpg",
        cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR),
        [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY],
    )
    if not ok:
        raise ValueError("the preview frame could not be encoded as JPEG")
    return buf.tobytes()
