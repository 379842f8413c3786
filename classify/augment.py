"""Augmentation for turntable photos: what changes between shots of a real part, no more.

Why these and not a generic recipe:

- **Colour** varies with the light and the camera's white balance, and the rig *records* how
  much: each shot carries the colour matrix that corrects its cast.  Jitter therefore scales
  the recorded correction (between half and 1.25 times it) plus a small gain per channel, so
  the model sees the casts the rig really meets without learning colours that never occur.
- **Rotation** is free on a turntable and a belt: any angle.  **Scale** within +-15 % covers
  parts at different heights and box wobble.  No flips: mirror-image parts (left and right
  wedges) are different parts.
- **Background swaps** paste the part (by its stored mask) onto a patch of another shot's
  background, so the model cannot learn which sheet a part was shot on.

Crops arrive *without* colour correction (``prepare(..., colour_matrix=None, ...)``); the
correction is applied here per epoch, so val and test crops prepared with the real matrix see
exactly the pixels :func:`classify.preprocess.prepare` gives the sorter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from capture.colour import apply_colour_matrix
from classify.preprocess import CROP_MARGIN, resize_square

IDENTITY = np.hstack([np.eye(3), np.zeros((3, 1))])


@dataclass(frozen=True)
class AugmentConfig:
    """How strong each augmentation is; the defaults suit turntable shots."""

    colour_scale: tuple[float, float] = (0.5, 1.25)
    gain_jitter: float = 0.04
    rotate: bool = True
    scale: tuple[float, float] = (0.85, 1.15)
    background_swap: float = 0.5


def as_affine(matrix: Sequence[Sequence[float]] | np.ndarray | None) -> np.ndarray:
    """The 3x4 form of a stored colour matrix (identity when there is none)."""
    if matrix is None:
        return IDENTITY.copy()
    m = np.asarray(matrix, np.float64)
    if m.shape == (3, 3):
        m = np.hstack([m, np.zeros((3, 1))])
    if m.shape != (3, 4):
        raise ValueError(f"a colour matrix must be 3x3 or 3x4 (got {m.shape})")
    return m


def jitter_matrix(matrix: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """A colour matrix between the uncorrected and an over-corrected version of ``matrix``."""
    t = rng.uniform(*cfg.colour_scale)
    m = IDENTITY + t * (matrix - IDENTITY)
    gains = 1.0 + rng.uniform(-cfg.gain_jitter, cfg.gain_jitter, size=3)
    return gains[:, None] * m


def background_patch(
    image: np.ndarray, bbox: Sequence[float] | None, size: int
) -> np.ndarray | None:
    """A part-free square of ``image`` as large as the part's crop, resized to ``size``.

    Tried beside the box (left, right, above, below); None when no such square fits, e.g. a
    part that fills the frame.
    """
    if bbox is None:
        return None
    height, width = image.shape[:2]
    x, y, w, h = bbox
    side = round(max(w, h) * (1 + 2 * CROP_MARGIN))
    cy, cx = y + h / 2 - side / 2, x + w / 2 - side / 2
    candidates = ((x - side, cy), (x + w, cy), (cx, y - side), (cx, y + h))
    for px, py in candidates:
        px, py = round(px), round(py)
        if px >= 0 and py >= 0 and px + side <= width and py + side <= height and side >= 4:
            return resize_square(image[py : py + side, px : px + side], size)
    return None


def rotate_scale(crop: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Rotate by a random angle and scale about the centre; edges mirror, as a sheet would."""
    size = crop.shape[0]
    angle = rng.uniform(0.0, 360.0) if cfg.rotate else 0.0
    scale = rng.uniform(*cfg.scale)
    m = cv2.getRotationMatrix2D(((size - 1) / 2.0, (size - 1) / 2.0), angle, scale)
    return cv2.warpAffine(
        crop, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )


def augment(
    crop: np.ndarray,
    matrix: np.ndarray,
    mask: np.ndarray | None,
    backgrounds: Sequence[np.ndarray],
    rng: np.random.Generator,
    cfg: AugmentConfig = AugmentConfig(),
) -> np.ndarray:
    """One augmented, colour-corrected training crop from an uncorrected prepared crop."""
    out = crop
    if mask is not None and backgrounds and rng.random() < cfg.background_swap:
        patch = backgrounds[int(rng.integers(len(backgrounds)))]
        out = np.where(mask[..., None], crop, patch)
    out = rotate_scale(out, rng, cfg)
    return apply_colour_matrix(np.ascontiguousarray(out), jitter_matrix(matrix, rng, cfg))
