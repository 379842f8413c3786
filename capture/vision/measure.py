"""Parts measured in millimetres on the sheet plane, from the sheet's printed ArUco marker.

Why from the marker: every background sheet carries an ArUco marker of a known printed size
(:func:`marker_corners_mm`), so each shot carries its own scale: the camera and the sheet may
move between runs, and nothing but the frame and the stored lens calibration
(:mod:`capture.vision.lens`) is needed.

The method (figures in ``docs/capture.md``, "Measuring parts"):

1. **Find the marker** (``capture.vision.backgrounds.find_marker``) and refine its four corners to
   sub-pixel precision at full resolution.  No marker: no measurement, and the shot is flagged
   (``marker_missing``), never given a guessed scale.
2. **The sheet's pose.**  With a lens calibration the corners are undistorted and
   ``cv2.solvePnP`` (``IPPE_SQUARE``) gives the camera's pose over the sheet, so any pixel's ray
   can be cut with the sheet plane *or any plane parallel to it*.  Without one, the four corners
   give a homography to the sheet plane only (distortion uncorrected; flagged ``calibrated``
   false).
3. **The outline** of the shot's mask, refined at full resolution around the part
   (:func:`refine_mask`), is carried onto the plane; the minimum-area rectangle of those points
   gives length and width, the mask's pixels times the local scale give the area.
4. **Parallax of tall parts.**  The top of a part is closer to the camera than the sheet and
   looks larger.  A round part lying on its side (a screw, a pin: a head and a shaft are found
   in its width profile) is measured in the plane through its axis, at half its measured width
   above the sheet: its outline's ends lie there.  Other parts are measured on the sheet plane,
   and the error is bounded by :func:`parallax_bound_mm`.
5. **Screws**: the width profile along the length splits a wider head from the shaft, giving
   ``shaft_length_mm`` (the length screws are sold by) and ``head_length_mm``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import cv2
import numpy as np

from capture.vision.lens import LensCalibration
from rig.sheets import PATCH_COLOURS, sheet_layout

#: Landscape page sizes (mm) the sheets are printed on, and the print resolution the layout is
#: rounded at (``partrig backgrounds print``'s default).
PAPER_MM: dict[str, tuple[float, float]] = {"a4": (297.0, 210.0), "letter": (279.4, 215.9)}
PRINT_DPI = 300
#: Longest side, in pixels, the mask is refined at (see :func:`refine_mask`).
REFINE_PX = 1024
#: A part at least this long in the mask's working pixels (640 across the frame) is not refined.
COARSE_ENOUGH_PX = 120
#: A profile whose widest part is this much wider than its median is a head on a shaft.
HEAD_RATIO = 1.3


@lru_cache(maxsize=8)
def marker_corners_mm(paper: str = "a4") -> np.ndarray:
    """The printed marker's corners (4, 2) in sheet millimetres (from the top-left, y down).

    In ArUco's order: top-left, top-right, bottom-right, bottom-left.  The marker is 16 % of
    the page's short side: 33.6 mm on A4, 34.5 mm on Letter.
    """
    if paper not in PAPER_MM:
        raise ValueError(f"paper must be one of {', '.join(PAPER_MM)} (got {paper!r})")
    w_mm, h_mm = PAPER_MM[paper]
    w, h = round(w_mm / 25.4 * PRINT_DPI), round(h_mm / 25.4 * PRINT_DPI)
    m = sheet_layout(w, h).marker
    px = np.array([[m.x, m.y], [m.x + m.w, m.y], [m.x + m.w, m.y + m.h], [m.x, m.y + m.h]], float)
    return px * 25.4 / PRINT_DPI


@dataclass(frozen=True)
class SheetPose:
    """Where the sheet is in one frame: the map from pixels to sheet millimetres."""

    sheet: int
    paper: str
    corners_px: np.ndarray  # (4, 2) refined marker corners in frame pixels
    calibrated: bool
    lens: LensCalibration | None
    rotation: np.ndarray  # sheet -> camera (3x3); identity when uncalibrated
    centre: np.ndarray  # camera centre in sheet mm (z < 0 is above the sheet)
    homography: np.ndarray  # pixels -> sheet mm on the sheet plane (uncalibrated path)

    def to_plane(self, px: np.ndarray, height_mm: float = 0.0) -> np.ndarray:
        """Sheet millimetres (k, 2) where pixels (k, 2) look at the plane ``height_mm`` above
        the sheet (only 0 without a lens calibration)."""
        pts = np.asarray(px, np.float64).reshape(-1, 1, 2)
        if self.lens is None:
            if height_mm:
                raise ValueError("measuring above the sheet needs a lens calibration")
            return cv2.perspectiveTransform(pts, self.homography).reshape(-1, 2)
        norm = cv2.undistortPoints(pts, self.lens.camera_matrix, self.lens.dist_coeffs)
        rays = np.hstack([norm.reshape(-1, 2), np.ones((len(norm), 1))]) @ self.rotation
        # NOTE: sheet z points into the table (x right, y down), so "above" is negative z.
        s = (-height_mm - self.centre[2]) / rays[:, 2]
        return self.centre[None, :2] + rays[:, :2] * s[:, None]

    def mm_per_px(self, at_px: tuple[float, float], height_mm: float = 0.0) -> float:
        """Local scale (mm per pixel, geometric mean of both axes) at a pixel."""
        x, y = at_px
        p = self.to_plane(np.array([[x, y], [x + 1, y], [x, y + 1]]), height_mm)
        a, b = p[1] - p[0], p[2] - p[0]
        return float(np.sqrt(abs(a[0] * b[1] - a[1] * b[0])))

    @property
    def camera_height_mm(self) -> float | None:
        return None if not self.calibrated else float(-self.centre[2])


def _refine(grey: np.ndarray, corners: np.ndarray) -> np.ndarray:
    side = float(np.linalg.norm(corners[1] - corners[0]))
    win = int(np.clip(side / 25, 2, 10))
    pts = corners.reshape(-1, 1, 2).astype(np.float32).copy()
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 40, 0.01)
    cv2.cornerSubPix(grey, pts, (win, win), (-1, -1), crit)
    return pts.reshape(4, 2).astype(np.float64)


def locate_sheet(
    image: np.ndarray, lens: LensCalibration | None = None, paper: str | None = None
) -> SheetPose | None:
    """The sheet's pose in ``image`` from its marker, or None when no sheet marker is seen.

    ``paper`` None picks A4 or Letter by which page's patch strip the frame shows.
    """
    from capture.vision.backgrounds import find_marker

    found = find_marker(image)
    if found is None:
        return None
    sheet, coarse = found
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    corners = _refine(grey, coarse)
    if lens is not None:
        lens = lens.for_size(image.shape[1], image.shape[0])
    papers = [paper] if paper is not None else list(PAPER_MM)
    poses = [_pose(sheet, p, corners, lens) for p in papers]
    if len(poses) == 1:
        return poses[0]
    return max(poses, key=lambda pose: _patch_fit(image, pose))


def _pose(sheet: int, paper: str, corners: np.ndarray, lens: LensCalibration | None) -> SheetPose:
    obj = marker_corners_mm(paper)
    if lens is None:
        hom = cv2.getPerspectiveTransform(corners.astype(np.float32), obj.astype(np.float32))
        return SheetPose(sheet, paper, corners, False, None, np.eye(3), np.zeros(3), hom)
    # NOTE: IPPE_SQUARE wants the marker's own frame (centred, y up); the sheet's is a shift
    # and a flip of it, so solve in sheet mm directly with the planar IPPE solver.
    obj3 = np.hstack([obj, np.zeros((4, 1))])
    ok, rvec, tvec = cv2.solvePnP(
        obj3, corners, lens.camera_matrix, lens.dist_coeffs, flags=cv2.SOLVEPNP_IPPE
    )
    if not ok:
        hom = cv2.getPerspectiveTransform(corners.astype(np.float32), obj.astype(np.float32))
        return SheetPose(sheet, paper, corners, False, None, np.eye(3), np.zeros(3), hom)
    rot, _ = cv2.Rodrigues(rvec)
    centre = (-rot.T @ tvec).ravel()
    norm = cv2.undistortPoints(corners.reshape(-1, 1, 2), lens.camera_matrix, lens.dist_coeffs)
    hom = cv2.getPerspectiveTransform(norm.reshape(4, 2).astype(np.float32), obj.astype(np.float32))
    return SheetPose(sheet, paper, corners, True, lens, rot, centre, hom)


def _patch_fit(image: np.ndarray, pose: SheetPose) -> float:
    """How well the patch strip of ``pose.paper`` matches the printed colours (correlation)."""
    w_mm, h_mm = PAPER_MM[pose.paper]
    w, h = round(w_mm / 25.4 * PRINT_DPI), round(h_mm / 25.4 * PRINT_DPI)
    centres = np.array([r.centre for r in sheet_layout(w, h).patches]) * 25.4 / PRINT_DPI
    px = _to_pixels(pose, centres)
    ih, iw = image.shape[:2]
    if px is None or (px < 0).any() or (px[:, 0] >= iw).any() or (px[:, 1] >= ih).any():
        return -1.0
    seen = image[px[:, 1].astype(int), px[:, 0].astype(int)].astype(float).ravel()
    want = np.asarray(PATCH_COLOURS, float).ravel()
    return float(np.corrcoef(seen, want)[0, 1])


def _to_pixels(pose: SheetPose, sheet_mm: np.ndarray) -> np.ndarray | None:
    if pose.lens is None:
        inv = np.linalg.inv(pose.homography)
        return cv2.perspectiveTransform(sheet_mm.reshape(-1, 1, 2), inv).reshape(-1, 2)
    rvec, _ = cv2.Rodrigues(pose.rotation)
    tvec = -pose.rotation @ pose.centre
    obj = np.hstack([sheet_mm, np.zeros((len(sheet_mm), 1))])
    out, _ = cv2.projectPoints(obj, rvec, tvec, pose.lens.camera_matrix, pose.lens.dist_coeffs)
    return out.reshape(-1, 2)


# --- the part's outline ------------------------------------------------------------------------


def refine_mask(frame: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The mask recomputed at full resolution around the part.

    Why: :func:`capture.vision.masks.mask_and_box` works at 640 px and upscales, so its edges are
    good to a working pixel (half a millimetre on an A4 view); measuring wants the sensor's pixel.
    The region is the part's box grown by half its size on every side, so the background still
    dominates the region's statistics as the mask method expects.
    """
    from capture.vision.masks import WORK_PX, bounding_box, mask_and_box

    box = bounding_box(mask)
    if box is None:
        return mask
    x, y, w, h = box
    ih, iw = mask.shape
    if max(w, h) * WORK_PX / max(ih, iw) >= COARSE_ENOUGH_PX:
        # NOTE: a part this large at the mask's working resolution is already measured to
        # about 1 % by it; refining would cost the writer far more than the move hides.
        return mask
    grow = max(w, h) // 2
    x0, y0 = max(0, x - grow), max(0, y - grow)
    x1, y1 = min(iw, x + w + grow), min(ih, y + h + grow)
    crop = (slice(y0, y1), slice(x0, x1))
    # NOTE: at most REFINE_PX on the long side: a part filling a 12 MP frame needs no finer
    # edge than a tenth of a millimetre, and the writer must keep up with the turntable.
    work = min(max(x1 - x0, y1 - y0), REFINE_PX)
    fine, _ = mask_and_box(frame[crop], reference[crop], work_px=work)
    if not fine.any():
        return mask
    out = np.zeros_like(mask, dtype=bool)
    out[crop] = fine
    return out


@dataclass(frozen=True)
class Measurement:
    """A part's size on the sheet plane (millimetres), with how it was obtained."""

    sheet: int
    length_mm: float
    width_mm: float
    area_mm2: float
    angle_deg: float
    mm_per_px: float
    plane_mm: float
    calibrated: bool
    shaft_length_mm: float | None = None
    head_length_mm: float | None = None

    def to_json(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def measure_mask(pose: SheetPose, mask: np.ndarray) -> Measurement | None:
    """Measure the part whose mask (bool HxW, full frame) is given; None for an empty mask."""
    from capture.vision.masks import bounding_box

    box = bounding_box(mask)
    if box is None:
        return None
    # NOTE: only the part's box is scanned: a 12 MP frame is mostly sheet.
    x0, y0, w, h = box
    u8 = mask[y0 : y0 + h, x0 : x0 + w].astype(np.uint8)
    contours, _ = cv2.findContours(u8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    outline = np.concatenate([c.reshape(-1, 2) for c in contours]).astype(np.float64)
    outline += np.array([x0, y0], np.float64)
    ys, xs = np.nonzero(u8)
    centre_px = (float(xs.mean()) + x0, float(ys.mean()) + y0)
    plane = 0.0
    result = _measure_at(pose, outline, len(xs), centre_px, plane)
    if pose.calibrated and result.shaft_length_mm is not None:
        # NOTE: a head on a shaft is a round part lying on its side: its outline's ends lie on
        # its axis, half its (head) width above the sheet.  Two rounds converge to 0.01 mm.
        for _ in range(2):
            plane = result.width_mm / 2
            result = _measure_at(pose, outline, len(xs), centre_px, plane)
    return result


def _measure_at(pose, outline, n_px, centre_px, plane: float) -> Measurement:
    pts = pose.to_plane(outline, plane)
    mmpp = pose.mm_per_px(centre_px, plane)
    (cx, cy), (a, b), angle = cv2.minAreaRect(pts.astype(np.float32))
    # NOTE: the outline runs through the centres of the mask's edge pixels; the mask keeps the
    # pixels a part covers about half of or more, after a light blur, so that line lies within a
    # pixel outside the true edge (measured against the simulator's truth): no correction.
    if a >= b:
        length, width, axis_deg = a, b, angle
    else:
        length, width, axis_deg = b, a, angle + 90.0
    shaft = head = None
    axis = np.radians(axis_deg)
    d = np.array([np.cos(axis), np.sin(axis)])
    s = (pts - [cx, cy]) @ d
    t = (pts - [cx, cy]) @ np.array([-d[1], d[0]])
    split = _head_and_shaft(s, t, mmpp)
    if split is not None and pose.calibrated and plane > 0:
        # NOTE: each flat end of a round part lying down is a vertical disc about the axis; its
        # top (or bottom) rim is seen further out than the axis plane by r * rho / (H - z) where
        # rho is the end's distance from the point under the camera along the axis.  Take it
        # off both ends (and off the head's face, seen beside the shaft, for the shaft length).
        lo_end, hi_end, face, head_low, shaft_w = split
        nadir, cam_h = pose.centre[:2], -float(pose.centre[2])
        head_r, shaft_r = width / 2, shaft_w / 2
        face_r = float(np.sqrt(max(0.0, head_r**2 - (shaft_r + head_r) ** 2 / 4)))

        def seen_out(at_s: float, r: float) -> float:
            rho = abs(float((np.array([cx, cy]) + at_s * d - nadir) @ d))
            return rho * r / (cam_h - plane - r)

        lo_r, hi_r = (head_r, shaft_r) if head_low else (shaft_r, head_r)
        lo_true = lo_end + seen_out(lo_end, lo_r)
        hi_true = hi_end - seen_out(hi_end, hi_r)
        length = hi_true - lo_true
        if head_low:
            face_true = face - _toward(face, +1, cx, cy, d, nadir) * seen_out(face, face_r)
            shaft, head = hi_true - face_true, face_true - lo_true
        else:
            face_true = face - _toward(face, -1, cx, cy, d, nadir) * seen_out(face, face_r)
            shaft, head = face_true - lo_true, hi_true - face_true
    elif split is not None:
        lo_end, hi_end, face, head_low, _ = split
        shaft, head = (hi_end - face, face - lo_end) if head_low else (face - lo_end, hi_end - face)
    return Measurement(
        pose.sheet, float(length), float(width), float(n_px * mmpp * mmpp),
        float(axis_deg % 180.0), float(mmpp), float(plane), pose.calibrated, shaft, head,
    )  # fmt: skip


def _toward(at_s: float, sign: int, cx: float, cy: float, d: np.ndarray, nadir) -> float:
    """1 when the head's face, seen from the camera, is pushed towards the shaft, else 0."""
    rho = float((np.array([cx, cy]) + at_s * d - nadir) @ d)
    return 1.0 if rho * sign > 0 else 0.0


def _head_and_shaft(
    s: np.ndarray, t: np.ndarray, mmpp: float
) -> tuple[float, float, float, bool, float] | None:
    """``(low end, high end, head face, head at the low end, shaft width)`` along ``s`` when
    the width profile is a wide head on a narrower shaft, else None."""
    lo, hi = float(s.min()), float(s.max())
    if hi - lo < 4 * mmpp:
        return None
    bins = np.linspace(lo, hi, 41)
    idx = np.clip(np.digitize(s, bins) - 1, 0, 39)
    widths = np.zeros(40)
    for k in range(40):
        sel = t[idx == k]
        widths[k] = float(sel.max() - sel.min()) if sel.size else 0.0
    shaft_w, head_w = float(np.median(widths[2:-2])), float(widths.max())
    if shaft_w <= 0 or head_w < HEAD_RATIO * shaft_w:
        return None
    # NOTE: the head is the end whose profile is wider; its face towards the shaft is where the
    # outline stops being wider than halfway between shaft and head.
    head_low = bool(widths[:8].max() > widths[-8:].max())
    # NOTE: the head is the run of wide bins from its end; a wide spot further along (a mask
    # blob, a shadow) is not part of it.
    wide_bins = widths > (shaft_w + head_w) / 2
    order = list(range(40) if head_low else range(39, -1, -1))
    run = 0
    for i, k in enumerate(order):
        if wide_bins[k]:
            run = i + 1
        elif run or i >= 2:  # NOTE: the end's first bins may be cut short by its rounding
            break
    if run == 0:
        return None
    step = (hi - lo) / 40
    limit = lo + (run + 1) * step if head_low else hi - (run + 1) * step
    near = s <= limit if head_low else s >= limit
    wide = near & (np.abs(t) > (shaft_w + head_w) / 4)
    if not wide.any():
        return None
    face = float(s[wide].max()) if head_low else float(s[wide].min())
    shaft = hi - face if head_low else face - lo
    if shaft <= (face - lo if head_low else hi - face) * 0.5:
        return None
    return lo, hi, face, head_low, shaft_w


def parallax_bound_mm(length_mm: float, height_mm: float, camera_height_mm: float,
                      off_axis_mm: float) -> float:  # fmt: skip
    """Most a length measured on the sheet plane can be too long for a part ``height_mm`` tall.

    A point ``z`` above the sheet, ``r`` from the point under the camera, is seen ``r z / (H -
    z)`` further out; the far end of a part reaching ``off_axis_mm + length/2`` from that point
    and ``height_mm`` tall moves out by at most that much, the near end not at all.
    """
    if camera_height_mm <= height_mm:
        raise ValueError("the camera must be above the part")
    r = off_axis_mm + length_mm / 2
    return r * height_mm / (camera_height_mm - height_mm)


def measure_shot(
    frame: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray,
    lens: LensCalibration | None = None,
    paper: str | None = None,
) -> tuple[Measurement | None, str | None]:
    """Measure a shot: (measurement, None), or (None, why not) - ``marker_missing`` or
    ``no_part``.  The mask is refined at full resolution first (:func:`refine_mask`)."""
    pose = locate_sheet(reference, lens, paper)
    if pose is None:
        pose = locate_sheet(frame, lens, paper)
    if pose is None:
        return None, "marker_missing"
    fine = refine_mask(frame, reference, mask)
    m = measure_mask(pose, fine)
    return (m, None) if m is not None else (None, "no_part")


def nominal_bin(
    length_mm: float | None, nominals: tuple[float, ...] | list[float], tolerance_mm: float
) -> float | None:
    """The nominal length a measured length belongs to, or None (review) when it is within
    ``tolerance_mm`` of none of them or was not measured.

    The measuring half of "sort M4 screws by length"; a rule-based sorter picks bins from it.
    """
    if length_mm is None or not nominals:
        return None
    best = min(nominals, key=lambda n: abs(n - length_mm))
    return best if abs(best - length_mm) <= tolerance_mm else None


class ShotMeasurer:
    """Measures the shots of a run against their segment's reference, for the shot writer.

    The sheet's pose is found once per reference frame (the sheet does not move within a
    background segment) and reused for every shot of the segment.  Called with (frame,
    reference, mask), it returns ``(status, sizes)``: ``("measured", Measurement.to_json())``,
    or ``("marker_missing", None)`` / ``("no_part", None)``.
    """

    def __init__(self, lens: LensCalibration | None = None, paper: str | None = None) -> None:
        self.lens = lens
        self.paper = paper
        self._ref: np.ndarray | None = None
        self._pose: SheetPose | None = None

    @classmethod
    def for_data_dir(cls, data_dir) -> ShotMeasurer:
        """With the lens calibration stored in the data folder, if there is one."""
        from capture.vision.lens import load

        return cls(load(data_dir))

    def __call__(
        self, frame: np.ndarray, reference: np.ndarray, mask: np.ndarray
    ) -> tuple[str, dict | None]:
        if self._ref is not reference:
            lens = self.lens
            if (
                lens is not None
                and lens.width * reference.shape[0] != lens.height * reference.shape[1]
            ):
                lens = None  # NOTE: another aspect than calibrated: measure uncalibrated.
            self._pose = locate_sheet(reference, lens, self.paper)
            self._ref = reference
        if self._pose is None:
            return "marker_missing", None
        if not mask.any():
            return "no_part", None
        m = measure_mask(self._pose, refine_mask(frame, reference, mask))
        return ("measured", m.to_json()) if m is not None else ("no_part", None)
