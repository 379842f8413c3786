"""The sorter's feeder view: the frames the sorting loop has already taken, with the part drawn.

Why not the camera: the sorter owns its camera while it runs, and a second grab per frame
would halve its frame rate (on a Pi, the grab is most of a frame's cost).  The loop keeps a
reference to each frame it looks at (:attr:`classify.sorter.Sorter.seen`) and to the frames of
its last decisions (:attr:`classify.sorter.Sorter.recent`); this module only reads those.  It
runs inside a :class:`web.preview.PreviewHub`, so it encodes at ``web.preview_fps`` at most,
only while someone watches, on the hub's thread, and never the same frame twice.

Drawing: the part's box in amber while it settles, in green with the decision (label, bin)
once it has been sorted; the frame itself is copied first (the loop may still be reading it).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np

from classify.preprocess import crop_square, square_region
from classify.sorter import SortDecision
from classify.sorter_view import SeenFrame
from web.preview import encode_preview

SETTLING = (255, 176, 0)
SORTED = (40, 200, 80)
#: Crops kept encoded (one per recent decision the page shows).
CROP_CACHE = 16


class SortingLoop(Protocol):
    """What the feeder view reads of :class:`classify.sorter.Sorter`."""

    @property
    def seen(self) -> SeenFrame | None: ...

    @property
    def recent(self) -> Sequence[SeenFrame]: ...


class FeederFrames:
    """A :class:`web.preview.PreviewHub` source over the sorter's frames (never its camera).

    ``preview()`` answers None when the loop has taken no new frame since the last call, so
    the hub encodes nothing while the sorter is stopped.
    """

    def __init__(self, sorter: SortingLoop) -> None:
        self.sorter = sorter
        self._shown: SeenFrame | None = None

    def preview(self) -> np.ndarray | None:
        seen = self.sorter.seen
        if seen is None or seen is self._shown:
            return None
        self._shown = seen
        return annotated(seen, last_decided(self.sorter))


def last_decided(sorter: SortingLoop) -> SeenFrame | None:
    """The newest decision with its frame, or None."""
    recent = list(sorter.recent)  # NOTE: a copy: the loop appends from its own thread
    return recent[-1] if recent else None


def annotated(seen: SeenFrame, decided: SeenFrame | None) -> np.ndarray:
    """A copy of ``seen.frame`` with the part's box: green and labelled when it is the part
    just sorted (same box as the last decision), amber while it settles."""
    frame = np.array(seen.frame, dtype=np.uint8, copy=True)
    if seen.bbox is None:
        return frame
    x, y, w, h = (int(v) for v in seen.bbox)
    sorted_now = decided is not None and overlap(decided.bbox, seen.bbox) > 0.5
    colour = SORTED if sorted_now else SETTLING
    thick = max(1, frame.shape[1] // 320)
    cv2.rectangle(frame, (x, y), (x + w - 1, y + h - 1), colour, thick)
    if sorted_now and decided is not None and isinstance(decided.decision, SortDecision):
        d = decided.decision
        text = f"{d.label or 'review'} > bin {d.bin}"
        scale = 0.4 * thick
        cv2.putText(
            frame, text, (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thick
        )
    return frame


def overlap(a: Sequence[int] | None, b: Sequence[int] | None) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes (0 when either is None)."""
    if a is None or b is None:
        return 0.0
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


class DecisionCrops:
    """The crops of the sorter's recent decisions as JPEGs, cut from the frames it decided on.

    Encoded on request (the page asks once per decision) and cached, so the loop never pays.
    """

    def __init__(self, sorter: SortingLoop, size: int = CROP_CACHE) -> None:
        self.sorter = sorter
        self._size = size
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def jpeg(self, number: int) -> bytes | None:
        """The crop of decision ``number`` (its ordinal since start-up), or None when the
        sorter no longer keeps that decision's frame."""
        with self._lock:
            if number in self._cache:
                return self._cache[number]
        found = next((s for s in list(self.sorter.recent) if s.number == number), None)
        if found is None or found.bbox is None:
            return None
        h, w = found.frame.shape[:2]
        jpeg = encode_preview(crop_square(found.frame, square_region(found.bbox, w, h)))
        with self._lock:
            self._cache[number] = jpeg
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return jpeg
