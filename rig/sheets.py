"""The printed background sheets: physical rig parts, described once as data.

Why here, in ``rig``: a sheet is as much a part of the rig as the turntable.  The printer
(``capture/vision/backgrounds.py``) prints these designs, the simulated camera
(``rig/sim/camera.py``)
renders the very same pixels, and the run engine finds the marker and the colour patches at the
positions :func:`sheet_layout` gives.  Nothing above ``rig`` may be imported here.

Every sheet carries, at fixed positions that scale with the sheet:

* an ArUco marker (``DICT_4X4_50``) whose id *is* the sheet id, in the top-left corner inside a
  white quiet zone (the detector needs a light border around the black marker frame);
* a strip of :data:`PATCH_COLOURS` along the bottom edge, for the colour-correction matrix;
* the part area between them, where the turntable centre lies.

Example::

    >>> from rig.sheets import SHEETS, render_sheet, sheet_layout
    >>> img = render_sheet(3, 640, 480)
    >>> img.shape, sheet_layout(640, 480).marker
    ((480, 640, 3), Rect(x=33, y=33, w=77, h=77))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import cv2
import numpy as np

from rig.errors import NotFound

RGB = tuple[int, int, int]

#: The ArUco dictionary printed on every sheet; ids 0..49, so sheet ids must stay below 50.
ARUCO_DICT = cv2.aruco.DICT_4X4_50

#: Known sRGB values of the patch strip, left to right (ColorChecker-like references).
#: NOTE: neutral white, grey and black come first so a white balance can be fitted from the
#: first three alone; the chromatic ones span the gamut for the 3x3 matrix.
PATCH_COLOURS: tuple[RGB, ...] = (
    (243, 243, 242),  # white
    (122, 122, 121),  # neutral 5
    (52, 52, 52),  # black
    (175, 54, 60),  # red
    (70, 148, 73),  # green
    (56, 61, 150),  # blue
    (231, 199, 31),  # yellow
    (187, 86, 149),  # magenta
    (8, 133, 161),  # cyan
    (214, 126, 44),  # orange
    (115, 82, 68),  # dark skin
    (87, 108, 67),  # foliage
)

#: A4 landscape width in inches: used to size textures in millimetres when no dpi is given.
_A4_LONG_IN = 297 / 25.4


@dataclass(frozen=True)
class SheetSpec:
    """One printable background design.

    ``colours`` are sRGB; a plain sheet has one, a texture a base and a grain colour, a
    pattern its two alternating colours.  ``style`` names the texture or pattern drawn.
    """

    id: int
    name: str
    kind: Literal["plain", "texture", "pattern"]
    colours: tuple[RGB, ...]
    style: str = ""
    note: str = field(default="", compare=False)


SHEETS: dict[int, SheetSpec] = {
    s.id: s
    for s in (
        SheetSpec(1, "white", "plain", ((245, 245, 242),)),
        SheetSpec(2, "grey", "plain", ((128, 128, 128),)),
        SheetSpec(
            3,
            "blue",
            "plain",
            ((45, 95, 165),),
            note="deliberately close to the blue brick: the hard case for masks",
        ),
        SheetSpec(4, "green", "plain", ((60, 150, 80),)),
        SheetSpec(5, "black", "plain", ((25, 25, 25),)),
        SheetSpec(6, "paper", "texture", ((232, 228, 216), (200, 195, 182)), style="noise"),
        SheetSpec(7, "wood", "texture", ((176, 128, 84), (128, 86, 52)), style="grain"),
        SheetSpec(8, "checker", "pattern", ((210, 210, 210), (150, 150, 150)), style="checker"),
        SheetSpec(9, "dots", "pattern", ((240, 240, 235), (70, 110, 190)), style="dots"),
    )
}


@dataclass(frozen=True)
class Rect:
    """An axis-aligned pixel rectangle: ``x, y`` top-left, ``w, h`` size."""

    x: int
    y: int
    w: int
    h: int

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x + self.w / 2.0, self.y + self.h / 2.0)

    def slices(self) -> tuple[slice, slice]:
        """``image[rect.slices()]`` is the rectangle's pixels."""
        return (slice(self.y, self.y + self.h), slice(self.x, self.x + self.w))


@dataclass(frozen=True)
class SheetLayout:
    """Where things are on a sheet of ``width`` x ``height`` pixels.

    ``marker`` is the ArUco marker itself (black frame included), ``quiet`` the white square
    around it, ``patches`` the colour patches in :data:`PATCH_COLOURS` order, ``part_area``
    the free area whose centre is the turntable centre.
    """

    width: int
    height: int
    marker: Rect
    quiet: Rect
    patches: tuple[Rect, ...]
    part_area: Rect


@lru_cache(maxsize=64)
def sheet_layout(width: int, height: int) -> SheetLayout:
    """The fixed layout of every sheet at this pixel size (all positions scale with it).

    Proportions, of the short side ``s``: margin 3 %, marker 16 % with a quiet zone of a
    quarter marker on each side; the patch strip is 7 % of the height tall along the bottom.
    """
    _check_size(width, height)
    s = min(width, height)
    margin = max(2, round(0.03 * s))
    marker = max(12, round(0.16 * s))
    pad = max(2, marker // 4)
    quiet = Rect(margin, margin, marker + 2 * pad, marker + 2 * pad)
    mark = Rect(margin + pad, margin + pad, marker, marker)
    strip_h = max(4, round(0.07 * height))
    strip_y = height - margin - strip_h
    n = len(PATCH_COLOURS)
    gap = max(1, round(0.004 * width))
    patch_w = (width - 2 * margin - (n - 1) * gap) // n
    patches = tuple(Rect(margin + i * (patch_w + gap), strip_y, patch_w, strip_h) for i in range(n))
    top = quiet.y + quiet.h + margin
    area = Rect(margin, top, width - 2 * margin, max(1, strip_y - margin - top))
    return SheetLayout(width, height, mark, quiet, patches, area)


def render_sheet(
    sheet_id: int, width_px: int, height_px: int, *, dpi: float | None = None
) -> np.ndarray:
    """The sheet as an RGB ``uint8`` array of ``height_px`` x ``width_px`` x 3.

    ``dpi`` sets the physical scale of textures and patterns (grain, checker squares, dots are
    sized in millimetres); by default the sheet is taken to be A4 landscape wide.  The result is
    deterministic: the same arguments give the same pixels, on the printer and in the simulator.
    """
    spec = sheet_spec(sheet_id)
    _check_size(width_px, height_px)
    if dpi is None:
        dpi = width_px / _A4_LONG_IN
    if not dpi > 0:
        raise ValueError(f"dpi must be positive (got {dpi})")
    px_per_mm = dpi / 25.4
    img = _background(spec, width_px, height_px, px_per_mm)
    layout = sheet_layout(width_px, height_px)
    img[layout.quiet.slices()] = 255
    dictionary = cv2.aruco.getPredefinedDictionary(ARUCO_DICT)
    mark = cv2.aruco.generateImageMarker(dictionary, spec.id, layout.marker.w)
    img[layout.marker.slices()] = mark[:, :, None]
    for rect, colour in zip(layout.patches, PATCH_COLOURS, strict=True):
        img[rect.slices()] = colour
    return img


def sheet_spec(sheet_id: int) -> SheetSpec:
    """The design with this id, or :class:`~rig.errors.NotFound` naming the valid ids."""
    try:
        return SHEETS[int(sheet_id)]
    except (KeyError, TypeError, ValueError):
        valid = ", ".join(str(i) for i in sorted(SHEETS))
        raise NotFound(f"there is no background sheet {sheet_id!r}; valid ids: {valid}") from None


def detect_marker(image: np.ndarray) -> tuple[int, np.ndarray] | None:
    """The first sheet marker visible in an RGB or grey image: ``(id, corners 4x2)`` or None.

    Why offered here: the marker dictionary is a property of the sheets; callers (the run
    engine's check, tests) should not each repeat the detector set-up.
    """
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    detector = cv2.aruco.ArucoDetector(
        cv2.aruco.getPredefinedDictionary(ARUCO_DICT), cv2.aruco.DetectorParameters()
    )
    corners, ids, _rejected = detector.detectMarkers(grey)
    if ids is None or len(ids) == 0:
        return None
    # NOTE: OpenCV 4 returns ids as Nx1, OpenCV 5 as N: flatten either.
    return int(np.asarray(ids).ravel()[0]), np.asarray(corners[0]).reshape(4, 2)


# --- designs --------------------------------------------------------------------------------


def _check_size(width: int, height: int) -> None:
    if not (16 <= int(width) <= 20000 and 16 <= int(height) <= 20000):
        raise ValueError(f"sheet size must be 16..20000 pixels each way (got {width}x{height})")


def _background(spec: SheetSpec, w: int, h: int, px_per_mm: float) -> np.ndarray:
    base = np.array(spec.colours[0], np.float32)
    if spec.kind == "plain":
        return np.broadcast_to(base.astype(np.uint8), (h, w, 3)).copy()
    other = np.array(spec.colours[1], np.float32)
    rng = np.random.default_rng(1000 + spec.id)
    if spec.style == "noise":
        # NOTE: paper fibre: fine noise at ~0.5 mm blurred a little, so it prints and
        # photographs as texture rather than as sensor noise.
        t = _smooth_noise(rng, w, h, 0.5 * px_per_mm)
    elif spec.style == "grain":
        t = _wood_grain(rng, w, h, px_per_mm)
    elif spec.style == "checker":
        t = _checker(w, h, 10.0 * px_per_mm)
    elif spec.style == "dots":
        t = _dots(w, h, 8.0 * px_per_mm, 2.0 * px_per_mm)
    else:
        raise ValueError(f"sheet {spec.id} has an unknown style {spec.style!r}")
    img = base[None, None, :] * (1.0 - t[:, :, None]) + other[None, None, :] * t[:, :, None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _smooth_noise(rng: np.random.Generator, w: int, h: int, cell_px: float) -> np.ndarray:
    """Values 0..1 of noise with features about ``cell_px`` wide (generated small, resized)."""
    cell = max(1.0, cell_px)
    sw, sh = max(2, round(w / cell)), max(2, round(h / cell))
    small = rng.random((sh, sw), dtype=np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _wood_grain(rng: np.random.Generator, w: int, h: int, px_per_mm: float) -> np.ndarray:
    """Wavy dark lines along the sheet, about 3 mm apart, like planed wood."""
    wobble = _smooth_noise(rng, w, h, 40.0 * px_per_mm) * 2.0
    y = np.arange(h, dtype=np.float32)[:, None] / (3.0 * px_per_mm)
    rings = 0.5 + 0.5 * np.sin(2 * np.pi * (y + wobble))
    fine = _smooth_noise(rng, w, h, 0.8 * px_per_mm)
    return np.clip(rings**3 * 0.8 + fine * 0.2, 0, 1)


def _checker(w: int, h: int, square_px: float) -> np.ndarray:
    sq = max(1.0, square_px)
    ys = (np.arange(h) // sq).astype(np.int32)[:, None]
    xs = (np.arange(w) // sq).astype(np.int32)[None, :]
    return ((ys + xs) % 2).astype(np.float32)


def _dots(w: int, h: int, pitch_px: float, radius_px: float) -> np.ndarray:
    t = np.zeros((h, w), np.float32)
    pitch = max(2.0, pitch_px)
    r = max(1, round(radius_px))
    for row, cy in enumerate(np.arange(pitch / 2, h, pitch)):
        shift = pitch / 2 if row % 2 else 0.0
        for cx in np.arange(pitch / 2 + shift, w + pitch, pitch):
            cv2.circle(t, (round(cx), round(cy)), r, 1.0, -1, cv2.LINE_AA)
    return t
