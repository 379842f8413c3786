"""A metric simulated camera: a pinhole lens with radial distortion above a flat printed sheet.

Why a second projection beside :class:`rig.sim.render.View`: the default simulated frame *is*
the sheet (the sheet's layout is drawn at the frame's size, the part at 100 mm across the
frame), which is good for masks and training but not metric: the marker and the part are drawn
at different scales.  Measuring parts in millimetres needs a world where the printed marker,
the sheet and the part all pass through one camera model.  This is that world:

* the sheet (A4 or Letter, landscape, printed at :data:`PRINT_DPI` exactly as
  ``partrig backgrounds print`` prints it) lies flat on the table under the clear turntable,
  the turntable centre over the middle of its part area, moved by ``sheet_offset_mm`` and turned
  by ``sheet_yaw_deg`` (how the operator happened to lay it down);
* the camera looks straight down from ``height_mm`` above the sheet (tilted by ``tilt_deg`` of
  mounting error), with focal length ``focal_px`` and OpenCV's radial distortion ``k1, k2`` -
  the model :mod:`capture.vision.lens` calibrates, so the measured pipeline meets the lens it
  expects;
* parts are projected through the same camera, vertex by vertex (polygon edges stay straight:
  across a part of a few hundred pixels the distortion's curvature is far below a pixel).

World coordinates are millimetres: origin at the turntable centre on the sheet's surface,
``x`` to the camera's right, ``y`` away from the camera's bottom edge, ``z`` up - the frame of
:mod:`rig.sim.catalogue` models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from rig.sheets import render_sheet, sheet_layout

#: Print resolution the sheets are rendered at (the ``backgrounds print`` default).
PRINT_DPI = 300
#: Landscape page sizes in millimetres (as ``capture/vision/backgrounds.py`` prints them).
PAPER_MM: dict[str, tuple[float, float]] = {"a4": (297.0, 210.0), "letter": (279.4, 215.9)}
TABLE_RGB = (74, 64, 56)
#: Coarse grid step, in pixels, at which the sheet's warp is computed before interpolation.
_GRID = 8


@dataclass(frozen=True)
class Optics:
    """One simulated camera set-up over one sheet placement (all lengths in millimetres)."""

    width: int = 4056
    height: int = 3040
    height_mm: float = 300.0
    #: Focal length in pixels: 3300 px at 4056 px wide frames 369 x 276 mm at 300 mm, an A4
    #: sheet with room to lay it down a little off or turned and keep its marker in view.
    focal_px: float = 3300.0
    k1: float = 0.0
    k2: float = 0.0
    tilt_deg: tuple[float, float] = (0.0, 0.0)
    sheet_offset_mm: tuple[float, float] = (0.0, 0.0)
    sheet_yaw_deg: float = 0.0
    paper: str = "a4"
    principal_offset_px: tuple[float, float] = field(default=(0.0, 0.0))

    def scaled(self, width: int, height: int) -> Optics:
        """The same lens and scene at another frame size (the focal length scales with it)."""
        s = width / self.width
        off = (self.principal_offset_px[0] * s, self.principal_offset_px[1] * s)
        return Optics(
            width, height, self.height_mm, self.focal_px * s, self.k1, self.k2, self.tilt_deg,
            self.sheet_offset_mm, self.sheet_yaw_deg, self.paper, off,
        )  # fmt: skip

    @property
    def camera_matrix(self) -> np.ndarray:
        cx = (self.width - 1) / 2.0 + self.principal_offset_px[0]
        cy = (self.height - 1) / 2.0 + self.principal_offset_px[1]
        return np.array([[self.focal_px, 0, cx], [0, self.focal_px, cy], [0, 0, 1]], float)

    @property
    def dist_coeffs(self) -> np.ndarray:
        return np.array([self.k1, self.k2, 0.0, 0.0, 0.0], float)

    @property
    def rotation(self) -> np.ndarray:
        """World-to-camera rotation: looking down, image up = world +y, then the tilt."""
        down = np.array([[1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0]])
        ax, ay = np.radians(self.tilt_deg)
        rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
        ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
        return rx @ ry @ down

    @property
    def centre(self) -> np.ndarray:
        """The camera's centre in world millimetres (straight above the turntable centre)."""
        return np.array([0.0, 0.0, self.height_mm])

    @property
    def toward(self) -> np.ndarray:
        """Unit vector from the turntable centre towards the camera."""
        return self.centre / np.linalg.norm(self.centre)

    def project(self, pts: np.ndarray) -> np.ndarray:
        """Distorted pixel coordinates (k, 2) of world points (k, 3)."""
        r = self.rotation
        rvec, _ = cv2.Rodrigues(r)
        tvec = -r @ self.centre
        out, _ = cv2.projectPoints(
            np.asarray(pts, np.float64).reshape(-1, 1, 3), rvec, tvec,
            self.camera_matrix, self.dist_coeffs,
        )  # fmt: skip
        return out.reshape(-1, 2)

    def sheet_to_world(self, uv_mm: np.ndarray) -> np.ndarray:
        """World (x, y) of printed-sheet points (u right, v down from the top-left, in mm)."""
        u0, v0 = part_area_centre_mm(self.paper)
        local = np.stack([uv_mm[..., 0] - u0, -(uv_mm[..., 1] - v0)], axis=-1)
        a = np.radians(self.sheet_yaw_deg)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        return local @ rot.T + np.asarray(self.sheet_offset_mm)

    def px_per_mm(self) -> float:
        """Nominal scale on the sheet plane at the turntable centre."""
        return self.focal_px / self.height_mm

    def pixel_rays_to_world_plane(
        self, px: np.ndarray, normal: np.ndarray, point: np.ndarray
    ) -> np.ndarray:
        """World points (k, 3) where rays through distorted pixels (k, 2) meet a plane."""
        norm = cv2.undistortPoints(
            np.asarray(px, np.float64).reshape(-1, 1, 2), self.camera_matrix, self.dist_coeffs
        ).reshape(-1, 2)
        rays = np.hstack([norm, np.ones((len(norm), 1))]) @ self.rotation  # camera -> world
        c = self.centre
        s = ((np.asarray(point) - c) @ normal) / (rays @ normal)
        return c[None, :] + rays * s[:, None]


def paper_pixels(paper: str, dpi: int = PRINT_DPI) -> tuple[int, int]:
    """Pixel size of a landscape page, exactly as ``backgrounds print`` rounds it."""
    w_mm, h_mm = PAPER_MM[paper]
    return round(w_mm / 25.4 * dpi), round(h_mm / 25.4 * dpi)


def part_area_centre_mm(paper: str) -> tuple[float, float]:
    """Where the turntable centre sits on the printed sheet (mm from the top-left)."""
    w, h = paper_pixels(paper)
    cx, cy = sheet_layout(w, h).part_area.centre
    return cx * 25.4 / PRINT_DPI, cy * 25.4 / PRINT_DPI


@lru_cache(maxsize=4)
def _printed(sheet: int, paper: str) -> np.ndarray:
    w, h = paper_pixels(paper)
    img = render_sheet(sheet, w, h, dpi=PRINT_DPI)
    img.setflags(write=False)
    return img


def rotation_xyz(ax_deg: float, ay_deg: float, az_deg: float) -> np.ndarray:
    """Rotation about z, then y, then x (degrees): a print's tilt and turn on the table."""
    ax, ay, az = np.radians([ax_deg, ay_deg, az_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rx @ ry @ rz


def render_printed(
    optics: Optics,
    texture: np.ndarray,
    texture_px_per_mm: float,
    rot: np.ndarray | None = None,
    origin: np.ndarray | None = None,
    background: tuple[int, int, int] = TABLE_RGB,
) -> np.ndarray:
    """The frame the camera sees of a flat print (``texture``), wherever it lies.

    The print's top-left corner is at world ``origin``; its u (right) axis is ``rot[:, 0]``
    and its v (down) axis ``-rot[:, 1]``.  By default it is the sheet, flat on the table as
    ``optics`` places it.  Outside the print ``background`` shows.  The inverse map (pixel ->
    ray -> print -> texture) is computed on a coarse grid and interpolated: it is smooth.
    """
    if rot is None or origin is None:
        a = np.radians(optics.sheet_yaw_deg)
        rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])
        origin = np.array([*optics.sheet_to_world(np.zeros(2)), 0.0])
    w, h = optics.width, optics.height
    gx = np.arange(0, w + _GRID, _GRID, dtype=np.float64)
    gy = np.arange(0, h + _GRID, _GRID, dtype=np.float64)
    xx, yy = np.meshgrid(gx, gy)
    pts = np.stack([xx.ravel(), yy.ravel()], axis=1)
    world = optics.pixel_rays_to_world_plane(pts, rot[:, 2], origin)
    local = (world - origin) @ rot
    mx = (local[:, 0] * texture_px_per_mm).reshape(xx.shape).astype(np.float32)
    my = (-local[:, 1] * texture_px_per_mm).reshape(xx.shape).astype(np.float32)
    # NOTE: upsample the coarse maps with remap itself, so pixel k * _GRID lands exactly on
    # grid node k (cv2.resize samples pixel centres and would shift the sheet by pixels).
    fx = np.ascontiguousarray(np.broadcast_to(np.arange(w, dtype=np.float32)[None] / _GRID, (h, w)))
    fy = np.ascontiguousarray(
        np.broadcast_to(np.arange(h, dtype=np.float32)[:, None] / _GRID, (h, w))
    )
    mx = cv2.remap(mx, fx, fy, cv2.INTER_LINEAR)
    my = cv2.remap(my, fx, fy, cv2.INTER_LINEAR)
    return cv2.remap(
        texture, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=background
    )


def render_sheet_view(optics: Optics, sheet: int | None) -> np.ndarray:
    """The empty scene: the printed sheet (or the bare table when ``sheet`` is None)."""
    if sheet is None:
        return np.full((optics.height, optics.width, 3), TABLE_RGB, np.uint8)
    return render_printed(optics, _printed(sheet, optics.paper), PRINT_DPI / 25.4)


@dataclass(frozen=True)
class MetricView:
    """The :class:`rig.sim.render.View` interface over :class:`Optics`, for ``render_part``."""

    optics: Optics

    @property
    def width(self) -> int:
        return self.optics.width

    @property
    def height(self) -> int:
        return self.optics.height

    @property
    def px_per_mm(self) -> float:
        return self.optics.px_per_mm()

    @property
    def toward(self) -> np.ndarray:
        return self.optics.toward

    def project(self, pts: np.ndarray) -> np.ndarray:
        return self.optics.project(pts)
