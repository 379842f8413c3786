"""Foreground mask and bounding box of a shot, against the empty-turntable reference frame.

Why difference against a reference and not a learned segmenter: every background segment of a
run starts with a frame of the empty sheet, taken with the same locked exposure, so "what
changed" *is* the part.  That gives masks and boxes for free, on any sheet, with no model.

The method, chosen to survive what real rigs do to frames:

* **Reduced resolution.**  Both frames are shrunk (area averaging) to about
  :data:`WORK_PX` on the long side.  Averaging removes most sensor noise, and the whole
  method then costs a few milliseconds even for 12 MP; the mask is upscaled at the end.  The
  reference is the same for a whole background segment, so a run prepares it once
  (:func:`prepare_reference`) and every shot shrinks only its own frame.
* **Light shifts.**  A run may shoot several ring levels against one reference, and auto
  exposure drifts on real cameras; the reference is rescaled per channel by the median ratio of
  the two frames (the part covers a minority of the frame, so the median is the background's).
* **Perceptual distance.**  The per-pixel difference is measured in CIE Lab (ΔE), where a blue
  brick on a blue-ish sheet still differs in chroma even when its brightness matches.
* **Adaptive hysteresis threshold.**  The threshold follows the frame's own noise (median and
  MAD of ΔE): strong pixels seed the part, weaker pixels connected to them complete it, so a
  face close to the sheet's colour is kept when it touches a clearly different one.
* **Morphology and components.**  Opening removes specks, closing bridges thin gaps, the
  largest component (and any nearly as large) is kept and its holes filled.

Figures (see ``docs/capture.md``): IoU against the simulator's truth masks, and agreement with
the boxes given for the real Pi photos in ``../shared/data/lego-belt-3class``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Long side, in pixels, at which the difference is computed.
WORK_PX = 640
#: Weight of lightness in the colour distance; chroma differences count in full.
L_WEIGHT = 0.8
#: Floors for the hysteresis thresholds (ΔE units), for nearly noise-free frames.
LOW_FLOOR, HIGH_FLOOR = 2.5, 5.0
#: Thresholds in robust noise sigmas above the median distance.
LOW_SIGMAS, HIGH_SIGMAS = 4.0, 8.0
#: A component smaller than this fraction of the working frame is noise, not a part.
MIN_AREA_FRACTION = 0.0004
#: Keep secondary components at least this fraction of the largest (a part seen in two pieces).
KEEP_FRACTION = 0.5
#: ``halo_fraction`` suited to real white conveyors with soft shadows (measured, docs/capture.md).
REAL_HALO_FRACTION = 0.45
#: The halo rule applies only around a part this contrasted (median ΔE of its core).
HALO_CONTRAST = 20.0

Box = tuple[int, int, int, int]


def _check_image(name: str, img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3:
        raise ValueError(f"{name} must be an RGB uint8 array of shape HxWx3")
    if img.shape[2] != 3:
        raise ValueError(f"{name} must have 3 channels (RGB), not {img.shape[2]}")


def _check(frame: np.ndarray, reference: np.ndarray) -> None:
    _check_image("frame", frame)
    _check_image("reference", reference)
    if frame.shape != reference.shape:
        raise ValueError(
            f"frame {frame.shape[1]}x{frame.shape[0]} and reference"
            f" {reference.shape[1]}x{reference.shape[0]} differ in size; take the reference"
            " with the same camera configuration"
        )


def _shrink(img: np.ndarray, scale: float) -> np.ndarray:
    """``img`` area-averaged to ``scale`` of its size, as float32 RGB in 0..1.

    NOTE: OpenCV's area resize by exactly 2 is a vectorised fast path (5 ms for 12 MP here),
    its general path is not (45 ms); halving while the result stays at least the working size,
    then one general step of less than 2x, averages the same sensor pixels for a quarter of
    the cost.  A halving drops an odd last row or column (under one working pixel).
    """
    if scale >= 1.0:
        return img.astype(np.float32) / 255.0
    h, w = img.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    while img.shape[1] // 2 >= size[0] and img.shape[0] // 2 >= size[1]:
        hh, hw = img.shape[0] // 2, img.shape[1] // 2
        img = cv2.resize(img[: 2 * hh, : 2 * hw], (hw, hh), interpolation=cv2.INTER_AREA)
    if (img.shape[1], img.shape[0]) != size:
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return img.astype(np.float32) / 255.0


#: Added to both frames before the per-channel ratio, so a black pixel gives no division by 0.
_EPS = np.float32(1.0 / 255.0)


def _smooth(img: np.ndarray) -> np.ndarray:
    # NOTE: a light blur halves the noise left after shrinking, which lets the threshold sit
    # low enough for a face whose colour is close to the sheet's; edges are restored later.
    return cv2.GaussianBlur(img, (3, 3), 0)


@dataclass(frozen=True, eq=False)
class PreparedReference:
    """The empty reference, shrunk and smoothed once for every shot of a background segment.

    Why: the reference is the same for a whole segment, yet shrinking a 12 MP frame is most of
    a mask's cost; :func:`prepare_reference` does it once and :func:`mask_and_box` reuses it.
    The masks are the same as from the bare reference array (tests/capture/test_masks.py).
    """

    #: The reference as taken (RGB uint8 HxWx3): the measurer and refiners need full size.
    image: np.ndarray
    #: The working size it was prepared for (``mask_and_box``'s ``work_px``).
    work_px: int
    #: Smoothed float32 RGB (0..1) at working resolution.
    small: np.ndarray
    #: Flat indices of the pixels that give the light gains (a strided sample, well-lit ones).
    index: np.ndarray
    #: Those pixels of ``small`` plus ``_EPS``, float32, shape (n, 3).
    sample: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.image.shape)


#: What :func:`mask_and_box` takes as the reference: the frame as taken, or prepared.
MaskReference = np.ndarray | PreparedReference


def prepare_reference(reference: np.ndarray, *, work_px: int = WORK_PX) -> PreparedReference:
    """The reference frame ready for :func:`mask_and_box` (do it once per segment)."""
    _check_image("reference", reference)
    h, w = reference.shape[:2]
    small, index, sample = _reference_parts(_shrink(reference, min(1.0, work_px / max(h, w))))
    return PreparedReference(reference, int(work_px), small, index, sample)


def _sample_index(shape: tuple[int, ...]) -> np.ndarray:
    """Flat indices of a strided grid of about 40,000 pixels of an image of ``shape``.

    NOTE: a strided sample gives the same median as every pixel at a fraction of the cost.
    """
    h, w = shape[:2]
    step = max(1, int(np.ceil(np.sqrt(h * w / 40000))))
    rows = np.arange(0, h, step, dtype=np.intp)
    cols = np.arange(0, w, step, dtype=np.intp)
    index: np.ndarray = (rows[:, None] * w + cols[None, :]).ravel()
    return index


def _reference_parts(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smoothed reference, which of its pixels give the light gains, and their values + eps."""
    r = _smooth(reference)
    index = _sample_index(r.shape)
    rs = r.reshape(-1, 3)[index]
    # NOTE: on a dark sheet the ratio of two dark, quantised pixels is mostly noise; the
    # well-lit pixels (patches, quiet zone, a light sheet) give the gain, when there are enough.
    lit = rs.min(axis=1) > 0.15
    if lit.sum() >= 0.02 * len(rs):
        index, rs = index[lit], rs[lit]
    return r, index, rs + _EPS


def colour_distance(frame: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """ΔE-like distance per pixel between two float RGB (0..1) images of equal size.

    The reference is first rescaled per channel by the median ratio frame/reference, which
    cancels a global light or exposure change.
    """
    return _distance(frame, *_reference_parts(reference))


def _distance(
    frame: np.ndarray, small: np.ndarray, index: np.ndarray, sample: np.ndarray
) -> np.ndarray:
    """:func:`colour_distance` against a reference already split by :func:`_reference_parts`."""
    f = _smooth(frame)
    fs = f.reshape(-1, 3)[index]
    gains = np.median((fs + _EPS) / sample, axis=0).astype(np.float32)
    # NOTE: OpenCV's per-channel scale and clip are one pass each over the frame, numpy's
    # broadcast several; the gains are positive, so only the upper clip can apply.
    r = cv2.min(cv2.multiply(small, (*gains.tolist(), 0.0)), (1.0, 1.0, 1.0, 1.0))
    diff = cv2.cvtColor(f, cv2.COLOR_RGB2Lab)
    diff -= cv2.cvtColor(r, cv2.COLOR_RGB2Lab)
    diff[:, :, 0] *= L_WEIGHT
    dist: np.ndarray = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    return dist


def _thresholds(dist: np.ndarray) -> tuple[float, float]:
    step = max(1, int(np.sqrt(dist.size / 40000)))
    sample = dist[::step, ::step]
    med = float(np.median(sample))
    sigma = 1.4826 * float(np.median(np.abs(sample - med)))
    low = max(LOW_FLOOR, med + LOW_SIGMAS * sigma)
    high = max(HIGH_FLOOR, med + HIGH_SIGMAS * sigma, low)
    return low, high


def _kernel(size: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def small_mask(dist: np.ndarray, halo_fraction: float | None = None) -> np.ndarray:
    """The foreground mask (uint8 0/1) at working resolution from a distance map.

    ``halo_fraction`` (off by default): around a strongly contrasting part, grow only into
    pixels reaching this fraction of the part's core contrast (see :func:`mask_and_box`).
    """
    low, high = _thresholds(dist)
    strong = dist > high
    core = float(np.median(dist[strong])) if strong.any() else 0.0
    if halo_fraction is not None and core >= HALO_CONTRAST:
        # NOTE: soft shadows and light spill around a strongly contrasting part are far
        # weaker than the part itself.
        low = max(low, halo_fraction * core)
    weak = (dist > low).astype(np.uint8)
    k = max(3, (round(min(dist.shape) / 160) | 1))
    weak = cv2.morphologyEx(weak, cv2.MORPH_OPEN, _kernel(k))
    weak = cv2.morphologyEx(weak, cv2.MORPH_CLOSE, _kernel(2 * k + 1))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(weak, connectivity=8)
    if n <= 1:
        return np.zeros_like(weak)
    seeded = np.zeros(n, bool)
    seeded[np.unique(labels[strong & (weak > 0)])] = True
    seeded[0] = False
    areas = stats[:, cv2.CC_STAT_AREA].astype(np.int64)
    areas[~seeded] = 0
    min_area = MIN_AREA_FRACTION * dist.size
    biggest = int(areas.max())
    if biggest < min_area:
        return np.zeros_like(weak)
    keep = areas >= max(min_area, KEEP_FRACTION * biggest)
    mask = _fill_holes(keep[labels].astype(np.uint8), dist, 0.5 * low)
    return _sharpen_edges(mask, dist, low)


def _sharpen_edges(mask: np.ndarray, dist: np.ndarray, low: float) -> np.ndarray:
    """Drop boundary pixels that are more background than part.

    Why: the low threshold also accepts anti-aliased edge pixels that the part covers only
    partly, which fattens every outline by a pixel; on a thin screw that costs 10 % IoU.  A
    boundary pixel is kept when its distance reaches half of the strongest distance nearby,
    i.e. when the part covers about half of it or more.
    """
    band = mask - cv2.erode(mask, _kernel(5))
    local = cv2.dilate(dist * mask, _kernel(5))
    weak_edge = (band > 0) & (dist < np.maximum(low, 0.5 * local))
    out = mask.copy()
    out[weak_edge] = 0
    return out


def _fill_holes(mask: np.ndarray, dist: np.ndarray, changed: float) -> np.ndarray:
    """Fill holes that differ from the reference (a face close to the sheet's colour), but
    not holes that show the sheet itself (the hole of a washer or a nut)."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    holes = filled - mask
    n, labels = cv2.connectedComponents(holes, connectivity=4)
    if n <= 1:
        return filled
    sums = np.bincount(labels.ravel(), weights=dist.ravel(), minlength=n)
    counts = np.bincount(labels.ravel(), minlength=n)
    open_hole = sums / np.maximum(counts, 1) < changed
    open_hole[0] = False
    filled[open_hole[labels]] = 0
    return filled


def bounding_box(mask: np.ndarray) -> Box | None:
    """``(x, y, w, h)`` of the True pixels of ``mask``, or None when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def mask_and_box(
    frame: np.ndarray,
    reference: np.ndarray | PreparedReference,
    *,
    work_px: int = WORK_PX,
    halo_fraction: float | None = None,
) -> tuple[np.ndarray, Box | None]:
    """Foreground mask (bool HxW) of ``frame`` against the empty ``reference``, and its box.

    Both are RGB ``uint8`` HxWx3 of the same size; ``reference`` may be a
    :class:`PreparedReference` (made once per background segment by :func:`prepare_reference`),
    which gives the same mask without shrinking the reference again.  One prepared for another
    ``work_px`` is prepared again from its image.  The box is ``(x, y, w, h)`` in pixels of
    the full frame, or None when nothing is on the sheet.

    ``halo_fraction`` (e.g. :data:`REAL_HALO_FRACTION`) suppresses soft shadows around strongly
    contrasting parts, at the cost of the low-contrast faces of a part whose other faces contrast
    strongly; it is off by default because the rig's sheets and ring light cast no such halo.

    >>> mask, box = mask_and_box(shot.image, reference)   # doctest: +SKIP
    """
    image = reference.image if isinstance(reference, PreparedReference) else reference
    _check(frame, image)
    if not isinstance(reference, PreparedReference) or reference.work_px != work_px:
        reference = prepare_reference(image, work_px=work_px)
    h, w = frame.shape[:2]
    scale = min(1.0, work_px / max(h, w))
    dist = _distance(_shrink(frame, scale), reference.small, reference.index, reference.sample)
    small = small_mask(dist, halo_fraction)
    if not small.any():
        return np.zeros((h, w), bool), None
    if small.shape != (h, w):
        # NOTE: upscale the 0/255 mask linearly and cut at half, so edges are smooth lines at
        # full resolution rather than blocks of the working pixel size.
        big = cv2.resize(small * np.uint8(255), (w, h), interpolation=cv2.INTER_LINEAR)
        mask = big > 127
    else:
        mask = small.astype(bool)
    return mask, bounding_box(mask)
