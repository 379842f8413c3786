"""Colour correction from the patch strip printed on every background sheet.

Why: published part datasets carry heavy colour casts (warm room light, auto white balance
drifting between sessions), and a model trained on one cast misjudges colour under another.
Every sheet carries a strip of known colours (:data:`rig.sheets.PATCH_COLOURS`); the run's
empty reference frame sees them under the run's locked exposure and light, so a 3x4 affine map
in *linear* RGB from what the camera saw to what was printed undoes the cast.

The contract (``contracts.md``, "Pixels"): stored JPEGs are as captured; the matrix is stored
with each shot, and :func:`apply_colour_matrix` is the one function that training and sorting
preprocessing both call, so they can never disagree about colour.

Finding the patches: the sheet's ArUco marker is found first.  If the frame *is* the sheet
(the simulator, or a camera framed exactly on it) the layout of :func:`rig.sheets.sheet_layout`
at the frame's size applies directly.  Otherwise the marker's four corners give an affine map
from a printed page's layout (A4 or Letter landscape) to the frame, and the candidate whose
patches fit best is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from rig.sheets import PATCH_COLOURS, Rect, sheet_layout

#: Printed page sizes, landscape, in millimetres; the candidates when the frame is not the sheet.
PAGE_MM: dict[str, tuple[float, float]] = {"a4": (297.0, 210.0), "letter": (279.4, 215.9)}
#: Marker corners must lie within this fraction of the marker size of the full-frame layout.
FULL_FRAME_TOLERANCE = 0.08
#: Linear-to-sRGB lookup resolution used by :func:`apply_colour_matrix`.
_LUT_SIZE = 4096


# --- sRGB transfer -------------------------------------------------------------------------------


def srgb_to_linear(values: np.ndarray) -> np.ndarray:
    """sRGB values 0..255 (any dtype) to linear light 0..1 (float32)."""
    c = np.asarray(values, np.float32) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(values: np.ndarray) -> np.ndarray:
    """Linear light 0..1 to sRGB 0..255 (float32, clipped)."""
    c = np.clip(np.asarray(values, np.float32), 0.0, 1.0)
    s = np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1 / 2.4) - 0.055)
    return (s * 255.0).astype(np.float32)


_TO_LINEAR_LUT = srgb_to_linear(np.arange(256))
_TO_SRGB_LUT = np.clip(np.round(linear_to_srgb(np.linspace(0, 1, _LUT_SIZE))), 0, 255).astype(
    np.uint8
)


# --- fitting and applying ------------------------------------------------------------------------


def fit_colour_matrix(observed: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares 3x4 affine matrix M with ``lin(target) ~= M @ [lin(observed), 1]``.

    Both are (N, 3) sRGB values 0..255, N >= 4.  Linear light is where a colour cast is (nearly)
    a matrix, which is why the fit is not done on the sRGB values.
    """
    obs = np.asarray(observed, np.float64).reshape(-1, 3)
    tgt = np.asarray(target, np.float64).reshape(-1, 3)
    if obs.shape != tgt.shape or len(obs) < 4:
        raise ValueError("need the same number (at least 4) of observed and target colours")
    a = np.hstack([srgb_to_linear(obs).astype(np.float64), np.ones((len(obs), 1))])
    b = srgb_to_linear(tgt).astype(np.float64)
    m, *_ = np.linalg.lstsq(a, b, rcond=None)
    return m.T.astype(np.float64)


def _as_matrix(matrix: Any) -> np.ndarray:
    m = np.asarray(matrix, np.float32)
    if m.shape == (3, 3):
        m = np.hstack([m, np.zeros((3, 1), np.float32)])
    if m.shape != (3, 4) or not np.all(np.isfinite(m)):
        raise ValueError(f"a colour matrix must be 3x3 or 3x4 of finite numbers (got {m.shape})")
    return m


def apply_colour_matrix(image: np.ndarray, matrix: Any) -> np.ndarray:
    """The colour-corrected copy of an RGB ``uint8`` image (H x W x 3).

    ``matrix`` is 3x3 or 3x4 (as stored with a shot: nested lists are fine), acting on linear
    RGB 0..1; ``None`` means no correction and returns the image unchanged.  This is the one
    function training and sorting share.  Fast enough for 12 MP (lookup tables, cv2.transform).
    """
    if matrix is None:
        return image
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("image must be an RGB uint8 array of shape HxWx3")
    m = _as_matrix(matrix)
    linear = cv2.LUT(image, _TO_LINEAR_LUT)
    out = cv2.transform(linear, m)
    # NOTE: in-place steps keep a 12 MP frame to one float buffer plus a uint16 index.
    out *= _LUT_SIZE - 1
    out += 0.5
    np.clip(out, 0, _LUT_SIZE - 1, out=out)
    return np.take(_TO_SRGB_LUT, out.astype(np.uint16))


# --- finding the patches -------------------------------------------------------------------------


def _marker(image: np.ndarray) -> np.ndarray | None:
    from capture.vision.backgrounds import find_marker

    found = find_marker(image)
    return None if found is None else found[1]


def _rect_corners(r: Rect) -> np.ndarray:
    return np.array(
        [[r.x, r.y], [r.x + r.w, r.y], [r.x + r.w, r.y + r.h], [r.x, r.y + r.h]], np.float32
    )


def _sample(image: np.ndarray, h: np.ndarray, patches: Sequence[Rect]) -> np.ndarray | None:
    """Median colour of the middle of each patch, mapped through ``h`` (3x3)."""
    ih, iw = image.shape[:2]
    out = []
    for r in patches:
        cx, cy = r.centre
        inner = np.array(
            [[cx + dx * r.w * 0.3, cy + dy * r.h * 0.3] for dx, dy in ((-1, -1), (1, 1))],
            np.float32,
        )
        pts = cv2.perspectiveTransform(inner[None], h)[0]
        x0, y0 = np.floor(pts.min(axis=0)).astype(int)
        x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
        if x0 < 0 or y0 < 0 or x1 > iw or y1 > ih or x1 - x0 < 1 or y1 - y0 < 1:
            return None
        out.append(np.median(image[y0 : y1 + 1, x0 : x1 + 1].reshape(-1, 3), axis=0))
    return np.asarray(out, np.float64)


def _candidates(image: np.ndarray, corners: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(name, 3x3 map from that layout to the frame) for each plausible sheet layout."""
    ih, iw = image.shape[:2]
    out = []
    frame_layout = sheet_layout(iw, ih)
    expected = _rect_corners(frame_layout.marker)
    err = float(np.abs(expected - corners).max())
    if err <= FULL_FRAME_TOLERANCE * frame_layout.marker.w:
        out.append(("frame", np.eye(3)))
    for name, (w_mm, h_mm) in PAGE_MM.items():
        layout = sheet_layout(round(w_mm * 10), round(h_mm * 10))
        # NOTE: an affine fit to the four corners, not a homography: the patches lie several
        # marker sizes away, and a homography from four points extrapolates a one-pixel corner
        # error into a patch-sized miss there; least squares averages it out.
        src = np.hstack([_rect_corners(layout.marker), np.ones((4, 1), np.float32)])
        affine, *_ = np.linalg.lstsq(src, corners.astype(np.float32), rcond=None)
        out.append((name, np.vstack([affine.T, [0.0, 0.0, 1.0]])))
    return out


def patch_colours(image: np.ndarray) -> np.ndarray | None:
    """The observed sRGB colours (N, 3) of the sheet's patch strip, or None if not found."""
    corners = _marker(image)
    if corners is None:
        return None
    ih, iw = image.shape[:2]
    best: tuple[float, np.ndarray] | None = None
    target = np.asarray(PATCH_COLOURS, np.float64)
    for name, h in _candidates(image, corners):
        if name == "frame":
            patches = sheet_layout(iw, ih).patches
        else:
            w_mm, h_mm = PAGE_MM[name]
            patches = sheet_layout(round(w_mm * 10), round(h_mm * 10)).patches
        observed = _sample(image, h, patches)
        if observed is None:
            continue
        if name == "frame":
            return observed
        m = fit_colour_matrix(observed, target)
        residual = _residual(m, observed, target)
        if best is None or residual < best[0]:
            best = (residual, observed)
    return None if best is None else best[1]


def _residual(m: np.ndarray, observed: np.ndarray, target: np.ndarray) -> float:
    a = np.hstack([srgb_to_linear(observed), np.ones((len(observed), 1))])
    fitted = linear_to_srgb(a @ m.T)
    return float(np.sqrt(np.mean((fitted - target) ** 2)))


def colour_matrix_from_reference(reference: np.ndarray) -> np.ndarray | None:
    """The 3x4 colour-correction matrix from a reference frame's patch strip, or None.

    None means the marker (and so the strip) was not found: the shot is stored without a
    matrix rather than with a wrong one.
    """
    observed = patch_colours(reference)
    if observed is None:
        return None
    return fit_colour_matrix(observed, np.asarray(PATCH_COLOURS, np.float64))


def fit_error(reference: np.ndarray, matrix: Any) -> float | None:
    """RMS error (8-bit levels) of the corrected patches against their printed values."""
    observed = patch_colours(reference)
    if observed is None or matrix is None:
        return None
    return _residual(_as_matrix(matrix).astype(np.float64), observed, np.asarray(PATCH_COLOURS))
