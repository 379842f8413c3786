"""The one preprocessing function that training and sorting share.

Why one function: a model only sorts well if it sees on the Pi exactly what it saw in training.
The trainer (``classify/train.py``) and the sorter (``classify/runtime.py``) both call
:func:`prepare`, so colour correction, the crop around the part, the padding and the resize
can never drift apart.  Scaling pixels to floats is *not* done here: it lives inside the model
(a ``Rescaling`` layer), so a full-int8 model takes these ``uint8`` pixels as they are.

This module imports no TensorFlow: it runs on the Pi.

Conventions:

- images are RGB ``uint8`` arrays of shape H x W x 3 (``contracts.md``, "Pixels");
- ``bbox`` is ``(x, y, w, h)`` in pixels of the full frame, as stored with a shot (the COCO
  convention);
- ``colour_matrix`` is the 3x3 or 3x4 matrix stored with the shot, acting on linear RGB
  (:func:`capture.vision.colour.apply_colour_matrix`).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from capture.vision.colour import apply_colour_matrix

#: Extra context around the bounding box, as a fraction of its longer side on each side.
#: NOTE: some margin keeps the part's outline whole when the box is a few pixels tight, and
#: matches what a sorter sees when its box wobbles from frame to frame.
CROP_MARGIN = 0.15

Box = tuple[int, int, int, int]


def square_region(bbox: Sequence[float] | None, width: int, height: int) -> Box:
    """The square ``(x, y, side, side)`` that :func:`prepare` crops, in frame pixels.

    The square is centred on the box, its side the box's longer side plus :data:`CROP_MARGIN`
    on each side.  It may extend past the frame; :func:`prepare` fills that part by repeating
    the edge pixels.  Without a box it is the whole frame, padded to a square.
    """
    if bbox is None:
        x, y, w, h = 0.0, 0.0, float(width), float(height)
    else:
        x, y, w, h = (float(v) for v in bbox)
        if not (w > 0 and h > 0 and np.isfinite([x, y, w, h]).all()):
            raise ValueError(f"bbox must be (x, y, w, h) with w, h > 0 (got {tuple(bbox)})")
    longest = max(w, h)
    side = longest if bbox is None else longest * (1.0 + 2.0 * CROP_MARGIN)
    side_px = max(1, round(side))
    cx, cy = x + w / 2.0, y + h / 2.0
    return round(cx - side_px / 2.0), round(cy - side_px / 2.0), side_px, side_px


def crop_square(image: np.ndarray, region: Box) -> np.ndarray:
    """The pixels of ``region`` (from :func:`square_region`), edges repeated outside the frame."""
    x, y, side, _ = region
    height, width = image.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + side, width), min(y + side, height)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"the crop {region} lies entirely outside the {width}x{height} frame")
    inside = image[y0:y1, x0:x1]
    pads = (y0 - y, y + side - y1, x0 - x, x + side - x1)
    if any(pads):
        # NOTE: repeating the edge keeps the background's colour; black bars would be a cue the
        # model could learn from boxes near the frame's border.
        inside = cv2.copyMakeBorder(inside, *pads, borderType=cv2.BORDER_REPLICATE)
    return inside


def resize_square(square: np.ndarray, size: int) -> np.ndarray:
    """Resize a square crop to ``size`` x ``size`` (area averaging when shrinking)."""
    if square.shape[0] == size and square.shape[1] == size:
        return np.ascontiguousarray(square)
    shrinking = square.shape[0] > size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interpolation)


def prepare(
    image_rgb: np.ndarray,
    bbox: Sequence[float] | None,
    colour_matrix: list[list[float]] | np.ndarray | None,
    size: int,
) -> np.ndarray:
    """The model's input for one frame: a ``size`` x ``size`` x 3 ``uint8`` crop of the part.

    Steps: crop the square around ``bbox`` (see :func:`square_region`), resize, apply the
    shot's colour matrix.  Correcting the small resized crop instead of the 12 MP frame costs a
    fraction of the time; since training and sorting both run this same order, they agree.
    Deterministic: the same input always gives the same bytes.
    """
    if not isinstance(image_rgb, np.ndarray) or image_rgb.dtype != np.uint8:
        raise ValueError("image_rgb must be a uint8 numpy array (RGB, H x W x 3)")
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"image_rgb must have shape H x W x 3 (got {image_rgb.shape})")
    if not 8 <= int(size) <= 2048:
        raise ValueError(f"size must be between 8 and 2048 pixels (got {size})")
    height, width = image_rgb.shape[:2]
    square = crop_square(image_rgb, square_region(bbox, width, height))
    square = resize_square(square, int(size))
    if colour_matrix is not None:
        square = apply_colour_matrix(np.ascontiguousarray(square), colour_matrix)
    return np.ascontiguousarray(square, dtype=np.uint8)


def prepare_mask(mask: np.ndarray, bbox: Sequence[float] | None, size: int) -> np.ndarray:
    """The part's mask cut exactly like :func:`prepare` cuts the image (``bool``, size x size).

    Training uses it to swap backgrounds; outside the frame there is no part.
    """
    if mask.ndim == 3:
        mask = mask[..., 0]
    height, width = mask.shape[:2]
    region = square_region(bbox, width, height)
    x, y, side, _ = region
    binary = (mask > 0).astype(np.uint8) * 255
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + side, width), min(y + side, height)
    square = np.zeros((side, side), np.uint8)
    if x1 > x0 and y1 > y0:
        square[y0 - y : y1 - y, x0 - x : x1 - x] = binary[y0:y1, x0:x1]
    return resize_square(square, int(size)) >= 128
