"""Draws a simulated part, as the rig's oblique camera sees it, into a region of a frame.

Why this way: a 12 MP frame must be rendered inside the modelled exposure (100 ms), so only the
part's bounding region is touched, with ``cv2.fillPoly`` on convex faces (anti-aliased, sub-pixel
precise) in an order fixed by construction (see :mod:`rig.sim.shapes`), never per-pixel Python.

The camera is orthographic, looking down at :data:`ELEVATION_DEG` from the front; the LED ring is
a fixed light from the front left above, so faces change shade as the turntable turns them, and a
plastic-like highlight moves over them.  The turntable centre projects to the centre of the sheet
layout's part area.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from rig.sheets import Rect, sheet_layout
from rig.sim.shapes import Model, Solid, rotation_z

#: Camera elevation above the turntable plane.
ELEVATION_DEG = 40.0
#: Width of the scene the full frame spans, in millimetres at the turntable centre.
FOV_MM = 100.0
AMBIENT, DIFFUSE, SPECULAR, SHININESS = 0.5, 0.55, 0.35, 24.0

_EL = np.radians(ELEVATION_DEG)
#: Unit vector from the scene towards the camera.
TOWARD_CAMERA = np.array([0.0, -np.cos(_EL), np.sin(_EL)])
LIGHT = np.array([-0.45, -0.55, 0.75]) / np.linalg.norm([-0.45, -0.55, 0.75])
_HALF = (LIGHT + TOWARD_CAMERA) / np.linalg.norm(LIGHT + TOWARD_CAMERA)
_SHIFT = 4  # fillPoly sub-pixel bits
_ONE = 1 << _SHIFT


class Projection(Protocol):
    """What drawing a part needs of a camera: this module's :class:`View` or a metric one."""

    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def px_per_mm(self) -> float: ...
    @property
    def toward(self) -> np.ndarray: ...
    def project(self, pts: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class View:
    """Pixel geometry of one frame size: scale and where the turntable centre lands."""

    width: int
    height: int
    px_per_mm: float
    cx: float
    cy: float

    @classmethod
    def for_size(cls, width: int, height: int) -> View:
        area = sheet_layout(width, height).part_area
        cx, cy = area.centre
        s = width / FOV_MM
        # NOTE: parts rise upwards in the image, so the centre sits a little below the middle
        # of the free area to keep tall poses inside it.
        return cls(width, height, s, cx, cy + 0.15 * area.h)

    @property
    def toward(self) -> np.ndarray:
        """Unit vector from the scene towards the camera (one direction: orthographic)."""
        return TOWARD_CAMERA

    def project(self, pts: np.ndarray) -> np.ndarray:
        """Pixel coordinates (k, 2) of points (k, 3) in millimetres."""
        s = self.px_per_mm
        u = self.cx + s * pts[:, 0]
        v = self.cy - s * (pts[:, 1] * np.sin(_EL) + pts[:, 2] * np.cos(_EL))
        return np.stack([u, v], axis=1)

    def turntable_ellipse(self, radius_mm: float) -> tuple[tuple[int, int], tuple[int, int]]:
        """Centre and half-axes of the turntable disc of this radius, for ``cv2.ellipse``."""
        r = radius_mm * self.px_per_mm
        return (round(self.cx), round(self.cy)), (round(r), round(r * np.sin(_EL)))


@dataclass
class PartImage:
    """A rendered part: the frame region it covers, its pixels there, and its true silhouette."""

    roi: Rect
    pixels: np.ndarray  # uint8 (h, w, 3): the region of the frame with the part drawn in
    mask: np.ndarray  # bool (h, w)


def shade(colour: np.ndarray, normal: np.ndarray, brightness: float) -> tuple[float, ...]:
    """Lit sRGB colour of a face: ambient + Lambert + a small specular highlight."""
    n = normal / np.linalg.norm(normal)
    lit = AMBIENT + DIFFUSE * max(0.0, float(n @ LIGHT))
    spec = SPECULAR * max(0.0, float(n @ _HALF)) ** SHININESS
    rgb = (colour * lit + 255.0 * spec) * brightness
    return tuple(float(c) for c in np.clip(rgb, 0, 255))


def draw_order(model: Model, toward: np.ndarray = TOWARD_CAMERA) -> list[Solid]:
    """Solids in painter's order for this orientation (see :mod:`rig.sim.shapes`).

    ``toward`` points at the camera (the metric camera of :mod:`rig.sim.optics` looks down).
    """
    body = [s for s in model.solids if s.out is None]
    before, after = [], []
    for s in model.solids:
        if s.out is None:
            continue
        facing = float(s.out @ toward) > 1e-6
        if facing:
            after.append(s)
        elif not s.flat:
            before.append(s)

    def depth(s: Solid) -> float:
        centre = np.mean([f.verts.mean(axis=0) for f in s.faces], axis=0)
        return -float(centre @ toward)

    before.sort(key=depth, reverse=True)
    after.sort(key=depth, reverse=True)
    return before + body + after


def posed(model: Model, angle_deg: float) -> Model:
    """The model after the turntable has turned ``angle_deg`` (counter-clockwise from above)."""
    return model.transformed(rotation_z(angle_deg), np.zeros(3))


def part_region(model: Model, view: Projection, margin_px: int) -> Rect | None:
    """The frame rectangle the posed model covers (plus a margin), or None if it is off-frame."""
    pts = view.project(np.concatenate([f.verts for s in model.solids for f in s.faces]))
    x0 = max(0, int(np.floor(pts[:, 0].min())) - margin_px)
    y0 = max(0, int(np.floor(pts[:, 1].min())) - margin_px)
    x1 = min(view.width, int(np.ceil(pts[:, 0].max())) + margin_px + 1)
    y1 = min(view.height, int(np.ceil(pts[:, 1].max())) + margin_px + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    return Rect(x0, y0, x1 - x0, y1 - y0)


def render_part(
    model: Model,
    angle_deg: float,
    view: Projection,
    background: np.ndarray,
    *,
    brightness: float = 1.0,
    blur_px: float = 0.0,
) -> PartImage | None:
    """Draw the part turned to ``angle_deg`` over ``background`` (a clean full frame, not changed).

    ``blur_px`` is the length of motion blur along the direction of travel (a move during the
    exposure); the silhouette is then where the smeared part covers at least half a pixel.
    Returns None when no part of it is in the frame.
    """
    m = posed(model, angle_deg)
    blur = max(0, round(blur_px))
    roi = part_region(m, view, 2 + blur)
    if roi is None:
        return None
    origin = np.array([roi.x, roi.y], float)
    mask = np.zeros((roi.h, roi.w), np.uint8)
    if blur < 2:
        canvas = background[roi.slices()].copy()
        _draw(m, view, origin, canvas, mask, brightness, background[roi.slices()])
        return PartImage(roi, canvas, mask.astype(bool))
    part = np.zeros((roi.h, roi.w, 3), np.uint8)
    alpha = np.zeros((roi.h, roi.w), np.uint8)
    _draw(m, view, origin, part, mask, brightness, np.zeros_like(part), alpha)
    # NOTE: the turntable turns about the vertical axis, so in this view points travel mostly
    # sideways: a horizontal box blur of the premultiplied part and its coverage is a fair smear.
    k = (blur, 1)
    part_f = cv2.blur(part.astype(np.float32), k)
    a = cv2.blur(alpha.astype(np.float32) / 255.0, k)
    bg = background[roi.slices()].astype(np.float32)
    out = bg * (1.0 - a[:, :, None]) + part_f
    pixels = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    return PartImage(roi, pixels, a >= 0.5)


def _draw(
    m: Model,
    view: Projection,
    origin: np.ndarray,
    canvas: np.ndarray,
    mask: np.ndarray,
    brightness: float,
    behind: np.ndarray,
    alpha: np.ndarray | None = None,
) -> None:
    toward = view.toward
    for solid in draw_order(m, toward):
        for face in solid.faces:
            if float(face.normal @ toward) <= 1e-6:
                continue
            poly = np.round((view.project(face.verts) - origin) * _ONE).astype(np.int32)
            colour = shade(face.colour, face.normal, brightness)
            cv2.fillPoly(canvas, [poly], colour, cv2.LINE_AA, _SHIFT)
            if alpha is not None:
                cv2.fillPoly(alpha, [poly], 255, cv2.LINE_AA, _SHIFT)
            if not solid.flat:
                cv2.fillPoly(mask, [poly], 1, cv2.LINE_8, _SHIFT)
            if solid.window is not None:
                _see_through(poly, solid.window, view, origin, canvas, mask, behind, alpha)
        for pts, normals, line_colour, width_mm in solid.lines:
            _draw_line(
                pts, normals, line_colour, width_mm, view, origin, canvas, brightness, toward
            )


def _see_through(
    near: np.ndarray,
    far_verts: np.ndarray,
    view: Projection,
    origin: np.ndarray,
    canvas: np.ndarray,
    mask: np.ndarray,
    behind: np.ndarray,
    alpha: np.ndarray | None,
) -> None:
    """Show ``behind`` where a through hole's near and far ends overlap in the image."""
    far = np.round((view.project(far_verts) - origin) * _ONE).astype(np.int32)
    a = np.zeros(mask.shape, np.uint8)
    b = np.zeros(mask.shape, np.uint8)
    cv2.fillPoly(a, [near], 1, cv2.LINE_8, _SHIFT)
    cv2.fillPoly(b, [far], 1, cv2.LINE_8, _SHIFT)
    hole = (a & b).astype(bool)
    canvas[hole] = behind[hole]
    mask[hole] = 0
    if alpha is not None:
        alpha[hole] = 0


def _draw_line(
    pts: np.ndarray,
    normals: np.ndarray,
    colour: np.ndarray,
    width_mm: float,
    view: Projection,
    origin: np.ndarray,
    canvas: np.ndarray,
    brightness: float,
    toward: np.ndarray,
) -> None:
    """The camera-facing runs of a surface polyline (a thread), dark and about width_mm wide."""
    visible = (normals @ toward) > 0.05
    xy = np.round((view.project(pts) - origin) * _ONE).astype(np.int32)
    thickness = max(1, round(width_mm * view.px_per_mm))
    rgb = tuple(float(c) for c in np.clip(colour * brightness, 0, 255))
    run: list[np.ndarray] = []
    for point, vis in zip(xy, visible, strict=True):
        if vis:
            run.append(point)
            continue
        if len(run) > 1:
            cv2.polylines(canvas, [np.array(run)], False, rgb, thickness, cv2.LINE_AA, _SHIFT)
        run = []
    if len(run) > 1:
        cv2.polylines(canvas, [np.array(run)], False, rgb, thickness, cv2.LINE_AA, _SHIFT)
