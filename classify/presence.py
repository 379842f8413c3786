"""Is a part on the sorting platform, where, and has it stopped moving?

How: each frame is shrunk by :data:`SCALE` (bilinear, so each sample averages a 2x2 block and
some sensor noise) and compared with the shrunk *empty reference* frame.  Pixels whose
difference (as grey level of the per-channel absolute difference) exceeds ``diff_level`` are
"changed"; a 3x3 opening removes isolated speckles.  A part is present when the changed
fraction of the frame reaches ``sorter.presence_threshold``; its bounding box is that of the
changed pixels, scaled back to full resolution.  Stillness compares the frame with the
previous one *inside the box*: the part is still when under ``still_fraction`` of the box's
pixels changed.

Why not :mod:`capture.vision.masks`: its mask is built for training quality (hole filling, sharpened
edges at full resolution) and costs milliseconds per frame; the sorter only needs a box and a
yes/no on every frame, in well under the model's invoke time.  The crop it feeds the model is
cut by the shared :func:`classify.preprocess.prepare`, with a margin, so a box a pixel or two
loose changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

#: Shrink factor for the presence test: 640x480 frames are compared at 160x120.
#: NOTE: measured on 640x480 frames, 1/4 with bilinear sampling costs 0.11 ms a frame against
#: 0.27 ms for 1/2 with area averaging, and still finds every simulated part with a box of
#: IoU > 0.85 (the crop adds a 15 % margin anyway).
SCALE = 4
#: Grey level (0..255) of difference from the reference that counts as changed.
DIFF_LEVEL = 25
#: A part is still when under this fraction of its box changed since the previous frame.
STILL_FRACTION = 0.01

Box = tuple[int, int, int, int]
_OPEN = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class Presence:
    """What one frame shows: ``motion`` is 1.0 when there is no previous frame to compare."""

    present: bool
    changed: float
    bbox: Box | None
    motion: float

    @property
    def still(self) -> bool:
        return self.present and self.motion < STILL_FRACTION


def shrink(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    return cv2.resize(frame, (w // SCALE, h // SCALE), interpolation=cv2.INTER_LINEAR)


def median_frame(frames: Sequence[np.ndarray]) -> np.ndarray:
    """The per-pixel median of a few empty frames: a reference with the sensor noise averaged."""
    if not frames:
        raise ValueError("need at least one frame for the reference")
    if len(frames) == 1:
        return frames[0].copy()
    return np.median(np.stack(frames), axis=0).astype(np.uint8)


class PresenceDetector:
    """Compares frames against the empty reference; keeps the previous frame for stillness."""

    def __init__(
        self,
        reference: np.ndarray,
        threshold: float,
        *,
        diff_level: int = DIFF_LEVEL,
        still_fraction: float = STILL_FRACTION,
    ) -> None:
        if reference.dtype != np.uint8 or reference.ndim != 3 or reference.shape[2] != 3:
            raise ValueError("the reference must be an RGB uint8 frame (H x W x 3)")
        self.shape = reference.shape
        self.threshold = float(threshold)
        self.diff_level = int(diff_level)
        self.still_fraction = float(still_fraction)
        self._reference = shrink(reference)
        self._previous: np.ndarray | None = None

    def changed_mask(self, small: np.ndarray, other: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(cv2.absdiff(small, other), cv2.COLOR_RGB2GRAY)
        _, mask = cv2.threshold(grey, self.diff_level, 255, cv2.THRESH_BINARY)
        return cv2.morphologyEx(mask, cv2.MORPH_OPEN, _OPEN)

    def look(self, frame: np.ndarray) -> Presence:
        """Presence, box and motion of the part in ``frame`` (same size as the reference)."""
        if frame.shape != self.shape:
            raise ValueError(
                f"frame of shape {frame.shape} does not match the reference {self.shape}:"
                " take the reference again after changing the camera's preview size"
            )
        small = shrink(frame)
        mask = self.changed_mask(small, self._reference)
        changed = cv2.countNonZero(mask) / mask.size
        previous, self._previous = self._previous, small
        if changed < self.threshold:
            return Presence(False, changed, None, 0.0)
        x, y, w, h = cv2.boundingRect(mask)
        box = self._full_box(x, y, w, h)
        if previous is None:
            return Presence(True, changed, box, 1.0)
        moved = self.changed_mask(small[y : y + h, x : x + w], previous[y : y + h, x : x + w])
        return Presence(True, changed, box, cv2.countNonZero(moved) / max(1, w * h))

    def _full_box(self, x: int, y: int, w: int, h: int) -> Box:
        fh, fw = self.shape[:2]
        x0, y0 = max(0, x * SCALE - 1), max(0, y * SCALE - 1)
        x1, y1 = min(fw, (x + w) * SCALE + 1), min(fh, (y + h) * SCALE + 1)
        return (x0, y0, x1 - x0, y1 - y0)

    def forget(self) -> None:
        """Drop the previous frame (after a pause, a fault or a camera retry)."""
        self._previous = None
