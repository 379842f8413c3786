"""What the simulated camera sees behind the part, and its sensor noise, made fast by caching.

Why caches: a 12 MP sheet takes up to ~1.5 s to draw (textures) but never changes while it is
installed, and the sheet does not turn with the turntable, so it is drawn once per (sheet,
size) and scaled once per brightness.  Sensor noise is one precomputed Gaussian field per size,
read at a random offset for each frame, so a frame costs one saturating ``cv2.add`` instead of
12 million random draws.

The scene: an installed sheet is a sweep under and behind the clear turntable, filling the view
(so its marker and colour strip are always in frame).  With no sheet the camera sees the bare
table and the grey turntable disc.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import cv2
import numpy as np

from rig.sheets import render_sheet
from rig.sim.optics import Optics, render_sheet_view
from rig.sim.render import AMBIENT, DIFFUSE, LIGHT, View

TABLE_RGB = (74, 64, 56)
TURNTABLE_RGB = (150, 150, 156)
TURNTABLE_RADIUS_MM = 45.0
#: Lit level of a flat horizontal surface under the ring light (the same model parts use).
FLAT_SHADE = AMBIENT + DIFFUSE * float(LIGHT[2])


class BackdropCache:
    """Clean (noise-free) backgrounds by (sheet or None, width, height, brightness).

    Thread-safe; returned arrays are shared and must be treated as read-only.
    """

    def __init__(self, keep: int = 4, optics: Optics | None = None) -> None:
        self._keep = keep
        #: The metric camera (rig/sim/optics.py): the sheet seen through its lens, not the frame.
        self._optics = optics
        self._lock = threading.Lock()
        self._base: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lit: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def get(self, sheet: int | None, width: int, height: int, brightness: float) -> np.ndarray:
        level = round(float(brightness) * FLAT_SHADE, 3)
        key = (sheet, width, height, level)
        with self._lock:
            hit = self._lit.get(key)
            if hit is not None:
                self._lit.move_to_end(key)
                return hit
        base = self._unlit(sheet, width, height)
        lit = cv2.convertScaleAbs(base, alpha=level) if level != 1.0 else base
        lit.setflags(write=False)
        with self._lock:
            self._put(self._lit, key, lit)
        return lit

    def _unlit(self, sheet: int | None, width: int, height: int) -> np.ndarray:
        key = (sheet, width, height)
        with self._lock:
            hit = self._base.get(key)
            if hit is not None:
                self._base.move_to_end(key)
                return hit
        if self._optics is not None:
            img = render_sheet_view(self._optics.scaled(width, height), sheet)
        elif sheet is not None:
            img = render_sheet(sheet, width, height)
        else:
            img = bare_table(width, height)
        img.setflags(write=False)
        with self._lock:
            self._put(self._base, key, img)
        return img

    def _put(self, cache: OrderedDict, key: tuple, value: np.ndarray) -> None:
        cache[key] = value
        while len(cache) > self._keep:
            cache.popitem(last=False)


def bare_table(width: int, height: int) -> np.ndarray:
    """The table with the empty turntable disc, as seen when no sheet is installed."""
    img = np.empty((height, width, 3), np.uint8)
    img[:] = TABLE_RGB
    view = View.for_size(width, height)
    centre, axes = view.turntable_ellipse(TURNTABLE_RADIUS_MM)
    cv2.ellipse(img, centre, axes, 0, 0, 360, TURNTABLE_RGB, -1, cv2.LINE_AA)
    return img


class SensorNoise:
    """Gaussian read noise of ``sigma`` 8-bit levels from one precomputed field per size."""

    PAD = 64

    def __init__(self, sigma: float, seed: int = 0) -> None:
        self.sigma = float(sigma)
        self._seed = seed
        self._lock = threading.Lock()
        self._fields: dict[tuple[int, int], np.ndarray] = {}

    def offset(self, rng: np.random.Generator) -> tuple[int, int]:
        """A random (x, y) offset into the field for one frame."""
        return int(rng.integers(0, self.PAD)), int(rng.integers(0, self.PAD))

    def field(self, width: int, height: int) -> np.ndarray:
        key = (width, height)
        with self._lock:
            f = self._fields.get(key)
            if f is None:
                rng = np.random.default_rng(self._seed)
                shape = (height + self.PAD, width + self.PAD, 3)
                f = np.round(rng.standard_normal(shape, dtype=np.float32) * self.sigma)
                f = f.astype(np.int16)
                # NOTE: keep only the newest size or two: a 12 MP field is 75 MB.
                if len(self._fields) >= 2:
                    self._fields.pop(next(iter(self._fields)))
                self._fields[key] = f
        return f

    def apply(
        self,
        image: np.ndarray,
        offset: tuple[int, int],
        frame_size: tuple[int, int],
        at: tuple[int, int] = (0, 0),
    ) -> np.ndarray:
        """``image`` plus noise, saturated: a new array.

        ``image`` is the region of a ``frame_size`` (width, height) frame whose top-left is
        ``at``.  The same ``offset`` for a whole frame and for a region of it gives the same
        noise at the same pixel, so a region redrawn later (the part) matches its surroundings.
        """
        if self.sigma <= 0:
            return image.copy()
        h, w = image.shape[:2]
        f = self.field(*frame_size)
        ox, oy = offset[0] + at[0], offset[1] + at[1]
        return cv2.add(image, f[oy : oy + h, ox : ox + w], dtype=cv2.CV_8U)
