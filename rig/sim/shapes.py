"""Convex solids, surface marks and the parts built from them, in millimetres.

Why so simple a 3-D model: the simulated camera must render a 12 MP frame inside the modelled
100 ms exposure in pure Python + OpenCV, so parts are a handful of convex polyhedra (boxes and
n-sided prisms) drawn with the painter's algorithm, never a triangle mesh with a z-buffer.

The drawing order problem is solved by construction instead of sorting: a part is one *body*
plus *attachments* (studs, a screw head, hole marks) that each stick out of the body in a known
direction ``out``.  After the part is turned, an attachment whose ``out`` points towards the
camera is drawn after the body, otherwise before it (it is then behind the body); flat marks
(``flat=True``) on a face turned away are not drawn at all.  Within one convex solid the faces
turned towards the camera never overlap, so they need no order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

#: A polyline drawn on a surface: points, their surface normals, colour and width in mm.
SurfaceLine = tuple[np.ndarray, np.ndarray, np.ndarray, float]

Vec = np.ndarray


@dataclass
class Face:
    """A planar convex polygon with its outward normal and its base (unlit) sRGB colour."""

    verts: np.ndarray  # (k, 3) float64
    normal: np.ndarray  # (3,)
    colour: np.ndarray  # (3,) float, 0..255


@dataclass
class Solid:
    """A convex solid (or a flat mark, ``flat=True``) of a part.

    ``out`` is None for the body; for an attachment, the direction it sticks out of the body.
    ``lines`` are polylines drawn on the solid's surface (screw threads): each is ``(points
    (k, 3), normals (k, 3), colour, width_mm)``; only the segments facing the camera are drawn.
    ``window`` makes a flat mark a through hole: the polygon (k, 3) of its far end.  Where the
    near and far ends overlap in the image the background shows through (not part of the
    part's silhouette); the rest of the mark is the hole's inner wall.
    """

    faces: list[Face]
    out: np.ndarray | None = None
    flat: bool = False
    lines: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]] = field(default_factory=list)
    window: np.ndarray | None = None

    def transformed(self, rot: np.ndarray, shift: np.ndarray) -> Solid:
        """This solid rotated by ``rot`` (3x3) about the origin, then moved by ``shift``."""
        faces = [Face(f.verts @ rot.T + shift, f.normal @ rot.T, f.colour) for f in self.faces]
        lines = [(p @ rot.T + shift, n @ rot.T, c, w) for p, n, c, w in self.lines]
        out = None if self.out is None else self.out @ rot.T
        window = None if self.window is None else self.window @ rot.T + shift
        return Solid(faces, out, self.flat, lines, window)


@dataclass
class Model:
    """A whole part: its solids in drawing-independent order (body first)."""

    solids: list[Solid]

    def transformed(self, rot: np.ndarray, shift: np.ndarray) -> Model:
        return Model([s.transformed(rot, shift) for s in self.solids])

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        pts = np.concatenate([f.verts for s in self.solids for f in s.faces])
        return pts.min(axis=0), pts.max(axis=0)


def _colour(rgb: ArrayLike) -> np.ndarray:
    return np.asarray(rgb, dtype=np.float64)


def box(
    lo: Sequence[float], hi: Sequence[float], rgb: ArrayLike, out: ArrayLike | None = None
) -> Solid:
    """An axis-aligned box from corner ``lo`` to corner ``hi``."""
    (x0, y0, z0), (x1, y1, z1) = lo, hi
    c = _colour(rgb)
    quads = {
        (0, 0, 1): [(x0, y0, z1), (x1, y0, z1), (x1, y1, z1), (x0, y1, z1)],
        (0, 0, -1): [(x0, y0, z0), (x0, y1, z0), (x1, y1, z0), (x1, y0, z0)],
        (1, 0, 0): [(x1, y0, z0), (x1, y1, z0), (x1, y1, z1), (x1, y0, z1)],
        (-1, 0, 0): [(x0, y0, z0), (x0, y0, z1), (x0, y1, z1), (x0, y1, z0)],
        (0, 1, 0): [(x0, y1, z0), (x0, y1, z1), (x1, y1, z1), (x1, y1, z0)],
        (0, -1, 0): [(x0, y0, z0), (x1, y0, z0), (x1, y0, z1), (x0, y0, z1)],
    }
    faces = [Face(np.array(v, float), np.array(n, float), c) for n, v in quads.items()]
    return Solid(faces, None if out is None else np.asarray(out, float))


def _frame_for(axis: ArrayLike) -> np.ndarray:
    """A rotation whose third column is ``axis`` (so local z maps onto it)."""
    a = np.asarray(axis, float)
    a = a / np.linalg.norm(a)
    helper = np.array([1.0, 0, 0]) if abs(a[0]) < 0.9 else np.array([0, 1.0, 0])
    u = np.cross(helper, a)
    u /= np.linalg.norm(u)
    v = np.cross(a, u)
    return np.stack([u, v, a], axis=1)


def prism(
    base: ArrayLike,
    axis: ArrayLike,
    radius: float,
    length: float,
    sides: int,
    rgb: ArrayLike,
    *,
    out: ArrayLike | None = None,
    phase: float = 0.0,
    cap_rgb: ArrayLike | None = None,
) -> Solid:
    """A right prism with a regular ``sides``-gon section (a cylinder when ``sides`` is large).

    ``base`` is the centre of the bottom cap; the prism runs ``length`` along ``axis``.
    """
    rot = _frame_for(axis)
    ang = phase + np.arange(sides) * 2 * np.pi / sides
    ring = np.stack([np.cos(ang), np.sin(ang), np.zeros(sides)], axis=1) * radius
    bottom = ring @ rot.T + np.asarray(base, float)
    top = bottom + rot[:, 2] * length
    c, cap = _colour(rgb), _colour(cap_rgb if cap_rgb is not None else rgb)
    faces = [Face(top.copy(), rot[:, 2].copy(), cap), Face(bottom[::-1].copy(), -rot[:, 2], cap)]
    mid = ang + np.pi / sides
    normals = np.stack([np.cos(mid), np.sin(mid), np.zeros(sides)], axis=1) @ rot.T
    for i in range(sides):
        j = (i + 1) % sides
        quad = np.stack([bottom[i], bottom[j], top[j], top[i]])
        faces.append(Face(quad, normals[i], c))
    return Solid(faces, None if out is None else np.asarray(out, float))


def disc_mark(
    centre: ArrayLike,
    normal: ArrayLike,
    radius: float,
    rgb: ArrayLike,
    sides: int = 20,
    *,
    depth: float = 0.0,
) -> Solid:
    """A flat round mark (a hole seen end on, a socket) lying on a face with this ``normal``.

    ``depth`` > 0 makes it a through hole that far into the part (its far end is the window).
    """
    rot = _frame_for(normal)
    ang = np.arange(sides) * 2 * np.pi / sides
    ring = np.stack([np.cos(ang), np.sin(ang), np.zeros(sides)], axis=1) * radius
    n = rot[:, 2]
    verts = ring @ rot.T + np.asarray(centre, float) + n * 0.01
    window = verts - n * (depth + 0.01) if depth > 0 else None
    return Solid([Face(verts, n.copy(), _colour(rgb))], out=n.copy(), flat=True, window=window)


def thread_lines(
    base: ArrayLike,
    axis: ArrayLike,
    radius: float,
    length: float,
    pitch: float,
    rgb: ArrayLike,
    width_mm: float,
    sides: int = 24,
) -> list[SurfaceLine]:
    """Rings around a shaft every ``pitch`` mm, slightly tilted like a helix, for screw threads."""
    rot = _frame_for(axis)
    ang = np.linspace(0, 2 * np.pi, sides + 1)
    lines: list[SurfaceLine] = []
    for k in range(1, max(1, int(length / pitch))):
        z = k * pitch + pitch * ang / (2 * np.pi) - pitch / 2
        local = np.stack([np.cos(ang) * radius * 1.01, np.sin(ang) * radius * 1.01, z], axis=1)
        normals = np.stack([np.cos(ang), np.sin(ang), np.zeros_like(ang)], axis=1) @ rot.T
        lines.append((local @ rot.T + np.asarray(base, float), normals, _colour(rgb), width_mm))
    return lines


def rotation_x(deg: float) -> np.ndarray:
    r = np.radians(deg)
    c, s = np.cos(r), np.sin(r)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], float)


def rotation_z(deg: float) -> np.ndarray:
    r = np.radians(deg)
    c, s = np.cos(r), np.sin(r)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], float)
